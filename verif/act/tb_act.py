"""cocotb regression of the activation engine against golden/act.py.

Every operation built, random and corner inputs (saturated int8, all-equal softmax rows,
zero-variance LayerNorm rows, every fin/fout so the largest and smallest exponents occur), row
lengths 1..max_row (partial last beats), random valid gaps on every input and back-pressure on
the output; rejected commands (unknown op, n = 0, n > max_row) each followed by a correct one.
Generation parameters come from ``verif.common.params()`` (defaults if absent).

Functional coverage (:class:`verif.act.cover.ActCoverage`, reported after every test,
cumulative): every op built, every rejection kind, domain flags, saturation, data kinds, row
shapes, format extremes and the handshake bins of every port.
"""

import cocotb
import numpy as np

from sparsehw.hw.act_engine import ACT_PARAMS
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


@cocotb.test()
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
    await _start(dut)
    got, ends = await run_jobs(dut, params, jobs, stall=_stall(0.3), rng=common.rng(2))
    compare(got, jobs)
    _cover(dut, params, jobs, ends)
    common.record(regression_jobs=len(jobs))


@cocotb.test()
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
    await _start(dut)
    got, ends = await run_jobs(dut, params, jobs, stall=_stall(0.2), rng=common.rng(6))
    compare(got, jobs)
    _cover(dut, params, jobs, ends)
    common.record(exhaustive_jobs=len(jobs))


@cocotb.test()
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
    await _start(dut)
    got, ends = await run_jobs(dut, params, jobs, stall=_stall(0.25), rng=common.rng(4))
    compare(got, jobs)
    _cover(dut, params, jobs, ends)
    assert sum(beat["error"] for beat in got) == len(bad) + 2
