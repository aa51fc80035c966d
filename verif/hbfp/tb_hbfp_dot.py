"""cocotb regression of ``hbfp_dot`` against :func:`golden.hbfp.dot`."""

import cocotb
import numpy as np

from sparsehw.hw.hbfp import DOT_OUT_LAYOUT, HBFP_DOT_PARAMS, dot_in_layout
from sparsehw.verif import common
from sparsehw.verif.hbfp.cover import HbfpDotCoverage
from sparsehw.verif.hbfp.vectors import (accumulation_ops, dense_dot_ops, dot_ops,
                                         malformed_every_lane, nan_partial_ops,
                                         tree_binade_ops, tree_cancel_ops, tree_inf_ops,
                                         tree_pow2_cancel_ops, tree_sticky_ops,
                                         accumulator_wide_sticky_ops)
from sparsehw.verif.stream import (StreamSink, StreamSource, collect, compare, endpoints, pack,
                                   start, unpack)


def _params():
    return common.params(HBFP_DOT_PARAMS)


def _same(got, want):
    value, invalid, error = want
    # Bit for bit: a NaN must be the canonical 0x7FC00000 (the expected values are canonical).
    return got["value"] == value and got["invalid"] == invalid and got["error"] == error


async def _check(dut, beats, expected, stall, salt, *, sink_stall=None):
    """Stream ``beats`` in and compare the results; ``stall`` on both ports, or, with
    ``sink_stall``, ``stall`` on the input and ``sink_stall`` on the output."""
    p = _params()
    layout = dot_in_layout(p["block_size"], p["mant_bits"], bool(p["mixed"]))
    await start(dut, sources=("i",), sinks=("o",))
    if sink_stall is None:
        src, sink = endpoints(dut, "i", "o", stall=stall, salt=salt)
    else:
        src = StreamSource(dut, "i", rng=common.rng(salt), stall=stall)
        sink = StreamSink(dut, "o", rng=common.rng(salt + 1), stall=sink_stall)
    src.send_nowait(pack(layout, beat) for beat in beats)
    got = await collect(sink, len(expected), timeout_cycles=40 * len(beats) + 100,
                        decode=lambda bits: unpack(DOT_OUT_LAYOUT, bits))
    compare(got, expected, same=_same, what="dot product",
            describe=lambda i, g, w: (f"dot {i}: got {g}, want value={w[0]:#010x} "
                                      f"invalid={w[1]} error={w[2]}"))
    assert len(sink.items) == len(expected)
    cov = HbfpDotCoverage.get(p["block_size"], p["mant_bits"], bool(p["mixed"]),
                              p["add_stages"] + 1)
    cov.sample(beats, expected)
    cov.report(dut._log, i=src, o=sink)
    return sink


@cocotb.test()
async def dot_products_match_golden_with_stalls(dut):
    """Random multi-block dot products (some longer than the partial sums), wide exponent range,
    invalid blocks, the accumulation's corner cases (a NaN partial sum taking more blocks
    among them), random stalls."""
    p = _params()
    wl = common.workload()
    rng = np.random.default_rng(common.rng(1).getrandbits(32))
    beats, expected = dot_ops(rng, p["block_size"], p["mant_bits"], mixed=bool(p["mixed"]),
                              partials=p["add_stages"] + 1, ops=int(wl.get("ops", 120)))
    # Longer dot products: every partial sum accumulates several blocks before the tree.
    more, more_expected = dot_ops(rng, p["block_size"], p["mant_bits"], mixed=bool(p["mixed"]),
                                  partials=p["add_stages"] + 1, ops=int(wl.get("ops", 120)) // 4,
                                  max_blocks=2 * (p["add_stages"] + 1) + 2)
    beats, expected = beats + more, expected + more_expected
    # The accumulation itself: every alignment distance, rounding ties in the partials and the
    # tree, exact and near cancellation (within a partial and across the tree), overflow.
    more, more_expected = accumulation_ops(rng, p["block_size"], p["mant_bits"],
                                           mixed=bool(p["mixed"]), partials=p["add_stages"] + 1,
                                           ops=int(wl.get("ops", 120)) * 4 // 3)
    beats, expected = beats + more, expected + more_expected
    # A partial sum that is NaN (inf - inf) inside the accumulation and then takes more blocks:
    # the accumulator's own NaN operand, in every partial.
    more, more_expected = nan_partial_ops(rng, p["block_size"], p["mant_bits"],
                                          mixed=bool(p["mixed"]), partials=p["add_stages"] + 1)
    beats, expected = beats + more, expected + more_expected
    sink = await _check(dut, beats, expected, float(wl.get("stall", 0.3)), 2)
    common.record(blocks=len(beats), dot_products=len(expected), cycles=sink.last_cycle + 1)


@cocotb.test()
async def malformed_data_is_flagged(dut):
    """Out-of-range mantissas, exponents and (mixed) modes raise ``error`` and give NaN."""
    p = _params()
    rng = np.random.default_rng(common.rng(5).getrandbits(32))
    beats, expected = dot_ops(rng, p["block_size"], p["mant_bits"], mixed=bool(p["mixed"]),
                              partials=p["add_stages"] + 1, ops=60, p_malformed=0.3)
    assert any(e[2] for e in expected) and not all(e[2] for e in expected)
    await _check(dut, beats, expected, 0.2, 6)


@cocotb.test()
async def malformed_mantissa_in_every_lane_of_both_operands(dut):
    """The out-of-range mantissa (-2**m; mixed: +-(limit+1) of each mode) in every lane of ``a``
    and of ``b``, each dot product followed by a well-formed one that must be exact."""
    p = _params()
    rng = np.random.default_rng(common.rng(7).getrandbits(32))
    beats, expected = malformed_every_lane(rng, p["block_size"], p["mant_bits"],
                                           mixed=bool(p["mixed"]), partials=p["add_stages"] + 1)
    await _check(dut, beats, expected, 0.2, 8)


@cocotb.test()
async def tree_cancellation_at_full_rate_under_back_pressure(dut):
    """Every adder of the partial-sum tree cancels down to a residue at every bit position
    (:func:`verif.hbfp.vectors.tree_cancel_ops`: the leading-one search of each tree adder meets
    every position), then dense dot products of 1 .. 2P - 1 blocks, then rounding ties in every
    adder (:func:`verif.hbfp.vectors.tree_sticky_ops`) and cancellation across a power of two in
    every tree adder (:func:`verif.hbfp.vectors.tree_pow2_cancel_ops`), every adder's inputs in the
    lowest binades and in [2, 4) (:func:`verif.hbfp.vectors.tree_binade_ops`), an infinity
    against the opposite infinity or a top-binade finite value of the opposite sign in every
    adder and accumulator (:func:`verif.hbfp.vectors.tree_inf_ops`), a full-width partial sum
    whose last bit alone breaks a tie in its accumulator
    (:func:`verif.hbfp.vectors.accumulator_wide_sticky_ops`); the input at full
    rate and the output stalled 70% of the time, so the whole pipeline (every partial, tree and
    delay register) holds live data of several dot products while it is stalled."""
    p = _params()
    rng = np.random.default_rng(common.rng(9).getrandbits(32))
    P = p["add_stages"] + 1
    beats, expected = tree_cancel_ops(rng, p["block_size"], p["mant_bits"],
                                      mixed=bool(p["mixed"]), partials=P)
    # 90 dot products of 1 .. 2P - 1 blocks at full rate: the end of each trails the previous
    # ones' by the sum of their lengths, so while a result waits at the output (stalled 70% of
    # the time), live dot products sit at every depth of the accumulation and the tree, each
    # depth about ten times. Values within a few binades: every bit of every partial matters.
    more, more_expected = dense_dot_ops(rng, p["block_size"], p["mant_bits"],
                                        rng.integers(1, 2 * P, 90), mixed=bool(p["mixed"]),
                                        partials=P)
    beats, expected = beats + more, expected + more_expected
    # Then, each generator over every tree adder (and the accumulator): rounding ties at every
    # alignment, exact or broken only by the round bit or a single sticky bit of the smaller
    # input (tree_sticky_ops); cancellation across a power of two, operands one binade apart,
    # normalization by one bit (tree_pow2_cancel_ops); inputs (and the accumulator's operand)
    # in the lowest binades a block value reaches and in [2, 4), each single-bit exponent field
    # in reach, 64 at m = 7, and 128 (tree_binade_ops); an infinity on one input, the other the
    # opposite infinity or a finite value of the opposite sign in the top binade, so each
    # adder's infinity test of each input decides the result (tree_inf_ops); a 24-bit partial
    # sum as the accumulator's smaller operand whose last bit alone breaks the rounding tie of
    # the next block's sum, at every alignment: the sticky mask over the operand's last
    # significand bit (accumulator_wide_sticky_ops).
    for ops in (tree_sticky_ops, tree_pow2_cancel_ops, tree_binade_ops, tree_inf_ops,
                accumulator_wide_sticky_ops):
        more, more_expected = ops(rng, p["block_size"], p["mant_bits"], mixed=bool(p["mixed"]),
                                  partials=P)
        beats, expected = beats + more, expected + more_expected
    await _check(dut, beats, expected, 0.0, 10, sink_stall=0.7)
