"""Functional coverage of the HBFP family regressions (``fp32_mac``, ``bfp_convert``,
``hbfp_dot``) on :mod:`verif.coverage`.

The classifiers below look only at the stimulus (operand bits, quantized beats) and at exact
rational arithmetic (:class:`fractions.Fraction`): they say *which case* a vector exercises
(a rounding tie, a subnormal, a malformed lane, ...), never what the result should be (that is
the golden model's job). One set of coverpoints per simulation process, shared by its tests
(the database is global to the process), created on first use.
"""

import functools
from fractions import Fraction

from sparsehw.verif.coverage import Coverage, per_process

__all__ = ["fp32_class", "rounding_kind", "Fp32MacCoverage", "BfpConvertCoverage",
           "HbfpDotCoverage"]

FP_CLASSES = ("zero", "subnormal", "normal", "inf", "nan")
ROUNDING = ("exact", "below_tie", "tie", "above_tie")


def fp32_class(b):
    """``zero``, ``subnormal``, ``normal``, ``inf`` or ``nan`` of float32 bits ``b``."""
    b = int(b)
    e, f = (b >> 23) & 0xFF, b & 0x7FFFFF
    if e == 0xFF:
        return "nan" if f else "inf"
    if e == 0:
        return "subnormal" if f else "zero"
    return "normal"


def _value(b):
    """Exact value of finite float32 bits ``b`` as a Fraction."""
    b = int(b)
    e, f = (b >> 23) & 0xFF, b & 0x7FFFFF
    mag = Fraction(f, 1 << 149) if e == 0 else Fraction(f | (1 << 23)) * Fraction(2) ** (e - 150)
    return -mag if b >> 31 else mag


def _binade(x):
    """``e`` with ``2**e <= x < 2**(e+1)`` for a positive Fraction ``x``."""
    e = x.numerator.bit_length() - x.denominator.bit_length()
    while Fraction(2) ** e > x:
        e -= 1
    while Fraction(2) ** (e + 1) <= x:
        e += 1
    return e


def rounding_kind(x):
    """Where exact value ``x`` (Fraction) falls between float32 neighbours: ``(range, kind)``
    with range ``subnormal`` (below ``2**-126``) or ``normal``, kind in :data:`ROUNDING`
    (``below_tie``/``above_tie``: the discarded part below/above half a unit in the last place).
    ``None`` when ``x`` overflows float32's range."""
    a = abs(x)
    if a == 0:
        return ("normal", "exact")
    if a < Fraction(1, 1 << 126):
        quantum, rng = Fraction(1, 1 << 149), "subnormal"
    else:
        n, d = a.numerator, a.denominator
        e = n.bit_length() - d.bit_length()                  # 2**e <= a < 2**(e+2)
        if Fraction(2) ** e > a:
            e -= 1
        elif Fraction(2) ** (e + 1) <= a:
            e += 1
        if e > 127:
            return None
        quantum, rng = Fraction(2) ** (e - 23), "normal"
    frac = a / quantum - (a // quantum)
    if frac == 0:
        return (rng, "exact")
    half = Fraction(1, 2)
    return (rng, "below_tie" if frac < half else "tie" if frac == half else "above_tie")


def _round_bins():
    return [f"{r}.{k}" for r in ("normal", "subnormal") for k in ROUNDING]


class Fp32MacCoverage:
    """Coverpoints of the ``fp32_mac`` regression: the class of each operand and of the result,
    how the product and the sum round (exact, below/at/above a tie, normal and subnormal range)
    and the special cases (overflow, exact cancellation, invalid operations, NaN operands)."""

    SPECIAL = ("overflow", "cancel_to_zero", "inf_minus_inf", "zero_times_inf", "nan_operand",
               "product_underflow", "negative_zero")

    def __init__(self):
        cov = Coverage("fp32_mac")
        self.cov = cov
        self.a, self.b, self.c = (cov.point(n, FP_CLASSES) for n in "abc")
        self.result = cov.point("result", FP_CLASSES)
        self.product = cov.point("product_rounding", _round_bins())
        # A float32 sum whose exact value is below 2**-125 is always exact (both terms are
        # multiples of 2**-149): only normal-range sums can round.
        self.sum = cov.point("sum_rounding", [f"normal.{k}" for k in ROUNDING]
                             + ["subnormal.exact"])
        self.special = cov.point("special", self.SPECIAL)

    @classmethod
    def get(cls):
        return per_process("fp32_mac", cls)

    def sample(self, a, b, c, result):
        """One vector: operand bits and the expected result bits."""
        ka, kb, kc = fp32_class(a), fp32_class(b), fp32_class(c)
        self.a(ka), self.b(kb), self.c(kc)
        self.result(fp32_class(result))
        if "nan" in (ka, kb, kc):
            self.special("nan_operand")
            return
        if {ka, kb} == {"zero", "inf"}:
            self.special("zero_times_inf")
            return
        if "inf" in (ka, kb):
            if kc == "inf" and (int(a) ^ int(b) ^ int(c)) >> 31:
                self.special("inf_minus_inf")
            return
        product = _value(a) * _value(b)
        kind = rounding_kind(product)
        if kind is None:
            if kc != "inf":
                self.special("overflow")
            return
        self.product(".".join(kind))
        from sparsehw.golden.fp32 import bits, fp32_mul, from_bits
        p_bits = bits(fp32_mul(from_bits(a), from_bits(b)))
        if product != 0 and fp32_class(p_bits) == "zero":
            self.special("product_underflow")
        if fp32_class(p_bits) == "inf":
            if kc != "inf":
                self.special("overflow")
            return
        if kc == "inf":
            return
        total = _value(p_bits) + _value(c)
        kind = rounding_kind(total)
        if kind is None:
            self.special("overflow")
            return
        self.sum(".".join(kind))
        if total == 0 and (product != 0 or _value(c) != 0):
            self.special("cancel_to_zero")
        if int(result) == 0x80000000:
            self.special("negative_zero")

    def report(self, log, **ports):
        self.cov.ports(**ports)
        return self.cov.report(log)


class BfpConvertCoverage:
    """Coverpoints of the ``bfp_convert`` regression: per-lane cases (a rounding tie that rounds
    down to even, one that rounds up to even, a value just above a tie, a saturated mantissa, a
    subnormal, NaN, infinity, zero, each in *every* lane) and block cases (all zero, invalid by
    NaN/Inf/exponent 128, a maximum exactly at a power of two (saturating or bumped), just
    above one (the ``max + 1e-8`` rounding), the smallest and largest exponents)."""

    LANE_KINDS = ("tie_down", "tie_up", "above_tie", "saturated", "subnormal", "nan", "inf",
                  "zero")
    BLOCK = ("all_zero", "invalid_nan", "invalid_inf", "invalid_exp", "pow2_saturate",
             "pow2_bump", "just_above_pow2", "exp_min", "exp_max", "ordinary")

    def __init__(self, block_size, mant_bits):
        cov = Coverage("bfp_convert")
        self.cov, self.B, self.m = cov, block_size, mant_bits
        self.lane = {k: cov.point(f"lane.{k}", list(range(block_size))) for k in self.LANE_KINDS}
        self.block = cov.point("block", self.BLOCK)

    @classmethod
    def get(cls, block_size, mant_bits):
        return per_process("bfp_convert", lambda: cls(block_size, mant_bits))

    def sample(self, words, exp):
        """One block: its float32 bit patterns and the expected shared exponent."""
        from sparsehw.golden.hbfp import INVALID_EXP, MIN_EXP
        classes = [fp32_class(w) for w in words]
        for j, k in enumerate(classes):
            if k in ("nan", "inf", "zero", "subnormal"):
                self.lane[k](j)
        finite = [(_value(w), j) for j, (w, k) in enumerate(zip(words, classes))
                  if k not in ("nan", "inf")]
        if "nan" in classes:
            self.block("invalid_nan")
        if "inf" in classes:
            self.block("invalid_inf")
        amax = max((abs(v) for v, _ in finite), default=Fraction(0))
        if exp == INVALID_EXP:
            if "nan" not in classes and "inf" not in classes:
                self.block("invalid_exp")
            return
        if amax == 0:
            self.block("all_zero")
            return
        if exp == MIN_EXP:
            self.block("exp_min")
        if exp == 127:
            self.block("exp_max")
        n, d = amax.numerator, amax.denominator
        pow2 = n & (n - 1) == 0 and d & (d - 1) == 0
        if pow2:
            self.block("pow2_saturate" if amax == Fraction(2) ** exp else "pow2_bump")
        elif amax < Fraction(2) ** exp and amax * (1 - Fraction(1, 1 << 20)) < \
                Fraction(2) ** (exp - 1) < amax:
            self.block("just_above_pow2")
        else:
            self.block("ordinary")
        limit = (1 << self.m) - 1
        scale = Fraction(2) ** (self.m - exp)
        half = Fraction(1, 2)
        for v, j in finite:
            s = abs(v) * scale
            whole = s.numerator // s.denominator
            frac = s - whole
            if frac == half:
                up = whole % 2 == 1                       # half to even
                if whole + up > limit:
                    self.lane["saturated"](j)
                else:
                    self.lane["tie_up" if up else "tie_down"](j)
            elif frac > half:
                if whole + 1 > limit:
                    self.lane["saturated"](j)
                elif frac < half + Fraction(1, 1 << 8):
                    self.lane["above_tie"](j)
            elif whole > limit:
                self.lane["saturated"](j)

    def report(self, log, **ports):
        self.cov.ports(**ports)
        return self.cov.report(log)


class HbfpDotCoverage:
    """Coverpoints of the ``hbfp_dot`` regression: every error kind (a malformed mantissa in
    every lane of ``a`` and of ``b``, an out-of-range exponent of either operand, an unknown
    mode when mixed), invalid blocks on either side, mantissas at the limit on either side, the
    smallest exponent, the number of blocks per dot product (1 .. more than the partial sums),
    every mode (mixed), the class of the result (zero, normal, infinity, NaN) and, for each adder
    of the partial-sum tree, a cancellation of 1..7, 8..15 and 16..24 binades (the adder's
    normalization shift, from the exact sum of its inputs)."""

    # No subnormal: the smallest block-product exponent is -52 - 2m (golden.hbfp).
    RESULT = ("zero", "normal", "inf", "nan")
    #: Bins of the normalization shift of a tree adder (binades the sum's leading one drops
    #: below the larger input's): a few, a byte or two, down to the last bits.
    DROPS = ("1..7", "8..15", "16..24")

    def __init__(self, block_size, mant_bits, mixed, partials):
        cov = Coverage("hbfp_dot")
        self.cov, self.B, self.m, self.mixed = cov, block_size, mant_bits, mixed
        self.partials = partials
        lanes = [f"{s}{j}" for s in "ab" for j in range(block_size)]
        self.malformed = cov.point("malformed_lane", lanes)
        errors = ["mantissa", "exponent_a", "exponent_b"] + (["mode"] if mixed else [])
        self.error = cov.point("error", errors)
        self.invalid = cov.point("invalid", ["a", "b"])
        self.limit = cov.point("mantissa_limit", [f"{s}{sg}" for s in "ab" for sg in "+-"])
        self.exp = cov.point("exponent", ["min", "below_zero", "above_zero"])
        self.blocks = cov.point("blocks_per_dot", ["1", "2..partials", "more"])
        self.modes = cov.point("mode", [0, 1, 2]) if mixed else None
        self.result = cov.point("result", self.RESULT)
        # Cancellation in each adder of the partial-sum tree: how many binades the exact sum's
        # leading one lies below the larger input's (the adder's normalization shift).
        from sparsehw.verif.hbfp.vectors import tree_adders
        self.adders = [(f"L{level}.p{left[0]}", left, right)
                       for level, left, right in tree_adders(partials)]
        self.cancel = cov.point("tree_cancellation", [f"{name}:{drop}" for name, _, _ in
                                                      self.adders for drop in self.DROPS])

    @classmethod
    def get(cls, block_size, mant_bits, mixed, partials):
        return per_process("hbfp_dot", lambda: cls(block_size, mant_bits, mixed, partials))

    def sample(self, beats, expected):
        """Every dot product of ``beats`` (input dicts) with its expected ``(value, invalid,
        error)``."""
        from sparsehw.golden.hbfp import INVALID_EXP, MIN_EXP, MODES
        k = 0
        count = 0
        dot = []
        for beat in beats:
            count += 1
            mode = beat.get("mode", 0)
            if self.mixed:
                if mode in MODES:
                    self.modes(mode)
                else:
                    self.error("mode")
            mb = MODES.get(mode, self.m) if self.mixed else self.m
            limit = (1 << mb) - 1
            for s in "ab":
                for j, q in enumerate(beat[s]):
                    if abs(q) > limit or (self.mixed and q == -128):
                        self.malformed(f"{s}{j}")
                        self.error("mantissa")
                    elif q == limit:
                        self.limit(f"{s}+")
                    elif q == -limit:
                        self.limit(f"{s}-")
                e = beat["e" + s]
                if e == INVALID_EXP:
                    self.invalid(s)
                elif not MIN_EXP <= e <= INVALID_EXP:
                    self.error(f"exponent_{s}")
                elif e == MIN_EXP:
                    self.exp("min")
                else:
                    self.exp("below_zero" if e < 0 else "above_zero")
            dot.append((beat, mb))
            if beat["last"]:
                self.blocks("1" if count == 1 else "2..partials" if count <= self.partials
                            else "more")
                self.result(fp32_class(expected[k][0]))
                if not expected[k][1] and not expected[k][2]:
                    self._sample_tree(dot)
                k += 1
                count = 0
                dot = []

    def _sample_tree(self, dot):
        """The partial sums of one well-formed dot product (the order of
        :func:`golden.hbfp.dot`), then each tree adder's cancellation."""
        import numpy as np
        from sparsehw.golden.fp32 import bits
        from sparsehw.golden.hbfp import block_dot
        parts = [np.float32(-0.0)] * self.partials
        with np.errstate(invalid="ignore", over="ignore"):
            for i, (beat, mb) in enumerate(dot):
                r = block_dot(beat["a"], beat["ea"], beat["b"], beat["eb"], mb)
                parts[i % self.partials] = np.float32(parts[i % self.partials] + r)
            for name, left, right in self.adders:
                x, y = (functools.reduce(lambda u, v: np.float32(u + v), [parts[j] for j in side])
                        for side in (left, right))
                if not (np.isfinite(x) and np.isfinite(y)) or x + y == 0:
                    continue
                big = max(abs(_value(bits(x))), abs(_value(bits(y))))
                total = abs(_value(bits(x)) + _value(bits(y)))
                drop = _binade(big) - _binade(total)
                for label in self.DROPS:
                    lo, hi = (int(v) for v in label.split(".."))
                    if lo <= drop <= hi:
                        self.cancel(f"{name}:{label}")

    def report(self, log, **ports):
        self.cov.ports(**ports)
        return self.cov.report(log)
