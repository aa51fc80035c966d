"""IEEE-754 binary32 arithmetic in Amaranth, and the ``fp32_mac`` block.

The helpers build logic inside a :class:`~amaranth.hdl.Module` and are shared by the HBFP blocks
(:mod:`hw.hbfp`): :func:`round_pack` turns an exact ``sign * mag * 2**exp`` into the nearest
float32 (ties to even) and is the single rounding point of every unit; :func:`fp_mul` and
:func:`fp_add` are complete IEEE binary32 operations (subnormals, signed zeros, infinities, NaN;
results that are NaN are the canonical quiet NaN ``0x7FC00000``).

Every helper takes an optional :class:`Pipeline`: named cut points inside the logic where
pipeline registers may go (:data:`ADD_CUTS`, :data:`MUL_CUTS`). Without one, or with no cut
selected, the logic is combinational, as before. The numeric result never depends on the cuts:
only the latency does.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sparsehw.hw.arith import register


__all__ = ["QNAN", "INF", "NEG_ZERO", "EXP_SHAPE", "ROUND_CUTS", "ADD_CUTS", "MUL_CUTS",
           "ADD_CUT_ORDER", "LEAD_CUT", "DIFF_CUT", "SPECIAL_NONE", "SPECIAL_NAN",
           "SPECIAL_POS_INF", "SPECIAL_NEG_INF", "SPECIAL_SHAPE", "add_cuts", "special_class",
           "Pipeline", "unpack_fp32", "round_pack", "fp_mul", "fp_add", "Fp32Mac"]


QNAN = 0x7FC00000
INF = 0x7F800000
#: ``-0.0``: the exact identity of the float32 addition (``x + -0 = x`` for every ``x``).
NEG_ZERO = 0x80000000
#: Shape of the internal binary exponents (value = mag * 2**exp): wide enough for any product.
EXP_SHAPE = signed(12)

#: Cut points of :func:`round_pack`: after the leading-one search, after the shift to the kept
#: bits, after the rounding increment.
ROUND_CUTS = ("lzc", "shift", "round")
#: An optional further cut of :func:`round_pack` (in none of the tuples above, so that their
#: users keep their pipelines): between the leading-one search and the shift amount and
#: exponent computed from its position (the ``lzc`` cut then follows those).
LEAD_CUT = "lead"
#: An optional further cut of :func:`fp_add` (in no tuple above either): after the operands'
#: comparison and exponent differences, before the distance's clamp and the operand swap (the
#: operands are registered and unpacked again after it).
DIFF_CUT = "diff"
#: Cut points of :func:`fp_add`, in the order the logic meets them: after the operand swap,
#: after the alignment shift, after the mantissa addition, then :data:`ROUND_CUTS`.
ADD_CUTS = ("swap", "align", "add") + ROUND_CUTS
#: Cut points of :func:`fp_mul`: after the four partial products of the mantissas, after their
#: sum, then :data:`ROUND_CUTS`.
MUL_CUTS = ("pp", "prod") + ROUND_CUTS
#: The order in which :func:`add_cuts` spends an adder's pipeline registers (longest
#: remaining combinational stretch first).
ADD_CUT_ORDER = ("add", "lzc", "swap", "shift", "align", "round")


def add_cuts(stages):
    """The ``stages`` cut points of :data:`ADD_CUTS` an adder with that many pipeline registers
    uses (the first ``stages`` of :data:`ADD_CUT_ORDER`)."""
    return ADD_CUT_ORDER[:stages]


def _name(prefix):
    # No global counter: the Verilog must not depend on what was built before in the same
    # process (byte-identical output). Amaranth makes repeated names unique deterministically.
    return prefix


#: Class codes of a special result, carried in 2 bits through the pipeline (the 32-bit word is
#: built once, at the output): a special result is the quiet NaN or a signed infinity, nothing
#: else. The low bit of an infinity's code is its sign.
SPECIAL_NONE, SPECIAL_NAN, SPECIAL_POS_INF, SPECIAL_NEG_INF = 0, 1, 2, 3
SPECIAL_SHAPE = 2


def special_class(nan, inf, inf_sign):
    """The 2-bit special class of a result: NaN if ``nan``, else an infinity of sign
    ``inf_sign`` if ``inf``, else none."""
    return Mux(nan, SPECIAL_NAN, Mux(inf, Cat(inf_sign, Const(1, 1)), SPECIAL_NONE))


class Pipeline:
    """Pipeline registers at named cut points of combinational logic.

    ``cut(name, **values)`` returns ``values`` unchanged when ``name`` is not in ``cuts``;
    otherwise registered copies (loaded when ``en`` is high), and then the :attr:`riders` (side
    signals such as a valid bit or a tag, which must stay aligned with the data) are registered
    too. :attr:`latency` counts the registers inserted so far.
    """

    def __init__(self, m, en=None, cuts=(), prefix="p", riders=None):
        self.m, self.en, self.cuts, self.prefix = m, en, frozenset(cuts), prefix
        self.riders = dict(riders or {})
        self.latency = 0

    def _reg(self, name, key, value):
        return register(self.m, value, _name(f"{self.prefix}_{name}_{key}"), self.en)

    def cut(self, name, **values):
        if name not in self.cuts:
            return values
        self.latency += 1
        self.riders = {k: self._reg(name, k, v) for k, v in self.riders.items()}
        return {k: self._reg(name, k, v) for k, v in values.items()}


def unpack_fp32(m, x, prefix="f", subnormals=True):
    """Split float32 bits ``x`` into fields; returns a dict of Values.

    ``sign``, ``mant`` (24 bits with the hidden bit, ``mag = mant * 2**exp``), ``exp``
    (``bexp - 150``, :data:`EXP_SHAPE`), ``bexp`` (``max(biased, 1)``, 8 bits), ``nan``,
    ``inf``, ``zero``. With ``subnormals=False`` the caller guarantees that ``x`` is not
    subnormal, and ``bexp`` is the biased exponent as it is (0 only for a zero, whose ``mant``
    is 0 and whose exponent therefore never matters).
    """
    biased = x[23:31]
    frac = x[0:23]
    bexp = Signal(8, name=_name(prefix + "_bexp"))
    m.d.comb += bexp.eq(Mux(biased == 0, 1, biased) if subnormals else biased)
    exp = Signal(EXP_SHAPE, name=_name(prefix + "_exp"))
    m.d.comb += exp.eq(bexp - 150)
    return {
        "sign": x[31], "mant": Cat(frac, biased != 0), "exp": exp, "bexp": bexp,
        "nan": (biased == 255) & (frac != 0), "inf": (biased == 255) & (frac == 0),
        "zero": (biased == 0) & (frac == 0),
    }


def _leading_one(x):
    """``(any, pos)``: whether ``x`` has a one bit, and the index of the highest one (0 if
    none), as a balanced tree of depth ``ceil(log2(len(x)))`` (not a priority chain)."""
    width = 1 << ceil_log2(max(len(x), 2))
    x = Cat(x, Const(0, width - len(x)))
    nodes = [(x[2 * i] | x[2 * i + 1], x[2 * i + 1]) for i in range(width // 2)]
    while len(nodes) > 1:
        nodes = [(hi_any | lo_any, Cat(Mux(hi_any, hi_pos, lo_pos), hi_any))
                 for (lo_any, lo_pos), (hi_any, hi_pos) in zip(nodes[0::2], nodes[1::2])]
    return nodes[0]


def _exp_terms(m, prefix, exp, width, subnormals, exp_min):
    """The terms of :func:`_shift_amount` that need only ``exp`` (computed beside the
    leading-one search): a dict of Values, and the largest subnormal shift (None with
    ``subnormals=False``: then there are no terms)."""
    if not subnormals:
        return {}, None
    e126 = Signal(EXP_SHAPE, name=_name(prefix + "_e126"))      # beside the leading-one search
    m.d.comb += e126.eq(exp + 126)
    # lsb >= -23 always, so the subnormal shift lsb + 24 = -125 - exp >= 1; lsb above
    # width + 1 leaves kept = guard = 0 (the result rounds to zero whatever the sticky bits
    # are), so it is clamped there, unless exp_min shows that it cannot happen.
    sub_lsb = Signal(EXP_SHAPE, name=_name(prefix + "_sublsb"))
    m.d.comb += sub_lsb.eq(-149 - exp)
    clamp = exp_min is None or -125 - exp_min > width + 25
    sub_max = width + 25 if clamp else max(-125 - exp_min, 1)
    sub_amt = Signal(range(sub_max + 1), name=_name(prefix + "_subamt"))
    m.d.comb += sub_amt.eq(Mux(sub_lsb > width + 1, width + 25, sub_lsb + 24) if clamp
                           else sub_lsb + 24)
    return {"e126": e126, "sub_normal": sub_lsb < -23, "sub_amt": sub_amt}, sub_max


def _shift_amount(m, prefix, pos, terms, width, sub_max):
    """``(amt, base, amt_max)`` of :func:`round_pack`: the right shift of
    ``mag * 2**(width + 24)`` that leaves the kept bits above bit ``width``, the result's biased
    exponent - 1 (None with ``subnormals=False``, no ``terms``: then it is t, which
    :func:`round_pack` computes after the ``lzc`` cut, beside the shifter), and the largest
    shift that can occur. ``terms`` and ``sub_max`` are :func:`_exp_terms`'s.

    The kept LSB position is lsb = max(pos - 23, -149 - exp): 24 significant bits, but no lower
    than weight 2**-149. Normal result iff t = pos + exp + 126 >= 0; then lsb = pos - 23, the
    shift is pos + 1 and the biased exponent - 1 is t; else lsb = -149 - exp and it is 0 (at
    t = 0 both rules agree). Everything that needs only exp is computed beside the leading-one
    search. With ``subnormals=False`` the caller guarantees t >= 0 for every nonzero ``mag``.
    """
    if not terms:
        return pos + 1, None, width
    t = Signal(signed(14), name=_name(prefix + "_t"))
    m.d.comb += t.eq(pos + terms["e126"])
    # The kept LSB is the larger of the two: normal (t > 0) iff pos + 1 > sub_amt, a short
    # comparison of pos with a value computed beside the leading-one search (t, a sum after
    # the search, goes only to the exponent).
    # (sub_amt holds the subnormal shift only when it is positive; below, t > 0 anyway.)
    normal = Signal(name=_name(prefix + "_normal"))
    m.d.comb += normal.eq(terms["sub_normal"] | (pos >= terms["sub_amt"]))
    return Mux(normal, pos + 1, terms["sub_amt"]), Mux(normal, t, 0), max(width, sub_max)


def round_pack(m, sign, mag, exp, prefix="rp", pipe=None, *, zero_sign=None, special=None,
               subnormals=True, exp_min=None, lead_min=0):
    """float32 bits nearest to ``(-1)**sign * mag * 2**exp``, ties to even.

    ``mag`` is an unsigned Value of any width, ``exp`` a signed Value (:data:`EXP_SHAPE`).
    Handles subnormal results, rounding up into the next binade, overflow to a signed infinity
    and ``mag == 0`` (a zero of sign ``zero_sign``, by default ``sign``; the int 0: always
    ``+0``, no zero-sign logic). ``special`` (a :data:`SPECIAL_SHAPE` class code,
    :func:`special_class`), when not none, replaces the result by the quiet NaN or that
    infinity (``None``, the default: no class code is carried). Returns a 32-bit Signal,
    ``pipe.latency`` more cycles late when ``pipe`` selects some of :data:`ROUND_CUTS`.

    The other options drop logic that the caller's producer makes unreachable (the defaults
    keep all of it; a wrong promise gives wrong results):

    - ``subnormals=False``: no subnormal-result path (a second shift amount and exponent, and
      their selection), for callers whose every nonzero ``mag * 2**exp`` is at least 2**-126;
    - ``exp_min``: the smallest ``exp`` the producer gives; it bounds the subnormal shift (no
      clamp, a shorter sticky mask when it is small enough);
    - ``lead_min``: the leading-one search looks at ``mag``'s bits from ``lead_min`` up only,
      for producers whose nonzero ``mag`` without a one there rounds to a zero of sign
      ``zero_sign`` (it is taken for one).
    """
    pipe = pipe if pipe is not None else Pipeline(m)
    width = len(mag)
    # The bits below lead_min enter the search as constant zeros: Yosys folds them away, and
    # the position needs no offset added after the search.
    any_one, pos_v = _leading_one(Cat(Const(0, lead_min), mag[lead_min:]) if lead_min else mag)
    pos = Signal(range(max(width, 2)), name=_name(prefix + "_pos"))     # leading one of mag
    m.d.comb += pos.eq(pos_v)
    # One right shift does both cases of the rounding (lsb <= 0: a left shift; lsb > 0: a
    # right shift keeping the bits below the LSB): y = mag * 2**(width - lsb), kept =
    # y >> width, then the guard bit and the sticky bits below it.
    terms, sub_max = _exp_terms(m, prefix, exp, width, subnormals, exp_min)
    # The exact-zero test is the leading-one tree's root (no second OR of mag).
    # zero_sign 0 (the int, not a Value): a zero result is +0, no zero sign is carried; no
    # special: no class code is carried either.
    plus_zero = isinstance(zero_sign, int) and zero_sign == 0
    zsign = {} if plus_zero else {"zsign": sign if zero_sign is None else zero_sign}
    spec = {} if special is None else {"special": special}
    # The optional "lead" cut: the leading one's position (and exp's terms) registered before
    # the shift amount and the exponent are computed from them.
    v = pipe.cut("lead", sign=sign, mag=mag, pos=pos, zero=~any_one, **zsign, **spec,
                 **(terms or {"exp": exp}))
    pos, exp = v["pos"], v.get("exp")
    terms = {k: v[k] for k in terms}
    amt_v, base_v, amt_max = _shift_amount(m, prefix, pos, terms, width, sub_max)
    amt = Signal(range(amt_max + 1), name=_name(prefix + "_amt"))
    m.d.comb += amt.eq(amt_v)
    if base_v is None:
        # Always normal: the exponent sum t = pos + exp + 126 waits for the next stage, where
        # it is beside the shifter (not after the leading-one search).
        e126 = Signal(EXP_SHAPE, name=_name(prefix + "_e126"))
        m.d.comb += e126.eq(exp + 126)
        exponent = {"pos": pos, "e126": e126}
    else:
        base = Signal(signed(14), name=_name(prefix + "_base"))        # biased exponent - 1
        m.d.comb += base.eq(base_v)
        exponent = {"base": base}
    zsign = {} if plus_zero else {"zsign": v["zsign"]}
    spec = {} if special is None else {"special": v["special"]}
    v = pipe.cut("lzc", sign=v["sign"], mag=v["mag"], amt=amt, **exponent, zero=v["zero"],
                 **zsign, **spec)
    if base_v is None:
        base = Signal(signed(14), name=_name(prefix + "_t"))           # biased exponent - 1
        m.d.comb += base.eq(v["pos"] + v["e126"])
    else:
        base = v["base"]
    wide = Signal(2 * width + 24, name=_name(prefix + "_wide"))
    m.d.comb += wide.eq(v["mag"] << (width + 24))
    # Only the kept bits (24: the leading one is at bit 23 at most) and the guard bit of the
    # shifted word are used: y[0] is the guard.
    y = Signal(25, name=_name(prefix + "_y"))
    m.d.comb += y.eq((wide >> v["amt"])[width - 1:width + 24])
    # The sticky bit straight from mag, beside the shifter: the bits below the guard are mag's
    # bits i < lsb - 1 = amt - 25 (a thermometer mask of amt). Bits the shifter drops at the
    # clamp only matter when kept = guard = 0, where the result is zero anyway.
    below_guard = Cat(*[v["amt"] > i + 25 if i + 25 < amt_max else Const(0, 1)
                        for i in range(width)])
    sticky = Signal(name=_name(prefix + "_sticky"))
    m.d.comb += sticky.eq((v["mag"] & below_guard) != 0)
    zsign = {} if plus_zero else {"zsign": v["zsign"]}
    spec = {} if special is None else {"special": v["special"]}
    # kept < 2**24 (its leading one is at bit 23 at most), so the rounded value's bits from 23
    # up are n = kept[23] + c23 (0, 1 or 2), c23 the carry of the increment out of the 23
    # fraction bits (all ones and rounding up): the exponent field is base + n, an overflow
    # base + n >= 255.
    if "round" in pipe.cuts:
        # The increment and the exponent in parallel: base + kept[23] (+ 1 when c23), the
        # overflow test done on both beforehand.
        v = pipe.cut("shift", sign=v["sign"], zero=v["zero"], **zsign,
                     **spec, base=base, kept=y[1:], guard=y[0], sticky=sticky)
    else:
        # No register after the rounding (it runs into the result, e.g. back into an
        # accumulation loop): the three exponents and overflow tests are computed here,
        # beside the shifter, and the rounding stage only selects one by n. Without subnormal
        # results (no ``terms``) a nonzero kept has its leading one at bit 23, so n = 1 + c23:
        # two candidates, selected by c23 alone (a zero result is the zero case's anyway).
        ns = range(3) if terms else range(1, 3)
        exps = {k: Signal(8, name=_name(f"{prefix}_exp{k}")) for k in ns}
        m.d.comb += [e.eq((base + k)[:8]) for k, e in exps.items()]
        ovfs = Signal(len(ns), name=_name(prefix + "_ovfs"))
        m.d.comb += ovfs.eq(Cat(*[base >= 255 - k for k in ns]))
        v = pipe.cut("shift", sign=v["sign"], zero=v["zero"], **zsign,
                     **spec, **{f"exp{k}": e for k, e in exps.items()}, ovfs=ovfs, kept=y[1:],
                     guard=y[0], sticky=sticky)
    inc = Signal(name=_name(prefix + "_inc"))
    m.d.comb += inc.eq(v["guard"] & (v["sticky"] | v["kept"][0]))
    frac = Signal(23, name=_name(prefix + "_frac"))
    m.d.comb += frac.eq(v["kept"][:23] + inc)
    c23 = Signal(name=_name(prefix + "_c23"))
    m.d.comb += c23.eq(inc & v["kept"][:23].all())
    if "base" in v:
        high0 = Signal(signed(15), name=_name(prefix + "_high"))
        m.d.comb += high0.eq(v["base"] + v["kept"][23])
        high = Mux(c23, high0 + 1, high0)[:8]
        ovf = Mux(c23, high0 >= 254, high0 >= 255)
    elif "exp0" not in v:
        high = Mux(c23, v["exp2"], v["exp1"])
        ovf = Mux(c23, v["ovfs"][1], v["ovfs"][0])
    else:
        two, one = v["kept"][23] & c23, v["kept"][23] ^ c23
        high = Mux(two, v["exp2"], Mux(one, v["exp1"], v["exp0"]))
        ovf = Mux(two, v["ovfs"][2], Mux(one, v["ovfs"][1], v["ovfs"][0]))
    zsign = {} if plus_zero else {"zsign": v["zsign"]}
    spec = {} if special is None else {"special": v["special"]}
    v = pipe.cut("round", sign=v["sign"], zero=v["zero"], **zsign,
                 **spec, frac=frac, exp=high, ovf=ovf)
    out = Signal(32, name=_name(prefix + "_out"))
    cases = []
    if special is not None:
        cases += [(v["special"] == SPECIAL_NAN, QNAN),
                  (v["special"] != SPECIAL_NONE, Cat(Const(INF, 31), v["special"][0]))]
    cases += [(v["zero"], 0 if plus_zero else Cat(Const(0, 31), v["zsign"])),
              (v["ovf"], Cat(Const(INF, 31), v["sign"]))]
    for k, (cond, value) in enumerate(cases):
        with (m.Elif if k else m.If)(cond):
            m.d.comb += out.eq(value)
    with m.Else():
        m.d.comb += out.eq(Cat(v["frac"], v["exp"], v["sign"]))
    return out


def fp_mul(m, a, b, prefix="mul", pipe=None):
    """IEEE binary32 product of bit patterns ``a`` and ``b``, rounded to nearest even.

    ``pipe`` may select cuts of :data:`MUL_CUTS`; the result is then ``pipe.latency`` cycles
    late.
    """
    pipe = pipe if pipe is not None else Pipeline(m)
    fa, fb = unpack_fp32(m, a, prefix + "a"), unpack_fp32(m, b, prefix + "b")
    sign = fa["sign"] ^ fb["sign"]
    # Four partial products of 17-bit and 7-bit halves (each fits one 18x18 DSP multiplier),
    # so that a register can sit between the multipliers and their sum.
    ma, mb = fa["mant"], fb["mant"]
    pps = {"ll": ma[:17] * mb[:17], "lh": ma[:17] * mb[17:], "hl": ma[17:] * mb[:17],
           "hh": ma[17:] * mb[17:]}
    exp = Signal(EXP_SHAPE, name=_name(prefix + "_e"))
    m.d.comb += exp.eq(fa["exp"] + fb["exp"])
    nan = fa["nan"] | fb["nan"] | (fa["inf"] & fb["zero"]) | (fb["inf"] & fa["zero"])
    special = special_class(nan, fa["inf"] | fb["inf"], sign)
    v = pipe.cut("pp", exp=exp, sign=sign, special=special, **pps)
    prod = Signal(48, name=_name(prefix + "_prod"))
    m.d.comb += prod.eq(v["ll"] + ((v["lh"] + v["hl"]) << 17) + (v["hh"] << 34))
    v = pipe.cut("prod", prod=prod, exp=v["exp"], sign=v["sign"], special=v["special"])
    # A nonzero product has its leading one at bit 23 or above (a normal significand is at
    # least 2**23), unless both operands are subnormal, and then it rounds to zero.
    return round_pack(m, v["sign"], v["prod"], v["exp"], prefix + "_rp", pipe,
                      special=v["special"], lead_min=23)


def fp_add(m, a, b, prefix="add", pipe=None, *, subnormals=True, neg_zero=True):
    """IEEE binary32 sum of bit patterns ``a`` and ``b``, rounded to nearest even.

    Alignment keeps guard, round and sticky bits (the sticky OR-ed into the LSB of the shifted
    operand), which gives the correctly rounded sum; an exact zero sum is ``+0`` unless both
    operands are ``-0``. ``pipe`` may select cuts of :data:`ADD_CUTS`; the result is then
    ``pipe.latency`` cycles late.

    ``subnormals=False`` drops the subnormal paths (the exponent clamp of subnormal operands and
    :func:`round_pack`'s subnormal results): only for callers whose operands are never
    subnormal and whose every nonzero sum is at least 2**-126 (e.g. operands that are all
    multiples of some 2**-k, k <= 126: their sum is one too, however it rounds). The default
    keeps them.

    ``neg_zero=False`` drops the zero-sign logic: an exact zero sum is always ``+0``, also
    ``-0 + -0`` (IEEE: ``-0``). Only for callers in which the sign of a zero sum never reaches a
    result: e.g. sums that are never ``-0`` themselves and meet a ``-0`` only as an operand of
    a further sum whose other operand is not ``-0`` (``x + -0 = x + +0`` for every such ``x``).
    The default keeps it.
    """
    pipe = pipe if pipe is not None else Pipeline(m)
    fa = unpack_fp32(m, a, prefix + "a", subnormals)
    fb = unpack_fp32(m, b, prefix + "b", subnormals)
    a_big = Signal(name=_name(prefix + "_abig"))
    m.d.comb += a_big.eq(a[:31] >= b[:31])
    # The exponent distance, clamped to 31, both ways in parallel with the comparison; the
    # sign of a - b's exponent difference picks one (equal exponents: 0 either way), so the
    # distance does not wait for the 31-bit comparison.
    d_ab = Signal(signed(9), name=_name(prefix + "_dab"))
    d_ba = Signal(8, name=_name(prefix + "_dba"))
    m.d.comb += [d_ab.eq(fa["bexp"] - fb["bexp"]), d_ba.eq(fb["bexp"] - fa["bexp"])]
    if DIFF_CUT in pipe.cuts:
        v = pipe.cut(DIFF_CUT, a=a, b=b, a_big=a_big, d_ab=d_ab, d_ba=d_ba)
        a_big, d_ab, d_ba = v["a_big"], v["d_ab"], v["d_ba"]
        fa = unpack_fp32(m, v["a"], prefix + "a", subnormals)
        fb = unpack_fp32(m, v["b"], prefix + "b", subnormals)
    dist_c = Signal(5, name=_name(prefix + "_dc"))
    m.d.comb += dist_c.eq(Mux(d_ab < 0, Mux(d_ba > 31, 31, d_ba),
                              Mux(d_ab[:8] > 31, 31, d_ab[:8])))
    x_ext = Signal(27, name=_name(prefix + "_xe"))
    y_ext = Signal(27, name=_name(prefix + "_ye"))
    m.d.comb += [x_ext.eq(Mux(a_big, fa["mant"], fb["mant"]) << 3),
                 y_ext.eq(Mux(a_big, fb["mant"], fa["mant"]) << 3)]
    sign_x = Mux(a_big, fa["sign"], fb["sign"])
    bexp_x = Signal(8, name=_name(prefix + "_bx"))           # the exponent is bexp_x - 153
    m.d.comb += bexp_x.eq(Mux(a_big, fa["bexp"], fb["bexp"]))
    nan = fa["nan"] | fb["nan"] | (fa["inf"] & fb["inf"] & (fa["sign"] != fb["sign"]))
    special = special_class(nan, fa["inf"] | fb["inf"], Mux(fa["inf"], fa["sign"], fb["sign"]))
    zsign = {"zsign": fa["sign"] & fb["sign"]} if neg_zero else {}
    v = pipe.cut("swap", x=x_ext, y=y_ext, dist=dist_c, sub=fa["sign"] ^ fb["sign"],
                 sign=sign_x, bexp=bexp_x, special=special, **zsign)
    y_ext, dist_c = v["y"], v["dist"]
    # The bits shifted out, OR-ed into the LSB (sticky): a thermometer mask of the distance,
    # one comparison with a constant per bit (no carry chain for 2**dist - 1).
    below = Cat(*[dist_c > i for i in range(27)])
    y_sh = Signal(27, name=_name(prefix + "_ys"))
    m.d.comb += y_sh.eq((y_ext >> dist_c) | ((y_ext & below) != 0))
    zsign = {"zsign": v["zsign"]} if neg_zero else {}
    v = pipe.cut("align", x=v["x"], y=y_sh, sub=v["sub"], sign=v["sign"], bexp=v["bexp"],
                 special=v["special"], **zsign)
    total = Signal(28, name=_name(prefix + "_sum"))
    with m.If(v["sub"]):
        m.d.comb += total.eq(v["x"] - v["y"])
    with m.Else():
        m.d.comb += total.eq(v["x"] + v["y"])
    exp_x = Signal(EXP_SHAPE, name=_name(prefix + "_ex"))
    m.d.comb += exp_x.eq(v["bexp"] - 153)
    zsign = {"zsign": v["zsign"]} if neg_zero else {}
    v = pipe.cut("add", total=total, sign=v["sign"], exp=exp_x, special=v["special"],
                 **zsign)
    # exp >= 1 - 153: no subnormal result needs the shift clamp.
    return round_pack(m, v["sign"], v["total"], v["exp"], prefix + "_rp", pipe,
                      zero_sign=v["zsign"] if neg_zero else 0, special=v["special"], subnormals=subnormals,
                      exp_min=1 - 153)


class Fp32Mac(wiring.Component):
    """IEEE-754 binary32 multiply then add: ``o = float32(float32(a*b) + c)``, pipelined.

    Both operations round to nearest even; subnormals (inputs and results), signed zeros,
    infinities and NaN are handled as IEEE-754 specifies; every NaN result is the canonical
    quiet NaN ``0x7FC00000`` (sign 0, quiet bit only, whatever the operands' payloads). This is
    :func:`golden.fp32.fp32_mac` bit for bit, and the FP32 reference of the HBFP area
    comparison. Pipeline registers sit at every cut of :data:`MUL_CUTS` and :data:`ADD_CUTS`
    (after the partial products and their sum, the leading-one search, the rounding shift and
    increment of each rounding, the adder's swap, alignment and addition), at each rounding's
    :data:`LEAD_CUT` (between the leading-one search and the shift amount and exponent computed
    from its position), at the adder's :data:`DIFF_CUT` (after the operand comparison and the
    exponent differences) and between the product and the adder, for timing closure on FPGAs.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"a": 32, "b": 32, "c": 32})))
        Operands (float32 bit patterns), one triple per cycle. ``i.ready`` is high when the
        pipeline can advance (``~o.valid | o.ready``).
    o : Out(stream.Signature(32))
        Result bits. Latency :attr:`latency` (16) cycles, one result per cycle; a stalled output
        holds the whole pipeline (back-pressure reaches ``i.ready`` combinationally).
    """

    layout = data.StructLayout({"a": 32, "b": 32, "c": 32})

    def __init__(self):
        super().__init__({"i": In(stream.Signature(self.layout)),
                          "o": Out(stream.Signature(32))})

    @property
    def latency(self):
        """Cycles from an accepted operand triple to its result: one per cut (each rounding's
        :data:`LEAD_CUT` and the adder's :data:`DIFF_CUT` too), plus the output register."""
        return len(MUL_CUTS) + 1 + len(ADD_CUTS) + 2 + 1 + 1

    def elaborate(self, platform):
        m = Module()
        adv = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]
        pipe = Pipeline(m, adv, MUL_CUTS + ("mid",) + ADD_CUTS + (LEAD_CUT, DIFF_CUT), "mac",
                        riders={"v": self.i.valid, "c": self.i.payload.c})
        prod = fp_mul(m, self.i.payload.a, self.i.payload.b, "mul", pipe)
        prod = pipe.cut("mid", prod=prod)["prod"]
        c = pipe.riders.pop("c")
        total = fp_add(m, prod, c, "add", pipe)
        assert pipe.latency + 1 == self.latency
        with m.If(adv):
            m.d.sync += [self.o.valid.eq(pipe.riders["v"]), self.o.payload.eq(total)]
        return m
