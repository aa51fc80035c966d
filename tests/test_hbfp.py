# amaranth: UnusedElaboratable=no
"""HBFP family: golden model rules, parameter errors, Amaranth quick checks, cocotb regressions."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sparsehw.golden.fp32 import bits
from sparsehw.golden.hbfp import (DEFAULT_PARTIALS, INVALID_EXP, block_dot, dequantize, dot, fp32_from_scaled_int,
                         quantize, shared_exponents, exponent_table, table_exponents)
from sparsehw.hw.hbfp import BFP_CONVERT_PARAMS, HBFP_DOT_PARAMS, BfpConvert, HbfpDot
from sparsehw.families.hbfp import BLOCKS


f32 = np.float32


# -- golden model: the rules of the issue, case by case ------------------------------------------

def test_power_of_two_at_least_quarter_saturates():
    for v, e in [(1.0, 0), (0.5, -1), (0.25, -2), (2.0 ** 20, 20), (-4.0, 2)]:
        q, ex = quantize([v, 0, 0, 0], 7, 4)
        assert ex[0] == e
        assert q[0, 0] == math.copysign(127, v)
    assert dequantize(*quantize([1.0], 7, 1), 7, 1)[0] == f32(127 / 128)


def test_small_power_of_two_gets_exponent_bump():
    q, e = quantize([0.125, 0, 0, 0], 7, 4)
    assert e[0] == -2 and q[0, 0] == 64
    q, e = quantize([2.0 ** -20], 3, 1)
    assert e[0] == -19 and q[0, 0] == 4


def test_all_zero_block_and_signed_zeros():
    q, e = quantize([0.0, -0.0, 0.0], 5, 3)
    assert e[0] == -26 and not q.any()


def test_invalid_blocks():
    x = np.array([1.0, np.nan, 2.0, 3.0, np.inf, 0, -np.inf, 0, 3.4e38, 1, 2.0 ** 127, 0],
                 np.float32)
    q, e = quantize(x, 7, 2)
    assert list(e) == [INVALID_EXP, 2, INVALID_EXP, INVALID_EXP, INVALID_EXP, 127]
    assert not q[0].any() and not q[2].any()
    d = dequantize(q, e, 7, 2)
    assert np.isnan(d[:2]).all() and not np.isnan(d[2:4]).any() and np.isnan(d[4:10]).all()
    assert block_dot(q[0], e[0], q[1], e[1], 7) != block_dot(q[0], e[0], q[1], e[1], 7)


def test_short_tail_is_zero_padded():
    q, e = quantize([1.0, 2.0, 3.0, 0.5, 0.25], 7, 4)
    assert q.shape == (2, 4) and list(q[1]) == [127, 0, 0, 0] and e[1] == -2


def test_ties_round_half_even_both_signs():
    lsb = 2.0 ** (1 - 7)                         # block max 1.75 -> e = 1
    x = [1.75, 0.5 * lsb, -0.5 * lsb, 1.5 * lsb, -1.5 * lsb, 2.5 * lsb, -2.5 * lsb, 0]
    q, e = quantize(x, 7, 8)
    assert e[0] == 1
    assert list(q[0]) == [112, 0, 0, 2, -2, 2, -2, 0]


def test_exponent_definition_near_powers_of_two():
    for k in range(-20, 120, 7):
        for v, want in [(2.0 ** k, k if 2.0 ** k >= 0.25 else k + 1),
                        (np.nextafter(f32(2.0 ** k), f32(np.inf)), k + 1)]:
            e, inv = shared_exponents(np.array([[v]], np.float32))
            assert e[0] == want and not inv[0], (k, v)


def _table_vs_addition(biased, fracs):
    """Mismatches of the comparison rule (exponent_table) against the float32 addition
    (shared_exponents) for the maxima with biased exponent ``biased`` and fractions ``fracs``."""
    bits_ = (np.uint32(biased) << 23) | np.asarray(fracs, np.uint32)
    want, _ = shared_exponents(bits_.view(np.float32)[:, None])
    got = table_exponents(bits_)
    return bits_[got != want]


def test_exponent_table_equals_the_float32_addition():
    """The shared exponent's comparison rule (what the RTL computes) equals the float32
    addition ``max + 1e-8`` then exact ``ceil(log2)``: every binade, its edges, the fractions
    around its threshold and random ones; every fraction of the binades where the rule changes
    (the slow test below covers all 2**31 finite maxima)."""
    rng = np.random.default_rng(7)
    _, thr = exponent_table()
    for b in range(255):
        t = thr[b]
        fracs = {0, 1, 2, 3, 1 << 22, (1 << 23) - 2, (1 << 23) - 1}
        fracs |= {f for f in range(t - 300, t + 300) if 0 <= f < 1 << 23}
        fracs |= set(rng.integers(0, 1 << 23, 1000).tolist())
        assert _table_vs_addition(b, sorted(fracs)).size == 0, b
    for b in (99, 101, 122):
        assert _table_vs_addition(b, np.arange(1 << 23)).size == 0, b


@pytest.mark.slow
def test_exponent_table_equals_the_float32_addition_exhaustively():
    for b in range(255):
        assert _table_vs_addition(b, np.arange(1 << 23)).size == 0, b


def test_exponent_table_closed_form_by_hand():
    """Spot values of the module docstring's rule, derived by hand: 1e-8 = 0xABCC77 * 2**-50."""
    base, thr = exponent_table()
    assert (base[127], thr[127]) == (0, 1)                 # 1.0 -> 0, 1.0000001 -> 1
    assert (base[124], thr[124]) == (-2, 1 << 23)          # 0.125 .. 0.25: always -2
    assert (base[100], thr[100]) == (-26, 0)               # 2**-27 .. 2**-26: always -25
    assert (base[99], thr[99]) == (-26, 0x286715)          # 3 * 2**23 + 3 - 2 * 0xABCC77
    assert thr[101] == (1 << 23) + 2 - 5629500             # ceil(0xABCC77 / 2)
    assert table_exponents([0, 1, 0x3F800000, 0x3F800001, 0x7F000001]).tolist() == \
        [-26, -26, 0, 1, 128]


def _emulator_exponent(amax):
    """HBFPEmulator's exponent ``ceil(log2(max + eps))`` with a float32 log2, taken as
    correctly rounded (float64 log2 rounded to float32; the margins here are >= 4% of an ulp)."""
    s = (np.asarray(amax, np.float32) + np.float32(1e-8)).astype(np.float32)
    return np.ceil(np.log2(s.astype(np.float64)).astype(np.float32)).astype(np.int64)


def test_emulator_corner_0x43800001_and_0x44800001():
    """The issue's corners: our exponent is exact (9, 11) and the maximum stays 256.0, 1024.0;
    the emulator's float32 log2 gives 8, 10 and saturates the maximum to 254.0, 1016.0."""
    for word, ours, emu, value, emu_value in [(0x43800001, 9, 8, 256.0, 254.0),
                                              (0x44800001, 11, 10, 1024.0, 1016.0)]:
        x = np.array([word, 0x42800000], np.uint32).view(np.float32)      # with a 64.0 lane
        q, e = quantize(x, 7, 2)
        assert e[0] == ours and q[0, 0] == 64 and q[0, 1] == 1 << (6 + 7 - ours)
        assert dequantize(q, e, 7, 2)[0] == value
        assert _emulator_exponent(x[0]) == emu
        assert f32(2.0 ** emu - 2.0 ** (emu - 7)) == emu_value               # its clamp


def test_emulator_exponent_differs_only_just_above_powers_of_two_from_16():
    """Where the exact exponent and the emulator's (correctly rounded float32 log2) differ:
    exactly the maxima ``2**k * (1 + j * 2**-23)`` with ``4 <= k <= 126`` and
    ``1 <= j <= J(k)``, J = 1, 2, 5, 11, 22 for k in 4..7, 8..15, 16..31, 32..63, 64..127
    (1,838 maxima; at ``k = 127`` both are invalid); the emulator's exponent is then one
    lower. Checked over the first 4096
    fractions of every binade and random fractions of every binade."""
    rng = np.random.default_rng(3)
    found = {}
    for b in range(1, 255):
        fracs = np.concatenate([np.arange(4096), rng.integers(4096, 1 << 23, 2000)])
        x = ((np.uint32(b) << 23) | fracs.astype(np.uint32)).view(np.float32)
        e, inv = shared_exponents(x[:, None])
        diff = (e != _emulator_exponent(x)) & ~inv
        if diff.any():
            assert (e[diff] - _emulator_exponent(x)[diff] == 1).all()
            found[b - 127] = sorted(fracs[diff].tolist())
    J = {k: [1, 2, 5, 11, 22][(k.bit_length() - 3)] for k in range(4, 127)}
    assert found == {k: list(range(1, J[k] + 1)) for k in range(4, 127)}
    assert sum(len(v) for v in found.values()) == 1838


def _exact_exponent(values):
    s = f32(f32(np.max(np.abs(values))) + f32(1e-8))
    frac = Fraction(float(s))
    e = -200
    while Fraction(2) ** e < frac:
        e += 1
    return e


finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False,
                     min_value=-2.0 ** 100, max_value=2.0 ** 100)


@settings(max_examples=300, deadline=None)
@given(st.lists(finite32, min_size=1, max_size=16), st.sampled_from([3, 5, 7, 10]))
def test_round_trip_within_half_lsb_unless_saturated(values, m):
    x = np.array(values, np.float32)
    q, e = quantize(x, m, len(x))
    assert e[0] == _exact_exponent(x)
    back = dequantize(q, e, m, len(x)).astype(np.float64)
    lsb = 2.0 ** (int(e[0]) - m)
    limit = (1 << m) - 1
    for xi, qi, bi in zip(x.astype(np.float64), q[0], back):
        assert abs(qi) <= limit
        if abs(xi) > (limit + 0.5) * lsb:            # saturated
            assert abs(qi) == limit and math.copysign(1, qi) == math.copysign(1, xi)
        else:
            assert abs(xi - bi) <= 0.5 * lsb


@settings(max_examples=300, deadline=None)
@given(st.integers(-(1 << 40), 1 << 40), st.integers(-190, 140))
def test_fp32_from_scaled_int_is_nearest_even(s, exp):
    r = fp32_from_scaled_int(s, exp)
    exact = Fraction(s) * Fraction(2) ** exp
    if np.isinf(r):
        assert abs(exact) >= Fraction(2) ** 128 - Fraction(2) ** 103    # half an ulp above max
        return
    got = Fraction(float(r))
    up = Fraction(float(np.nextafter(r, f32(np.inf))))
    down = Fraction(float(np.nextafter(r, f32(-np.inf))))
    assert abs(got - exact) <= abs(up - exact) and abs(got - exact) <= abs(down - exact)
    if abs(got - exact) in (abs(up - exact), abs(down - exact)) and got != exact:
        assert (r.view(np.uint32) & 1) == 0                            # ties to even


def test_dot_accumulates_sequentially_in_float32():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=64).astype(np.float32), rng.normal(size=64).astype(np.float32)
    qa, ea = quantize(x, 7, 16)
    qb, eb = quantize(y, 7, 16)
    acc = None
    for k in range(4):
        r = f32(float(Fraction(int(np.dot(qa[k], qb[k]))) * Fraction(2) ** int(ea[k] + eb[k] - 14)))
        acc = r if acc is None else f32(acc + r)
    assert dot(qa, ea, qb, eb, 7, partials=1) == acc
    assert abs(float(dot(qa, ea, qb, eb, 7)) - float(np.dot(x, y))) < 0.05 * np.abs(x * y).sum()


def _block_results(qa, ea, qb, eb, m):
    return [f32(float(Fraction(int(np.dot(qa[k], qb[k]))) * Fraction(2) ** int(ea[k] + eb[k] - 2 * m)))
            for k in range(len(ea))]


def test_dot_interleaved_partials_then_pairwise_tree():
    # Block results chosen so that the order shows: 1e8 and -1e8 cancel only when added before
    # the small terms meet them. r = [2**27, 1, -2**27, 1, 1, 1, 1] (P = 3):
    # p0 = (2**27 + 1) + 1 = 2**27 (both ones lost to rounding), p1 = 1 + 1 = 2, p2 = -2**27 + 1
    # = -2**27 (lost); tree: (p0 + p1) + p2 = (2**27 + 2) + -2**27 = 0 (2**27 + 2 rounds to
    # 2**27 at 24 bits: ulp 16); sequential: 2**27 + 1 + ... = 2**27 ... -2**27 ... = 4.
    vals = [2 ** 27, 1, -(2 ** 27), 1, 1, 1, 1]
    qa = np.array([[v] for v in vals])
    qb = np.ones((7, 1), np.int64)
    e = np.full(7, 7)                                   # scale 2**(7 + 7 - 14) = 1
    r = _block_results(qa, e, qb, e, 7)
    assert [float(v) for v in r] == vals
    p = [f32(-0.0)] * 3
    for k, v in enumerate(r):
        p[k % 3] = f32(p[k % 3] + v)
    assert [float(v) for v in p] == [2 ** 27, 2.0, -(2 ** 27)]
    assert float(dot(qa, e, qb, e, 7, partials=3)) == float(f32(f32(p[0] + p[1]) + p[2])) == 0.0
    assert float(dot(qa, e, qb, e, 7, partials=1)) == 4.0
    # P = 5: p = [2**27 + 1 -> 2**27, 2, -2**27, 1, 1]; ((p0 + p1) + (p2 + p3)) + p4
    # = (2**27 + -2**27) + 1 = 1.
    assert float(dot(qa, e, qb, e, 7, partials=5)) == 1.0
    # P = 6 (the default): p = [2**27 + 1 -> 2**27, 1, -2**27, 1, 1, 1];
    # ((p0 + p1) + (p2 + p3)) + (p4 + p5) = (2**27 + -2**27) + 2 = 2 (each 2**27 + 1 rounds back).
    assert DEFAULT_PARTIALS == 6
    assert float(dot(qa, e, qb, e, 7)) == 2.0
    # Fewer blocks than partials: untouched partials are -0.0, the exact identity; a single
    # zero block stays +0.0 and a single block is returned unchanged.
    zero = np.zeros((1, 1), np.int64)
    assert bits(dot(zero, e[:1], zero, e[:1], 7)) == 0x00000000
    assert float(dot(qa[:1], e[:1], qb[:1], e[:1], 7, partials=4)) == 2.0 ** 27


def test_golden_parameter_errors():
    with pytest.raises(ValueError, match=r"^mant_bits must be an integer in 2\.\.16, not 1$"):
        quantize([1.0], 1, 4)
    with pytest.raises(ValueError, match=r"^block_size must be an integer in 1\.\.256, not 0$"):
        quantize([1.0], 7, 0)
    with pytest.raises(TypeError, match=r"^mant_bits must be an integer in 2\.\.16, not 7\.0$"):
        quantize([1.0], 7.0, 4)
    assert quantize([1.0], np.int64(7), np.int32(4))[0].shape == (1, 4)   # numpy ints are ints


# -- generation parameters --------------------------------------------------------------------

@pytest.mark.parametrize("cls", [BfpConvert, HbfpDot])
@pytest.mark.parametrize("kwargs, exc, message", [
    ({"block_size": 3}, ValueError, r"^block_size must be a power of two in 1\.\.64, not 3$"),
    ({"block_size": 128}, ValueError, r"^block_size must be a power of two in 1\.\.64, not 128$"),
    ({"block_size": 0}, ValueError, r"^block_size must be a power of two in 1\.\.64, not 0$"),
    ({"block_size": "8"}, TypeError, r"^block_size must be a power of two in 1\.\.64, not '8'$"),
    ({"mant_bits": 1}, ValueError, r"^mant_bits must be an integer in 2\.\.16, not 1$"),
    ({"mant_bits": 17}, ValueError, r"^mant_bits must be an integer in 2\.\.16, not 17$"),
    ({"mant_bits": True}, TypeError, r"^mant_bits must be an integer in 2\.\.16, not True$"),
])
def test_parameter_errors(cls, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        cls(**kwargs)


def test_mixed_parameter_errors():
    with pytest.raises(ValueError, match=r"^mant_bits must be 7 with mixed=1 \(HBFP4/6/8 share an "
                                         r"8-bit datapath\), not 5$"):
        HbfpDot(mant_bits=5, mixed=True)
    with pytest.raises(TypeError, match=r"^mixed must be a boolean, not 'yes'$"):
        HbfpDot(mixed="yes")
    with pytest.raises(ValueError, match=r"^mixed must be a boolean, not 2$"):
        HbfpDot(mixed=2)
    with pytest.raises(TypeError, match=r"^unknown parameter 'mixed'; allowed: block_size, "
                                        r"mant_bits$"):
        BfpConvert(mixed=False)
    assert HbfpDot(mixed=1).mixed is True          # 0/1 are booleans, as on the command line


def test_registry_entries_build_and_expose_properties():
    names = [b.name for b in BLOCKS]
    assert names == ["bfp_convert", "hbfp_dot", "fp32_mac"]
    dot_unit = BLOCKS[1].build(block_size=16, mant_bits=3, mixed=False)
    assert (dot_unit.block_size, dot_unit.mant_bits, dot_unit.mixed) == (16, 3, False)
    assert dot_unit.sum_bits == 2 * 3 + 2 + 4
    with pytest.raises(AttributeError):
        dot_unit.block_size = 4
    assert [b.params for b in BLOCKS[:2]] == [BFP_CONVERT_PARAMS, HBFP_DOT_PARAMS]
    assert BLOCKS[1].defaults() == {"block_size": 8, "mixed": False, "mant_bits": 7,
                                    "add_stages": 5}
    assert dot_unit.partials == DEFAULT_PARTIALS == HBFP_DOT_PARAMS.defaults()["add_stages"] + 1
    assert BLOCKS[2].defaults() == {}


@pytest.mark.parametrize("workload, exc, message", [
    ({"blocks": 0}, ValueError, r"^blocks must be an integer in 1\.\.1000000, not 0$"),
    ({"blocks_per_dot": 2.5}, TypeError,
     r"^blocks_per_dot must be an integer in 1\.\.1000000, not 2\.5$"),
    ({"stall": 0.995}, ValueError, r"^stall must be a number in 0\.\.0\.99, not 0\.995$"),
    ({"ops": 3}, TypeError, r"^unknown workload knob 'ops'; allowed: blocks, blocks_per_dot, "
                            r"stall$"),
])
def test_perf_workload_errors_before_simulation(tmp_path, workload, exc, message):
    from sparsehw.verif.hbfp.perf_hbfp_dot import run_perf
    with pytest.raises(exc, match=message):
        run_perf({"block_size": 8, "mant_bits": 7, "mixed": False}, workload, sim="icarus",
                 seed=1, build_dir=tmp_path)
    assert not any(tmp_path.iterdir()), "a simulation was started"


def test_perf_failure_is_a_record_not_an_exception(tmp_path, monkeypatch):
    # A failed perf run (here: a simulation that reports a failing test) comes back as a record
    # with passed=False and a one-line error, which the CLI prints; no RuntimeError.
    from sparsehw.verif import runner
    from sparsehw.verif.hbfp.perf_hbfp_dot import run_perf

    def failing_run(*args, **kwargs):
        return runner.RunResult(passed=False, tests=1, failures=1, record={"cycles": 5},
                                build_dir=tmp_path, log=tmp_path / "sim.log",
                                errors=["AssertionError: 3 of 9 dot products differ:\ndot 0"])

    monkeypatch.setattr(runner, "run_cocotb", failing_run)
    record = run_perf({"block_size": 4, "mant_bits": 7, "mixed": False}, {}, sim="icarus",
                      seed=1, build_dir=tmp_path)
    assert record["passed"] is False and record["cycles"] == 5
    assert record["error"] == (f"AssertionError: 3 of 9 dot products differ: dot 0 "
                               f"(see {tmp_path / 'sim.log'})")


# -- Amaranth simulator quick check ------------------------------------------------------------

def test_bfp_convert_amaranth_sim_corners():
    from amaranth.sim import Simulator
    from sparsehw.verif.hbfp.vectors import corner_blocks
    dut = BfpConvert(block_size=4, mant_bits=5)
    blocks = corner_blocks(np.random.default_rng(1), 4)
    # The emulator corners (exponent 9 and 11, not the emulator's 8 and 10), in every lane.
    blocks += [np.roll(np.array([w, 0x42800000, 0xC0400000, 0], np.uint32), r).view(np.float32)
               for w in (0x43800001, 0x44800001) for r in range(4)]
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for i in range(len(blocks) + dut.latency + 1):
            ctx.set(dut.i.valid, i < len(blocks))
            if i < len(blocks):
                ctx.set(dut.i.payload, [int(v) for v in blocks[i].view(np.uint32)])
            await ctx.tick()
            if ctx.get(dut.o.valid):
                o = ctx.get(dut.o.payload)
                got.append(([int(v) for v in o.mant], int(o.exp), int(o.invalid)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(got) == len(blocks)
    for x, (q, e, inv) in zip(blocks, got):
        gq, ge = quantize(x, 5, 4)
        assert (q, e, inv) == ([int(v) for v in gq[0]], int(ge[0]), int(ge[0] == INVALID_EXP))


def _mode_holes(record, block):
    """The coverage holes of ``block``'s run-time modes (handshake holes are printed, not
    required: a port may be unable to reach a bin)."""
    from sparsehw.verif.coverage import holes
    found = holes(record, block)
    modes = {point: bins for point, bins in found.items() if not point.endswith(".handshake")}
    print(f"{block} port coverage holes:", {p: b for p, b in found.items() if p not in modes})
    return modes


# -- cocotb regressions (Icarus) ----------------------------------------------------------------

def _run(block_name, params, tmp_path, testbench=None, workload=None, component=None):
    from sparsehw.verif.runner import run_cocotb
    block = {b.name: b for b in BLOCKS}[block_name]
    full = block.defaults() | params
    result = run_cocotb(component or block.build(**full), block_name,
                        testbench or block.testbench, build_dir=tmp_path, seed=1234,
                        params=full, workload=workload)
    return result


@pytest.mark.sim
@pytest.mark.parametrize("params", [{"block_size": 8, "mant_bits": 7},
                                    {"block_size": 4, "mant_bits": 3}])
def test_bfp_convert_regression(params, tmp_path):
    result = _run("bfp_convert", params, tmp_path, workload={"blocks": 200})
    assert result.passed, (result.errors, result.log)
    # Functional coverage: ties, specials and saturation in every lane, every block case.
    assert _mode_holes(result.record, "bfp_convert") == {}


@pytest.mark.sim
@pytest.mark.parametrize("params", [{"block_size": 4, "mant_bits": 5},
                                    {"block_size": 8, "mant_bits": 7},
                                    {"block_size": 4, "mant_bits": 7, "mixed": True}])
def test_hbfp_dot_regression(params, tmp_path):
    result = _run("hbfp_dot", params, tmp_path, workload={"ops": 80})
    assert result.passed, (result.errors, result.log)
    assert result.tests == 4
    # Functional coverage: every error kind, a malformed mantissa in every lane of a and b,
    # dot products longer than the partial sums, every result class (and mode, when mixed),
    # cancellation by 1..7, 8..15 and 16..24 binades in every adder of the partial-sum tree.
    assert _mode_holes(result.record, "hbfp_dot") == {}


@pytest.mark.sim
def test_hbfp_dot_testbench_catches_a_wrong_unit(tmp_path):
    # A unit whose result LSB is corrupted (see _BrokenDot) must fail the regression.
    from sparsehw.verif.runner import run_cocotb
    params = {"block_size": 4, "mant_bits": 5, "mixed": False}
    result = run_cocotb(_BrokenDot(block_size=4, mant_bits=5), "hbfp_dot",
                        "sparsehw.verif.hbfp.tb_hbfp_dot", build_dir=tmp_path, seed=7, params=params,
                        workload={"ops": 30}, testcase="dot_products_match_golden_with_stalls")
    assert not result.passed and result.failures == 1


class _BrokenDot(HbfpDot):
    """``hbfp_dot`` with its result's LSB flipped whenever fraction bit 22 is set."""

    def elaborate(self, platform):
        from amaranth.hdl import Module
        inner = HbfpDot(block_size=self.block_size, mant_bits=self.mant_bits)
        m = Module()
        m.submodules.inner = inner
        m.d.comb += [
            inner.i.payload.eq(self.i.payload), inner.i.valid.eq(self.i.valid),
            self.i.ready.eq(inner.i.ready),
            self.o.valid.eq(inner.o.valid), inner.o.ready.eq(self.o.ready),
            self.o.payload.eq(inner.o.payload),
            self.o.payload.value[0].eq(inner.o.payload.value[0] ^ inner.o.payload.value[22]),
        ]
        return m


# -- sparsity / quantization order study (golden level) -----------------------------------------

def test_prune_then_quantize_keeps_nm_and_survivor_exponents():
    from sparsehw.golden import nm
    from sparsehw.experiments.sparsity_quant import prune_then_quantize, quantize_then_prune
    rng = np.random.default_rng(4)
    w = (rng.standard_t(3, size=(8, 64)) * 0.02).astype(np.float32)
    pq = prune_then_quantize(w, 2, 4, 7, 16)
    qp = quantize_then_prune(w, 2, 4, 7, 16)
    for out in (pq, qp):
        assert ((out != 0).reshape(8, 16, 4).sum(-1) <= 2).all()
    keep = nm.mask(w, 2, 4)
    assert not pq[~keep].any()
    # The survivors of row 0, first 16 of them, form one HBFP block of their own.
    survivors = w[0][keep[0]][:16]
    q, e = quantize(survivors, 7, 16)
    assert np.array_equal(pq[0][keep[0]][:16], dequantize(q, e, 7, 16))


def test_study_reports_both_orders():
    from sparsehw.experiments.sparsity_quant import run
    result = run(rows=16, cols=64, patterns=((2, 4),), mant_bits=(3,))
    row = result["results"][0]
    assert row["better"] in ("prune_first", "quantize_first")
    assert row["prune_first_err_vs_pruned"] > 0 and row["quantize_first_err_vs_pruned"] > 0


@pytest.mark.synth
def test_synth_smoke_per_lane_area_falls_with_block_size(tmp_path):
    # The shared exponent/rounding/accumulator logic is amortized: twice the lanes cost more in
    # total but less per lane.
    from sparsehw.synth.yosys import synthesize
    t1 = synthesize(HbfpDot(block_size=1, mant_bits=3), "hbfp_dot", target="cmos",
                    build_dir=tmp_path / "b1")["transistors"]
    t2 = synthesize(HbfpDot(block_size=2, mant_bits=3), "hbfp_dot", target="cmos",
                    build_dir=tmp_path / "b2")["transistors"]
    assert t1 < t2 < 2 * t1


# -- accumulation pipeline: every add_stages value, Amaranth simulation -----------------------------

def _sim_dot(dut, beats, stall, seed):
    from amaranth.sim import Simulator
    rng = np.random.default_rng(seed)
    got, latency = [], []

    async def bench(ctx):
        i, last_taken = 0, None
        for cycle in range(40 * len(beats) + 200):
            valid = i < len(beats) and rng.random() >= stall
            ready = rng.random() >= stall
            ctx.set(dut.i.valid, valid)
            if i < len(beats):
                ctx.set(dut.i.payload, beats[i])
            ctx.set(dut.o.ready, ready)
            await ctx.delay(1e-8)
            took = valid and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid) and ready:
                o = ctx.get(dut.o.payload)
                got.append((int(o.value), int(o.invalid), int(o.error)))
                if last_taken is not None:
                    latency.append(cycle - last_taken)
            await ctx.tick()
            if took:
                if beats[i]["last"]:
                    last_taken = cycle
                i += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got, latency


@pytest.mark.parametrize("add_stages", [0, 2] + [pytest.param(n, marks=pytest.mark.slow)
                                                for n in (1, 3, 4, 6)])
def test_hbfp_dot_every_add_stages_matches_golden_order(add_stages):
    # Dot products of 1..12 blocks (fewer and more than the partial sums), random stalls; the
    # golden model with partials = add_stages + 1 must match bit for bit.
    from sparsehw.verif.hbfp.vectors import dot_ops
    dut = HbfpDot(block_size=2, mant_bits=5, add_stages=add_stages)
    beats, expected = dot_ops(np.random.default_rng(add_stages), 2, 5, ops=14, max_blocks=12,
                              partials=add_stages + 1)
    got, _ = _sim_dot(dut, beats, 0.3, add_stages)
    assert got == expected


def test_hbfp_dot_latency_property():
    from sparsehw.verif.hbfp.vectors import dot_ops
    for add_stages in (0, 5):
        dut = HbfpDot(block_size=2, mant_bits=5, add_stages=add_stages)
        beats, _ = dot_ops(np.random.default_rng(1), 2, 5, ops=1, fixed_blocks=3, p_invalid=0)
        _, latency = _sim_dot(dut, beats, 0.0, 1)
        assert latency == [dut.latency]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(-7, 7), min_size=4, max_size=4), min_size=1, max_size=20),
       st.integers(1, 8))
def test_dot_every_order_is_exact_when_the_sums_are(rows, partials):
    # What holds whatever the order (and so also against HBFPEmulator's float32 matmul): when
    # every block result and every partial sum is exactly representable, the result is the
    # exact dot product. Small integer mantissas with exponents 3 and 3 (scale 2**(6 - 6) = 1).
    qa = np.array(rows, np.int64)
    qb = np.ones_like(qa)
    e = np.full(len(rows), 3)
    assert float(dot(qa, e, qb, e, 3, partials=partials)) == float(qa.sum())
