"""fp32_mac: the golden model against an independent exact reference, and the RTL against the
golden model (Amaranth quick check, cocotb regression)."""

from fractions import Fraction

import numpy as np
import pytest

from sparsehw.golden.fp32 import QNAN, bits, canonical, fp32_mac, fp32_mac_bits, from_bits, same
from sparsehw.hw.fp32 import Fp32Mac


# -- an exact reference: rational arithmetic, explicit round-half-even to float32 -----------------

_INF = 0x7F800000


def _decode(x):
    """float32 bits -> ("nan"|"inf"|"fin", sign, Fraction magnitude); no numpy involved."""
    sign, biased, frac = x >> 31, (x >> 23) & 0xFF, x & 0x7FFFFF
    if biased == 0xFF:
        return ("nan" if frac else "inf"), sign, None
    if biased == 0:
        return "fin", sign, Fraction(frac, 1 << 149)
    return "fin", sign, Fraction(frac | (1 << 23)) * Fraction(2) ** (biased - 150)


def _round(sign, mag):
    """float32 bits nearest to ``(-1)**sign * mag`` (mag a non-negative Fraction), ties to
    even, overflow to infinity, subnormals kept."""
    if mag == 0:
        return sign << 31
    e = mag.numerator.bit_length() - mag.denominator.bit_length()
    if Fraction(2) ** e > mag:
        e -= 1                                            # 2**e <= mag < 2**(e+1)
    quantum = Fraction(2) ** max(e - 23, -149)
    n, rem = divmod(mag, quantum)
    n = int(n)
    if rem > quantum / 2 or (rem == quantum / 2 and n % 2 == 1):
        n += 1
    if n * quantum >= Fraction(2) ** 128:
        return (sign << 31) | _INF
    if quantum == Fraction(2) ** -149 and n < (1 << 23):
        return (sign << 31) | n                           # subnormal (or rounded to zero)
    while n >= (1 << 24):                                 # rounded up into the next binade
        n, quantum = n >> 1, quantum * 2
    q_exp = quantum.numerator.bit_length() - quantum.denominator.bit_length()   # quantum = 2**q
    biased = 150 + q_exp                                  # value = n * 2**q, 2**23 <= n < 2**24
    return (sign << 31) | (biased << 23) | (n & 0x7FFFFF)


def _ref_mul(a, b):
    (ka, sa, ma), (kb, sb, mb) = _decode(a), _decode(b)
    sign = sa ^ sb
    if "nan" in (ka, kb) or (ka == "inf" and kb == "fin" and mb == 0) or \
            (kb == "inf" and ka == "fin" and ma == 0):
        return QNAN
    if "inf" in (ka, kb):
        return (sign << 31) | _INF
    return _round(sign, ma * mb)


def _ref_add(a, b):
    (ka, sa, ma), (kb, sb, mb) = _decode(a), _decode(b)
    if "nan" in (ka, kb) or (ka == kb == "inf" and sa != sb):
        return QNAN
    if ka == "inf":
        return a
    if kb == "inf":
        return b
    total = (-ma if sa else ma) + (-mb if sb else mb)
    if total == 0:
        return (sa & sb) << 31                            # x + -x = +0; -0 + -0 = -0
    return _round(int(total < 0), abs(total))


def _ref_mac(a, b, c):
    return _ref_add(_ref_mul(a, b), c)


def test_reference_rounding_on_hand_checked_values():
    # The reference itself, on values checked by hand.
    assert _round(0, Fraction(1)) == 0x3F800000
    assert _round(1, Fraction(3, 2)) == 0xBFC00000
    assert _round(0, Fraction(1) + Fraction(1, 1 << 24)) == 0x3F800000       # tie -> even
    assert _round(0, Fraction(1) + Fraction(3, 1 << 24)) == 0x3F800002       # tie -> even (up)
    assert _round(0, Fraction(1, 1 << 150)) == 0x00000000                    # half min sub
    assert _round(0, Fraction(3, 1 << 150)) == 0x00000002                    # 1.5 min sub
    assert _round(0, Fraction(2) ** 128 - Fraction(2) ** 103) == _INF        # half ulp over max
    assert _round(0, Fraction(2) ** 128 - Fraction(2) ** 103 - Fraction(1)) == 0x7F7FFFFF
    assert _round(0, Fraction(2) ** -126 - Fraction(1, 1 << 150)) == 0x00800000  # into normal


# (a, b, c, expected) checked by hand: value, rounding and the IEEE special-value rules.
HAND_CHECKED = [
    (0x3FC00000, 0x40000000, 0xC0400000, 0x00000000),     # 1.5 * 2 - 3 = +0
    (0x3F800800, 0x3F800800, 0xBF801000, 0x00000000),     # (1+2^-12)^2 rounds to 1+2^-11 first
    (0x00000001, 0x3F000000, 0x00000000, 0x00000000),     # min subnormal / 2: tie -> even 0
    (0x00000003, 0x3F000000, 0x00000000, 0x00000002),     # 1.5 min subnormal: tie -> even 2
    (0x00000001, 0x3F400000, 0x00000000, 0x00000001),     # 0.75 min subnormal: rounds up
    (0x00800000, 0x3F000000, 0x00000000, 0x00400000),     # exact subnormal product
    (0x7F7FFFFF, 0x40000000, 0x00000000, 0x7F800000),     # overflow -> +inf
    (0x7F7FFFFF, 0x3F800000, 0x7F7FFFFF, 0x7F800000),     # max + max -> +inf
    (0x7F7FFFFF, 0xBF800000, 0x7F7FFFFF, 0x00000000),     # -max + max = +0
    (0x7F800000, 0x00000000, 0x3F800000, QNAN),           # inf * 0 -> canonical NaN
    (0x7F800000, 0x3F800000, 0xFF800000, QNAN),           # inf - inf -> canonical NaN
    (0xFFC00001, 0x3F800000, 0x00000000, QNAN),           # NaN payload not propagated
    (0x80000000, 0x3F800000, 0x80000000, 0x80000000),     # -0 + -0 = -0
    (0x80000000, 0x3F800000, 0x00000000, 0x00000000),     # -0 + +0 = +0
    (0x3F800000, 0x3F800000, 0xBF800000, 0x00000000),     # 1 - 1 = +0
    (0xFF800000, 0x3F800000, 0x7F7FFFFF, 0xFF800000),     # -inf + max = -inf
    (0x40400000, 0x3EAAAAAB, 0x00000000, 0x3F800000),     # 3 * float32(1/3) rounds to 1
]


@pytest.mark.parametrize("a, b, c, want", HAND_CHECKED)
def test_golden_and_reference_on_hand_checked_vectors(a, b, c, want):
    assert _ref_mac(a, b, c) == want
    assert fp32_mac_bits(a, b, c) == want


def test_golden_matches_exact_reference_on_random_and_corner_vectors():
    from sparsehw.verif.hbfp.vectors import fp32_mac_vectors
    a, b, c = fp32_mac_vectors(np.random.default_rng(21), 4000)
    bad = [(hex(x), hex(y), hex(z)) for x, y, z in zip(a.tolist(), b.tolist(), c.tolist())
           if fp32_mac_bits(x, y, z) != _ref_mac(x, y, z)]
    assert not bad, bad[:5]


def test_golden_is_two_roundings_not_fused():
    # (1 + 2**-12)**2 = 1 + 2**-11 + 2**-24: a fused multiply-add would keep the 2**-24.
    a = 0x3F800800
    assert _round(0, Fraction(2 ** 12 + 1, 2 ** 12) ** 2 - Fraction(2 ** 11 + 1, 2 ** 11)) \
        == 0x33800000
    assert fp32_mac_bits(a, a, 0xBF801000) == 0x00000000


def test_canonical_nan():
    assert canonical(0xFFC00000) == QNAN and canonical(0x7F800001) == QNAN
    assert canonical(0x7F800000) == 0x7F800000 and canonical(0x80000000) == 0x80000000
    assert same(QNAN, 0xFFC00001) and not same(0x00000000, 0x80000000)


def test_amaranth_sim_quick_check():
    from amaranth.sim import Simulator
    from sparsehw.verif.hbfp.vectors import fp32_mac_vectors
    a, b, c = fp32_mac_vectors(np.random.default_rng(9), 400)
    dut = Fp32Mac()
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for i in range(len(a) + dut.latency + 2):
            ctx.set(dut.i.valid, i < len(a))
            if i < len(a):
                ctx.set(dut.i.payload, {"a": int(a[i]), "b": int(b[i]), "c": int(c[i])})
            await ctx.tick()
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(got) == len(a)
    bad = [i for i in range(len(a)) if got[i] != fp32_mac_bits(a[i], b[i], c[i])]
    assert not bad


@pytest.mark.sim
def test_fp32_mac_regression(tmp_path):
    from sparsehw.verif.runner import run_cocotb
    result = run_cocotb(Fp32Mac(), "fp32_mac", "sparsehw.verif.hbfp.tb_fp32_mac", build_dir=tmp_path,
                        seed=2024, params={}, workload={"vectors": 4000, "stall": 0.3})
    assert result.passed, (result.errors, result.log)
    assert result.tests == 2 and result.record["vectors"] == 4000
    # Functional coverage: operand/result classes, product and sum rounding cases (ties in the
    # normal and subnormal range), overflow, cancellation, invalid operations.
    from sparsehw.verif.coverage import holes
    found = holes(result.record, "fp32_mac")
    modes = {point: bins for point, bins in found.items() if not point.endswith(".handshake")}
    assert modes == {}, f"coverage holes: {modes}"
    print("fp32_mac port coverage holes:", {p: b for p, b in found.items() if p not in modes})


class _NoStickyMac(Fp32Mac):
    """An fp32_mac whose result is truncated by one ulp whenever it ends in binary ...11:
    a plausible rounding bug that the regression must catch."""

    def elaborate(self, platform):
        from amaranth.hdl import Module, Mux
        inner = Fp32Mac()
        m = Module()
        m.submodules.inner = inner
        wrong = inner.o.payload[0] & inner.o.payload[1] & (inner.o.payload[23:31] != 255)
        m.d.comb += [
            inner.i.payload.eq(self.i.payload), inner.i.valid.eq(self.i.valid),
            self.i.ready.eq(inner.i.ready), self.o.valid.eq(inner.o.valid),
            inner.o.ready.eq(self.o.ready),
            self.o.payload.eq(Mux(wrong, inner.o.payload - 1, inner.o.payload)),
        ]
        return m


@pytest.mark.sim
def test_fp32_mac_testbench_catches_a_rounding_bug(tmp_path):
    from sparsehw.verif.runner import run_cocotb
    result = run_cocotb(_NoStickyMac(), "fp32_mac", "sparsehw.verif.hbfp.tb_fp32_mac", build_dir=tmp_path,
                        seed=5, params={}, workload={"vectors": 300},
                        testcase="random_and_corner_vectors_with_stalls")
    assert not result.passed and result.failures == 1


@pytest.mark.parametrize("neg_zero", [True, False])
def test_fp_add_neg_zero_option(neg_zero):
    # fp_add(neg_zero=False) (used by hbfp_dot) differs from the IEEE sum only where the sum is
    # an exact zero of sign -: -0 + -0 is +0 there; the default keeps the IEEE -0.
    from amaranth.hdl import Elaboratable, Module, Signal
    from amaranth.sim import Simulator
    from sparsehw.golden.fp32 import fp32_add
    from sparsehw.hw.fp32 import fp_add

    class Adder(Elaboratable):
        def __init__(self):
            self.a, self.b, self.o = Signal(32), Signal(32), Signal(32)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.o.eq(fp_add(m, self.a, self.b, neg_zero=neg_zero))
            return m

    rng = np.random.default_rng(3)
    zeros = [0x00000000, 0x80000000]
    pairs = [(x, y) for x in zeros + [0x3F800000, 0xBF800000, 0x00000001, 0x7F800000]
             for y in zeros]
    r = rng.integers(0, 1 << 32, 200, dtype=np.uint64).astype(np.uint32)
    pairs += [(int(x), int(x) ^ 0x80000000) for x in r[:100]]       # x + -x = +0
    pairs += [(int(x), int(y)) for x, y in zip(r[100:150], r[150:200])]
    dut = Adder()
    got = []

    async def bench(ctx):
        for x, y in pairs:
            ctx.set(dut.a, x)
            ctx.set(dut.b, y)
            await ctx.delay(1e-6)
            got.append(ctx.get(dut.o))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    for (x, y), g in zip(pairs, got):
        want = canonical(bits(fp32_add(from_bits(x), from_bits(y))))
        if not neg_zero and want == 0x80000000:
            want = 0x00000000
        assert g == want, f"{x:#010x} + {y:#010x}: got {g:#010x}, want {want:#010x}"
    assert (0x80000000, 0x80000000) in pairs
