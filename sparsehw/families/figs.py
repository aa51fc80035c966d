"""Registry entries of the FiGS family (issue 6): the swap-register array and the broadcast
N:M baseline."""

from sparsehw.golden.figs import FIGS_WORKLOAD
from sparsehw.hw.figs import FIGS_PARAMS, NM_BROADCAST_PARAMS, FigsArray, NmBroadcastArray
from sparsehw.registry import Block


def _perf(engine):
    def perf(params, workload, *, sim, seed, build_dir):
        from sparsehw.verif.figs.perf_figs import run_perf
        return run_perf(engine, params, workload, sim=sim, seed=seed, build_dir=build_dir)
    return perf


_SUMMARY = ("N:M GEMM K x O x B tiled on the array, weights double-banked; utilization = "
            "nonzero MACs / (MACs x cycles); input_bits_per_cycle = activation bits delivered / "
            "cycles")

BLOCKS = [
    Block(
        name="figs",
        summary="FiGS swap-register MAC PE array: N:M at run time, a group's activations shared "
                "by its N rows through alpha vertical links, farther operands by the swap "
                "exchange (extra cycles) (rows*M/N*8 bits/cycle)",
        params=FIGS_PARAMS,
        build=FigsArray,
        testbench="sparsehw.verif.figs.tb_figs",
        perf=_perf("figs"),
        workload_params=FIGS_WORKLOAD,
        workload_summary=_SUMMARY,
    ),
    Block(
        name="nm_broadcast",
        summary="Broadcast N:M PE array (VEGETA/STC-style baseline): every row gets the M-wide "
                "block, M:1 operand mux per MAC (rows*M*8 bits/cycle)",
        params=NM_BROADCAST_PARAMS,
        build=NmBroadcastArray,
        testbench="sparsehw.verif.figs.tb_nm_broadcast",
        perf=_perf("nm_broadcast"),
        workload_params=FIGS_WORKLOAD,
        workload_summary=_SUMMARY,
    ),
]
