"""Registry entries of the FiGS family (issues 6, 16): the swap-register array and its three
baselines (broadcast, fan-out, fixed 2:4)."""

from sparsehw.golden.figs import FIGS_WORKLOAD
from sparsehw.hw.figs import (FIGS_PARAMS, NM_BROADCAST_PARAMS, NM_FANOUT_PARAMS,
                              NM_FIXED24_PARAMS, FigsArray, NmBroadcastArray, NmFanoutArray,
                              NmFixed24Array)
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
        testbench="sparsehw.verif.figs.tb_figs",
        perf=_perf("nm_broadcast"),
        workload_params=FIGS_WORKLOAD,
        workload_summary=_SUMMARY,
    ),
    Block(
        name="nm_fanout",
        summary="Fan-out N:M PE array (baseline): FiGS's port (each group's M-block once), "
                "fanned out to the group's N rows inside, M:1 operand mux per MAC "
                "(rows*M/N*8 bits/cycle)",
        params=NM_FANOUT_PARAMS,
        build=NmFanoutArray,
        testbench="sparsehw.verif.figs.tb_figs",
        perf=_perf("nm_fanout"),
        workload_params=FIGS_WORKLOAD,
        workload_summary=_SUMMARY,
        # Place and route: with its registers packed into the DSPs router1 had 3,547 arcs left
        # when the 30-minute budget stopped it at load ~5; with 45 minutes it routed (43.8 min
        # at load ~4, stop 31) at 80.04 MHz, against 96.55 unpacked (stop 28's record): the
        # packing costs this block Fmax (its operand copies then route from the DSP rows across
        # the congested select fabric: critical path qlog1 -> st3_x, 8 levels, 9.9 of 12.5 ns
        # routing), so it is off here, as for the SPU; unpacked runs took 29.3 min, hence a
        # budget of its own, 45 min per nextpnr run.
        pack_dsp_registers=False,
        pnr_budget_s=2700,
    ),
    Block(
        name="nm_fixed24",
        summary="Fixed 2:4 PE array (2:4 sparse-tensor-core-style baseline): 4:1 mux per MAC; "
                "sparser models run as 2:4 with zeros, denser ones as two 2:4 passes "
                "(rows*2*8 bits/cycle)",
        params=NM_FIXED24_PARAMS,
        build=NmFixed24Array,
        testbench="sparsehw.verif.figs.tb_figs",
        perf=_perf("nm_fixed24"),
        workload_params=FIGS_WORKLOAD,
        workload_summary=_SUMMARY,
    ),
]
