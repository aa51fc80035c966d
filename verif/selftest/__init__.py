"""A tiny design that exercises the shared verification machinery itself (runner, drivers)."""

from amaranth.hdl import Module, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out


class StreamFifo(wiring.Component):
    """A 4-deep FIFO of ``{"a": signed(8), "b": unsigned(4)}`` items, stream in and out.

    Used only to test :mod:`verif.stream` and :mod:`verif.runner` (packing of signed struct
    fields, stalls on both sides, no loss, no duplication).
    """

    layout = data.StructLayout({"a": data.ArrayLayout(signed(8), 1), "b": 4,
                                "c": data.StructLayout({"s": signed(6)})})

    def __init__(self):
        super().__init__({"i": In(stream.Signature(self.layout)),
                          "o": Out(stream.Signature(self.layout))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = buf = fifo.SyncFIFOBuffered(width=self.layout.size, depth=4)
        m.d.comb += [
            buf.w_data.eq(self.i.payload), buf.w_en.eq(self.i.valid), self.i.ready.eq(buf.w_rdy),
            self.o.payload.eq(buf.r_data), self.o.valid.eq(buf.r_rdy), buf.r_en.eq(self.o.ready),
        ]
        return m
