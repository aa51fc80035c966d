"""cocotb test of the stream drivers on :class:`verif.selftest.StreamFifo`."""

import cocotb

from sparsehw.verif import common
from sparsehw.verif.coverage import Coverage
from sparsehw.verif.selftest import StreamFifo
from sparsehw.verif.stream import collect, compare, endpoints, pack, start, unpack


@cocotb.test()
async def fifo_passes_everything_in_order(dut):
    rng = common.rng(1)
    stall = common.workload().get("stall", 0.5)
    layout = StreamFifo.layout
    items = [{"a": [rng.randint(-128, 127)], "b": rng.randint(0, 15),
              "c": {"s": rng.randint(-32, 31)}} for _ in range(300)]
    await start(dut, sources=("i",), sinks=("o",))
    source, sink = endpoints(dut, "i", "o", stall=stall, salt=2)
    cov = Coverage("stream_fifo")
    b_field = cov.point("b", range(16))
    cov.ports(i=source, o=sink)
    for item in items:
        b_field(item["b"])
    source.send_nowait(pack(layout, item) for item in items)
    got = await collect(sink, len(items), timeout_cycles=20 * len(items),
                        decode=lambda bits: unpack(layout, bits))
    compare(got, items)
    cov.report(dut._log)
    common.record(cycles=sink.last_cycle + 1, transfers=sink.transfers)
