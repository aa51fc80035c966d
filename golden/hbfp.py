"""Golden model of Hybrid Block Floating Point (HBFP): quantization, dequantization, dot product.

The numeric rules follow HBFPEmulator's ``_float_to_bfp`` in deterministic (nearest) mode, with
the shared exponent computed exactly (see :func:`shared_exponents`). Everything here is exact
integer / float64 arithmetic on float32 inputs; there are no approximations.

Rules
-----
* **Blocks** are ``block_size`` consecutive elements along the last axis; a short tail is
  zero-padded (padding never changes a block's maximum).
* **Value** of an element: ``q * 2**(e - m)`` with ``m = mant_bits`` magnitude bits plus a sign
  (sign-magnitude, symmetric): ``|q| <= 2**m - 1``. HBFP8 is ``m=7``, HBFP6 ``m=5``, HBFP4 ``m=3``.
* **Shared exponent**: ``s = float32(max|x| + float32(1e-8))`` (the addition is one float32
  addition rounded to nearest even, as the emulator does it in float32), then
  ``e = ceil(log2(s))`` computed exactly: ``2**(e-1) < s <= 2**e``. For finite inputs
  ``e`` lies in ``[-26, 128]``; an all-zero block has ``e = -26``.
* **Mantissas**: ``q = clamp(round_half_even(x * 2**(m - e)), -(2**m - 1), 2**m - 1)``.
  ``x * 2**(m-e)`` is exact in float64; ``round_half_even`` is ``np.rint``. Consequences: for
  a block whose maximum is exactly ``2**k >= 0.25``, ``2**k + 1e-8`` rounds back to ``2**k`` in
  float32, so ``e = k`` and ``q = 2**m`` saturates to ``2**m - 1`` (1.0 becomes 127/128 at m=7);
  for ``2**k <= 0.125`` the ``1e-8`` survives, ``e`` is bumped to ``k + 1`` and
  ``q = 2**(m-1)`` (64 at m=7).
* **Invalid blocks**: a NaN or an infinity anywhere in the block, or ``e = 128`` (a maximum above
  ``2**127``), makes the block invalid. :func:`quantize` reports it with the reserved exponent
  :data:`INVALID_EXP` (= 128) and all-zero mantissas; :func:`dequantize` gives NaN for the whole
  block; a dot product involving an invalid block is NaN.
* **The exponent as comparisons** (what the hardware computes; :func:`exponent_table`,
  proven equal to the rule above for every finite maximum by ``tests/test_hbfp.py``): with
  ``eps = float32(1e-8) = 0xABCC77 * 2**-50`` exactly, round-half-even gives
  ``float32(M + eps) <= 2**e`` iff ``M + eps <= 2**e + 2**(e-24)`` (the tie goes to the even
  ``2**e``), so ``e = min{e >= -26 : M <= T_e}`` with ``T_e = 2**e + 2**(e-24) - eps`` (no
  addition needed: ``e`` depends on ``M`` only through comparisons with the constants ``T_e``).
  Within one binade of ``M`` (biased exponent ``B``, fraction ``f``, ``M = (2**23 + f) *
  2**(B-150)``, ``E = 0xABCC77``) at most two exponents occur, so ``e = base[B] + (f >=
  thr[B])``:

  - ``B >= 125`` (``M >= 0.25``: ``T_e`` lies below the float after ``2**e``): ``e = B - 127 +
    (f != 0)``, the exact ``ceil(log2 M)``;
  - ``B = 100..124``: ``e = B - 126 + (f >= 2**23 + 2 - ceil(E * 2**(100-B)))``, the bump
    taking the top ``ceil(E * 2**(100-B)) - 2`` fractions of the binade (none for ``B >= 123``,
    all for ``B = 100``: ``e = -25``);
  - ``B = 99``: ``e = -26 + (f >= 3 * 2**23 + 3 - 2E)`` (``= 0x286715``);
  - ``B <= 98``, subnormals and zero: ``e = -26``.

  A power of two ``M = 2**k`` (``f = 0``) therefore keeps ``e = k`` for ``k >= -2`` and is
  bumped to ``k + 1`` below; ``e = 128`` (invalid) is ``B = 254, f != 0``.
* **Deviation note**: HBFPEmulator computes ``ceil(log2(s))`` with a float32 ``log2``; for ``s``
  within a few float32 ulps above a power of two far from 1 that rounds to the power itself and
  gives an exponent one lower than the exact definition used here (and by the hardware).

Dot product (:func:`dot`)
-------------------------
For block ``k`` of the two operands, ``S_k = sum_i qa_i * qb_i`` is an exact integer
(``2m + ceil(log2 B) + 1`` bits, signed) with exponent ``ea_k + eb_k - 2m``. Each block result
``r_k = fp32_rne(S_k * 2**(ea_k + eb_k - 2m))`` is converted to float32 with round-half-even
(overflow gives a signed infinity; there is no underflow in range since the smallest exponent
is ``-52 - 2m``). ``S_k = 0`` gives ``+0.0``. Any invalid block makes the result NaN.

**Summation order** (the hardware's, set by its ``add_stages``: ``P = add_stages + 1``
partial sums, :data:`DEFAULT_PARTIALS` at the default parameters). Block ``k`` (``k = 0..K-1``)
goes to partial ``k mod P``. Each partial starts at ``-0.0`` (the exact identity of float32
addition: ``x + -0 = x`` for every ``x``, so an untouched partial changes nothing) and adds its
blocks in order, ``p_j = float32(p_j + r_k)``. The partials are then combined by a pairwise
tree in a fixed order: level by level, neighbours ``(p_0 + p_1), (p_2 + p_3), ...``, an odd
last one carried up unchanged (``P = 6``: ``((p0 + p1) + (p2 + p3)) + (p4 + p5)``; ``P = 5``:
``((p0 + p1) + (p2 + p3)) + p4``). Every addition is
float32, round-half-even, IEEE signed-zero rules, ``inf + -inf = NaN``. ``P = 1`` is the plain
sequential order ``acc = r_1``, ``acc = float32(acc + r_k)``. The order matters because float32
addition is not associative; the ``P`` partial sums exist so that an adder pipelined to latency
``P`` still takes one block pair per cycle (a sequential sum needs each sum before the next
addition can start).
"""

import math

import numpy as np

from sparsehw.params import check, int_in


__all__ = ["INVALID_EXP", "EPSILON", "MIN_EXP", "MODES", "shared_exponents", "exponent_table",
           "table_exponents", "quantize",
           "dequantize", "block_dot", "dot", "fp32_from_scaled_int", "check_mant_bits",
           "check_block_size", "DEFAULT_PARTIALS"]


#: Exponent reported for an invalid block (NaN/Inf inside, or a maximum above 2**127).
INVALID_EXP = 128
#: The emulator's epsilon, as a float32.
EPSILON = np.float32(1e-8)
#: Exponent of an all-zero block: ceil(log2(float32(1e-8))).
MIN_EXP = -26
#: Run-time mantissa modes of the mixed-mantissa dot product: mode code -> mant_bits.
MODES = {0: 3, 1: 5, 2: 7}
#: Partial sums of ``hbfp_dot`` at its default parameters (``add_stages = 5``; 5 partials,
#: ``add_stages = 4``, before issue 14's third timing round).
DEFAULT_PARTIALS = 6


def check_mant_bits(mant_bits, *, low=2, high=16):
    """``mant_bits`` as an int; ``TypeError``/``ValueError`` unless an integer in ``low..high``."""
    return int(check("mant_bits", mant_bits, int_in(low, high)))


def check_block_size(block_size, *, low=1, high=256):
    """``block_size`` as an int; ``TypeError``/``ValueError`` unless an integer in
    ``low..high``."""
    return int(check("block_size", block_size, int_in(low, high)))


def _blocks(x, block_size):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0:
        x = x.reshape(1)
    n = x.shape[-1]
    nb = max(1, -(-n // block_size))
    pad = nb * block_size - n
    if pad:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,), np.float32)], axis=-1)
    return x.reshape(x.shape[:-1] + (nb, block_size))


def shared_exponents(blocks):
    """Exact ``ceil(log2(float32(max|x| + 1e-8)))`` per block (last axis), and invalid mask.

    Returns ``(e, invalid)``: int64 exponents (``INVALID_EXP`` where invalid) and a bool mask.
    """
    blocks = np.asarray(blocks, dtype=np.float32)
    finite = np.isfinite(blocks).all(axis=-1)
    amax = np.where(np.isfinite(blocks), np.abs(blocks), np.float32(0)).max(axis=-1)
    s = (amax.astype(np.float32) + EPSILON).astype(np.float32)          # float32 addition, RNE
    frac, exp2 = np.frexp(s.astype(np.float64))                        # s = frac * 2**exp2
    e = np.where(frac == 0.5, exp2 - 1, exp2).astype(np.int64)          # 2**(e-1) < s <= 2**e
    invalid = ~finite | (e >= INVALID_EXP) | ~np.isfinite(s)
    e = np.where(invalid, INVALID_EXP, e)
    return e, invalid


#: ``float32(1e-8) = EPS_SIG * 2**-50`` exactly (24-bit significand).
EPS_SIG = 0xABCC77


def exponent_table():
    """The shared exponent as a table lookup and one comparison (module docstring).

    Returns ``(base, thr)``, two tuples of 255 ints indexed by the biased exponent ``B`` (0..254)
    of a finite block maximum ``M`` with fraction ``f`` (23 bits): its shared exponent is
    ``base[B] + (f >= thr[B])`` (128 for ``B = 254, f != 0``: invalid). ``thr[B]`` is in
    ``0 .. 2**23``; ``2**23`` means never. Built from the closed form of the module docstring
    (exact integers); ``tests/test_hbfp.py`` proves it equal to :func:`shared_exponents`.
    """
    base, thr = [], []
    for b in range(255):
        if b >= 125:
            base.append(b - 127)
            thr.append(1)
        elif b >= 100:
            base.append(b - 126)
            ceil_eps = -(-EPS_SIG // (1 << (b - 100)))              # ceil(E * 2**(100-B))
            thr.append(min(max((1 << 23) + 2 - ceil_eps, 0), 1 << 23))
        elif b == 99:
            base.append(MIN_EXP)
            thr.append(3 * (1 << 23) + 3 - 2 * EPS_SIG)
        else:
            base.append(MIN_EXP)
            thr.append(1 << 23)
    return tuple(base), tuple(thr)


def table_exponents(magnitudes):
    """:func:`exponent_table` applied to finite magnitudes given as float32 bit patterns
    (``uint32`` below ``0x7F800000``, sign bit clear); int64 exponents, 128 where invalid."""
    bits_ = np.asarray(magnitudes, dtype=np.uint32)
    if (bits_ >= 0x7F800000).any():
        raise ValueError("magnitudes must be finite non-negative float32 bit patterns")
    base, thr = (np.array(t, np.int64) for t in exponent_table())
    b = (bits_ >> 23).astype(np.int64)
    f = (bits_ & 0x7FFFFF).astype(np.int64)
    return base[b] + (f >= thr[b])


def quantize(x, mant_bits, block_size):
    """Quantize ``x`` (float32, blocks along the last axis) to HBFP.

    Parameters
    ----------
    x : array_like
        Converted to float32 first (so float64 input is rounded to float32, nearest even).
    mant_bits : int
        ``m``: magnitude bits of each mantissa (sign extra), 2..16.
    block_size : int
        Elements per block, 1..256. A short tail is zero-padded.

    Returns
    -------
    mantissas : ndarray of int64, shape ``x.shape[:-1] + (nblocks, block_size)``
        ``q`` with ``|q| <= 2**m - 1`` (all zero in an invalid block).
    exponents : ndarray of int64, shape ``x.shape[:-1] + (nblocks,)``
        Shared exponent ``e`` in ``[-26, 127]``, or ``INVALID_EXP`` (128) for an invalid block.

    Notes
    -----
    ``q = clamp(round_half_even(x * 2**(m-e)), -(2**m-1), 2**m-1)``; see the module docstring
    for the exponent rule and its consequences (saturation at powers of two >= 0.25, the bump
    at smaller powers of two, ``e = -26`` for an all-zero block, invalid blocks).
    """
    m = check_mant_bits(mant_bits)
    block_size = check_block_size(block_size)
    blocks = _blocks(x, block_size)
    e, invalid = shared_exponents(blocks)
    scale = np.ldexp(1.0, (m - np.where(invalid, 0, e)))[..., None]
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = blocks.astype(np.float64) * scale                      # exact in float64
        q = np.rint(scaled)                                             # half to even
    limit = (1 << m) - 1
    q = np.where(invalid[..., None], 0, np.clip(np.nan_to_num(q), -limit, limit))
    return q.astype(np.int64), e


def dequantize(mantissas, exponents, mant_bits, block_size):
    """Values ``q * 2**(e - m)`` as float32, flattened to ``(..., nblocks * block_size)``.

    Invalid blocks (``e == INVALID_EXP``) dequantize to NaN. The result is exact (it fits float32
    for ``e <= 127``; values below float32's normal range are exact subnormals or would need
    ``e - m < -149``, which cannot happen since ``e >= -26``).
    """
    m = check_mant_bits(mant_bits)
    block_size = check_block_size(block_size)
    q = np.asarray(mantissas, dtype=np.int64)
    e = np.asarray(exponents, dtype=np.int64)
    if q.shape[-1] != block_size or q.shape[:-1] != e.shape:
        raise ValueError(f"mantissas shape {q.shape} does not match exponents shape {e.shape} "
                         f"and block_size {block_size}")
    invalid = e == INVALID_EXP
    values = np.ldexp(q.astype(np.float64), (np.where(invalid, 0, e) - m)[..., None])
    values = np.where(invalid[..., None], np.nan, values).astype(np.float32)
    return values.reshape(values.shape[:-2] + (values.shape[-2] * block_size,))


def fp32_from_scaled_int(s, exp):
    """``float32`` nearest (ties to even) to the exact value ``s * 2**exp`` (ints).

    Overflow gives a signed infinity; tiny values round to subnormals or signed zero
    (``s == 0`` gives +0.0).
    """
    s, exp = int(s), int(exp)
    if s == 0:
        return np.float32(0.0)
    sign = -1 if s < 0 else 1
    mag = abs(s)
    # Keep the value exact in float64: at most 53 significant bits (round to odd first if more,
    # which preserves the float32 rounding since float32 needs 24 bits + guard + sticky).
    excess = mag.bit_length() - 53
    if excess > 0:
        sticky = 1 if mag & ((1 << excess) - 1) else 0
        mag = (mag >> excess) | sticky
        exp += excess
    if exp > 400:
        return np.float32(sign * np.inf)
    if exp < -1200:
        return np.float32(sign * 0.0)
    value = math.ldexp(float(mag), exp) if exp > -1074 + 53 else None
    if value is None:
        # Far below float32's range: the result is a signed zero.
        return np.float32(sign * 0.0)
    with np.errstate(over="ignore"):
        return np.float32(sign * value)


def block_dot(qa, ea, qb, eb, mant_bits):
    """One block product ``fp32_rne(sum(qa*qb) * 2**(ea + eb - 2m))``; NaN if either is invalid."""
    if int(ea) == INVALID_EXP or int(eb) == INVALID_EXP:
        return np.float32(np.nan)
    s = int(np.dot(np.asarray(qa, np.int64), np.asarray(qb, np.int64)))
    return fp32_from_scaled_int(s, int(ea) + int(eb) - 2 * mant_bits)


def _f32_add(x, y):
    with np.errstate(invalid="ignore", over="ignore"):
        return np.float32(np.float32(x) + np.float32(y))


def dot(qa, ea, qb, eb, mant_bits, partials=DEFAULT_PARTIALS):
    """HBFP dot product of two quantized vectors (blocks along the first axis of ``ea``).

    ``qa``, ``qb``: shape ``(K, B)``; ``ea``, ``eb``: shape ``(K,)``. ``mant_bits`` is an int,
    or a sequence of K ints (mixed-mantissa: per-block mode). ``partials``: ``P``, the number of
    interleaved partial sums (the hardware's ``add_stages + 1``; ``1`` is the sequential order).
    Accumulation: block ``k`` into partial ``k mod P`` (each starting at ``-0.0``), then the
    partials combined by the pairwise tree of the module docstring. Returns a float32.
    """
    partials = int(check("partials", partials, int_in(1, 64)))
    qa, qb = np.asarray(qa), np.asarray(qb)
    ea, eb = np.atleast_1d(ea), np.atleast_1d(eb)
    k = len(ea)
    mbits = [mant_bits] * k if np.ndim(mant_bits) == 0 else list(mant_bits)
    parts = [np.float32(-0.0)] * partials
    for i in range(k):
        r = block_dot(qa[i], ea[i], qb[i], eb[i], int(mbits[i]))
        parts[i % partials] = _f32_add(parts[i % partials], r)
    while len(parts) > 1:
        parts = [_f32_add(parts[j], parts[j + 1]) if j + 1 < len(parts) else parts[j]
                 for j in range(0, len(parts), 2)]
    return np.float32(parts[0])
