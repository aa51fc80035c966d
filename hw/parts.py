"""Pieces of blocks, synthesized alone for the area breakdowns of the studies.

None is a registered block; each is registered like the part of the block it stands for.
"""

from amaranth.hdl import Array, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sparsehw.hw.fp32 import fp_add, fp_mul


__all__ = ["Fp32Half", "Multiplier", "OperandMux", "EnabledRegs"]


class Fp32Half(wiring.Component):
    """Only the multiplier (``op="mul"``) or only the adder (``op="add"``) of ``fp32_mac``,
    registered like it (for the area breakdown; not a registered block)."""

    def __init__(self, op):
        self._op = op
        super().__init__({"i": In(stream.Signature(data.StructLayout({"a": 32, "b": 32}))),
                          "o": Out(stream.Signature(32))})

    def elaborate(self, platform):
        m = Module()
        a, b = Signal(32), Signal(32)
        adv = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(adv)
        v = Signal()
        with m.If(adv):
            m.d.sync += [v.eq(self.i.valid), a.eq(self.i.payload.a), b.eq(self.i.payload.b)]
        result = (fp_mul if self._op == "mul" else fp_add)(m, a, b, self._op)
        with m.If(adv):
            m.d.sync += [self.o.valid.eq(v), self.o.payload.eq(result)]
        return m


class Multiplier(wiring.Component):
    """One MAC's multiplier (int8 x int8 -> int16). Its share of the column adder tree is
    counted under "rest" (reduction, partial-sum pipeline, control, load path)."""
    def __init__(self, width):
        self._w = width
        super().__init__({"a": In(signed(width)), "b": In(signed(width)),
                          "y": Out(signed(2 * width))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a * self.b)
        return m


class OperandMux(wiring.Component):
    """One MAC's operand multiplexer: ``inputs`` operands of ``width`` bits."""
    def __init__(self, width, inputs):
        self._n = inputs
        bits = max(1, (inputs - 1).bit_length())
        super().__init__({"x": In(width * inputs), "sel": In(bits), "y": Out(width)})
        self._w = width

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(Array(self.x[i * self._w:(i + 1) * self._w]
                                    for i in range(self._n))[self.sel])
        return m


class EnabledRegs(wiring.Component):
    """``bits`` flip-flops with a common enable (input registers, weight storage)."""
    def __init__(self, bits):
        super().__init__({"d": In(bits), "en": In(1), "q": Out(bits)})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.q.eq(self.d)
        return m
