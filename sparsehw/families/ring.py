"""Registry entry of the ring interconnect family."""

from sparsehw.golden.ring import RING_PARAMS
from sparsehw.hw.ring import Ring
from sparsehw.registry import Block
from sparsehw.verif.ring.perf_ring import RING_WORKLOAD, run_perf


BLOCKS = [
    Block(
        name="ring",
        summary="bidirectional slotted ring, minimal routing, per-node inject/eject streams",
        params=RING_PARAMS,
        build=Ring,
        testbench="sparsehw.verif.ring.tb_ring",
        perf=run_perf,
        workload_params=RING_WORKLOAD,
        workload_summary="hardware traffic generators (RingHarness): offered load sweep "
                         "0.05..1.0 plus points near the bound; or a saturate-then-drain soak",
    ),
]
