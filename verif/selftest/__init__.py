"""A tiny design that exercises the shared verification machinery itself (runner, drivers)."""

from amaranth.hdl import Module, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out


class StreamFifo(wiring.Component):
    """A 4-deep FIFO of ``{"a": [signed(8)], "b": unsigned(4), "c": {"s": signed(6)}}`` items.

    Used only to test :mod:`verif.stream` and :mod:`verif.runner` (packing of signed struct
    fields, stalls on both sides, no loss, no duplication).

    Attributes
    ----------
    i : In(stream.Signature(layout))
        Items in; ready while the FIFO has room.
    o : Out(stream.Signature(layout))
        Items out, in order; latency 1 cycle (``SyncFIFOBuffered``); back-pressure fills the FIFO.
    """

    layout = data.StructLayout({"a": data.ArrayLayout(signed(8), 1), "b": 4,
                                "c": data.StructLayout({"s": signed(6)})})

    def __init__(self):
        super().__init__({"i": In(stream.Signature(self.layout)),
                          "o": Out(stream.Signature(self.layout))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = buf = fifo.SyncFIFOBuffered(width=self.layout.size, depth=4)
        wiring.connect(m, wiring.flipped(self.i), buf.w_stream)
        wiring.connect(m, buf.r_stream, wiring.flipped(self.o))
        return m
