"""IEEE-754 binary32 arithmetic in Amaranth, and the ``fp32_mac`` block.

The helpers build combinational logic inside a :class:`~amaranth.hdl.Module` and are shared by
the HBFP blocks (:mod:`hw.hbfp`): :func:`round_pack` turns an exact ``sign * mag * 2**exp`` into
the nearest float32 (ties to even) and is the single rounding point of every unit;
:func:`fp_mul` and :func:`fp_add` are complete IEEE binary32 operations (subnormals, signed
zeros, infinities, NaN; results that are NaN are the canonical quiet NaN ``0x7FC00000``).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["QNAN", "INF", "EXP_SHAPE", "unpack_fp32", "round_pack", "fp_mul", "fp_add",
           "Fp32Mac"]


QNAN = 0x7FC00000
INF = 0x7F800000
#: Shape of the internal binary exponents (value = mag * 2**exp): wide enough for any product.
EXP_SHAPE = signed(12)

def _name(prefix):
    # No global counter: the Verilog must not depend on what was built before in the same
    # process (byte-identical output). Amaranth makes repeated names unique deterministically.
    return prefix


def unpack_fp32(m, x, prefix="f"):
    """Split float32 bits ``x`` into fields; returns a dict of Values.

    ``sign``, ``mant`` (24 bits with the hidden bit, ``mag = mant * 2**exp``), ``exp``
    (``max(biased, 1) - 150``, :data:`EXP_SHAPE`), ``bexp`` (``max(biased, 1)``, 8 bits),
    ``nan``, ``inf``, ``zero``.
    """
    biased = x[23:31]
    frac = x[0:23]
    bexp = Signal(8, name=_name(prefix + "_bexp"))
    m.d.comb += bexp.eq(Mux(biased == 0, 1, biased))
    exp = Signal(EXP_SHAPE, name=_name(prefix + "_exp"))
    m.d.comb += exp.eq(bexp - 150)
    return {
        "sign": x[31], "mant": Cat(frac, biased != 0), "exp": exp, "bexp": bexp,
        "nan": (biased == 255) & (frac != 0), "inf": (biased == 255) & (frac == 0),
        "zero": (biased == 0) & (frac == 0),
    }


def round_pack(m, sign, mag, exp, prefix="rp"):
    """float32 bits nearest to ``(-1)**sign * mag * 2**exp``, ties to even.

    ``mag`` is an unsigned Value of any width, ``exp`` a signed Value (:data:`EXP_SHAPE`).
    Handles subnormal results, rounding up into the next binade, overflow to a signed infinity
    and ``mag == 0`` (a zero of sign ``sign``). Returns a 32-bit Signal.
    """
    width = len(mag)
    pos = Signal(range(max(width, 2)), name=_name(prefix + "_pos"))     # leading one of mag
    for i in range(width):
        with m.If(mag[i]):
            m.d.comb += pos.eq(i)
    # The kept LSB position: 24 significant bits, but no lower than weight 2**-149.
    lsb = Signal(EXP_SHAPE, name=_name(prefix + "_lsb"))
    normal_lsb = pos - 23
    sub_lsb = -149 - exp
    m.d.comb += lsb.eq(Mux(normal_lsb > sub_lsb, normal_lsb, sub_lsb))
    kept = Signal(width + 24, name=_name(prefix + "_kept"))
    guard = Signal(name=_name(prefix + "_guard"))
    sticky = Signal(name=_name(prefix + "_sticky"))
    with m.If(lsb <= 0):
        m.d.comb += kept.eq(mag << (-lsb)[:5])
    with m.Else():
        shift = Signal(range(width + 2), name=_name(prefix + "_sh"))
        m.d.comb += shift.eq(Mux(lsb > width + 1, width + 1, lsb))
        below = Signal(range(width + 2), name=_name(prefix + "_below"))
        m.d.comb += below.eq(shift - 1)
        m.d.comb += [
            kept.eq(mag >> shift),
            guard.eq((mag >> below)[0]),
            sticky.eq((mag & ((Const(1, width + 2) << below) - 1)[:width]) != 0),
        ]
    rounded = Signal(26, name=_name(prefix + "_rnd"))
    m.d.comb += rounded.eq(kept[:25] + (guard & (sticky | kept[0])))
    base = Signal(signed(14), name=_name(prefix + "_base"))            # biased exponent - 1
    m.d.comb += base.eq(lsb + exp + 149)
    total = Signal(signed(40), name=_name(prefix + "_total"))
    m.d.comb += total.eq((base << 23) + rounded)
    out = Signal(32, name=_name(prefix + "_out"))
    with m.If(mag == 0):
        m.d.comb += out.eq(Cat(Const(0, 31), sign))
    with m.Elif(total >= INF):
        m.d.comb += out.eq(Cat(Const(INF, 31), sign))
    with m.Else():
        m.d.comb += out.eq(Cat(total[:31], sign))
    return out


def fp_mul(m, a, b, prefix="mul"):
    """IEEE binary32 product of bit patterns ``a`` and ``b``, rounded to nearest even."""
    fa, fb = unpack_fp32(m, a, prefix + "a"), unpack_fp32(m, b, prefix + "b")
    sign = fa["sign"] ^ fb["sign"]
    prod = Signal(48, name=_name(prefix + "_prod"))
    m.d.comb += prod.eq(fa["mant"] * fb["mant"])
    exp = Signal(EXP_SHAPE, name=_name(prefix + "_e"))
    m.d.comb += exp.eq(fa["exp"] + fb["exp"])
    packed = round_pack(m, sign, prod, exp, prefix + "_rp")
    out = Signal(32, name=_name(prefix + "_out"))
    nan = fa["nan"] | fb["nan"] | (fa["inf"] & fb["zero"]) | (fb["inf"] & fa["zero"])
    with m.If(nan):
        m.d.comb += out.eq(QNAN)
    with m.Elif(fa["inf"] | fb["inf"]):
        m.d.comb += out.eq(Cat(Const(INF, 31), sign))
    with m.Else():
        m.d.comb += out.eq(packed)
    return out


def fp_add(m, a, b, prefix="add"):
    """IEEE binary32 sum of bit patterns ``a`` and ``b``, rounded to nearest even.

    Alignment keeps guard, round and sticky bits (the sticky OR-ed into the LSB of the shifted
    operand), which gives the correctly rounded sum; an exact zero sum is ``+0`` unless both
    operands are ``-0``.
    """
    a_big = Signal(name=_name(prefix + "_abig"))
    m.d.comb += a_big.eq(a[:31] >= b[:31])
    big = Signal(32, name=_name(prefix + "_big"))
    small = Signal(32, name=_name(prefix + "_small"))
    m.d.comb += [big.eq(Mux(a_big, a, b)), small.eq(Mux(a_big, b, a))]
    fa, fb = unpack_fp32(m, a, prefix + "a"), unpack_fp32(m, b, prefix + "b")
    fx, fy = unpack_fp32(m, big, prefix + "x"), unpack_fp32(m, small, prefix + "y")
    dist = Signal(8, name=_name(prefix + "_d"))
    m.d.comb += dist.eq(fx["bexp"] - fy["bexp"])
    dist_c = Signal(5, name=_name(prefix + "_dc"))
    m.d.comb += dist_c.eq(Mux(dist > 31, 31, dist))
    x_ext = Signal(27, name=_name(prefix + "_xe"))
    y_ext = Signal(27, name=_name(prefix + "_ye"))
    m.d.comb += [x_ext.eq(fx["mant"] << 3), y_ext.eq(fy["mant"] << 3)]
    y_sh = Signal(27, name=_name(prefix + "_ys"))
    m.d.comb += y_sh.eq((y_ext >> dist_c) | ((y_ext & ((Const(1, 33) << dist_c) - 1)) != 0))
    total = Signal(28, name=_name(prefix + "_sum"))
    with m.If(fx["sign"] ^ fy["sign"]):
        m.d.comb += total.eq(x_ext - y_sh)
    with m.Else():
        m.d.comb += total.eq(x_ext + y_sh)
    exp = Signal(EXP_SHAPE, name=_name(prefix + "_e"))
    m.d.comb += exp.eq(fx["exp"] - 3)
    packed = round_pack(m, fx["sign"], total, exp, prefix + "_rp")
    out = Signal(32, name=_name(prefix + "_out"))
    with m.If(fa["nan"] | fb["nan"] | (fa["inf"] & fb["inf"] & (fa["sign"] != fb["sign"]))):
        m.d.comb += out.eq(QNAN)
    with m.Elif(fa["inf"]):
        m.d.comb += out.eq(a)
    with m.Elif(fb["inf"]):
        m.d.comb += out.eq(b)
    with m.Elif(total == 0):
        m.d.comb += out.eq(Cat(Const(0, 31), fa["sign"] & fb["sign"]))
    with m.Else():
        m.d.comb += out.eq(packed)
    return out


class Fp32Mac(wiring.Component):
    """IEEE-754 binary32 multiply then add: ``o = float32(float32(a*b) + c)``.

    Both operations round to nearest even; subnormals (inputs and results), signed zeros,
    infinities and NaN are handled as IEEE-754 specifies; NaN results are the canonical quiet NaN
    ``0x7FC00000``. Bit-exact with numpy ``np.float32(a) * np.float32(b) + np.float32(c)``
    (see :mod:`golden.fp32`). This is the FP32 reference of the HBFP area comparison.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"a": 32, "b": 32, "c": 32})))
        Operands (float32 bit patterns), one triple per cycle. ``i.ready`` is high when the
        pipeline can advance (``~o.valid | o.ready``).
    o : Out(stream.Signature(32))
        Result bits. Latency 2 cycles (product register, sum register); a stalled output holds
        the whole pipeline (back-pressure reaches ``i.ready`` combinationally).
    """

    layout = data.StructLayout({"a": 32, "b": 32, "c": 32})

    def __init__(self):
        super().__init__({"i": In(stream.Signature(self.layout)),
                          "o": Out(stream.Signature(32))})

    @property
    def latency(self):
        return 2

    def elaborate(self, platform):
        m = Module()
        adv = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]
        prod = fp_mul(m, self.i.payload.a, self.i.payload.b, "mul")
        v1 = Signal()
        p1 = Signal(32)
        c1 = Signal(32)
        total = fp_add(m, p1, c1, "add")
        with m.If(adv):
            m.d.sync += [v1.eq(self.i.valid), p1.eq(prod), c1.eq(self.i.payload.c),
                         self.o.valid.eq(v1), self.o.payload.eq(total)]
        return m
