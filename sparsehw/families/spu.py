"""Registry entry of the SPU family: N:M sparse int8 GEMM with fused post-ops."""

from sparsehw.golden.spu import SPU_WORKLOAD
from sparsehw.hw.spu import SPU, SPU_PARAMS
from sparsehw.registry import Block


#: The reference design point of ``sparsehw perf spu`` (-p overlays it; also the report's): the
#: defaults cannot hold the reference workload's K=1024.
REFERENCE_PARAMS = SPU_PARAMS.validate(lanes=16, macs=4, max_k=1024, act_rows=8)


def _perf(params, workload, *, sim, seed, build_dir):
    from sparsehw.verif.spu.perf_spu import run_perf
    return run_perf(dict(params), dict(workload), sim=sim, seed=seed, build_dir=build_dir)


BLOCKS = [
    Block(
        name="spu",
        summary="N:M sparse int8 GEMM (run-time n:m up to 1:32), int32 accumulation, fused "
                "bias/requantization/ReLU",
        params=SPU_PARAMS,
        build=SPU,
        testbench="sparsehw.verif.spu.tb_spu",
        perf=_perf,
        perf_defaults=REFERENCE_PARAMS,
        workload_params=SPU_WORKLOAD,
        workload_summary="one n:m GEMM, K=1024 O=256 B=16 by default, streams at full rate; "
                         "-p overlays the reference point lanes=16 macs=4 max_k=1024 "
                         "act_rows=8 (x_buffers=1); -p x_buffers=2 with b >= 2*lanes overlaps "
                         "each column tile's X load with the previous tile's compute",
        # Packed, its 8 post-op DSPs get only their output register and the critical path
        # becomes bias -> 23 levels -> that register: 113.2 MHz against 127.9 unpacked (median
        # of 3 seeds, docs/report/fpga).
        pack_dsp_registers=False,
    ),
]
