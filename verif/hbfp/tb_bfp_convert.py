"""cocotb regression of ``bfp_convert`` against :func:`golden.hbfp.quantize`."""

import cocotb
import numpy as np

from sparsehw.golden.hbfp import INVALID_EXP, exponent_table, quantize
from sparsehw.hw.hbfp import BFP_CONVERT_PARAMS, bfp_out_layout
from sparsehw.verif import common
from sparsehw.verif.hbfp.cover import BfpConvertCoverage
from sparsehw.verif.hbfp.vectors import (binade_tie_blocks, corner_blocks, eps_boundary_blocks,
                                         lane_special_blocks, lane_tie_blocks, wide_values)
from sparsehw.verif.stream import collect, compare, endpoints, start, unpack


def _bits(words):
    return np.asarray(words, np.uint32).view(np.float32)


def threshold_blocks(rng, block_size):
    """The shared exponent's comparisons (golden.hbfp.exponent_table): a block maximum with
    every biased exponent 95..130 (and 0, 1, 253, 254) at fraction ``thr - 1`` and ``thr`` of
    its binade's threshold, and 0, 1, the top fraction; the maximum moves through the lanes
    with either sign, the other lanes random below it."""
    _, thr = exponent_table()
    tops = []
    for b in list(range(95, 131)) + [0, 1, 253, 254]:
        fracs = {0, 1, (1 << 23) - 1} | {f for f in (thr[b] - 1, thr[b]) if 0 <= f < 1 << 23}
        tops += [(b << 23) | f for f in sorted(fracs)]
    return _blocks_with_maxima(rng, block_size, tops)


def _blocks_with_maxima(rng, block_size, tops):
    """One block per maximum in ``tops`` (float32 bit patterns): the maximum in lane ``i mod
    block_size`` of the ``i``-th block, negative on every other pass through the lanes, the other
    lanes random below it."""
    blocks = []
    for i, top in enumerate(tops):
        blk = _bits(top) * wide_values(rng, block_size, -12, 0)
        blk[i % block_size] = _bits(top) * (-1) ** (i // block_size)
        blocks.append(blk.astype(np.float32))
    return blocks


def threshold_bit_blocks(rng, block_size):
    """Every threshold comparison of the shared exponent decided by one fraction bit: for every
    binade ``B`` whose threshold is a general constant (``0 < thr[B] < 2**23``) and every bit
    ``i`` of the fraction, the largest ``f < thr[B]`` with bit ``i`` clear that bit ``i`` lifts to
    ``thr[B]`` or above (when there is one), and ``f`` with bit ``i`` set: the maximum's fraction
    on either side of the boundary, one bit apart. The maximum moves through the lanes with
    either sign, the other lanes random below it."""
    _, thr = exponent_table()
    tops = []
    for b in range(255):
        if not 0 < thr[b] < 1 << 23:
            continue
        fracs = set()
        for bit in range(23):
            f = thr[b] - 1
            if f >> bit & 1:                    # clear the bit, set every bit below it
                f = (f & ~((2 << bit) - 1)) | ((1 << bit) - 1)
            if f + (1 << bit) >= thr[b]:
                fracs |= {f, f | 1 << bit}
        tops += [(b << 23) | f for f in sorted(fracs)]
    return _blocks_with_maxima(rng, block_size, tops)


def max_tree_blocks(rng, block_size):
    """Every comparison of the maximum tree decided by one bit: at every node, two lanes (one
    from each subtree, rotating) hold ``M`` and ``M`` with bit ``i`` set (``i`` = 0..30), whose
    shared exponents differ (``M = 2**k`` for a fraction bit; exponent fields 128 or 110 for an
    exponent bit), the larger one on each side in turn; the other lanes are smaller."""
    blocks = []
    level = 1
    while (1 << level) <= block_size:
        half = 1 << (level - 1)
        for node in range(block_size >> level):
            for i, flip in [(i, flip) for i in range(31) for flip in (0, 1)]:
                if i < 23:
                    m1 = int(rng.choice([125, 127, 130, 150, 200])) << 23   # 2**k, k >= -2
                else:
                    m1 = (110 if i == 30 else 128) << 23
                m2 = m1 | (1 << i)
                left = node * (1 << level) + i % half
                right = node * (1 << level) + half + (i + 1) % half
                blk = wide_values(rng, block_size, -12, -4) * _bits(m1)
                big, small = (left, right) if flip else (right, left)
                blk[big], blk[small] = _bits(m2), _bits(m1)
                if rng.random() < 0.5:
                    blk[big] = -blk[big]
                blocks.append(blk.astype(np.float32))
        level += 1
    return blocks


def sticky_blocks(rng, block_size, mant_bits):
    """A rounding tie broken by one sticky bit, at every alignment ``d`` (1..m+1 binades below
    the maximum 1.75, exponent 1) and every sticky position (each window bit below the guard,
    and a bit below the window), in every lane (the maximum's lane rotates); the kept bits
    even, so only the sticky bit rounds up. Random signs, random kept bits above."""
    m, B = mant_bits, block_size
    blocks = []
    for d in range(1, m + 2):
        for p in range(-1, d):
            for r in range(B):
                blk = np.zeros(B, np.float32)
                for j in range(B):
                    w = (1 << (m + 1)) | (1 << d)                       # hidden bit, guard
                    if d + 2 <= m + 1:                                 # random kept bits > 0
                        w |= int(rng.integers(0, 1 << (m + 1 - d - 1))) << (d + 2)
                    lo = 0
                    if p >= 0:
                        w |= 1 << p
                    else:
                        lo = 1 << int(rng.integers(0, 22 - m))
                    frac = ((w & ((1 << (m + 1)) - 1)) << (22 - m)) | lo
                    word = ((128 - d) << 23) | frac | (int(rng.integers(0, 2)) << 31)
                    blk[j] = _bits(word)
                blk[r] = 1.75 * (-1) ** r
                blocks.append(blk)
    return blocks


@cocotb.test()
async def blocks_match_golden_with_stalls(dut):
    """Corner blocks, ties at every alignment shift in every lane (exact, one sticky bit, random
    sticky bits), maxima around ``2**k - 1e-8`` (the shared exponent's boundary; each threshold
    comparison decided by each fraction bit), specials (NaN, Inf, subnormal, saturation, a
    maximum just above a power of two) in every lane, wide-range values (2**-40..2**40),
    huge+tiny, random bit patterns."""
    p = common.params(BFP_CONVERT_PARAMS)
    block_size, m = p["block_size"], p["mant_bits"]
    wl = common.workload()
    rng = np.random.default_rng(common.rng(1).getrandbits(32))
    n = int(wl.get("blocks", 300))
    blocks = corner_blocks(rng, block_size) + lane_tie_blocks(block_size, m)
    blocks += binade_tie_blocks(rng, block_size, m) + lane_special_blocks(rng, block_size, m)
    blocks += eps_boundary_blocks(rng, block_size)
    blocks += threshold_blocks(rng, block_size) + max_tree_blocks(rng, block_size)
    blocks += sticky_blocks(rng, block_size, m)
    blocks += list(wide_values(rng, (n, block_size)))
    huge_tiny = wide_values(rng, (n // 4, block_size), -40, -30)
    huge_tiny[:, 0] = wide_values(rng, n // 4, 30, 40)
    blocks += list(huge_tiny)
    raw = rng.integers(0, 1 << 32, (n // 4, block_size), dtype=np.uint64).astype(np.uint32)
    blocks += list(raw.view(np.float32))                 # every exponent, subnormals, NaN, Inf
    blocks = [np.asarray(x, np.float32) for x in blocks]
    order = rng.permutation(len(blocks))
    blocks = [blocks[i] for i in order]
    # (after the shuffle, from a generator of their own: the blocks above stay as they were)
    blocks += threshold_bit_blocks(np.random.default_rng(common.rng(3).getrandbits(32)),
                                   block_size)

    await start(dut, sources=("i",), sinks=("o",))
    layout = bfp_out_layout(block_size, m)
    stall = float(wl.get("stall", 0.3))
    src, sink = endpoints(dut, "i", "o", stall=stall, salt=2)
    src.send_nowait(sum(int(v) << (32 * k) for k, v in enumerate(x.view(np.uint32)))
                    for x in blocks)
    got = await collect(sink, len(blocks), decode=lambda bits: unpack(layout, bits))
    want = []
    for x in blocks:
        q, e = quantize(x, m, block_size)
        want.append({"mant": [int(v) for v in q[0]], "exp": int(e[0]),
                     "invalid": int(e[0] == INVALID_EXP)})
    compare(got, want, what="block", show=5,
            describe=lambda i, g, w: f"{blocks[i].view(np.uint32)}: got {g}, want {w}")
    cov = BfpConvertCoverage.get(block_size, m)
    for x, w in zip(blocks, want):
        cov.sample([int(v) for v in x.view(np.uint32)], w["exp"])
    cov.report(dut._log, i=src, o=sink)
    common.record(blocks=len(blocks), cycles=sink.last_cycle + 1)
