"""The shared machinery: packing, the cocotb runner and the stream drivers."""

import pytest
from amaranth.lib import data

from sparsehw.verif.runner import run_cocotb
from sparsehw.verif.selftest import StreamFifo
from sparsehw.verif.stream import pack, unpack


def test_pack_roundtrip_signed_nested():
    layout = StreamFifo.layout
    value = {"a": [-128], "b": 15, "c": {"s": -1}}
    assert unpack(layout, pack(layout, value)) == value
    assert pack(layout, {"a": [1], "b": 0, "c": {"s": 0}}) == 1


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError, match="does not fit"):
        pack(data.StructLayout({"x": 4}), {"x": 16})


@pytest.mark.sim
@pytest.mark.parametrize("sim,stall", [("icarus", 0.0), ("icarus", 0.6), ("verilator", 0.6)])
def test_stream_drivers_under_stalls(tmp_path, sim, stall):
    result = run_cocotb(StreamFifo(), "stream_fifo", "sparsehw.verif.selftest.tb_fifo",
                        build_dir=tmp_path, sim=sim, seed=7, workload={"stall": stall})
    assert result.passed, result.errors or result.log.read_text()[-3000:]
    assert result.record["transfers"] == 300
    if stall == 0.0:
        # Full rate: one item per cycle after the FIFO's fill latency.
        assert result.record["cycles"] <= 300 + 4


@pytest.mark.sim
def test_runner_reports_a_failing_testbench(tmp_path):
    # The FIFO testbench checks order; a design that drops items must fail, not pass silently.
    from amaranth.hdl import Module
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    class Lossy(wiring.Component):
        i: In(stream.Signature(StreamFifo.layout))
        o: Out(stream.Signature(StreamFifo.layout))

        def elaborate(self, platform):
            m = Module()
            odd = __import__("amaranth").hdl.Signal()
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += odd.eq(~odd)
            # Every second item is dropped: accepted but never shown as valid.
            m.d.comb += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid & ~odd),
                         self.i.ready.eq(self.o.ready | odd)]
            return m

    result = run_cocotb(Lossy(), "lossy", "sparsehw.verif.selftest.tb_fifo", build_dir=tmp_path, seed=1,
                        workload={"stall": 0.0})
    assert not result.passed
    assert result.failures == 1
