"""Golden integer kernels of the activation engine (golden/act.py): exact values where the
mathematics gives them, measured errors against float64 held to the documented bounds (and to
I-BERT's), hypothesis properties of softmax, LayerNorm and GELU."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsehw.golden import act


int8 = st.integers(-128, 127)


def test_exact_points():
    for fout in range(16):
        assert act.gelu(0, 3, fout) == (0, 0)
        assert act.exp(0, 4, fout)[0] == min(1 << fout, 32767)
        assert act.log2(1, 0, fout) == (0, 0)
        assert act.recip(1, 0, fout)[0] == min(1 << fout, 32767)
    for e in range(7):
        for fin in range(8):
            assert act.log2(1 << e, fin, 8) == ((e - fin) * 256, 0)
    assert act.recip(-2, 0, 8) == (-128, 0)
    assert act.recip(4, 2, 8) == (256, 0)                   # 1 / (4 / 4)
    assert act.exp(-128, 0, 15) == (0, 0)                   # e**-128 underflows
    assert act.exp(127, 0, 0) == (32767, 0)                 # e**127 saturates
    assert act.gelu(127, 0, 9) == (32767, 0)                # 127 * 512 saturates
    assert act.gelu(-128, 0, 15) == (0, 0)                  # g(128) = 0
    assert act.gelu(64, 4, 12) == (4 << 12, 0)              # GELU(4) = 4 - 1.3e-4 -> 4.0


def test_domain_errors():
    assert act.log2(0, 0, 8) == (-32768, 1)
    assert act.log2(-5, 0, 8) == (-32768, 1)
    assert act.recip(0, 0, 8) == (32767, 1)
    with pytest.raises(ValueError, match="x must be an int8"):
        act.gelu(128, 0, 0)
    with pytest.raises(ValueError, match="fin must be"):
        act.exp(0, 8, 0)
    with pytest.raises(ValueError, match="op must be one of"):
        act.run("tanh", [1])


def test_cores_against_float():
    for f in range(0, 65536, 97):
        assert abs(act.pow2_frac(f) / 2 ** (16 + f / 65536) - 1) < 1.2e-4
    for m in range(1 << 15, 1 << 16, 31):
        assert abs(act.recip_core(m) * m / 2 ** 31 - 1) < 2e-5
    for m in range(1 << 14, 1 << 16, 31):
        assert abs(act.isqrt_core(m) * math.sqrt(m) / 2 ** 23 - 1) < 4e-5


def test_measured_errors_within_bounds_and_beat_ibert():
    measured = act.measure_errors()
    for kernel, bounds in act.ERROR_BOUNDS.items():
        for key, bound in bounds.items():
            assert measured[kernel][key] <= bound, (kernel, key, measured[kernel][key])
    assert measured["gelu"]["max_abs"] < act.IBERT["gelu"]["max_abs"] / 10
    assert measured["gelu"]["rms"] < act.IBERT["gelu"]["rms"] / 10
    assert measured["exp"]["max_rel"] < act.IBERT["exp"]["max_rel"] / 10


@settings(max_examples=200, deadline=None)
@given(st.lists(int8, min_size=1, max_size=256), st.integers(0, 7), st.integers(8, 15))
def test_softmax_sums_to_one(row, fin, fout):
    ys = act.softmax(row, fin, fout)
    assert all(0 <= y <= 32767 for y in ys)
    n = len(row)
    # each output rounds (half an LSB), the normalisation is within 2**-13 relative, and one
    # output may clip at 32767 when fout = 15
    bound = n * 2.0 ** -(fout + 1) + 2.0 ** -13 + 2.0 ** -fout
    assert abs(sum(ys) / 2.0 ** fout - 1) <= bound
    ref = act.reference("softmax", row, fin=fin)
    assert np.abs(np.array(ys) / 2.0 ** fout - ref).max() <= 2.0 ** -fout + 2.0 ** -13


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 256), int8, st.integers(0, 7))
def test_softmax_equal_row_is_uniform(n, value, fin):
    ys = act.softmax([value] * n, fin, 15)
    assert len(set(ys)) == 1
    assert abs(ys[0] - 32768 / n) <= 1 + 32768 / n * 2 ** -13


@settings(max_examples=200, deadline=None)
@given(st.lists(int8, min_size=2, max_size=256), st.integers(6, 11))
def test_layernorm_mean_and_variance(row, fout):
    n = len(row)
    ones, zeros = [4096] * n, [0] * n
    ys = np.array(act.layernorm(row, ones, zeros, fout), dtype=np.float64) / 2.0 ** fout
    lsb = 2.0 ** -fout
    if len(set(row)) == 1:
        assert not ys.any()
        return
    if np.abs(ys).max() >= 32767 * lsb:     # saturated outputs (|xhat| <= sqrt(n - 1))
        return
    # y_i = xhat_i (1 + d) + r_i with one d per row, |d| <= 7e-5 (isqrt_core 3.7e-5, V
    # truncated to 16 bits 3.1e-5) and |r_i| <= lsb/2: sum(D_i) = 0 makes the mean the mean of
    # the r_i; the variance is (1 + d)**2 plus 2 cov(xhat, r) (<= lsb by Cauchy-Schwarz) + var(r)
    assert abs(ys.mean()) <= lsb / 2 + 1e-9
    assert abs(ys.var() - 1) <= 2 * 7e-5 + lsb + lsb ** 2 / 4 + 1e-9
    ref = act.reference("layernorm", row, gamma=[1.0] * n, beta_real=[0.0] * n)
    assert np.abs(ys - ref).max() <= lsb / 2 + 7e-5 * np.abs(ref).max() + 1e-9


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 256), int8, st.lists(st.integers(-32768, 32767), min_size=1,
                                           max_size=1), st.integers(0, 15))
def test_layernorm_zero_variance_gives_beta(n, value, beta, fout):
    assert act.layernorm([value] * n, [4096] * n, beta * n, fout) == beta * n


@pytest.mark.parametrize("fin", range(8))
def test_gelu_monotone_where_float_gelu_is(fin):
    fout = min(15, 8 + fin)
    codes = list(range(-128, 128))
    ys = [act.gelu(v, fin, fout)[0] for v in codes]
    ref = act.reference("gelu", codes, fin=fin)
    for i in range(len(codes) - 1):
        if ys[i] == 32767:
            continue
        if ref[i + 1] > ref[i] + 2.0 ** -fout:       # float GELU rises by more than an LSB
            assert ys[i + 1] >= ys[i], (fin, codes[i])
        elif ref[i + 1] < ref[i] - 2.0 ** -fout:
            assert ys[i + 1] <= ys[i], (fin, codes[i])


@settings(max_examples=300, deadline=None)
@given(int8, st.integers(0, 7), st.integers(0, 15))
def test_elementwise_within_half_lsb_plus_kernel_error(x, fin, fout):
    lsb = 2.0 ** -fout
    real = x * 2.0 ** -fin
    y = act.gelu(x, fin, fout)[0] * lsb
    want = act.reference("gelu", [x], fin=fin)[0]
    if abs(want) < 32767 * lsb:
        # interpolation h**2/8 max|g''| = 3.9e-4, table 2**-17, interpolation floor 2**-16
        assert abs(y - want) <= lsb / 2 + 4.2e-4
    y = act.exp(x, fin, fout)[0] * lsb
    want = math.exp(real)
    if want < 32767 * lsb:
        # pow2_frac 1.04e-4, f truncated 1.1e-5, log2 e in Q20 1.5e-5 (relative)
        assert abs(y - want) <= lsb / 2 + 1.5e-4 * want
    if x > 0:
        y = act.log2(x, fin, fout)[0] * lsb
        want = math.log2(real)
        if abs(want) < 32767 * lsb:
            assert abs(y - want) <= lsb / 2 + 2 ** -17
    if x != 0:
        y = act.recip(x, fin, fout)[0] * lsb
        want = 1 / real
        if abs(want) < 32767 * lsb:
            assert abs(y - want) <= lsb / 2 + 2e-5 * abs(want)


def test_newton_values_fit_the_rtl_widths():
    """hw/act_engine.py registers the Newton cores' values in these widths (each product then
    fits one 18x18 multiplier): every M, every step."""
    recip = [act.recip_steps(M) for M in range(1 << 15, 1 << 16)]
    assert max(max(v["y"]) for v in recip) < 1 << 16
    assert min(min(v["y"]) for v in recip) >= 0
    assert max(max(v["u"]) for v in recip) < 1 << 17
    assert min(min(v["u"]) for v in recip) >= 0
    isqrt = [act.isqrt_steps(M) for M in range(1 << 14, 1 << 16)]
    assert max(max(v["y"]) for v in isqrt) < 1 << 16 and min(min(v["y"]) for v in isqrt) >= 0
    assert max(max(v["S"]) for v in isqrt) < 1 << 16
    assert max(max(v["T"]) for v in isqrt) < 1 << 18 and min(min(v["T"]) for v in isqrt) >= 0
