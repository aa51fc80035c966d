"""cocotb regression of the activation engine against golden/act.py.

Every operation built, random and corner inputs (saturated int8, all-equal softmax rows,
zero-variance LayerNorm rows, every fin/fout so the largest and smallest exponents occur), row
lengths 1..max_row (partial last beats), random valid gaps on every input and back-pressure on
the output; rejected commands (unknown op, n = 0, n > max_row) each followed by a correct one;
every ordered pair of ops back to back at full input rate, with the output always ready and
under heavy back-pressure; row scalars (softmax's exponential sum, LayerNorm's n**2 times the
variance) at every bit length; recip of every code in every lane at its smallest rounding
shifts; LayerNorm outputs exactly at their rounding ties and one below them (every fout;
for the large shifts, at the tie or one below of the product the engine rounds); softmax outputs
that show the row reciprocal's last bit; softmax's exponentials at every shift with the rounding
bit set and clear in every lane, and multi-beat rows whose outputs show the exponential sum's
last bits; rejected commands accepted while a row waits in its buffer or is in its scalar step;
softmax rows whose row reciprocal shows its seed's last bit; long element-wise commands at full
rate after the output FIFO has filled and drained (one beat per cycle in and out).
Generation parameters come from ``verif.common.params()`` (defaults if absent).

With ``SPARSEHW_FAIL_FAST=1`` in the environment (``sparsehw mutate`` sets it), the tests after
the first failing one return at once: the run has failed already, and a mutant is killed as
soon as one test fails (:func:`verif.common.test`).

Functional coverage (:class:`verif.act.cover.ActCoverage`, reported after every test,
cumulative): every op built, every rejection kind, domain flags, saturation, data kinds, row
shapes, format extremes and the handshake bins of every port.
"""


import numpy as np

from sparsehw.hw.act_engine import ACT_PARAMS, OUT_DEPTH
from sparsehw.golden import act as golden
from sparsehw.verif import common
from sparsehw.verif.act import CORNERS, compare, make_job, reject_job, run_jobs
from sparsehw.verif.act.cover import ActCoverage
from sparsehw.verif.stream import reset, start_clock


def _params():
    values = common.params(ACT_PARAMS)
    values["op_list"] = [op for op in golden.OPS if op in values["ops"].split(",")]
    return values


def _stall(default):
    return float(common.workload().get("stall", default))


async def _start(dut):
    start_clock(dut)
    for port in ("cmd", "i", "p"):
        getattr(dut, f"{port}__valid").value = 0
    dut.o__ready.value = 0
    await reset(dut)


def _length(gen, params, op):
    limit = params["max_row"] if op in golden.ROW_OPS else 4 * params["max_row"]
    choices = [1, params["lanes"], params["lanes"] + 1, params["max_row"],
               int(gen.integers(1, min(limit, 3 * params["lanes"] + 2) + 1))]
    return int(gen.choice([c for c in choices if c <= limit]))


def _cover(dut, params, jobs, ends):
    cov = ActCoverage.get(params)
    cov.sample(jobs)
    cov.report(dut._log, ends)


async def _run_and_check(dut, params, jobs, *, stall, salt):
    """Reset, drive ``jobs`` with random stalls (probability ``stall``, stall pattern from
    ``common.rng(salt)``), compare every output with the golden model, sample coverage;
    returns the output beats."""
    await _start(dut)
    got, ends = await run_jobs(dut, params, jobs, stall=stall, rng=common.rng(salt))
    compare(got, jobs)
    _cover(dut, params, jobs, ends)
    return got


async def _drive_and_check(dut, params, jobs, *, stall, out_stall, rng):
    """Drive ``jobs`` (input stalls ``stall``, output stalls ``out_stall``, stall patterns from
    ``rng``), stop the stream endpoints, compare every output with the golden model, sample
    coverage; returns the endpoints (their first and last handshake cycles)."""
    got, ends = await run_jobs(dut, params, jobs, stall=stall, out_stall=out_stall, rng=rng)
    for end in ends.values():
        end.stop()
    compare(got, jobs)
    _cover(dut, params, jobs, ends)
    return ends


@common.test()
async def act_every_op_random_stalls(dut):
    """Every op built: random, corner and all-equal data, every format, stalls on every port."""
    params = _params()
    gen = np.random.default_rng(common.rng(1).getrandbits(32))
    jobs = []
    rounds = int(common.workload().get("rounds", 2))
    for _ in range(rounds):
        for op in params["op_list"]:
            for kind in ("random", "corner", "equal"):
                jobs.append(make_job(gen, params, op, _length(gen, params, op), kind=kind))
    for op in params["op_list"]:            # the extremes of the formats
        jobs.append(make_job(gen, params, op, params["lanes"] + 1, fin=0, fout=15,
                             kind="corner"))
        jobs.append(make_job(gen, params, op, params["lanes"] + 1, fin=7, fout=0,
                             kind="corner"))
        # Every corner code at the formats' extremes: the domain cases (log2 of x <= 0,
        # recip of 0) and saturation at both ends (log2 of 1 and recip of -1 at fin 7, fout 15).
        limit = params["max_row"] if op in golden.ROW_OPS else 4 * params["max_row"]
        corners = CORNERS[:min(len(CORNERS), limit)]
        for fin, fout in ((7, 15), (0, 0)):
            jobs.append(make_job(gen, params, op, len(corners), fin=fin, fout=fout,
                                 kind="corner", xs=corners))
    await _run_and_check(dut, params, jobs, stall=_stall(0.3), salt=2)
    common.record(regression_jobs=len(jobs))


@common.test()
async def act_every_code_and_low_variance_rows(dut):
    """Element-wise ops on every int8 code (shuffled, so each code meets random lanes) at two
    formats whose outputs reach both saturation bounds and the full 16-bit range; row ops on
    rows of small spread (row lengths 2..31, spreads 1..63: the variance's and the exp
    sum's bit lengths across their range, not only the large ones of random rows); then every
    ordered pair of ops back to back.
    """
    params = _params()
    gen = np.random.default_rng(common.rng(5).getrandbits(32))
    jobs = []
    codes = np.arange(-128, 128)
    for op in params["op_list"]:
        if op in golden.ROW_OPS:
            continue
        limit = 4 * params["max_row"]
        for fin, fout in ((7, 15), (2, 8)):
            xs = gen.permutation(codes)
            for start in range(0, len(xs), limit):
                chunk = xs[start:start + limit]
                jobs.append(make_job(gen, params, op, len(chunk), fin=fin, fout=fout,
                                     kind="random", xs=chunk))
    lengths = [n for n in (2, 3, 5, 8, 13, 16, 31) if n <= params["max_row"]]
    for op in params["op_list"]:
        if op not in golden.ROW_OPS:
            continue
        for n in lengths:
            for spread in (1, 3, 15, 63):
                base = int(gen.integers(-128, 128 - spread))
                xs = base + gen.integers(0, spread + 1, n)
                jobs.append(make_job(gen, params, op, n, kind="random", xs=xs))
    # Every ordered pair of ops back to back: the engine overlaps a command with the previous
    # one's drain (and a row's load with the previous row's read-back), so each hand-over
    # (row -> row of the other op, row -> element-wise, element-wise -> row) is exercised.
    for first in params["op_list"]:
        for second in params["op_list"]:
            for op in (first, second):
                jobs.append(make_job(gen, params, op, _length(gen, params, op)))
    await _run_and_check(dut, params, jobs, stall=_stall(0.2), salt=6)
    common.record(exhaustive_jobs=len(jobs))


@common.test()
async def act_rejects_then_correct(dut):
    """Malformed commands answer one error beat, consume nothing, and the next command is exact."""
    params = _params()
    gen = np.random.default_rng(common.rng(3).getrandbits(32))
    ops = params["op_list"]
    missing = [golden.OP_CODES[op] for op in golden.OPS if op not in ops]
    bad = [reject_job(params, op=6, n=4), reject_job(params, op=7, n=1),
           reject_job(params, op=golden.OP_CODES[ops[0]], n=0)]
    bad += [reject_job(params, op=code, n=3) for code in missing]
    for op in golden.ROW_OPS:
        if op in ops:
            bad.append(reject_job(params, op=golden.OP_CODES[op], n=params["max_row"] + 1))
            bad.append(reject_job(params, op=golden.OP_CODES[op], n=65535))
    jobs = []
    for k, job in enumerate(bad):
        jobs.append(job)
        jobs.append(make_job(gen, params, ops[k % len(ops)],
                             _length(gen, params, ops[k % len(ops)])))
    jobs.append(reject_job(params, op=7, n=0))
    jobs.append(reject_job(params, op=6, n=0))
    jobs.append(make_job(gen, params, ops[-1], min(params["max_row"], params["lanes"] * 2 + 1)))
    got = await _run_and_check(dut, params, jobs, stall=_stall(0.25), salt=4)
    assert sum(beat["error"] for beat in got) == len(bad) + 2


def _overlap_jobs(gen, params):
    """Every ordered pair of ops (an op after itself too), short (1 to 3 beats, partial and full
    last beats), a rejected command of each kind after each pair with a row op: at full input
    rate each command's beats enter the pipeline while the previous command's drain and each
    row loads while the previous row is read back."""
    ops = params["op_list"]
    row_ops = [op for op in ops if op in golden.ROW_OPS]
    bad = [dict(op=6, n=3), dict(op=7, n=1), dict(op=golden.OP_CODES[ops[0]], n=0)]
    bad += [dict(op=golden.OP_CODES[op], n=params["max_row"] + 1) for op in row_ops]
    bad += [dict(op=golden.OP_CODES[op], n=2) for op in golden.OPS if op not in ops]
    L = params["lanes"]
    lengths = [n for n in (1, L, L + 1, 2 * L + 1, 3 * L) if n <= params["max_row"]]
    jobs = []
    k = 0
    for first in ops:
        for second in ops:
            for op in (first, second):
                jobs.append(make_job(gen, params, op, int(gen.choice(lengths))))
            if first in golden.ROW_OPS or second in golden.ROW_OPS:
                jobs.append(reject_job(params, **bad[k % len(bad)]))
                k += 1
    return jobs


@common.test()
async def act_overlap_at_full_rate(dut):
    """Every input at full rate, so commands overlap as far as the engine lets them (beats of
    different ops in the pipeline at once, a row loading while the previous row is read back,
    an error beat waiting for the rows before it): every ordered pair of ops with rejected
    commands between them, first with the output always ready, then under heavy output
    back-pressure (the output FIFO full, the row buffers handed over while outputs wait)."""
    params = _params()
    gen = np.random.default_rng(common.rng(7).getrandbits(32))
    await _start(dut)
    for out_stall in (0.0, 0.8):
        jobs = _overlap_jobs(gen, params)
        await _drive_and_check(dut, params, jobs, stall=0.0, out_stall=out_stall,
                               rng=common.rng(8))


def _scalar_rows(gen, params):
    """Row commands whose per-row scalar input takes every bit length it can have: softmax rows
    whose exponential sum ``S`` (65536 per maximum, less for the others) has each bit length
    from 17 to that of ``max_row * 65536`` (uniform rows of 2**k, 2**k + 1 and 2**(k+1) - 1
    elements, and the same lengths with one maximum above the rest), and LayerNorm rows whose
    ``n**2`` times the variance (``n * Sxx - Sx**2``) has each bit length from 1 (a constant
    row) to that of ``max_row``-long rows of -128 and 127 (rows of two values ``a`` and
    ``a + d``, ``n / 2`` of each: ``n**2 d**2 / 4``)."""
    ops, max_row = params["op_list"], params["max_row"]
    jobs = []
    if "softmax" in ops:
        lengths = sorted({n for k in range(max_row.bit_length())
                          for n in (2 ** k, 2 ** k + 1, 2 ** (k + 1) - 1) if n <= max_row})
        for n in lengths:
            base = int(gen.integers(-128, 128))
            jobs.append(make_job(gen, params, "softmax", n, kind="equal", xs=[base] * n))
            if n > 1:
                low = int(gen.integers(-128, 127))
                xs = [low] * n
                xs[int(gen.integers(0, n))] = int(gen.integers(low + 1, 128))
                jobs.append(make_job(gen, params, "softmax", n, kind="random", xs=xs))
    if "layernorm" in ops:
        by_length = {}
        for n in range(2, max_row + 1, 2):
            for d in range(1, 256):
                by_length.setdefault((n * n * d * d // 4).bit_length(), []).append((n, d))
        for t in sorted(by_length):
            found = by_length[t]
            n, d = found[int(gen.integers(0, len(found)))]
            a = int(gen.integers(-128, 128 - d))
            xs = [a] * (n // 2) + [a + d] * (n // 2)
            xs = [int(v) for v in gen.permutation(xs)]
            jobs.append(make_job(gen, params, "layernorm", n, kind="random", xs=xs))
    return jobs


@common.test()
async def act_row_scalars_every_bit_length(dut):
    """The per-row scalar step (bit length, mantissa, reciprocal or inverse square root, output
    shift) at every bit length of its input: see :func:`_scalar_rows`."""
    params = _params()
    gen = np.random.default_rng(common.rng(9).getrandbits(32))
    jobs = _scalar_rows(gen, params)
    await _run_and_check(dut, params, jobs, stall=0.2, salt=10)


def _recip_full_precision(gen, params):
    """recip of every nonzero int8 code in every lane at the formats whose rounding shift
    ``15 + bitlen(|x|) - fin - fout`` is 1 or 2, the smallest that does not saturate: the
    reciprocal core's result shows all but its last one or two bits."""
    L = params["lanes"]
    jobs = []
    for length in range(1, 9):
        codes = [x for x in range(-128, 128) if x != 0 and abs(x).bit_length() == length]
        for shift in (1, 2):
            total = 15 + length - shift                   # fin + fout
            fins = [fin for fin in range(8) if 0 <= total - fin <= 15]
            fin = int(gen.choice(fins))
            xs = []
            for r in range(L):        # round r: the codes in order, from lane r on
                block = [int(gen.choice(codes)) for _ in range(r)] + codes
                block += [int(gen.choice(codes)) for _ in range((-len(block)) % L)]
                xs += block
            jobs.append(make_job(gen, params, "recip", len(xs), fin=fin, fout=total - fin,
                                 kind="random", xs=xs))
    return jobs


@common.test()
async def act_recip_full_precision(dut):
    """The reciprocal's output at the smallest rounding shifts: see :func:`_recip_full_precision`."""
    await _run_targeted(dut, "recip", _recip_full_precision, stream=11, salt=12)


async def _run_targeted(dut, op, make_jobs, *, stream, salt):
    """Run ``make_jobs(gen, params)`` (jobs of ``op``, from the random stream ``stream``) with
    10% stalls and check them against the golden model; nothing when the engine has no ``op``."""
    params = _params()
    if op not in params["op_list"]:
        return
    gen = np.random.default_rng(common.rng(stream).getrandbits(32))
    await _run_and_check(dut, params, make_jobs(gen, params), stall=0.1, salt=salt)



def _tie_row(gen, n, spread, fout):
    """A LayerNorm row of the rounding-tie tests: ``n`` int8 values spanning exactly ``spread``
    from a random base, its golden scale (``sx``, ``y``), the rounding shift ``sh`` at ``fout``
    and random 16-bit ``gamma``/``beta`` for the caller to tune."""
    base = int(gen.integers(-128, 128 - spread))
    xs = [int(v) for v in base + gen.integers(0, spread + 1, n)]
    xs[0], xs[-1] = base, base + spread
    sx, k, y = golden.layernorm_scale(xs)
    gamma = [int(v) for v in gen.integers(-32768, 32768, n)]
    beta = [int(v) for v in gen.integers(-32768, 32768, n)]
    return xs, sx, y, 35 + k - fout, gamma, beta

def _layernorm_ties(gen, params):
    """LayerNorm rows whose products ``D_i * Y * gamma_i`` sit exactly at a rounding tie of the
    output shift ``sh = 35 + k - fout`` or one below it (round half up: a tie goes up, one below
    goes down), with ``beta`` bringing the result back into the int16 range so that its last bit
    shows. Rows of small spread (n 2..8, spreads 1..7) at fout 12..15, where ``sh <= 16``: there
    ``gamma`` (16 bits) picks the product's residue modulo ``2**sh`` wherever ``D_i * Y`` is odd
    (``Y`` and ``k`` from the golden model's ``layernorm_scale``); the other
    elements get random ``gamma`` and ``beta``.

    Then rows of every spread up to 255 and n up to ``max_row`` at fout 0..11, where
    ``sh`` is 17 and more (the engine's rounding shift ``sh - 12`` up to its largest values):
    ``gamma`` cannot pick the residue modulo ``2**sh`` there, so each element's ``gamma`` is
    one (of the 16-bit values, drawn at random) whose product lies in the ``2**12`` at the tie
    or the ``2**12`` below it: the engine drops the product's low 12 bits (``ROW_DROP``, exact),
    so the product it rounds is then exactly at its tie or one below it."""
    max_row = params["max_row"]
    jobs = []
    for fout in (15, 14, 13, 12):
        for n in (2, 3, 4, 5, 8):
            if n > max_row:
                continue
            for spread in (1, 2, 3, 5, 7):
                xs, sx, y, sh, gamma, beta = _tie_row(gen, n, spread, fout)
                for i, x in enumerate(xs):
                    dy = (n * x - sx) * y
                    if sh > 16 or dy % 2 == 0:
                        continue
                    target = (1 << (sh - 1)) - (i + n) % 2    # the tie, or one below it
                    g0 = target * pow(dy, -1, 1 << sh) % (1 << sh)
                    g = min(range(g0 - 65536, 32768, 1 << sh),
                            key=lambda v: abs(v) if v >= -32768 else 1 << 40)
                    r = golden.rshift_round(dy * g, sh)
                    b = max(-32768, min(32767, -r + int(gen.integers(-2000, 2001))))
                    if -32768 <= r + b <= 32767:
                        assert (dy * g) % (1 << sh) == target
                        gamma[i], beta[i] = g, b
                jobs.append(make_job(gen, params, "layernorm", n, fout=fout, kind="random",
                                     xs=xs, gamma=gamma, beta=beta))
    drop = 1 << 12
    gammas = np.arange(-32768, 32768, dtype=np.int64)
    for fout in range(12):
        for n, spread in ((2, 1), (3, 2), (5, 7), (8, 31), (16, 127), (max_row, 255)):
            n = min(n, max_row)
            xs, sx, y, sh, gamma, beta = _tie_row(gen, n, spread, fout)
            for i, x in enumerate(xs):
                dy = (n * x - sx) * y
                low = (1 << (sh - 1)) - drop * ((i + n) % 2)    # the tie, or below it
                hits = gammas[(dy * gammas - low) % (1 << sh) < drop]
                if len(hits) == 0:
                    continue
                g = int(hits[int(gen.integers(0, len(hits)))])
                r = golden.rshift_round(dy * g, sh)
                b = max(-32768, min(32767, -r + int(gen.integers(-2000, 2001))))
                if -32768 <= r + b <= 32767:
                    gamma[i], beta[i] = g, b
            jobs.append(make_job(gen, params, "layernorm", n, fout=fout, kind="random",
                                 xs=xs, gamma=gamma, beta=beta))
    return jobs


@common.test()
async def act_layernorm_rounding_ties(dut):
    """LayerNorm's rounding at its ties and one below them: see :func:`_layernorm_ties`."""
    await _run_targeted(dut, "layernorm", _layernorm_ties, stream=13, salt=14)


def _softmax_recip_last_bit(gen, params):
    """Softmax rows whose outputs show the last bit of the row reciprocal ``Y`` (the reciprocal
    core's full precision, where its Newton steps correct their own rounding): two-element rows,
    a maximum and one element ``d`` = 1..255 below it, at every fin and fout 15, so that the
    sum ``S = 65536 + E_d`` has 17 bits and the output shift is 17; of those, the rows whose
    outputs the golden model gives differently for ``Y - 1`` or ``Y + 1`` (``Y`` from
    ``golden.act.softmax_scale``), 128 of them evenly spread over ``S``."""
    found = []
    for fin in range(8):
        for d in range(1, 256):
            es, length, y = golden.softmax_scale([0, -d], fin)
            sh = 15 + length - 15

            def out(yy):
                return [min(golden.rshift_round(e * yy, sh), 32767) for e in es]

            if out(y - 1) != out(y) or out(y + 1) != out(y):
                found.append((sum(es), fin, d))
    found.sort()
    jobs = []
    for i in range(min(128, len(found))):
        _, fin, d = found[i * len(found) // min(128, len(found))]
        top = int(gen.integers(d - 128, 128))
        xs = [top, top - d] if gen.integers(0, 2) else [top - d, top]
        jobs.append(make_job(gen, params, "softmax", 2, fin=fin, fout=15, kind="random", xs=xs))
    return jobs


@common.test()
async def act_softmax_recip_last_bit(dut):
    """Softmax outputs that show the row reciprocal's last bit: see
    :func:`_softmax_recip_last_bit`."""
    await _run_targeted(dut, "softmax", _softmax_recip_last_bit, stream=15, salt=16)


def _softmax_outputs(es, total, fout):
    """Softmax outputs of the exponentials ``es`` had their sum been ``total`` (the golden
    model's row scalar and output rounding, :func:`golden.act.softmax_scale`)."""
    length = total.bit_length()
    y = golden.recip_core(total >> (length - 16))
    return [min(golden.rshift_round(e * y, 15 + length - fout), 32767) for e in es]


def _softmax_exp_rounding(gen, params):
    """Softmax rows whose exponentials ``E = rshift_round(P, s)`` (``s = min(-n, 18)``, the
    shift of :func:`golden.act.softmax_scale`) take every shift ``s`` = 1..18 with the rounding
    bit (``P``'s bit ``s - 1``) set and with it clear, in every lane: rows of ``L + 1`` elements
    (fout 15), a maximum then ``L`` equal elements ``d`` below it, so each lane holds one; of the
    ``(fin, d)`` with that shift and rounding bit, two whose outputs the golden model gives
    differently for ``E - 1`` or ``E + 1`` in one element (the rounding shows)."""
    L, max_row = params["lanes"], params["max_row"]
    n = min(L + 1, max_row)
    if n < 2:
        return []
    found = {}
    for fin in range(8):
        for d in range(1, 256):
            p, k = golden.exp_parts(-d, fin)
            s = min(-k, 18)
            e = golden.rshift_round(p, s)
            es = [65536] + [e] * (n - 1)
            want = _softmax_outputs(es, sum(es), 15)
            for de in (-1, 1):
                if e + de < 0:
                    continue
                moved = [65536, e + de] + [e] * (n - 2)
                if _softmax_outputs(moved, sum(moved), 15) != want:
                    found.setdefault((s, (p >> (s - 1)) & 1), []).append((fin, d))
                    break
    jobs = []
    for key in sorted(found):
        picks = found[key]
        for i in gen.choice(len(picks), size=min(2, len(picks)), replace=False):
            fin, d = picks[int(i)]
            top = int(gen.integers(d - 128, 128))
            jobs.append(make_job(gen, params, "softmax", n, fin=fin, fout=15, kind="random",
                                 xs=[top] + [top - d] * (n - 1)))
    return jobs


def _softmax_sum_last_bits(gen, params):
    """Softmax rows of several beats (``2L + 1`` .. ``4L`` elements, capped by ``max_row``)
    whose outputs show the last bits of the exponential sum ``S`` as the engine accumulates it
    beat by beat: a maximum at a random place, the other elements 1..255 below it at a random
    fin (fout 15), kept when the golden model gives the outputs differently for ``S - 1`` or
    ``S + 1`` (the bit length and the reciprocal's input ``S >> (length - 16)`` both read
    ``S``); 64 of them."""
    L, max_row = params["lanes"], params["max_row"]
    lengths = [n for n in range(2 * L + 1, 4 * L + 1) if n <= max_row] or [max_row]
    if lengths[0] < 2:
        return []
    jobs = []
    for _ in range(4000):
        if len(jobs) == 64:
            break
        n = int(gen.choice(lengths))
        fin = int(gen.integers(0, 8))
        top = int(gen.integers(-64, 128))
        xs = [int(v) for v in gen.integers(-128, top, n)]
        xs[int(gen.integers(0, n))] = top
        es, _, _ = golden.softmax_scale(xs, fin)
        total = sum(es)
        want = _softmax_outputs(es, total, 15)
        if any(_softmax_outputs(es, total + de, 15) != want for de in (-1, 1)):
            jobs.append(make_job(gen, params, "softmax", n, fin=fin, fout=15, kind="random",
                                 xs=xs))
    return jobs


def _softmax_exp_and_sum(gen, params):
    return _softmax_exp_rounding(gen, params) + _softmax_sum_last_bits(gen, params)


@common.test()
async def act_softmax_exponential_rounding_and_sum_bits(dut):
    """Softmax's exponentials at every shift with the rounding bit set and clear in every lane,
    and multi-beat rows whose outputs show the last bits of the exponential sum: see
    :func:`_softmax_exp_rounding` and :func:`_softmax_sum_last_bits`."""
    await _run_targeted(dut, "softmax", _softmax_exp_and_sum, stream=17, salt=18)


def _held_row_jobs(gen, params):
    """Row commands each followed at once by a rejected command (every kind that can occur at
    the parameters, in turn), so that the reject is accepted while the row waits in its buffer
    or is in its scalar step (the front takes the next command as soon as the row is loaded):
    a held row's context must not change. Rows alternate between the two buffers; their sums
    and sums of squares take values of every sign and size (rows of one value ``v``, or of
    ``v`` and ``v + d``, ``v`` over the int8 range), so every bit of the held statistics is 1
    in some row and 0 in another; each pair followed by an element-wise command where built."""
    ops = params["op_list"]
    row_ops = [op for op in ops if op in golden.ROW_OPS]
    if not row_ops:
        return []
    max_row, L = params["max_row"], params["lanes"]
    bad = [dict(op=6, n=3), dict(op=7, n=1), dict(op=golden.OP_CODES[ops[0]], n=0)]
    bad += [dict(op=golden.OP_CODES[op], n=max_row + 1) for op in row_ops]
    bad += [dict(op=golden.OP_CODES[op], n=2) for op in golden.OPS if op not in ops]
    stream_ops = [op for op in ops if op not in golden.ROW_OPS]
    lengths = sorted({n for n in (1, 2, L + 1, 2 * L + 1, max_row // 2, max_row)
                      if 1 <= n <= max_row})
    jobs = []
    k = 0
    for v in range(-128, 128, 16):
        for op in row_ops:
            for _ in range(2):                      # both buffers
                n = int(gen.choice(lengths))
                base = int(min(127, max(-128, v + int(gen.integers(0, 16)))))
                d = int(gen.integers(0, 128 - base)) if base < 127 else 0
                xs = [base + d * int(gen.integers(0, 2)) for _ in range(n)]
                jobs.append(make_job(gen, params, op, n, kind="random", xs=xs))
                jobs.append(reject_job(params, **bad[k % len(bad)]))
                k += 1
        if stream_ops:
            op = stream_ops[k % len(stream_ops)]
            jobs.append(make_job(gen, params, op, L + 1))
    return jobs


@common.test()
async def act_reject_while_row_held(dut):
    """Rejected commands accepted while a row waits or is in its scalar step, with the output
    always ready: see :func:`_held_row_jobs`. First at full input rate (the reject is taken the
    cycle after the row's last beat, while its statistics are still being added), then with
    70% input stalls (taken some cycles later, once the statistics are final)."""
    params = _params()
    gen = np.random.default_rng(common.rng(19).getrandbits(32))
    await _start(dut)
    for stall in (0.0, 0.7):
        jobs = _held_row_jobs(gen, params)
        if not jobs:
            return
        await _drive_and_check(dut, params, jobs, stall=stall, out_stall=0.0,
                               rng=common.rng(20))


def _recip_seed_sensitive(M):
    """True when the row reciprocal ``golden.act.recip_core(M)`` changes with its seed one
    lower or one higher (:func:`golden.act.recip_steps`' Newton steps do not absorb it)."""
    a, b = golden.RECIP_SEED

    def core(y):
        for _ in range(golden.NEWTON_STEPS):
            y = (y * ((1 << 17) - ((M * y) >> 15))) >> 16
        return y

    y0 = a - ((b * M) >> 15)
    return core(y0 - 1) != core(y0) or core(y0 + 1) != core(y0)


def _softmax_recip_seed(gen, params):
    """Softmax rows whose row reciprocal's input ``M = S >> (bitlen(S) - 16)`` is one of those
    where the reciprocal's result depends on its seed's last bit (:func:`_recip_seed_sensitive`;
    995 of the 32768), 160 of them evenly spread: a maximum and elements below it whose
    exponentials sum to ``2M - 65536`` or ``2M + 1 - 65536`` (``S`` of 17 bits; found greedily
    over the exponentials of one fin), at fout 15; rows that need more than ``max_row``
    elements are left out."""
    max_row = params["max_row"]
    if max_row < 2:
        return []
    targets = [M for M in range(1 << 15, 1 << 16) if _recip_seed_sensitive(M)]
    tables = {}
    for fin in range(8):
        table = {}
        for d in range(1, 256):
            p, k = golden.exp_parts(-d, fin)
            e = golden.rshift_round(p, min(-k, 18))
            if e:
                table.setdefault(e, d)
        tables[fin] = sorted(table.items(), reverse=True)
    jobs = []
    picks = [targets[i * len(targets) // 160] for i in range(min(160, len(targets)))]
    for M in picks:
        found = None
        for fin in (3, 2, 4, 1, 5, 6, 0, 7):
            for rest in (2 * M - 65536, 2 * M + 1 - 65536):
                ds, left = [], rest
                for e, d in tables[fin]:
                    while e <= left and len(ds) < max_row - 1:
                        ds.append(d)
                        left -= e
                if left == 0:
                    found = (fin, ds)
                    break
            if found:
                break
        if found is None:
            continue
        fin, ds = found
        top = 127
        xs = [top] + [top - d for d in ds]
        xs = [int(v) for v in gen.permutation(xs)]
        es, length, _ = golden.softmax_scale(xs, fin)
        assert length == 17 and sum(es) >> 1 == M
        jobs.append(make_job(gen, params, "softmax", len(xs), fin=fin, fout=15, kind="random",
                             xs=xs))
    return jobs


@common.test()
async def act_softmax_recip_seed(dut):
    """Softmax rows whose row reciprocal shows its seed's last bit: see
    :func:`_softmax_recip_seed`."""
    await _run_targeted(dut, "softmax", _softmax_recip_seed, stream=21, salt=22)


@common.test()
async def act_full_rate_after_back_pressure(dut):
    """A consumer that is always ready sees one beat per cycle (``docs/act_engine.md``: the
    credit loop's round trip is shorter than the output FIFO), also after the credits have run
    out: for each element-wise op built, a long command under heavy output back-pressure (the
    FIFO fills, the credits run out and return as it drains), then a long command with every
    port at full rate, whose ``i`` beats must be taken and whose ``o`` beats must come on
    consecutive cycles. A credit count that kept a beat it never handed out after a drain would
    stall the second command."""
    params = _params()
    stream_ops = [op for op in params["op_list"] if op not in golden.ROW_OPS]
    if not stream_ops:
        return
    gen = np.random.default_rng(common.rng(23).getrandbits(32))
    await _start(dut)
    n = 3 * OUT_DEPTH * params["lanes"]          # 3 * OUT_DEPTH beats
    for op in stream_ops:
        for out_stall in (0.8, 0.0):             # back-pressured, then full rate
            jobs = [make_job(gen, params, op, n)]
            ends = await _drive_and_check(dut, params, jobs, stall=0.0, out_stall=out_stall,
                                          rng=common.rng(24))
            if out_stall == 0.0:
                beats = len(jobs[0].expected)
                for port in ("i", "o"):
                    span = ends[port].last_cycle - ends[port].first_cycle + 1
                    assert span == beats, (f"{op} at full rate after back-pressure: {beats} "
                                           f"{port} beats took {span} cycles")
