"""Registry entries of the chip family: the SPU subsystem and the S4-style chip (docs/chip.md)."""

from sparsehw.hw.chip import CHIP_RTL_PARAMS, SUBSYSTEM_PARAMS, Chip, Subsystem
from sparsehw.verif.chip import CHIP_WORKLOAD, MUTATION_WORKLOAD
from sparsehw.registry import Block


#: The reference design point of ``sparsehw perf chip`` (-p overlays it): big enough for the reference
#: workload (4 GEMMs K=O=1024, B=16) on one subsystem at 1:1 (2**20 weight words).
REFERENCE_PARAMS = CHIP_RTL_PARAMS.validate(
    subsystems=4, lanes=16, macs=4, max_m=32, act_rows=16, max_k=1024, bank_rows=1024,
    imem_depth=64, wmem_depth=1 << 16, pmem_depth=1024, flit_width=256)

def _perf(params, workload, *, sim, seed, build_dir):
    from sparsehw.verif.chip.perf_chip import run_perf
    return run_perf(dict(params), dict(workload), sim=sim, seed=seed, build_dir=build_dir)


BLOCKS = [
    Block(
        name="subsystem",
        summary="one SPU subsystem: SPU, weight/post-op/instruction memories, two activation "
                "banks, sequencer, ring port, host memory port; act_engine adds an activation "
                "engine (ACT instruction)",
        params=SUBSYSTEM_PARAMS,
        build=Subsystem,
    ),
    Block(
        name="chip",
        summary="S4-style chip: 1..16 SPU subsystems on the ring, host port; runs chained N:M "
                "GEMMs and (act_engine) activation-engine ops from local programs",
        params=CHIP_RTL_PARAMS,
        build=Chip,
        testbench="sparsehw.verif.chip.tb_chip",
        perf=_perf,
        perf_defaults=REFERENCE_PARAMS,
        workload_params=CHIP_WORKLOAD,
        mutation_workload=MUTATION_WORKLOAD,
        workload_summary="chain of 4 GEMMs K=O=1024 B=16, same n:m per layer, weights and x "
                         "preloaded, cycles from start to done; -p overlays the reference point "
                         "lanes=16 macs=4 act_rows=16 max_k=bank_rows=1024 flit_width=256",
        # Place and route (docs/chip.md, FPGA): router1 had 145k of ~158k arcs left when the
        # 30-minute budget stopped it (placement alone takes ~21 min of it), so the chip routes
        # with router2 (synth/fmax.py) under a budget of its own, 75 min per nextpnr run.
        pnr_router="router2",
        pnr_budget_s=4500,
    ),
]
