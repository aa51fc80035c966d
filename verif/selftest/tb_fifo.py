"""cocotb test of the stream drivers on :class:`verif.selftest.StreamFifo`."""

import cocotb

from sparsehw.verif import common
from sparsehw.verif.selftest import StreamFifo
from sparsehw.verif.stream import StreamSink, StreamSource, pack, reset, start_clock, unpack


@cocotb.test()
async def fifo_passes_everything_in_order(dut):
    rng = common.rng(1)
    stall = common.workload().get("stall", 0.5)
    layout = StreamFifo.layout
    items = [{"a": [rng.randint(-128, 127)], "b": rng.randint(0, 15),
              "c": {"s": rng.randint(-32, 31)}} for _ in range(300)]
    start_clock(dut)
    await reset(dut)
    source = StreamSource(dut, "i", rng=common.rng(2), stall=stall)
    sink = StreamSink(dut, "o", rng=common.rng(3), stall=stall)
    source.send_nowait(pack(layout, item) for item in items)
    await sink.wait_for(len(items), timeout_cycles=20 * len(items))
    got = [unpack(layout, bits) for bits in sink.items]
    assert got == items
    common.record(cycles=sink.last_cycle + 1, transfers=sink.transfers)
