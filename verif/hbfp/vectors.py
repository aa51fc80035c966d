"""Stimulus generators for the HBFP family testbenches (plain numpy, seeded)."""

import numpy as np

from sparsehw.golden.fp32 import from_bits


__all__ = ["fp32_mac_vectors", "wide_values", "corner_blocks"]


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
    k = max(1, count // 8)
    # 1. fully random bit patterns (all exponents, NaN/Inf rare)
    parts.append([rng.integers(0, 1 << 32, k, dtype=np.uint64).astype(np.uint32) for _ in range(3)])
    # 2. moderate exponents: c near a*b for massive cancellation
    a = _rand_bits(rng, k, 110, 144)
    b = _rand_bits(rng, k, 110, 144)
    p = from_bits(a).astype(np.float64) * from_bits(b).astype(np.float64)
    c = (-p * (1 + rng.integers(-4, 5, k) * 2.0 ** -23)).astype(np.float32).view(np.uint32)
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
    # 8. specials crossed with random values
    rest = count - 7 * k
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
    from sparsehw.golden.fp32 import QNAN, bits, canonical
    from sparsehw.golden.hbfp import DEFAULT_PARTIALS, INVALID_EXP, MODES, dot, quantize
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
                elif kind == 1:     # exponent outside -26..128
                    e1 = int(rng.choice([-27, 129, 255, -256]))
                else:               # mode 3 does not exist
                    modes[k] = 3
                err = True
            qa.append(a), qb.append(b), ea.append(e1), eb.append(e2), errors.append(err)
        invalid = any(e == INVALID_EXP for e in ea + eb)
        error = any(errors)
        if error or invalid:
            value = QNAN
        else:
            value = canonical(bits(dot(np.array(qa), np.array(ea), np.array(qb), np.array(eb),
                                       mbits, partials)))
        expected.append((value, int(invalid), int(error)))
        for k in range(k_blocks):
            beat = {"a": [int(v) for v in qa[k]], "b": [int(v) for v in qb[k]],
                    "ea": ea[k], "eb": eb[k], "last": int(k == k_blocks - 1)}
            if mixed:
                beat["mode"] = modes[k]
            beats.append(beat)
    return beats, expected
