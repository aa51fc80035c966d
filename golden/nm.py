"""Golden N:M sparsity library: masks, compression, nested (FiGS) masks, int8 GEMM, SPU post-ops.

Numeric rules
-------------
N:M selection
    Along the **last axis**, every group of ``m`` consecutive elements keeps its ``n``
    largest-magnitude elements. Magnitude is ``abs(w)`` computed exactly (integers are widened to
    int64 first, so ``abs(-128)`` is 128; floats in float64). **Ties keep the lower index**: among
    equal magnitudes the element nearer the group start wins. Zeros are ordinary values (a group of
    zeros keeps its first ``n`` positions). NaN is not allowed.
Compressed form
    ``values[..., g*n + j]`` is the j-th kept element of group ``g``; ``indices`` holds its position
    inside the group (``0 .. m-1``, ``log2(m)`` bits, stored as uint8), strictly ascending inside a
    group. ``m == 1`` is the dense case (every index is 0).
int8 GEMM
    Exact: int8 x int8 products summed in int64, checked to fit int32.
SPU post-ops (:func:`spu_post`)
    ``t = acc + bias`` (exact), ``p = t * mult`` (``mult`` unsigned 16-bit, exact),
    ``y = (p + 2**(shift-1)) >> shift`` with an arithmetic (floor) shift, i.e. round half up
    (towards +inf); ``shift == 0`` means ``y = p``; then saturate to ``[-128, 127]``; then, when
    ``relu`` is set, ``y = max(y, 0)``.
"""

import numpy as np

from sparsehw.params import Param, ParamSpec, check, int_in, pow2_in


__all__ = ["check_nm", "mask", "compress", "decompress", "is_nested", "nested_chain",
           "nested_masks", "nested_mask", "as_int8", "gemm_int8", "spu_post",
           "MULT_BITS", "SHIFT_MAX", "ALLOWED_M", "NM_PATTERN"]


#: Group sizes the library (and the SPU) supports.
ALLOWED_M = (1, 2, 4, 8, 16, 32)
#: Width of the unsigned requantization multiplier.
MULT_BITS = 16
#: Largest requantization right shift.
SHIFT_MAX = 31


#: An N:M pattern: ``m`` a power of two in 1..32, ``n`` kept per group of ``m``.
NM_PATTERN = ParamSpec(
    Param("m", 4, pow2_in(1, 32), doc="group size"),
    Param("n", 1, lambda v: int_in(1, v["m"]), allowed="an integer in 1..m",
          doc="kept per group"),
)


def check_nm(n, m):
    """Validate an N:M pattern (:data:`NM_PATTERN`); return ``(n, m)`` as ints.

    Raises
    ------
    TypeError
        If ``n`` or ``m`` is not an integer (``m must be a power of two in 1..32, not 4.0``).
    ValueError
        If ``m`` is not a power of two in 1..32, or ``n`` is not in 1..m
        (``n must be an integer in 1..4, not 5``).
    """
    values = NM_PATTERN.validate(n=n, m=m)
    return int(values["n"]), int(values["m"])


def _groups(array, m, what="last axis"):
    length = array.shape[-1] if array.ndim else 0
    if array.ndim == 0 or length % m:
        raise ValueError(f"the {what} length {length} is not a multiple of m={m}; "
                         f"N:M groups must divide it exactly")
    return array.reshape(array.shape[:-1] + (length // m, m))


def _magnitude(w):
    if np.issubdtype(w.dtype, np.integer) or w.dtype == np.bool_:
        return np.abs(w.astype(np.int64))
    if np.issubdtype(w.dtype, np.floating):
        mag = np.abs(w.astype(np.float64))
        if np.isnan(mag).any():
            raise ValueError("w contains NaN; N:M selection needs ordered magnitudes")
        return mag
    raise TypeError(f"w must be an integer or floating-point array, not dtype {w.dtype}")


def _top_n(mag, n):
    """Boolean array (same shape as ``mag``, grouped on the last axis): the n largest per group,
    ties to the lower index."""
    # A stable sort of -mag keeps equal magnitudes in index order, so lower indices come first.
    order = np.argsort(-mag, axis=-1, kind="stable")
    keep = np.zeros(mag.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :n], True, axis=-1)
    return keep


def mask(w, n, m):
    """Boolean N:M mask of ``w`` along its last axis.

    Parameters
    ----------
    w : array_like
        Integer or float array; the last axis length must be a multiple of ``m``.
    n, m : int
        Keep ``n`` of every ``m`` (``m`` a power of two in 1..32, ``1 <= n <= m``).

    Returns
    -------
    numpy.ndarray of bool
        Same shape as ``w``; exactly ``n`` True per group: the largest magnitudes, ties to the
        lower index.

    Raises
    ------
    ValueError
        Illegal ``n``/``m``, or the last axis is not a multiple of ``m``.
    """
    n, m = check_nm(n, m)
    w = np.asarray(w)
    grouped = _groups(w, m)
    return _top_n(_magnitude(grouped), n).reshape(w.shape)


def compress(w, n, m):
    """Compress ``w`` to N:M form.

    Returns
    -------
    values : numpy.ndarray
        Shape ``(..., K // m * n)``, dtype of ``w``: the kept elements in order.
    indices : numpy.ndarray of uint8
        Same shape: each kept element's position inside its group (0..m-1), ascending per group.
    """
    n, m = check_nm(n, m)
    w = np.asarray(w)
    keep = mask(w, n, m)
    grouped_keep = keep.reshape(w.shape[:-1] + (w.shape[-1] // m, m))
    # np.nonzero along the last axis of each group yields ascending positions.
    position = np.broadcast_to(np.arange(m, dtype=np.uint8), grouped_keep.shape)
    out_shape = w.shape[:-1] + (w.shape[-1] // m * n,)
    indices = position[grouped_keep].reshape(out_shape)
    values = w[keep].reshape(out_shape)
    return values, indices.astype(np.uint8)


def check_indices(indices, n, m):
    """Per-group validity of compressed indices: a bool array of shape ``(..., K // m)``, True
    where every index of the group is ``< m`` and the indices are strictly ascending."""
    n, m = check_nm(n, m)
    idx = np.asarray(indices).astype(np.int64)
    grouped = _groups(idx, n, "indices last axis")
    ok = (grouped >= 0).all(-1) & (grouped < m).all(-1)
    if n > 1:
        ok &= (np.diff(grouped, axis=-1) > 0).all(-1)
    return ok


def decompress(values, indices, n, m):
    """Inverse of :func:`compress`: the dense array, zeros where nothing was kept.

    Raises
    ------
    ValueError
        Shapes differ, the last axis is not a multiple of ``n``, an index is ``>= m`` (or
        negative), or indices are not strictly ascending inside a group.
    """
    n, m = check_nm(n, m)
    values = np.asarray(values)
    indices = np.asarray(indices)
    if values.shape != indices.shape:
        raise ValueError(f"values shape {values.shape} differs from indices shape {indices.shape}")
    idx = indices.astype(np.int64)
    gvals = _groups(values, n, "values last axis")
    gidx = _groups(idx, n, "indices last axis")
    if (gidx < 0).any() or (gidx >= m).any():
        bad = idx[(idx < 0) | (idx >= m)].flat[0]
        raise ValueError(f"index {bad} is out of range for m={m} (allowed 0..{m - 1})")
    if n > 1 and not (np.diff(gidx, axis=-1) > 0).all():
        raise ValueError("indices must be strictly ascending inside each group of n")
    groups = gvals.shape[-2]
    dense = np.zeros(values.shape[:-1] + (groups, m), dtype=values.dtype)
    np.put_along_axis(dense, gidx, gvals, axis=-1)
    return dense.reshape(values.shape[:-1] + (groups * m,))


def is_nested(mask_, n, m):
    """True when boolean ``mask_`` is a valid n:m pattern: at most ``n`` True in every group of
    ``m`` consecutive elements along the last axis (which must be a multiple of ``m``)."""
    n, m = check_nm(n, m)
    grouped = _groups(np.asarray(mask_, dtype=bool), m)
    return bool((grouped.sum(-1) <= n).all())


def _chain(base_n, base_m, levels):
    base_n, base_m = check_nm(base_n, base_m)
    # The largest m is 32: base_m << (levels - 1) <= 32.
    levels = int(check("levels", levels, int_in(1, (32 // base_m).bit_length())))
    return [(base_n << i, base_m << i) for i in range(levels)]


def nested_chain(mask_, base_n=1, base_m=4, levels=4):
    """True when ``mask_`` is a valid pattern at every level of the chain
    ``base_n:base_m, 2*base_n:2*base_m, ...`` (default 1:4, 2:8, 4:16, 8:32).

    A single mask satisfying the finest level satisfies every coarser one; this helper checks them
    all explicitly (it is what the FiGS datapath relies on).
    """
    return all(is_nested(mask_, n, m) for n, m in _chain(base_n, base_m, levels))


def nested_masks(w, base_n=1, base_m=4, levels=4):
    """FiGS-style nested masks, coarsest first.

    The coarsest level (``base_n << (levels-1)`` : ``base_m << (levels-1)``, default 8:32) is
    :func:`mask` of ``w``. Each finer level keeps, in every group of its ``m``, the ``n``
    largest-magnitude elements *among those the previous level kept* (ties to the lower index); if
    the previous level kept fewer than ``n`` in that group, all of them are kept. So every level
    is a subset of the previous one and a valid pattern of its own (and of every coarser one).

    Returns
    -------
    list of (n, m, numpy.ndarray of bool)
    """
    chain = _chain(base_n, base_m, levels)[::-1]
    w = np.asarray(w)
    result = []
    previous = None
    for n, m in chain:
        grouped = _magnitude(_groups(w, m))
        if previous is None:
            keep = _top_n(grouped, n)
        else:
            prev = previous.reshape(grouped.shape)
            # Unkept elements rank below every kept one (even kept zeros).
            ranked = np.where(prev, grouped, -1)
            keep = _top_n(ranked, n) & prev
        keep = keep.reshape(w.shape)
        result.append((n, m, keep))
        previous = keep
    return result


def nested_mask(w, base_n=1, base_m=4, levels=4):
    """The finest mask of :func:`nested_masks` (default 1:4 chosen inside 2:8 inside 4:16 inside
    8:32)."""
    return nested_masks(w, base_n, base_m, levels)[-1][2]


def as_int8(name, array):
    """``array`` as int64 after checking it is an integer array with every value in -128..127
    (``TypeError`` for a non-integer dtype, ``ValueError`` naming the values found)."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, not dtype {array.dtype}")
    if array.size and (array.min() < -128 or array.max() > 127):
        raise ValueError(f"{name} values must be in -128..127, found "
                         f"{array.min()}..{array.max()}")
    return array.astype(np.int64)


def gemm_int8(w, x):
    """Exact ``w @ x`` for int8 ``w`` (O x K) and ``x`` (K x B), as int32.

    Products and sums are computed in int64 and checked to fit int32 (|w*x| <= 2**14, so any
    K <= 131071 fits).
    """
    w64 = as_int8("w", w)
    x64 = as_int8("x", x)
    acc = w64 @ x64
    assert acc.size == 0 or (acc.min() >= -2**31 and acc.max() < 2**31), "int32 overflow"
    return acc.astype(np.int32)


def spu_post(acc, bias, mult, shift, relu):
    """SPU fused post-ops: bias, requantization to int8, optional ReLU.

    Parameters
    ----------
    acc : array_like of int, shape (O, ...)
        int32 accumulators, output channel first.
    bias : array_like of int, shape (O,)
        int32 bias per output channel.
    mult : array_like of int, shape (O,)
        Unsigned 16-bit multiplier (0..65535) per output channel.
    shift : array_like of int, shape (O,)
        Right shift 0..31 per output channel.
    relu : bool
        Apply ``max(y, 0)`` after saturation.

    Returns
    -------
    numpy.ndarray of int8
        ``clip(floor((acc + bias) * mult + 2**(shift-1)) / 2**shift), -128, 127)`` (no rounding
        term when ``shift == 0``), then ReLU. Round half up (towards +inf). All intermediate values
        are exact: ``|acc + bias| < 2**32`` and ``mult < 2**16`` so ``|p| < 2**48``.
    """
    acc = np.asarray(acc).astype(np.int64)
    bias = np.asarray(bias).astype(np.int64)
    mult = np.asarray(mult).astype(np.int64)
    shift = np.asarray(shift).astype(np.int64)
    for name, array, low, high in (("acc", acc, -2**31, 2**31 - 1),
                                   ("bias", bias, -2**31, 2**31 - 1),
                                   ("mult", mult, 0, 2**MULT_BITS - 1),
                                   ("shift", shift, 0, SHIFT_MAX)):
        if array.size and (array.min() < low or array.max() > high):
            raise ValueError(f"{name} must be in {low}..{high}, found "
                             f"{array.min()}..{array.max()}")
    extra = (1,) * (acc.ndim - 1)
    bias, mult, shift = (a.reshape(a.shape + extra) for a in (bias, mult, shift))
    p = (acc + bias) * mult
    rounding = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    y = (p + rounding) >> shift
    y = np.clip(y, -128, 127)
    if relu:
        y = np.maximum(y, 0)
    return y.astype(np.int8)
