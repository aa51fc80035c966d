"""Tests of the golden N:M library (golden/nm.py): round trips, tie rule, errors, post-ops."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from sparsehw.golden import nm


PATTERNS = [(n, m) for m in nm.ALLOWED_M for n in range(1, m + 1)]


@st.composite
def nm_arrays(draw, dtype=np.int8, max_groups=4, rows=3):
    n, m = draw(st.sampled_from(PATTERNS))
    groups = draw(st.integers(1, max_groups))
    r = draw(st.integers(1, rows))
    elements = st.integers(-128, 127) if dtype == np.int8 else st.integers(-3, 3)
    w = draw(hnp.arrays(dtype, (r, groups * m), elements=elements))
    return w, n, m


def _reference_mask(w, n, m):
    """Slow, obviously correct mask: sort (-|v|, index) per group."""
    out = np.zeros(w.shape, dtype=bool)
    for row in range(w.shape[0]):
        for g in range(w.shape[1] // m):
            group = [(-abs(int(w[row, g * m + i])), i) for i in range(m)]
            for _, i in sorted(group)[:n]:
                out[row, g * m + i] = True
    return out


@settings(max_examples=150, deadline=None)
@given(nm_arrays())
def test_mask_matches_slow_reference(case):
    w, n, m = case
    assert (nm.mask(w, n, m) == _reference_mask(w, n, m)).all()


@settings(max_examples=150, deadline=None)
@given(nm_arrays(dtype=np.int16))
def test_tie_rule_keeps_lower_index(case):
    # Small values (-3..3) make ties frequent: a dropped element never beats a kept one, and on
    # equal magnitude the kept one has the lower index.
    w, n, m = case
    keep = nm.mask(w, n, m)
    mag = np.abs(w.astype(np.int64)).reshape(w.shape[0], -1, m)
    k = keep.reshape(mag.shape)
    assert (k.sum(-1) == n).all()
    for idx in np.ndindex(mag.shape[:2]):
        kept = [i for i in range(m) if k[idx][i]]
        dropped = [i for i in range(m) if not k[idx][i]]
        for a in kept:
            for b in dropped:
                assert mag[idx][a] > mag[idx][b] or (mag[idx][a] == mag[idx][b] and a < b)


def test_tie_rule_examples():
    assert nm.mask([5, -5, 5, 1], 1, 4).tolist() == [True, False, False, False]
    assert nm.mask([1, -5, 5, 1], 1, 4).tolist() == [False, True, False, False]
    assert nm.mask([0, 0, 0, 0], 2, 4).tolist() == [True, True, False, False]
    assert nm.mask(np.array([-128, 127], dtype=np.int8), 1, 2).tolist() == [True, False]
    assert nm.mask([0.5, -0.75, 0.1, 0.75], 2, 4).tolist() == [False, True, False, True]


@settings(max_examples=150, deadline=None)
@given(nm_arrays())
def test_compress_decompress_round_trip(case):
    w, n, m = case
    values, indices = nm.compress(w, n, m)
    assert values.shape == indices.shape == (w.shape[0], w.shape[1] // m * n)
    assert values.dtype == w.dtype and indices.dtype == np.uint8
    assert (indices < m).all()
    g = indices.reshape(w.shape[0], -1, n).astype(int)
    assert (np.diff(g, axis=-1) > 0).all()
    dense = nm.decompress(values, indices, n, m)
    assert (dense == np.where(nm.mask(w, n, m), w, 0)).all()
    # Compressing the pruned matrix again gives the same values where they are nonzero.
    assert nm.check_indices(indices, n, m).all()


@settings(max_examples=100, deadline=None)
@given(nm_arrays())
def test_decompress_compress_round_trip(case):
    # A pruned matrix with nonzero kept values compresses back to itself.
    w, n, m = case
    w = np.where(w == 0, 1, w).astype(np.int8)
    values, indices = nm.compress(w, n, m)
    v2, i2 = nm.compress(nm.decompress(values, indices, n, m), n, m)
    assert (v2 == values).all() and (i2 == indices).all()


def test_compress_example():
    w = np.array([[1, -7, 3, 0, 9, 9, -2, 1]], dtype=np.int8)
    values, indices = nm.compress(w, 2, 4)
    assert values.tolist() == [[-7, 3, 9, 9]]
    assert indices.tolist() == [[1, 2, 0, 1]]


@pytest.mark.parametrize("n, m, message", [
    (1, 3, r"^m must be a power of two in 1\.\.32, not 3$"),
    (1, 64, r"^m must be a power of two in 1\.\.32, not 64$"),
    (0, 4, r"^n must be an integer in 1\.\.4, not 0$"),
    (5, 4, r"^n must be an integer in 1\.\.4, not 5$"),
])
def test_illegal_pattern(n, m, message):
    with pytest.raises(ValueError, match=message):
        nm.mask(np.zeros((1, 8)), n, m)


def test_illegal_pattern_types():
    with pytest.raises(TypeError, match=r"^m must be a power of two in 1\.\.32, not 4\.0$"):
        nm.mask(np.zeros(8), 1, 4.0)
    with pytest.raises(TypeError, match=r"^n must be an integer in 1\.\.4, not True$"):
        nm.compress(np.zeros(8), True, 4)
    assert nm.check_nm(np.int64(2), np.int32(8)) == (2, 8)     # numpy integers are integers
    assert type(nm.check_nm(np.int64(2), 8)[0]) is int


def test_groups_must_divide_axis():
    with pytest.raises(ValueError, match="last axis length 10 is not a multiple of m=4"):
        nm.mask(np.zeros((2, 10)), 1, 4)
    with pytest.raises(ValueError, match="last axis length 6 is not a multiple of m=4"):
        nm.compress(np.zeros(6), 2, 4)


def test_decompress_rejects_bad_indices():
    values = np.array([1, 2], dtype=np.int8)
    with pytest.raises(ValueError, match="index 4 is out of range for m=4"):
        nm.decompress(values, np.array([0, 4]), 2, 4)
    with pytest.raises(ValueError, match="strictly ascending"):
        nm.decompress(values, np.array([2, 1]), 2, 4)
    with pytest.raises(ValueError, match="strictly ascending"):
        nm.decompress(values, np.array([1, 1]), 2, 4)
    with pytest.raises(ValueError, match="differs from indices shape"):
        nm.decompress(values, np.array([0]), 1, 4)
    assert nm.check_indices([0, 4, 1, 2, 3, 1], 2, 4).tolist() == [False, True, False]


def test_nested_checks():
    one_four = nm.mask(np.arange(32), 1, 4)
    assert nm.is_nested(one_four, 1, 4) and nm.is_nested(one_four, 8, 32)
    assert nm.nested_chain(one_four)
    two_in_four = np.zeros(32, dtype=bool)
    two_in_four[[0, 1]] = True
    assert not nm.is_nested(two_in_four, 1, 4)
    assert nm.is_nested(two_in_four, 2, 8)
    assert not nm.nested_chain(two_in_four)
    eight_in_16 = np.zeros(32, dtype=bool)
    eight_in_16[:8] = True      # valid 8:32, not 4:16
    assert nm.is_nested(eight_in_16, 8, 32) and not nm.is_nested(eight_in_16, 4, 16)
    with pytest.raises(ValueError, match=r"^levels must be an integer in 1\.\.4, not 5$"):
        nm.nested_chain(one_four, 1, 4, 5)
    with pytest.raises(ValueError, match=r"^levels must be an integer in 1\.\.2, not 3$"):
        nm.nested_chain(one_four, 8, 16, 3)            # base 8:16: 16 << 2 = 64 > 32
    with pytest.raises(TypeError, match=r"^levels must be an integer in 1\.\.4, not 2\.0$"):
        nm.nested_chain(one_four, 1, 4, 2.0)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int8, (2, 64), elements=st.integers(-128, 127)))
def test_nested_masks_are_nested(w):
    levels = nm.nested_masks(w)
    assert [(n, m) for n, m, _ in levels] == [(8, 32), (4, 16), (2, 8), (1, 4)]
    assert (levels[0][2] == nm.mask(w, 8, 32)).all()
    for (n, m, coarse), (fn, fm, fine) in zip(levels, levels[1:]):
        assert not (fine & ~coarse).any(), "finer level must be a subset of the coarser"
        assert nm.is_nested(fine, fn, fm)
    assert nm.nested_chain(nm.nested_mask(w))


def test_nested_mask_example():
    # 8:32 keeps the 8 largest; 4:16 must pick among those, so the second half-group (only small
    # values) keeps fewer than 4.
    w = np.array([100, 99, 98, 97, 96, 95, 94, 93] + [1] * 8 + [2] * 16)
    levels = nm.nested_masks(w, 1, 4, 4)
    assert levels[0][2].nonzero()[0].tolist() == list(range(8))
    assert levels[1][2].nonzero()[0].tolist() == [0, 1, 2, 3]
    assert levels[3][2].nonzero()[0].tolist() == [0]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 40), st.integers(1, 4), st.data())
def test_gemm_int8_exact(o, k, b, data):
    w = data.draw(hnp.arrays(np.int8, (o, k), elements=st.integers(-128, 127)))
    x = data.draw(hnp.arrays(np.int8, (k, b), elements=st.integers(-128, 127)))
    y = nm.gemm_int8(w, x)
    assert y.dtype == np.int32
    for i in range(o):
        for j in range(b):
            assert int(y[i, j]) == sum(int(w[i, t]) * int(x[t, j]) for t in range(k))


def test_gemm_int8_corner_and_errors():
    k = 4096
    w = np.full((1, k), -128, dtype=np.int8)
    assert nm.gemm_int8(w, w.T)[0, 0] == k * 16384
    with pytest.raises(ValueError, match="x values must be in -128..127"):
        nm.gemm_int8(w, np.full((k, 1), 200))
    with pytest.raises(TypeError, match="w must be an integer array"):
        nm.gemm_int8(np.zeros((1, 2)), np.zeros((2, 1), dtype=np.int8))


def _post_scalar(acc, bias, mult, shift, relu):
    p = (acc + bias) * mult
    if shift:
        # Python's // floors, >> is arithmetic: round half up.
        y = (p + (1 << (shift - 1))) >> shift
    else:
        y = p
    y = min(127, max(-128, y))
    return max(0, y) if relu else y


def test_spu_post_rounding_saturation_relu():
    cases = [
        # acc, bias, mult, shift, relu, expected
        (5, 0, 1, 1, False, 3),        # 2.5 -> 3 (half up)
        (-5, 0, 1, 1, False, -2),      # -2.5 -> -2 (half up, towards +inf)
        (-7, 0, 1, 2, False, -2),      # -1.75 -> -2
        (6, 0, 1, 2, False, 2),        # 1.5 -> 2
        (100, 28, 1, 0, False, 127),   # exact 128 saturates
        (-200, 0, 1, 0, False, -128),
        (-200, 0, 1, 0, True, 0),
        (2**31 - 1, 2**31 - 1, 65535, 31, False, 127),
        (-2**31, -2**31, 65535, 31, False, -128),
        (1000, -1000, 77, 3, False, 0),
        (40, 0, 0, 0, False, 0),
    ]
    for acc, bias, mult, shift, relu, expected in cases:
        got = nm.spu_post(np.array([[acc]]), [bias], [mult], [shift], relu)
        assert got.dtype == np.int8
        assert int(got[0, 0]) == expected, (acc, bias, mult, shift, relu)


@settings(max_examples=100, deadline=None)
@given(st.integers(-2**31, 2**31 - 1), st.integers(-2**31, 2**31 - 1), st.integers(0, 65535),
       st.integers(0, 31), st.booleans())
def test_spu_post_matches_scalar(acc, bias, mult, shift, relu):
    got = int(nm.spu_post(np.array([[acc]]), [bias], [mult], [shift], relu)[0, 0])
    assert got == _post_scalar(acc, bias, mult, shift, relu)


def test_spu_post_range_errors():
    with pytest.raises(ValueError, match="mult must be in 0..65535"):
        nm.spu_post(np.zeros((1, 1)), [0], [65536], [0], False)
    with pytest.raises(ValueError, match="shift must be in 0..31"):
        nm.spu_post(np.zeros((1, 1)), [0], [1], [32], False)
