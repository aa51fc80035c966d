"""Registry entries of the FiGS family (issue 6): the swap-register array and the broadcast
N:M baseline."""

from sparsehw.registry import Block, Param


def _figs(**params):
    from sparsehw.hw.figs import FigsArray
    return FigsArray(**params)


def _broadcast(**params):
    from sparsehw.hw.figs import NmBroadcastArray
    return NmBroadcastArray(**params)


def _perf(engine):
    def perf(params, workload, *, sim, seed, build_dir):
        from sparsehw.verif.figs.perf_figs import run_perf
        return run_perf(engine, params, workload, sim=sim, seed=seed, build_dir=build_dir)
    return perf


_COMMON = (
    Param("rows", 8, "PE rows, 1..64 (a run-time N must divide it)"),
    Param("cols", 4, "PE columns, 1..32"),
)
_TAIL = (
    Param("width", 8, "operand width, 2..12 (int8: 8)"),
    Param("max_m", 32, "largest run-time M, power of two in 1..32"),
)

_WORKLOAD = (
    Param("n", 2, "kept per group, 1..m"),
    Param("m", 8, "group size, power of two in 1..32"),
    Param("k", 512, "reduction length, >= 1 (a multiple of m and 32 for mask=nested)"),
    Param("o", 64, "output channels, >= 1"),
    Param("b", 32, "activation columns (batch), >= 1"),
    Param("budget", 0, "activation bits per cycle the testbench may deliver, 0 = unlimited"),
    Param("mask", "nested", "weight mask", type=str,
          choices=("random", "fine", "nested", "low", "high", "alternating")),
    Param("stall", 0.0, "random valid/ready stall probability, 0..0.99", type=float),
    Param("sweep", False, "0/1: also run every supported ratio, unlimited and at the FiGS "
          "budget (records by_ratio)", type=bool),
)

_SUMMARY = ("N:M GEMM K x O x B tiled on the array, weights double-banked; utilization = "
            "nonzero MACs / (MACs x cycles); input_bits_per_cycle = activation bits delivered / "
            "cycles")

BLOCKS = [
    Block(
        name="figs",
        summary="FiGS swap-register MAC PE array: N:M at run time, a group's activations shared "
                "by its N rows through alpha vertical links (rows*M/N*8 bits/cycle)",
        params=_COMMON + (
            Param("alpha", 1, "vertical links each way per swap register, 0..7"),
            Param("beta", 2, "MAC units per PE sharing its swap register, 1..8"),
            Param("ratio", 4, "largest run-time M/N (swap-register lanes), power of two 1..32"),
        ) + _TAIL,
        build=_figs,
        testbench="sparsehw.verif.figs.tb_figs",
        perf=_perf("figs"),
        workload_params=_WORKLOAD,
        workload_summary=_SUMMARY,
    ),
    Block(
        name="nm_broadcast",
        summary="Broadcast N:M PE array (VEGETA/STC-style baseline): every row gets the M-wide "
                "block, M:1 operand mux per MAC (rows*M*8 bits/cycle)",
        params=_COMMON + (
            Param("beta", 2, "MAC units per PE, 1..8"),
        ) + _TAIL,
        build=_broadcast,
        testbench="sparsehw.verif.figs.tb_nm_broadcast",
        perf=_perf("nm_broadcast"),
        workload_params=_WORKLOAD,
        workload_summary=_SUMMARY,
    ),
]
