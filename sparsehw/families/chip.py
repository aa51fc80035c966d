"""Registry entries of the chip family: the SPU subsystem and the S4-style chip (docs/chip.md)."""

from sparsehw.hw.chip import CHIP_RTL_PARAMS, SUBSYSTEM_PARAMS, Chip, Subsystem
from sparsehw.params import Param, ParamSpec, boolean, int_in, one_of, pow2_in
from sparsehw.registry import Block


#: The reference design point of ``sparsehw perf chip`` without -p: big enough for the reference
#: workload (4 GEMMs K=O=1024, B=16) on one subsystem at 1:1 (2**20 weight words).
REFERENCE_PARAMS = CHIP_RTL_PARAMS.validate(
    subsystems=4, lanes=16, macs=4, max_m=32, act_rows=16, max_k=1024, bank_rows=1024,
    imem_depth=64, wmem_depth=1 << 20, pmem_depth=4096, flit_width=256)

#: Knobs of ``sparsehw perf chip``: a chain of ``layers`` GEMMs K = O = ``k``, batch ``b``, the
#: same n:m in every layer (the reference workload is the defaults).
CHIP_WORKLOAD = ParamSpec(
    Param("m", 1, lambda v: pow2_in(1, v["max_m"]), doc="group size of every layer",
          allowed="a power of two in 1..max_m"),
    Param("n", 1, lambda v: pow2_in(1, v["m"]), doc="nonzeros per group",
          allowed="a power of two in 1..m"),
    Param("layers", 4, int_in(1, 16), doc="GEMMs in the chain"),
    Param("k", 1024, lambda v: int_in(max(v["m"], v["act_rows"], v["subsystems"]), v["max_k"]),
          doc="K = O of every layer (a multiple of m and act_rows)",
          allowed="an integer in max(m, act_rows, subsystems)..max_k"),
    Param("b", 16, lambda v: int_in(1, v["lanes"]), doc="batch columns (one tile)",
          allowed="an integer in 1..lanes"),
    Param("mapping", "model", one_of("model", "data"), doc="model- or data-parallel mapping"),
    Param("baseline", True, boolean(),
          doc="also run one subsystem (cached) for speedup_vs_1 and scaling_efficiency"),
    kind="workload knob",
)


def _perf(params, workload, *, sim, seed, build_dir):
    from sparsehw.verif.chip.perf_chip import run_perf
    return run_perf(dict(params), dict(workload), sim=sim, seed=seed, build_dir=build_dir)


BLOCKS = [
    Block(
        name="subsystem",
        summary="one SPU subsystem: SPU, weight/post-op/instruction memories, two activation "
                "banks, sequencer, ring port, host memory port",
        params=SUBSYSTEM_PARAMS,
        build=Subsystem,
    ),
    Block(
        name="chip",
        summary="S4-style chip: 1..16 SPU subsystems on the ring, host port; runs chained N:M "
                "GEMMs from local programs",
        params=CHIP_RTL_PARAMS,
        build=Chip,
        testbench="sparsehw.verif.chip.tb_chip",
        perf=_perf,
        perf_defaults=REFERENCE_PARAMS,
        workload_params=CHIP_WORKLOAD,
        workload_summary="chain of 4 GEMMs K=O=1024 B=16, same n:m per layer, weights and x "
                         "preloaded, cycles from start to done; without -p the reference point "
                         "lanes=16 macs=4 act_rows=16 max_k=bank_rows=1024 flit_width=256",
    ),
]
