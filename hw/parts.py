"""Pieces of blocks, synthesized alone for the area breakdowns of the studies.

None is a registered block; each is registered like the part of the block it stands for.
"""

from amaranth.hdl import Array, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sparsehw.hw.fp32 import fp_add, fp_mul
from sparsehw.params import check, int_in, one_of


__all__ = ["Fp32Half", "Multiplier", "OperandMux", "EnabledRegs"]


class Fp32Half(wiring.Component):
    """Only the multiplier (``op="mul"``) or only the adder (``op="add"``) of ``fp32_mac``,
    registered like it (for the area breakdown; not a registered block).

    Parameters
    ----------
    op : {"mul", "add"}

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"a": 32, "b": 32})))
        Operands (float32 bits); ``i.ready = ~o.valid | o.ready``.
    o : Out(stream.Signature(32))
        ``a*b`` or ``a+b`` (float32, RNE). Latency 2 cycles; back-pressure stalls the pipeline.

    Raises
    ------
    TypeError, ValueError
        ``op must be one of 'mul', 'add', not ...``.
    """

    def __init__(self, op):
        self._op = check("op", op, one_of("mul", "add"))
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
    counted under "rest" (reduction, partial-sum pipeline, control, load path).

    Parameters
    ----------
    width : int
        Operand width, 1..64.

    Attributes
    ----------
    a, b : In(signed(width))
    y : Out(signed(2 * width))
        ``a * b``, combinational.
    """
    def __init__(self, width):
        self._w = check("width", width, int_in(1, 64))
        super().__init__({"a": In(signed(width)), "b": In(signed(width)),
                          "y": Out(signed(2 * width))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(self.a * self.b)
        return m


class OperandMux(wiring.Component):
    """One MAC's operand multiplexer: ``inputs`` operands of ``width`` bits.

    Parameters
    ----------
    width : int
        Operand width, 1..64.
    inputs : int
        Operands to choose from, 1..1024.

    Attributes
    ----------
    x : In(width * inputs)
        The operands, operand ``i`` at bits ``i*width ..``.
    sel : In(max(1, ceil(log2(inputs))))
    y : Out(width)
        Operand ``sel``, combinational.
    """
    def __init__(self, width, inputs):
        check("width", width, int_in(1, 64))
        self._n = check("inputs", inputs, int_in(1, 1024))
        bits = max(1, (inputs - 1).bit_length())
        super().__init__({"x": In(width * inputs), "sel": In(bits), "y": Out(width)})
        self._w = width

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.y.eq(Array(self.x[i * self._w:(i + 1) * self._w]
                                    for i in range(self._n))[self.sel])
        return m


class EnabledRegs(wiring.Component):
    """``bits`` flip-flops with a common enable (input registers, weight storage).

    Parameters
    ----------
    bits : int
        Register width, 1..65536.

    Attributes
    ----------
    d : In(bits)
    en : In(1)
    q : Out(bits)
        ``d`` of the last cycle ``en`` was high.
    """
    def __init__(self, bits):
        check("bits", bits, int_in(1, 65536))
        super().__init__({"d": In(bits), "en": In(1), "q": Out(bits)})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.q.eq(self.d)
        return m
