"""Stimulus generators for the HBFP family testbenches (plain numpy, seeded)."""

import numpy as np

from sparsehw.golden.fp32 import from_bits


__all__ = ["fp32_mac_vectors", "subnormal_tie_products", "normal_tie_products", "wide_values", "corner_blocks",
           "lane_tie_blocks", "binade_tie_blocks", "eps_boundary_blocks", "lane_special_blocks",
           "malformed_every_lane", "dot_ops", "accumulation_ops", "tree_adders",
           "tree_cancel_ops", "dense_dot_ops", "nan_partial_ops", "tree_sticky_ops",
           "tree_pow2_cancel_ops", "tree_binade_ops", "accumulator_wide_sticky_ops"]


_SPECIALS = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,
             0x7F800001, 0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00800000,
             0x80800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000, 0xBF800000, 0x3F800001,
             0x33800000, 0x34000000, 0x00400000, 0x1F800000, 0x5F800000]


def _rand_bits(rng, n, lo, hi):
    """Random float32 bit patterns with biased exponent in [lo, hi] and random sign/fraction."""
    frac = rng.integers(0, 1 << 23, n, dtype=np.int64)
    exp = rng.integers(lo, hi + 1, n, dtype=np.int64)
    sign = rng.integers(0, 2, n, dtype=np.int64)
    return ((sign << 31) | (exp << 23) | frac).astype(np.uint32)


def fp32_mac_vectors(rng, count):
    """``count`` (a, b, c) uint32 triples: random bits, near-cancellation, subnormal-producing,
    overflowing, tie-making and special-value cases, in shuffled order."""
    parts = []
    k = max(1, count // 9)
    # 1. fully random bit patterns (all exponents, NaN/Inf rare)
    parts.append([rng.integers(0, 1 << 32, k, dtype=np.uint64).astype(np.uint32) for _ in range(3)])
    # 2. moderate exponents: c near a*b for massive cancellation
    a = _rand_bits(rng, k, 110, 144)
    b = _rand_bits(rng, k, 110, 144)
    p = from_bits(a).astype(np.float64) * from_bits(b).astype(np.float64)
    # c = -p (1 + d 2**-23), |d| log-uniform in 1..2**22 (and 0): the sum keeps about
    # log2|d| bits, so the adder's leading one lands at every position of its 28-bit sum.
    d = rng.choice([-1, 1], k) * np.floor(np.exp2(rng.uniform(0, 22, k))) * (rng.random(k) > 0.1)
    c = (-p * (1 + d * 2.0 ** -23)).astype(np.float32).view(np.uint32)
    parts.append([a, b, c])
    # 3. products in the subnormal range, c subnormal or tiny
    parts.append([_rand_bits(rng, k, 20, 80), _rand_bits(rng, k, 20, 80), _rand_bits(rng, k, 0, 3)])
    # 4. overflow: big products and big c
    parts.append([_rand_bits(rng, k, 180, 254), _rand_bits(rng, k, 120, 200),
                  _rand_bits(rng, k, 240, 254)])
    # 5. subnormal operands times normal operands
    parts.append([_rand_bits(rng, k, 0, 0), _rand_bits(rng, k, 100, 254), _rand_bits(rng, k, 0, 30)])
    # 6. ties: short mantissas so that products / sums land exactly on half-ulps
    def short(n, lo, hi, bitsk):
        v = _rand_bits(rng, n, lo, hi)
        return v & np.uint32(~((1 << (23 - bitsk)) - 1) & 0xFFFFFFFF)
    parts.append([short(k, 120, 134, 12), short(k, 120, 134, 12), short(k, 100, 150, 23)])
    # 7. additions of close exponents (c dominates or equals product binade)
    a = _rand_bits(rng, k, 120, 134)
    b = _rand_bits(rng, k, 120, 134)
    pe = ((from_bits(a).view(np.uint32) >> 23 & 255).astype(np.int64)
          + (from_bits(b).view(np.uint32) >> 23 & 255).astype(np.int64) - 127)
    parts.append([a, b, _rand_bits(rng, k, 0, 0) | (np.clip(pe + rng.integers(-3, 4, k), 1, 254)
                                                       .astype(np.uint32) << 23)])
    # 8. subnormal products exactly on a tie (and one unit above / below it), where only the
    # sticky bit decides: a = M * 2**(ea-150) normal, b = 2**t, product = M * 2**-s * 2**-149
    # with the low s bits of M = 100..0 (tie), 100..01 (above) or 011..1 (below).
    # Normal results exactly on a tie from a subnormal operand (guard bit at every position
    # of the 48-bit product from 0 to 21).
    parts.append(subnormal_tie_products(rng, k - k // 2))
    parts.append(normal_tie_products(rng, k // 2))
    # 9. specials crossed with random values
    rest = count - 8 * k
    sp = np.array(_SPECIALS, dtype=np.uint32)
    trip = [rng.choice(sp, rest) for _ in range(3)]
    for i in range(3):
        mask = rng.random(rest) < 0.4
        trip[i] = np.where(mask, _rand_bits(rng, rest, 1, 254), trip[i]).astype(np.uint32)
    parts.append(trip)
    a = np.concatenate([p[0] for p in parts])
    b = np.concatenate([p[1] for p in parts])
    c = np.concatenate([p[2] for p in parts])
    order = rng.permutation(len(a))
    return a[order], b[order], c[order]


def subnormal_tie_products(rng, n):
    """``n`` (a, b, c) triples whose product ``a*b`` is subnormal and lies exactly on a rounding
    tie, one unit of the product above it, or one below (``c``: +-0, a subnormal or a tiny
    normal). ``a`` is normal, ``b`` a power of two (normal or subnormal)."""
    s = rng.integers(2, 25, n)                            # bits below the subnormal LSB
    ea = np.array([int(rng.integers(1, 151 - x)) for x in s], dtype=np.int64)
    t = 1 - s - ea                                        # b = 2**t, -149 <= t <= -2
    frac = rng.integers(0, 1 << 23, n, dtype=np.int64)
    kind = rng.integers(0, 3, n)                          # 0 tie, 1 above, 2 below
    half = np.left_shift(np.int64(1), s - 1)
    # "above": one sticky bit at a random place below the guard (not only the lowest), so
    # that every bit of the product's sticky mask decides a rounding on its own.
    sticky = np.left_shift(np.int64(1), (rng.random(n) * (s - 1)).astype(np.int64))
    low = np.where(kind == 0, half, np.where(kind == 1, half + sticky, half - 1))
    mant = ((frac | (1 << 23)) & ~((half << 1) - 1)) | low
    a = ((rng.integers(0, 2, n) << 31) | (ea << 23) | (mant & 0x7FFFFF)).astype(np.uint32)
    b = np.where(t >= -126, (t + 127) << 23, np.left_shift(np.int64(1), np.maximum(t + 149, 0)))
    b = (b | (rng.integers(0, 2, n) << 31)).astype(np.uint32)
    c_choice = rng.integers(0, 4, n)
    c = np.select([c_choice == 0, c_choice == 1, c_choice == 2],
                  [np.zeros(n, np.int64), np.full(n, 0x80000000, np.int64),
                   rng.integers(1, 1 << 23, n) | (rng.integers(0, 2, n) << 31)],
                  _rand_bits(rng, n, 1, 3).astype(np.int64)).astype(np.uint32)
    return [a, b, c]


def normal_tie_products(rng, n):
    """``n`` (a, b, c) triples whose product ``a*b`` is normal and lies exactly on a rounding
    tie, with ``b`` subnormal: ``b``'s significand is ``3 * 2**k`` (k = 0..21) and ``a``'s an odd
    ``M`` (normal) with ``3M`` of 25 bits, so the exact product ``3M * 2**k`` keeps 24 bits and its guard
    bit is bit ``k``, nothing below it; ``a``'s exponent makes the result normal. ``c``: +-0."""
    k = rng.integers(0, 22, n)
    mant = rng.integers(1 << 23, (1 << 25) // 3 + 1, n) | 1      # normal M, 3M < 2**25
    # t = pos + exp + 126 > 0 with pos = k + 24, exp = (ea - 150) + (1 - 150): ea >= 150 - k.
    ea = np.array([int(rng.integers(150 - x, 255)) for x in k], dtype=np.int64)
    a = ((rng.integers(0, 2, n) << 31) | (ea << 23) | (mant & 0x7FFFFF)).astype(np.uint32)
    b = ((rng.integers(0, 2, n) << 31) | np.left_shift(np.int64(3), k)).astype(np.uint32)
    c = (rng.integers(0, 2, n) << 31).astype(np.uint32)
    return [a, b, c]


def wide_values(rng, shape, lo=-40, hi=40):
    """float32 values with random sign, log-uniform magnitude in ``2**lo .. 2**hi``."""
    mag = np.exp2(rng.uniform(lo, hi, shape))
    return (mag * rng.choice([-1.0, 1.0], shape)).astype(np.float32)


def corner_blocks(rng, block_size):
    """A list of float32 blocks (length ``block_size``) exercising the quantizer's edge cases."""
    B = block_size
    z = np.zeros(B, np.float32)
    blocks = []
    def put(vals):
        blk = z.copy()
        vals = np.asarray(vals, np.float32)[:B]
        blk[:len(vals)] = vals
        blocks.append(blk)
    for v in [1.0, -1.0, 0.5, 0.25, 0.125, -0.125, 2.0 ** 20, 2.0 ** -20, 2.0 ** 127, 2.0 ** -126]:
        put([v])                                  # powers of two: saturation / exponent bump
        put([v, v / 3, -v / 7])
    put([])                                       # all zero
    put([-0.0, 0.0])                              # signed zeros
    put([np.float32(1.4e-45), -np.float32(1e-40)])     # subnormals only
    put([1.0, np.float32(1e-40)])                 # subnormal beside a normal
    put([np.nan, 1.0])
    put([1.0, np.inf])
    put([-np.inf])
    put([np.float32(3.4e38), 1.0])                # e = 128: invalid
    put([np.float32(2.0 ** 127 * 1.0000001)])     # just above 2**127: invalid
    put([np.float32(2.0 ** 40), np.float32(2.0 ** -40)])  # huge and tiny
    # ties at exactly half an LSB, both signs (max 1.75 -> e = 1, LSB = 2**(1-m))
    for m in (3, 5, 7):
        lsb = 2.0 ** (1 - m)
        put([1.75, 0.5 * lsb, -0.5 * lsb, 1.5 * lsb, -1.5 * lsb, 2.5 * lsb, -2.5 * lsb, 3.5 * lsb])
    put([-1.75, 1.0 + 2.0 ** -23, 2.0 ** -24])
    return blocks


def lane_tie_blocks(block_size, mant_bits):
    """Blocks with a rounding tie (or a value just above one) in every lane, ``block_size``
    rotations so that each lane meets every case: exact ties that round down to even
    (0.5, -2.5 LSB), up to even (1.5, 3.5, -1.5 LSB), and 2.5 LSB + a little (the sticky bit
    decides). The block maximum 1.75 (shared exponent 1, LSB ``2**(1-m)``) moves with them."""
    m = mant_bits
    lsb = 2.0 ** (1 - m)
    pattern = [0.5, -2.5, 1.5, -0.5, 2.5 + 2.0 ** -12, 3.5, -1.5, 2.5]
    if block_size == 1:
        return [np.array([(2 ** (m - 1) + j + 0.5) * lsb], np.float32) for j in range(4)]
    blocks = []
    for shift in (0, 1):          # two offsets: no pattern value is always hidden by the maximum
        for r in range(block_size):
            blk = np.array([pattern[(j + r + shift) % len(pattern)] * lsb
                            for j in range(block_size)])
            blk[r] = 1.75
            blocks.append(blk.astype(np.float32))
    return blocks


def binade_tie_blocks(rng, block_size, mant_bits):
    """Rounding ties at every shift: block maximum 1.75 (shared exponent 1, LSB ``2**(1-m)``)
    in lane ``r``, and in every other lane ``j`` a value ``(k + 1/2) LSB`` in binade ``d`` below
    the maximum's (``k`` random in ``2**(m-1-d) .. 2**(m-d) - 1``, either parity: rounds down or
    up to even), ``d = (j + v) mod (m + 1)``, so each lane meets a tie at every alignment shift.
    Three more sets add one sticky bit below the guard, at every position in turn (the tie is
    then broken upwards by that single bit); a third mixes, lane by lane, exact ties and ties plus
    random bits below the guard (so the low bits of the other lanes vary around exact ties)."""
    m, B = mant_bits, block_size
    lsb = 2.0 ** (1 - m)
    blocks = []
    for sticky in ("none", "single", "single", "single", "mixed", "mixed"):
        for v in range(m + 1):
            for r in range(B):
                blk = np.zeros(B)
                for j in range(B):
                    d = (j + v) % (m + 1)
                    lo, hi = (1 << (m - 1 - d), 1 << (m - d)) if d < m else (0, 1)
                    k = int(rng.integers(lo, hi))
                    val = (k + 0.5) * lsb
                    room = 23 - max(m - 1 - d, 0)     # float32 bits below the guard
                    if sticky == "single" and room >= 2:     # every position in turn
                        val += lsb * 2.0 ** -(2 + (len(blocks) + j) % (room - 1))
                    elif sticky == "mixed" and room >= 2 and rng.random() < 0.5:
                        val += lsb * int(rng.integers(1, 1 << (room - 1))) * 2.0 ** -room
                    blk[j] = val * (-1) ** int(rng.integers(0, 2))
                blk[r] = 1.75 * (-1) ** int(rng.integers(0, 2))
                blocks.append(blk.astype(np.float32))
    return blocks


def eps_boundary_blocks(rng, block_size):
    """Block maxima a few float32 steps either side of ``2**k - 1e-8`` (so that the shared
    exponent's ``float32(max + 1e-8)`` lands on, just below or just above ``2**k``, including
    exact rounding ties of that addition for ``k <= -26``), for ``k`` in -28..-22 and a few
    larger ``k``; the maximum moves through the lanes."""
    B = block_size
    blocks = []
    i = 0
    for k in list(range(-28, -21)) + [-3, 0, 8, 100]:
        c = np.float32(np.float32(2.0 ** k) - np.float32(1e-8))
        for j in range(-3, 4):
            top = np.float32(c)
            for _ in range(abs(j)):
                top = np.nextafter(top, np.float32(np.inf if j > 0 else 0), dtype=np.float32)
            blk = (wide_values(rng, B, -6, -1) * 2.0 ** k).astype(np.float32)
            blk[i % B] = top * (1 if i % 3 else -1)
            blocks.append(blk)
            i += 1
    return blocks


def lane_special_blocks(rng, block_size, mant_bits):
    """Per lane ``r`` of the block: a NaN, a +-infinity, a subnormal beside a small normal
    maximum, exact power-of-two maxima across the range (saturated or bumped exponent), and
    maxima just above a power of two (the
    ``max + 1e-8`` rounding of the shared exponent: ``2**k * (1 + j * 2**-23)`` for small ``j``
    and ``k`` across the range, the issue's ``0x43800001`` among them). The other lanes hold
    random smaller values."""
    B = block_size
    blocks = []

    def block(r, top, others=1.0):
        blk = (wide_values(rng, B, -6, -1) * others).astype(np.float32)
        blk[r] = top
        return blk

    ks = [-26, -24, -20, -10, -3, -2, -1, 0, 1, 8, 9, 20, 60, 126]
    for r in range(B):
        blocks.append(block(r, np.nan))
        blocks.append(block(r, np.inf if r % 2 else -np.inf))
        blocks.append(block(r, np.float32(1e-40) * (-1) ** r, others=2.0 ** -100))
        blocks.append(block(r, (-1) ** r * 0.5))                       # saturates to 2**m - 1
        for k in (-30, -20, -5, -3, -2, -1, 0, 1, 2, 7, 40, 64, 100, 127):  # exact powers of two
            blocks.append(block(r, (-1) ** (r + k) * 2.0 ** k, others=2.0 ** k))
        for k in ks[r % 3::3] + [8]:
            j = int(rng.integers(1, 4))
            top = np.array([((k + 127) << 23) | j], np.uint32).view(np.float32)[0]
            blocks.append(block(r, top * (-1) ** (r + j), others=2.0 ** k))
    return blocks


def malformed_every_lane(rng, block_size, mant_bits, *, mixed=False, partials=None):
    """Dot products with one malformed mantissa, in every lane of ``a`` and of ``b`` in turn,
    each followed by a well-formed dot product (which must come out right).

    Malformed values: ``-2**m`` (e.g. -128 at m = 7, the one out-of-range value of a fixed
    unit); mixed: ``+-(limit + 1)`` of each mode (-128 only in HBFP8). Returns ``(beats,
    expected)`` like :func:`dot_ops`.
    """
    from sparsehw.golden.fp32 import QNAN
    from sparsehw.golden.hbfp import MODES
    cases = []
    if mixed:
        for mode, mb in MODES.items():
            limit = (1 << mb) - 1
            cases += [(mode, mb, v) for v in ((limit + 1, -limit - 1) if mb < 7 else (-128,))]
    else:
        cases = [(None, mant_bits, -(1 << mant_bits))]
    beats, expected = [], []
    for side in ("a", "b"):
        for lane in range(block_size):
            for mode, mb, bad in cases:
                limit = (1 << mb) - 1
                beat = {"a": [int(v) for v in rng.integers(-limit, limit + 1, block_size)],
                        "b": [int(v) for v in rng.integers(-limit, limit + 1, block_size)],
                        "ea": int(rng.integers(-26, 40)), "eb": int(rng.integers(-26, 40)),
                        "last": 1}
                beat[side][lane] = bad
                if mixed:
                    beat["mode"] = mode
                beats.append(beat)
                expected.append((QNAN, 0, 1))
                good_beats, good = dot_ops(rng, block_size, mant_bits, mixed=mixed, ops=1,
                                           p_invalid=0.0, partials=partials)
                beats += good_beats
                expected += good
    return beats, expected


def _golden_dot(qa, ea, qb, eb, mbits, partials):
    """The golden model's canonical float32 bits of one dot product of blocks ``qa``/``qb``."""
    from sparsehw.golden.fp32 import bits, canonical
    from sparsehw.golden.hbfp import dot
    return canonical(bits(dot(np.array(qa), np.array(ea), np.array(qb), np.array(eb), mbits,
                              partials)))


def _dot_beats(qa, qb, ea, eb, modes=None):
    """The input beats of one dot product (``last`` on its final block; ``mode`` per block when
    ``modes`` is given, i.e. for a ``mixed`` unit)."""
    beats = []
    for k in range(len(ea)):
        beat = {"a": [int(v) for v in qa[k]], "b": [int(v) for v in qb[k]],
                "ea": ea[k], "eb": eb[k], "last": int(k == len(ea) - 1)}
        if modes is not None:
            beat["mode"] = modes[k]
        beats.append(beat)
    return beats


def _split_exponent(rng, e):
    """A random ``(ea, eb)``, both legal block exponents, with ``ea + eb = e`` clamped to
    ``2 * MIN_EXP .. 2 * 127`` (the exponent of a product of two blocks)."""
    from sparsehw.golden.hbfp import MIN_EXP
    e = min(max(e, 2 * MIN_EXP), 2 * 127)
    e1 = int(rng.integers(max(MIN_EXP, e - 127), min(127, e - MIN_EXP) + 1))
    return e1, e - e1


def _last_place(x):
    """The exponent of the last place of the float32 ``x`` (normal)."""
    from sparsehw.golden.fp32 import bits
    return ((bits(x) >> 23) & 0xFF) - 150


def _full_block(rng, block_size, mant_bits):
    """A random block pair ``X`` with both lane-0 mantissas at the limit (a nonzero sum in
    almost every draw) and exponents in -10..49: ``(xa, xb, ea, eb, value)``."""
    from sparsehw.golden.hbfp import block_dot
    limit = (1 << mant_bits) - 1
    xa = rng.integers(-limit, limit + 1, block_size)
    xb = rng.integers(-limit, limit + 1, block_size)
    xa[0], xb[0] = limit, limit
    e1, e2 = int(rng.integers(-10, 50)), int(rng.integers(-10, 50))
    return xa, xb, e1, e2, block_dot(xa, e1, xb, e2, mant_bits)


def _zero_blocks(count, block_size):
    """``(qa, qb, ea, eb)``: ``count`` all-zero block pairs with exponents 0, to fill in."""
    return ([np.zeros(block_size, np.int64) for _ in range(count)],
            [np.zeros(block_size, np.int64) for _ in range(count)], [0] * count, [0] * count)


def _finish_dot(rng, qa, qb, ea, eb, mant_bits, partials, mixed, beats, expected):
    """Give each all-zero block pair random legal exponents (they must not matter), then
    append the dot product's golden result to ``expected`` and its input beats to ``beats``."""
    from sparsehw.golden.hbfp import MIN_EXP
    count = len(qa)
    for k in range(count):
        if not qa[k].any():
            ea[k], eb[k] = int(rng.integers(MIN_EXP, 128)), int(rng.integers(MIN_EXP, 128))
    expected.append((_golden_dot(qa, ea, qb, eb, [mant_bits] * count, partials), 0, 0))
    beats.extend(_dot_beats(qa, qb, ea, eb, [2] * count if mixed else None))


def dot_ops(rng, block_size, mant_bits, *, mixed=False, ops=100, max_blocks=4, p_invalid=0.03,
            p_malformed=0.0, lo=-40, hi=40, fixed_blocks=None, partials=None):
    """Random dot products for ``hbfp_dot`` and their expected results.

    Operands are float32 vectors (log-uniform magnitudes in ``2**lo .. 2**hi``, some corner
    blocks, some NaN/Inf making blocks invalid) quantized by :func:`golden.hbfp.quantize`.
    With ``p_malformed``, some beats get an illegal mantissa, exponent or mode.
    ``partials`` is the summation order of :func:`golden.hbfp.dot` (the hardware's
    ``add_stages + 1``; ``None``: the default parameters').

    Returns ``(beats, expected)``: ``beats`` is a list of input dicts (the ``hbfp_dot`` input
    layout), ``expected`` a list of ``(value_bits, invalid, error)`` per dot product, computed from
    the golden model (and, for malformed beats, from the documented checking rule).
    """
    from sparsehw.golden.fp32 import QNAN
    from sparsehw.golden.hbfp import DEFAULT_PARTIALS, INVALID_EXP, MODES, quantize
    partials = DEFAULT_PARTIALS if partials is None else partials
    B = block_size
    corners = corner_blocks(rng, B)
    beats, expected = [], []
    for _ in range(ops):
        k_blocks = fixed_blocks or int(rng.integers(1, max_blocks + 1))
        modes = [int(rng.integers(0, 3)) for _ in range(k_blocks)] if mixed else None
        mbits = [MODES[x] for x in modes] if mixed else [mant_bits] * k_blocks
        qa, qb, ea, eb, errors = [], [], [], [], []
        for k in range(k_blocks):
            xs = []
            for _side in range(2):
                r = rng.random()
                if r < 0.1:
                    x = corners[int(rng.integers(len(corners)))].copy()
                else:
                    x = wide_values(rng, B, lo, hi)
                    if rng.random() < 0.3:      # a narrower spread within the block
                        x = wide_values(rng, B, lo // 4, hi // 4)
                    if rng.random() < p_invalid:
                        x[int(rng.integers(B))] = rng.choice([np.inf, -np.inf, np.nan])
                xs.append(x)
            a, e1 = quantize(xs[0], mbits[k], B)
            b, e2 = quantize(xs[1], mbits[k], B)
            a, b, e1, e2 = a[0].copy(), b[0].copy(), int(e1[0]), int(e2[0])
            err = False
            if p_malformed and rng.random() < p_malformed:
                kind = int(rng.integers(3 if mixed else 2))
                limit = (1 << mbits[k]) - 1
                if kind == 0:       # mantissa out of the symmetric range
                    bad = -(1 << mant_bits) if not mixed else int(rng.choice([limit + 1, -limit - 1]))
                    if mixed and mbits[k] == 7:
                        bad = -128
                    a[int(rng.integers(B))] = bad
                elif kind == 1:     # exponent outside -26..128, of either operand
                    bad = int(rng.choice([-27, 129, 255, -256]))
                    if rng.random() < 0.5:
                        e1 = bad
                    else:
                        e2 = bad
                else:               # mode 3 does not exist
                    modes[k] = 3
                err = True
            qa.append(a), qb.append(b), ea.append(e1), eb.append(e2), errors.append(err)
        invalid = any(e == INVALID_EXP for e in ea + eb)
        error = any(errors)
        if error or invalid:
            value = QNAN
        else:
            value = _golden_dot(qa, ea, qb, eb, mbits, partials)
        expected.append((value, int(invalid), int(error)))
        beats += _dot_beats(qa, qb, ea, eb, modes if mixed else None)
    return beats, expected


def accumulation_ops(rng, block_size, mant_bits, *, mixed=False, ops=100, partials=None):
    """Dot products that stress the FP32 accumulation (partial sums and their tree) rather than
    the block products. Block ``k`` goes to partial ``k mod P`` (:func:`golden.hbfp.dot`); its
    integer sum ``S`` and exponent ``ea + eb`` are chosen by kind:

    - ``+-1``, a power of two, a few significant bits, or a full random block, at a random
      offset (-40..40) from a per-dot base (every alignment distance; with the base near the top
      of the range, overflow to infinities of either sign, ``inf - inf`` = NaN in the tree);
    - a rounding tie: ``S = 1`` or ``3`` at half a unit in the last place of the partial it is
      added to (or, for the only block of an odd partial, of its left neighbour in the tree);
    - a cancellation: the negation of the partial's previous block, exact or with one lane
      changed by one (the swap of equal exponents, a large normalization shift).

    1 .. ``3 * P`` blocks per dot product. Returns ``(beats, expected)`` like :func:`dot_ops`.
    """
    from sparsehw.golden.fp32 import bits
    from sparsehw.golden.hbfp import DEFAULT_PARTIALS, MIN_EXP, MODES, block_dot
    P = DEFAULT_PARTIALS if partials is None else partials
    B = block_size
    beats, expected = [], []

    def split(e):
        """``(ea, eb)`` with ``ea + eb = e``, both in range; None if impossible."""
        if not 2 * MIN_EXP <= e <= 2 * 127:
            return None
        e1 = int(rng.integers(max(MIN_EXP, e - 127), min(127, e - MIN_EXP) + 1))
        return e1, e - e1

    for op in range(ops):
        if op % 4 == 3:
            b_, e_ = _cancel_dot(rng, B, mant_bits if not mixed else 7, P, mixed)
            beats += b_
            expected.append(e_)
            continue
        K = int(rng.integers(1, 3 * P + 1))
        if P >= 4 and rng.random() < 0.25:
            K = P + 3                               # p2 a 2-block sum, p3 a single block
        modes = [int(rng.integers(0, 3)) for _ in range(K)] if mixed else None
        mbits = [MODES[x] for x in modes] if mixed else [mant_bits] * K
        base = int(rng.integers(200, 250)) if rng.random() < 0.2 else int(rng.integers(-40, 160))
        parts = [np.float32(-0.0)] * P
        qa, qb, ea, eb = [], [], [], []
        deferred = []
        for k in range(K):
            j = k % P
            limit = (1 << mbits[k]) - 1
            a = np.zeros(B, np.int64)
            b = np.zeros(B, np.int64)
            e = None
            kind = int(rng.integers(0, 7))
            ref = parts[j]
            if k < P and k + P >= K and j % 2 == 1 and rng.random() < 0.5:
                deferred.append(k)                  # the only block of j: a tie in the tree
                qa.append(a), qb.append(b), ea.append(0), eb.append(0)
                continue
            if kind == 5 and np.isfinite(ref) and ref != 0:
                biased = (bits(ref) >> 23) & 0xFF
                a[0], b[0] = int(rng.choice([1, 3])), 1
                a[0] *= 1 if rng.random() < 0.5 else -1
                e = biased - 151 + 2 * mbits[k] if biased else None
            elif kind == 6 and k >= P:
                a, b = -qa[k - P].copy(), qb[k - P].copy()
                if mbits[k] == mbits[k - P]:
                    if rng.random() < 0.5:
                        lane = int(rng.integers(0, B))
                        a[lane] = a[lane] + (1 if a[lane] < limit else -1)
                    e = ea[k - P] + eb[k - P]
                    split_e = (ea[k - P], eb[k - P])
            if e is None or kind == 6 and mbits[k] != mbits[k - P]:
                kind = int(rng.integers(0, 4))
                a = np.zeros(B, np.int64)
                b = np.zeros(B, np.int64)
                if kind == 0:
                    a[0], b[0] = 1, 1
                elif kind == 1:
                    a[0] = 1 << int(rng.integers(0, mbits[k]))
                    b[0] = 1 << int(rng.integers(0, mbits[k]))
                elif kind == 2:
                    a[0] = int(rng.integers(1, limit + 1))
                    b[0] = int(rng.integers(1, limit + 1))
                else:
                    a = rng.integers(-limit, limit + 1, B)
                    b = rng.integers(-limit, limit + 1, B)
                if rng.random() < 0.5:
                    a = -a
                e = base + int(rng.integers(-40, 41))
            if kind != 6:
                lane = int(rng.integers(0, B))              # move the lanes around
                a, b = np.roll(a, lane), np.roll(b, lane)
                e = min(max(e, 2 * MIN_EXP), 2 * 127)
                split_e = split(e)
            e1, e2 = split_e
            qa.append(a), qb.append(b), ea.append(e1), eb.append(e2)
            r = block_dot(a, e1, b, e2, mbits[k])
            with np.errstate(invalid="ignore", over="ignore"):
                parts[j] = np.float32(parts[j] + r)
        for k in deferred:                          # half an ulp of the left neighbour's sum
            ref = parts[k % P - 1]
            if np.isfinite(ref) and ref != 0:
                e = ((bits(ref) >> 23) & 0xFF) - 151 + 2 * mbits[k]
                pair = split(min(max(e, 2 * MIN_EXP), 2 * 127))
                lane = int(rng.integers(0, B))
                qa[k][lane], qb[k][lane] = int(rng.choice([1, 3, -1, -3])), 1
                ea[k], eb[k] = pair
        expected.append((_golden_dot(qa, ea, qb, eb, mbits, P), 0, 0))
        beats += _dot_beats(qa, qb, ea, eb, modes if mixed else None)
    return beats, expected


def _cancel_dot(rng, B, m, P, mixed):
    """One dot product whose sums cancel: either every partial ``j`` is ``A_j + R_j - A_j``
    (``A_j`` a full random block, ``R_j`` a small residue in ``A_j``'s last few bits, so the
    third addition subtracts nearly equal operands with identical high bits), or the partials
    mirror each other (``p_2 = -p_0``, ``p_3 = -p_1``, or ``p_1 = -p_0``, ``p_3 = -p_2``; one
    lane off by one) so the tree adders of either level cancel down to a few low bits. Returns ``(beats, (value, 0, 0))``."""
    from sparsehw.golden.fp32 import bits
    from sparsehw.golden.hbfp import MIN_EXP, block_dot
    limit = (1 << m) - 1
    qa, qb, ea, eb = [], [], [], []

    def add(a, b, e1, e2):
        qa.append(np.asarray(a, np.int64)), qb.append(np.asarray(b, np.int64))
        ea.append(int(e1)), eb.append(int(e2))

    def rand_block():
        a = rng.integers(-limit, limit + 1, B)
        b = rng.integers(-limit, limit + 1, B)
        a[0], b[0] = limit, limit                   # a nonzero, nearly full-width sum
        e1, e2 = int(rng.integers(-20, 60)), int(rng.integers(-20, 60))
        return a, b, e1, e2

    if rng.random() < 0.5:                          # A + R - A in every partial
        firsts = [rand_block() for _ in range(P)]
        for blk in firsts:
            add(*blk)
        for a, b, e1, e2 in firsts:
            r = block_dot(a, e1, b, e2, m)
            ulp = ((bits(r) >> 23) & 0xFF) - 150    # exponent of r's last place
            e = ulp + int(rng.integers(-2, 6)) + 2 * m
            ra = np.zeros(B, np.int64)
            rb = np.zeros(B, np.int64)
            ra[int(rng.integers(0, B))] = int(rng.integers(1, 4)) * (-1) ** int(rng.integers(0, 2))
            rb[:] = 1
            e1r = min(max(e - 20, MIN_EXP), 127)
            add(ra, rb, e1r, e - e1r)
        for a, b, e1, e2 in firsts:
            add(-a, b, e1, e2)
    else:                                           # mirrored partials, cancelled by the tree
        n = min(P, 4)
        pairs = rng.random() < 0.5                  # p1 = -p0, p3 = -p2 (else p2 = -p0, ...)
        rounds = int(rng.integers(1, 3))            # 2: each partial is a 2-block sum (~24 bits)
        placed = {}
        for rnd in range(rounds):
            for j in range(P):
                src = (j - 1 if j % 2 else None) if pairs else (j - 2 if j >= 2 else None)
                if src is None or j >= n:
                    blk = rand_block()
                    if rnd:                         # the second block a few binades lower
                        # (ea down to MIN_EXP at most, the rest from eb: both stay in range)
                        d = int(rng.integers(5, 9))
                        e1 = max(blk[2] - d, MIN_EXP)
                        blk = (blk[0], blk[1], e1, blk[3] - (d - (blk[2] - e1)))
                else:
                    a, b, e1, e2 = placed[rnd, src]
                    a = -a.copy()
                    if rnd == rounds - 1:           # the last block of the mirror is off by one
                        nz = np.flatnonzero(b)      # residue b[lane]: random, or the smallest
                        lane = int(rng.choice(nz) if rng.random() < 0.5
                                   else nz[np.argmin(np.abs(b[nz]))])
                        a[lane] += 1 if a[lane] < limit else -1
                    blk = (a, b, e1, e2)
                placed[rnd, j] = blk
                add(*blk)
    mbits = [m] * len(ea)
    if mixed:
        modes = [2] * len(ea)
    value = _golden_dot(qa, ea, qb, eb, mbits, P)
    return _dot_beats(qa, qb, ea, eb, modes if mixed else None), (value, 0, 0)


def tree_adders(partials):
    """The adders of :func:`golden.hbfp.dot`'s pairwise tree over ``partials`` partial sums,
    level by level: ``(level, left, right)`` with ``left`` and ``right`` the partial indices
    each input sums (an odd last input is carried up to the next level unchanged)."""
    nodes = [[j] for j in range(partials)]
    adders = []
    level = 0
    while len(nodes) > 1:
        nxt = []
        for j in range(0, len(nodes), 2):
            if j + 1 < len(nodes):
                adders.append((level, nodes[j], nodes[j + 1]))
                nxt.append(nodes[j] + nodes[j + 1])
            else:
                nxt.append(nodes[j])
        nodes, level = nxt, level + 1
    return adders


def tree_cancel_ops(rng, block_size, mant_bits, *, mixed=False, partials=None, shifts=None):
    """Dot products whose sum cancels in one chosen adder of the partial-sum tree, down to a
    residue ``D`` at every bit position: for every adder of :func:`tree_adders` and every shift
    ``s`` in ``shifts`` (default -2..26), the first partial of one input holds a block value
    ``X`` (random sign, a full random block), the first partial of the other input holds
    ``-X + D`` (the block ``-X``, then a one-lane block ``D = k * 2**(u + s)``, ``k`` in
    ``+-1..3``, ``u`` the exponent of ``X``'s last place: ``s < 0`` rounds, ``s = 0`` leaves one
    unit in the last place, large ``s`` no cancellation), every other partial zero. So the
    adder's leading-one search meets the sum's leading one at every position (bits 2..27 of the
    aligned sum, both operand orders) and the adders above it add zeros. 2 .. ``2 P`` blocks per
    dot product. Returns ``(beats, expected)`` like :func:`dot_ops`.
    """
    from sparsehw.golden.hbfp import DEFAULT_PARTIALS, block_dot
    P = DEFAULT_PARTIALS if partials is None else partials
    B, m = block_size, (7 if mixed else mant_bits)
    limit = (1 << m) - 1
    shifts = range(-2, 27) if shifts is None else shifts


    beats, expected = [], []
    for level, left, right in tree_adders(P):
        for s in shifts:
            xa = rng.integers(-limit, limit + 1, B)
            xb = rng.integers(-limit, limit + 1, B)
            xa[0], xb[0] = limit, limit             # a nonzero sum in (almost) every draw
            if rng.random() < 0.5:
                xa = -xa
            e1, e2 = int(rng.integers(-20, 60)), int(rng.integers(-20, 60))
            x = block_dot(xa, e1, xb, e2, m)
            if x == 0:
                continue
            u = _last_place(x)
            i, r = left[0], right[0]
            if rng.random() < 0.5:                  # which input holds X, which -X + D
                i, r = r, i
            K = max(i, r + P) + 1
            qa, qb, ea, eb = _zero_blocks(K, B)
            qa[i], qb[i], ea[i], eb[i] = xa, xb, e1, e2
            qa[r], qb[r], ea[r], eb[r] = -xa, xb, e1, e2
            lane = int(rng.integers(0, B))
            qa[r + P][lane] = int(rng.integers(1, 4)) * (-1) ** int(rng.integers(0, 2))
            qb[r + P][lane] = 1
            ea[r + P], eb[r + P] = _split_exponent(rng, u + s + 2 * m)
            _finish_dot(rng, qa, qb, ea, eb, m, P, mixed, beats, expected)
    return beats, expected


def dense_dot_ops(rng, block_size, mant_bits, lengths, *, mixed=False, partials=None, lo=-4,
                  hi=4):
    """One dot product per entry of ``lengths`` (its number of blocks), every block a full
    random block of values within ``2**lo .. 2**hi`` (quantized by :func:`golden.hbfp.quantize`;
    mixed: a random mode per block), none invalid: every partial sum is used from ``len >= P``
    on and, the values being close, every bit of every partial matters to the result. Returns
    ``(beats, expected)`` like :func:`dot_ops`."""
    from sparsehw.golden.hbfp import DEFAULT_PARTIALS, MODES, quantize
    P = DEFAULT_PARTIALS if partials is None else partials
    B = block_size
    beats, expected = [], []
    for K in lengths:
        K = int(K)
        modes = [int(rng.integers(0, 3)) for _ in range(K)] if mixed else None
        mbits = [MODES[x] for x in modes] if mixed else [mant_bits] * K
        qa, qb, ea, eb = [], [], [], []
        for k in range(K):
            for q, e in ((qa, ea), (qb, eb)):
                mant, exp = quantize(wide_values(rng, B, lo, hi), mbits[k], B)
                q.append(mant[0].astype(np.int64)), e.append(int(exp[0]))
        expected.append((_golden_dot(qa, ea, qb, eb, mbits, P), 0, 0))
        beats += _dot_beats(qa, qb, ea, eb, modes if mixed else None)
    return beats, expected


def nan_partial_ops(rng, block_size, mant_bits, *, mixed=False, partials=None):
    """Dot products in which one partial sum becomes NaN inside the accumulation and then takes
    more blocks: for every partial ``j``, block ``j`` overflows to ``+inf`` (every lane
    ``limit * limit``, ``ea = eb = 127``), block ``j + P`` to ``-inf``, so partial ``j`` is
    ``inf - inf`` = NaN, and block ``j + 2P`` (finite, ``+-inf`` or zero) is added to that NaN
    (the accumulator's operand is a NaN, not only the tree's). The other partials hold finite
    random blocks. Three dot products per partial. Returns ``(beats, expected)`` like
    :func:`dot_ops` (the expected value from :func:`golden.hbfp.dot`: the quiet NaN)."""
    from sparsehw.golden.hbfp import DEFAULT_PARTIALS, MIN_EXP, MODES
    P = DEFAULT_PARTIALS if partials is None else partials
    B = block_size
    beats, expected = [], []
    for j in range(P):
        for third in ("finite", "inf", "zero"):
            K = j + 2 * P + 1 + int(rng.integers(0, P))
            modes = [int(rng.integers(0, 3)) for _ in range(K)] if mixed else None
            mbits = [MODES[x] for x in modes] if mixed else [mant_bits] * K
            qa, qb, ea, eb = [], [], [], []
            for k in range(K):
                limit = (1 << mbits[k]) - 1
                a = rng.integers(-limit, limit + 1, B)
                b = rng.integers(-limit, limit + 1, B)
                e1, e2 = int(rng.integers(-20, 40)), int(rng.integers(-20, 40))
                if k in (j, j + P) or (k == j + 2 * P and third == "inf"):
                    a, b = np.full(B, limit), np.full(B, limit)
                    if k == j + P or (k == j + 2 * P and rng.random() < 0.5):
                        a = -a
                    e1, e2 = 127, 127
                elif k == j + 2 * P and third == "zero":
                    a = np.zeros(B, np.int64)
                    e1 = int(rng.integers(MIN_EXP, 128))
                qa.append(np.asarray(a, np.int64)), qb.append(np.asarray(b, np.int64))
                ea.append(e1), eb.append(e2)
            expected.append((_golden_dot(qa, ea, qb, eb, mbits, P), 0, 0))
            beats += _dot_beats(qa, qb, ea, eb, modes)
    return beats, expected


def tree_sticky_ops(rng, block_size, mant_bits, *, mixed=False, partials=None, reps=2):
    """Dot products whose sum lands on or just off a rounding tie in one chosen adder: the
    accumulator (a partial's first block ``X``, its second block ``Y``) or an adder of the
    partial-sum tree (:func:`tree_adders`, both operand orders). ``X`` is a full random block
    (at most 17 significant bits: its last place ``u`` is 0, even). First ties at every
    alignment: ``Y = S * 2**(u - 1)`` with ``S`` odd (a random block made odd, or one odd
    lane): ``Y``'s last bit is ``X``'s guard, an exact tie (round to even); then, with two
    lanes, ``S = (2t + 1) * 2**k + 1`` and ``Y = S * 2**(u - 1 - k)`` for every ``k`` in
    1..m-1 and every length of ``2t + 1`` in 1..m: a tie broken only by one sticky bit ``k``
    places below the guard, at every alignment. Then, in the tree adders, ``Y`` a one-lane
    block ``S * 2**e`` with ``S`` in 3, 5, 9, 17, ... (up to the mantissa limit), its leading
    one at ``X``'s guard, both signs: only the round bit (``S = 3``) or the single sticky bit
    (``S = 5``: the lowest aligned bit; ``S >= 9``: bits shifted out) breaks the tie. Every
    other partial is zero. Returns ``(beats, expected)`` like :func:`dot_ops`."""
    from sparsehw.golden.hbfp import DEFAULT_PARTIALS, block_dot
    P = DEFAULT_PARTIALS if partials is None else partials
    B, m = block_size, (7 if mixed else mant_bits)
    limit = (1 << m) - 1
    svals = [s for s in (3, 5, 9, 17, 33, 65) if s <= limit]


    beats, expected = [], []

    # (kind, k, bits of 2t + 1): exact ties, then one sticky bit k below the guard with Y's top
    # bits(2t + 1) - 1 above it, every combination (two lanes: B >= 2).
    kinds = [("block", 0, 0)] * 4 + [("lane", 0, 0)] * 4
    if B >= 2:
        kinds += [("sticky", k, tb) for k in range(1, m) for tb in range(1, m + 1)]

    def _ties(i, r, K):
        for kind, k, tb in kinds:
            xa, xb, e1, e2, x = _full_block(rng, B, m)
            if x == 0:
                continue
            u = _last_place(x)
            ya, yb = np.zeros(B, np.int64), np.zeros(B, np.int64)
            lane = int(rng.integers(0, B))
            sign = 1 if rng.random() < 0.5 else -1
            if kind == "block":                     # a random block made odd
                ya = rng.integers(-limit, limit + 1, B)
                yb = rng.integers(-limit, limit + 1, B)
                yb[0] = 1
                if int(ya @ yb) % 2 == 0:
                    ya[0] += 1 if ya[0] < limit else -1
            elif kind == "lane":                    # one odd lane
                ya[lane] = sign * (2 * int(rng.integers(0, (limit + 1) // 2)) + 1)
                yb[lane] = 2 * int(rng.integers(0, (limit + 1) // 2)) + 1
            else:                                   # (2t + 1) * 2**k + 1 in two lanes
                odd = 1 if tb == 1 else 2 * int(rng.integers(1 << (tb - 2), 1 << (tb - 1))) + 1
                ya[lane] = sign * odd
                yb[lane] = 1 << k
                other = (lane + 1) % B
                ya[other], yb[other] = sign, 1
            qa, qb, ea, eb = _zero_blocks(K, B)
            qa[i], qb[i], ea[i], eb[i] = xa, xb, e1, e2
            qa[r], qb[r] = ya, yb
            ea[r], eb[r] = _split_exponent(rng, u - 1 - k + 2 * m)
            _finish_dot(rng, qa, qb, ea, eb, m, P, mixed, beats, expected)

    for level, left, right in tree_adders(P):
        # Exact ties at every alignment: Y = S * 2**(u - 1), S odd (a random block made odd, or
        # one lane), so Y's last bit is X's guard and nothing is below it: round to even.
        # Then ties broken by one sticky bit k places below the guard at every alignment:
        # S = (2t + 1) * 2**k + 1, Y = S * 2**(u - 1 - k).
        for i, r in ((left[0], right[0]), (right[0], left[0])):
            _ties(i, r, max(i, r) + 1)
    # The same in the accumulator: partial j's first block X, its second block Y.
    for j in range(P):
        _ties(j, j + P, j + P + 1)
    for level, left, right in tree_adders(P):
        for s in svals:
            for swap in (False, True):
                for neg in (False, True):
                    for _ in range(reps):
                        xa, xb, e1, e2, x = _full_block(rng, B, m)
                        if x == 0:
                            continue
                        u = _last_place(x)
                        i, r = left[0], right[0]
                        if swap:
                            i, r = r, i
                        K = max(i, r) + 1
                        qa, qb, ea, eb = _zero_blocks(K, B)
                        qa[i], qb[i], ea[i], eb[i] = xa, xb, e1, e2
                        lane = int(rng.integers(0, B))
                        sign = 1 if (x > 0) != neg else -1
                        qa[r][lane], qb[r][lane] = sign * s, 1
                        e = u - 1 - (s.bit_length() - 1)
                        ea[r], eb[r] = _split_exponent(rng, e + 2 * m)
                        _finish_dot(rng, qa, qb, ea, eb, m, P, mixed, beats, expected)
    return beats, expected


def tree_pow2_cancel_ops(rng, block_size, mant_bits, *, mixed=False, partials=None):
    """Dot products that cancel in one chosen adder of the partial-sum tree across a power of
    two: for every adder of :func:`tree_adders`, both operand orders and both signs, the first
    partial of one input holds ``X = +-2**k`` (a one-lane block of powers of two), the first
    partial of the other ``-X + D`` (the block ``-X``, then ``D = d * 2**(u-1)`` of ``X``'s
    sign, ``d`` = 1..7, ``u`` the exponent of ``X``'s last place): just below ``2**k``, in the
    binade under ``X``'s, so the adder's operands are one exponent apart and the sum ``D``
    has its leading one at the lowest bits of the aligned sum (bit 2 for ``d = 1``). Every
    other partial is zero. Returns ``(beats, expected)`` like :func:`dot_ops`."""
    from sparsehw.golden.fp32 import bits
    from sparsehw.golden.hbfp import DEFAULT_PARTIALS, block_dot
    P = DEFAULT_PARTIALS if partials is None else partials
    B, m = block_size, (7 if mixed else mant_bits)
    limit = (1 << m) - 1


    beats, expected = [], []
    for level, left, right in tree_adders(P):
        for swap in (False, True):
            for d in range(1, 8):
                for neg in (False, True):
                    if d > limit:
                        continue
                    i, r = left[0], right[0]
                    if swap:
                        i, r = r, i
                    K = max(i, r + P) + 1
                    qa, qb, ea, eb = _zero_blocks(K, B)
                    lane = int(rng.integers(0, B))
                    sx = -1 if neg else 1
                    qa[i][lane] = sx * (1 << int(rng.integers(0, m)))
                    qb[i][lane] = 1 << int(rng.integers(0, m))
                    ea[i], eb[i] = int(rng.integers(-10, 50)), int(rng.integers(-10, 50))
                    qa[r], qb[r], ea[r], eb[r] = -qa[i], qb[i].copy(), ea[i], eb[i]
                    x = block_dot(qa[i], ea[i], qb[i], eb[i], m)
                    u = _last_place(x)
                    lane = int(rng.integers(0, B))
                    qa[r + P][lane], qb[r + P][lane] = sx * d, 1
                    ea[r + P], eb[r + P] = _split_exponent(rng, u - 1 + 2 * m)
                    _finish_dot(rng, qa, qb, ea, eb, m, P, mixed, beats, expected)
        # X = +-2**k against a full random block Y at every exponent distance 1..26 (either
        # sign): X - |Y| falls below 2**k and normalizes by one bit, where the bits of Y below
        # X's last place (round and sticky, shifted or not) decide the rounding.
        for swap in (False, True):
            for dist in list(range(1, 27)) * 2:
                i, r = left[0], right[0]
                if swap:
                    i, r = r, i
                K = max(i, r) + 1
                qa, qb, ea, eb = _zero_blocks(K, B)
                sx = 1 if rng.random() < 0.5 else -1
                lane = int(rng.integers(0, B))
                qa[i][lane] = sx * (1 << int(rng.integers(0, m)))
                qb[i][lane] = 1 << int(rng.integers(0, m))
                ea[i], eb[i] = int(rng.integers(0, 50)), int(rng.integers(0, 50))
                x = block_dot(qa[i], ea[i], qb[i], eb[i], m)
                ya = rng.integers(-limit, limit + 1, B)
                yb = rng.integers(-limit, limit + 1, B)
                ya[0], yb[0] = limit, limit
                if rng.random() < 0.5:              # or a short odd Y: few bits, then zeros
                    ya, yb = np.zeros(B, np.int64), np.zeros(B, np.int64)
                    ya[int(rng.integers(0, B))] = 2 * int(rng.integers(0, (limit + 1) // 2)) + 1
                    yb[int(np.flatnonzero(ya)[0])] = 2 * int(rng.integers(0, (limit + 1) // 2)) + 1
                y = block_dot(ya, 0, yb, 0, m)
                if y == 0:
                    continue
                # Y's exponent dist below X's: scale by 2**(ex - ey - dist).
                ex = ((bits(x) >> 23) & 0xFF)
                ey = ((bits(y) >> 23) & 0xFF)
                if (y > 0) == (sx > 0) and rng.random() < 0.75:
                    ya = -ya                        # mostly a subtraction
                e = ex - ey - dist
                qa[r], qb[r] = ya, yb
                ea[r], eb[r] = _split_exponent(rng, e)
                _finish_dot(rng, qa, qb, ea, eb, m, P, mixed, beats, expected)
    return beats, expected


def _block_in_binade(rng, block_size, mant_bits, t):
    """A block pair ``(xa, xb, ea, eb)`` whose value (:func:`golden.hbfp.block_dot`) is
    ``+-1.f * 2**t`` (random sign and fraction, as many fraction bits as the exponent range
    leaves), or None when no block value lies in that binade."""
    from sparsehw.golden.hbfp import MIN_EXP
    B, m = block_size, mant_bits
    limit = (1 << m) - 1
    # |S| = |sum(xa * xb)| in [2**s, 2**(s + 1)) and ea + eb - 2m = t - s.
    s_hi = min(int(B * limit * limit).bit_length() - 1, 23, t + 2 * m - 2 * MIN_EXP)
    s_lo = max(0, t + 2 * m - 2 * 127)
    if s_lo > s_hi:
        return None
    s = int(rng.integers(s_lo, s_hi + 1))
    value = int(rng.integers(1 << s, min(1 << (s + 1), B * limit * limit + 1)))
    xa, xb = np.zeros(B, np.int64), np.zeros(B, np.int64)
    rest = value
    for k in rng.permutation(B):           # lanes in random order, each a*b <= what is left
        if rest == 0:
            break
        b = int(rng.integers(1, limit + 1))
        a = min(limit, rest // b)
        if a == 0:
            a, b = 1, rest
        xa[k], xb[k] = a, b
        rest -= a * b
    if rest:                                # (random lane factors did not fit: fill up)
        return _block_in_binade(rng, block_size, mant_bits, t)
    if rng.random() < 0.5:
        xa = -xa
    e1, e2 = _split_exponent(rng, t - s + 2 * m)
    return xa, xb, e1, e2


def tree_binade_ops(rng, block_size, mant_bits, *, mixed=False, partials=None, binades=6):
    """Dot products that put each input of every adder of the partial-sum tree in the lowest
    binades a block value reaches and in ``[2, 4)``: for every adder of :func:`tree_adders`,
    each input in turn sums to a value ``X`` of binade ``2**t`` (one block in its first partial,
    or two whose sum stays in that binade: the accumulator's operand is then in it too), the
    other input to a value
    within two binades of ``X`` or to zero, every other partial zero. ``t`` runs over the
    ``binades`` lowest binades (from ``2**(2 * MIN_EXP - 2m)``, the value of ``S = 1``: exponent
    fields 61..66 at ``m = 7``, among them 64 = 0b1000000) and ``t = 1`` (field 128): so each
    adder operand's hidden bit (the OR of its exponent field) meets every field with a single
    bit set that the format reaches. Returns ``(beats, expected)`` like :func:`dot_ops`."""
    from sparsehw.golden.hbfp import DEFAULT_PARTIALS, MIN_EXP, block_dot
    P = DEFAULT_PARTIALS if partials is None else partials
    B, m = block_size, (7 if mixed else mant_bits)
    low = 2 * MIN_EXP - 2 * m
    beats, expected = [], []
    for level, left, right in tree_adders(P):
        for i, r in ((left[0], right[0]), (right[0], left[0])):
            for t in [*range(low, low + binades), 1]:
                K = max(i, r) + 1
                qa, qb, ea, eb = _zero_blocks(K + P, B)
                qa[i], qb[i], ea[i], eb[i] = _block_in_binade(rng, B, m, t)
                # A second block in X's partial (when the sum stays in X's binade).
                second = _block_in_binade(rng, B, m, t - int(rng.integers(0, 3)))
                if second is not None:
                    x = np.float32(block_dot(qa[i], ea[i], qb[i], eb[i], m)
                                   + block_dot(second[0], second[2], second[1], second[3], m))
                    if x != 0 and int(np.floor(np.log2(abs(float(x))))) == t:
                        qa[i + P], qb[i + P], ea[i + P], eb[i + P] = second
                        K = i + P + 1
                other = _block_in_binade(rng, B, m, t + int(rng.integers(-2, 3)))
                if other is not None and rng.random() < 0.8:
                    qa[r], qb[r], ea[r], eb[r] = other
                qa, qb, ea, eb = qa[:K], qb[:K], ea[:K], eb[:K]
                _finish_dot(rng, qa, qb, ea, eb, m, P, mixed, beats, expected)
    return beats, expected


def _top_binade_block(rng, block_size, mant_bits, sign):
    """A one-lane block pair whose value is ``sign * X`` with ``X`` in ``[2**127, 2**128)``
    (the top binade of float32, finite): ``(qa, qb, ea, eb)``."""
    limit = (1 << mant_bits) - 1
    a = np.zeros(block_size, np.int64)
    b = np.zeros(block_size, np.int64)
    lane = int(rng.integers(0, block_size))
    a[lane], b[lane] = sign * limit, int(rng.integers(limit // 2 + 1, limit + 1))
    n = int(a[lane] * b[lane]).__abs__().bit_length()
    e1, e2 = _split_exponent(rng, 128 - n + 2 * mant_bits)
    return a, b, e1, e2


def _inf_block(block_size, mant_bits, sign):
    """A block pair whose value overflows to ``sign * inf`` (every lane ``limit * limit``,
    ``ea = eb = 127``): ``(qa, qb, ea, eb)``."""
    limit = (1 << mant_bits) - 1
    return (np.full(block_size, sign * limit, np.int64), np.full(block_size, limit, np.int64),
            127, 127)


def tree_inf_ops(rng, block_size, mant_bits, *, mixed=False, partials=None):
    """Dot products with an infinity on one input of an FP32 adder and, on its other input, the
    opposite infinity or a finite value of the opposite sign in the top binade (``[2**127,
    2**128)``, which, were the infinity taken for a number, ``2**128``, would leave a finite
    sum): for every adder of :func:`tree_adders`, one partial of each input (a random one of
    the partials it sums) holds such a value, every other partial zero, both operand orders,
    both signs; so each tree adder's infinity test of each input decides the result
    (``inf - big = inf``, ``inf - inf = NaN``). The same for each partial's accumulator: block
    ``j`` and block ``j + P`` (``inf`` then ``-big``, ``-big`` then ``inf``). Returns
    ``(beats, expected)`` like :func:`dot_ops`."""
    from sparsehw.golden.hbfp import DEFAULT_PARTIALS
    P = DEFAULT_PARTIALS if partials is None else partials
    B, m = block_size, (7 if mixed else mant_bits)
    beats, expected = [], []

    def value(kind, sign):
        return _inf_block(B, m, sign) if kind == "inf" else _top_binade_block(rng, B, m, sign)

    pairs = [("inf", "big"), ("big", "inf"), ("inf", "inf")]
    for level, left, right in tree_adders(P):
        for kl, kr in pairs:
            for sign in (1, -1):
                i = left[int(rng.integers(0, len(left)))]
                r = right[int(rng.integers(0, len(right)))]
                qa, qb, ea, eb = _zero_blocks(P, B)
                qa[i], qb[i], ea[i], eb[i] = value(kl, sign)
                qa[r], qb[r], ea[r], eb[r] = value(kr, -sign)
                _finish_dot(rng, qa, qb, ea, eb, m, P, mixed, beats, expected)
    for j in range(P):
        for kf, ks in pairs[:2]:
            sign = 1 if rng.random() < 0.5 else -1
            qa, qb, ea, eb = _zero_blocks(j + P + 1, B)
            qa[j], qb[j], ea[j], eb[j] = value(kf, sign)
            qa[j + P], qb[j + P], ea[j + P], eb[j + P] = value(ks, -sign)
            _finish_dot(rng, qa, qb, ea, eb, m, P, mixed, beats, expected)
    return beats, expected


def _chunk_block(value, block_size, mant_bits):
    """A block pair whose integer sum is ``value`` (``0 <= value <= block_size * limit``): ``b``
    all ones, ``a`` the value spread over the lanes, each at most the mantissa limit."""
    limit = (1 << mant_bits) - 1
    a = np.zeros(block_size, np.int64)
    for lane in range(block_size):
        a[lane] = min(limit, value)
        value -= int(a[lane])
    assert value == 0
    return a, np.ones(block_size, np.int64)


def accumulator_wide_sticky_ops(rng, block_size, mant_bits, *, mixed=False, partials=None,
                                shifts=range(2, 24)):
    """Dot products whose last block meets, in its partial's accumulator, a partial sum with
    all 24 significant bits as the smaller operand, ``d`` binades below it (``d`` in
    ``shifts``): the partial sum ``p`` (bit 23 set) is built exactly from chunks of a few bits
    (one block each, largest first), then the block ``+-2**(e + d)`` arrives, ``e`` the exponent
    of ``p``'s leading bit. ``p``'s bits ``d - 1 .. 0`` are ``1 0...0 1`` and its bit ``d`` (the
    sum's last kept bit) is 0: the shifted-out part is just over half an ulp only because of
    ``p``'s last bit, so the sum rounds up only if the alignment counts that bit as sticky
    (an exact tie would round down to even). A block value has too few significant bits to
    put a one there; only an accumulated partial can. Every shift in every partial for
    ``d <= 8`` (the shifts of the alignment's first sticky-mask entries), every shift once
    (in partial ``d mod P``) beyond; random signs; every other block zero. Returns
    ``(beats, expected)`` like :func:`dot_ops`."""
    from sparsehw.golden.hbfp import DEFAULT_PARTIALS, block_dot
    P = DEFAULT_PARTIALS if partials is None else partials
    B, m = block_size, (7 if mixed else mant_bits)
    chunk_bits = (((1 << m) - 1) * B + 1).bit_length() - 1  # every chunk value is a block sum
    beats, expected = [], []
    cases = [(j, d) for d in shifts for j in (range(P) if d <= 8 else (d % P,))]
    for j, d in cases:
        p = int(rng.integers(0, 1 << 24)) | (1 << 23) | (1 << (d - 1)) | 1
        p &= ~(1 << d) & ~(((1 << (d - 1)) - 1) & ~1)
        sign = 1 if rng.random() < 0.5 else -1
        base = int(rng.integers(-30, 31))                   # p's last place: 2**base
        pieces = [((p >> pos) & ((1 << chunk_bits) - 1), pos)
                  for pos in range(0, 24, chunk_bits)][::-1]
        K = j + P * len(pieces) + 1
        qa, qb, ea, eb = _zero_blocks(K, B)
        for n, (value, pos) in enumerate(pieces):
            k = j + P * n
            qa[k], qb[k] = _chunk_block(value, B, m)
            qa[k] = sign * qa[k]
            ea[k], eb[k] = _split_exponent(rng, base + pos + 2 * m)
        lane = int(rng.integers(0, B))
        qa[K - 1][lane], qb[K - 1][lane] = sign, 1
        ea[K - 1], eb[K - 1] = _split_exponent(rng, base + 23 + d + 2 * m)
        # the case is what it claims: p's last bit alone moves the rounded sum
        last = block_dot(qa[K - 1], ea[K - 1], qb[K - 1], eb[K - 1], m)
        assert (np.float32(sign * p * 2.0 ** base) + last
                != np.float32(sign * (p - 1) * 2.0 ** base) + last)
        _finish_dot(rng, qa, qb, ea, eb, m, P, mixed, beats, expected)
    return beats, expected
