"""Registry entry of the ring interconnect family (issue 5)."""

from sparsehw.registry import Block, Param


def _build(**params):
    from sparsehw.hw.ring import Ring
    return Ring(**params)


def _perf(params, workload, *, sim, seed, build_dir):
    from sparsehw.verif.ring.perf_ring import run_perf
    return run_perf(params, workload, sim=sim, seed=seed, build_dir=build_dir)


BLOCKS = [
    Block(
        name="ring",
        summary="bidirectional slotted ring, minimal routing, per-node inject/eject streams",
        params=(
            Param("nodes", 4, "2..16"),
            Param("width", 32, "1..1024 (payload bits per flit)"),
            Param("depth", 16, "2..64 (entries per injection queue)"),
            Param("eject_depth", 16, "2..64 (entries per ejection buffer)"),
            Param("starve", 255, "1..1023 (cycles an injection waits before its router "
                  "starves)"),
            Param("quota", 4, "1..16 (injections per starving router per fairness round)"),
        ),
        build=_build,
        testbench="sparsehw.verif.ring.tb_ring",
        perf=_perf,
        workload_params=(
            Param("pattern", "uniform", "uniform, neighbour, tornado, hotspot, or all (the four "
                  "in one simulation)", type=str,
                  choices=("uniform", "neighbour", "tornado", "hotspot", "all")),
            Param("hot", 0, "hotspot node, 0..nodes-1"),
            Param("warmup", 1000, "cycles before each measurement window, 100..1000000"),
            Param("window", 4000, "measured cycles per load point, 100..10000000"),
            Param("soak", 0, "1: saturate-then-drain soak instead of the load sweep", type=bool),
            Param("soak_cycles", 100000, "saturation cycles of the soak, 1000..100000000"),
        ),
        workload_summary="hardware traffic generators (RingHarness): offered load sweep "
                         "0.05..1.0 plus points near the bound; or a saturate-then-drain soak",
    ),
]
