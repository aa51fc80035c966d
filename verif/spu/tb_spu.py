"""cocotb regression of the SPU against golden/spu.py (golden/nm.py).

Covers every m in {1, ..., max_m} with several n, random masks, corner values (-128/127 and
saturating post-ops), ReLU on and off, random valid gaps on every input stream and random
back-pressure on the output, malformed indices followed by correct GEMMs, rejected
configurations, and GEMMs of different n:m/k/o back to back at full rate with rejected
configurations between them (with ``x_buffers=2`` the next GEMM's X then loads while the
current one computes). Generation parameters come from ``verif.common.params()`` (defaults if
absent).

Functional coverage (``verif.coverage``, reported after every test, cumulative): ``nm`` (every
supported n:m pattern), ``malformed`` (out-of-range and out-of-order indices), ``reject`` (each
kind of rejected configuration), ``relu``, ``data`` (random and corner values) and the handshake
bins of every port.
"""

import cocotb
import numpy as np

from sparsehw.golden.spu import spu_cycles
from sparsehw.hw.spu import OUT_DEPTH, SPU_PARAMS
from sparsehw.verif import common
from sparsehw.verif.coverage import Coverage
from sparsehw.verif.spu import (EXACT_MAX_SHIFT, PORTS, expected_beats, make_job, reject_job,
                                run_jobs)
from sparsehw.verif.stream import compare, start


def _params():
    return common.params(SPU_PARAMS)


def _stall(default):
    """Stall probability of every stream (workload knob ``stall`` overrides the default)."""
    return float(common.workload().get("stall", default))


def _ratios(max_m):
    m = 1
    while m <= max_m:
        yield m
        m *= 2


_SAMPLERS = {}
REJECT_KINDS = ("m>max_m", "n>m", "k>max_k", "o==0", "k%m")


def _coverage(params):
    """``(coverage, samplers by point)`` of this simulation (one set per process, shared by
    its tests)."""
    if not _SAMPLERS:
        cov = Coverage("spu")
        patterns = [(n, m) for m in _ratios(params["max_m"]) for n in _ratios(m)]
        _SAMPLERS["cov"] = cov
        _SAMPLERS["points"] = {
            "nm": cov.point("nm", patterns, labels=[f"{n}:{m}" for n, m in patterns]),
            "malformed": cov.point("malformed", ["range", "order"]),
            "reject": cov.point("reject", REJECT_KINDS),
            "relu": cov.point("relu", [False, True]),
            "data": cov.point("data", ["random", "corner", "small"]),
            # a row with exact post-ops whose y has a lane strictly inside -128..127 (not 0),
            # by shift: the accumulator's bits from ``shift`` up reach y
            "exact_shift": cov.point("exact_shift", list(range(EXACT_MAX_SHIFT + 1))),
            # the weight stream held >= FULL_HOLD cycles with X loaded: the output FIFO is full
            # of owed rows (the datapath must not start another row's last beat)
            "out_full": cov.point("out_full", [True], labels=["w_held_by_full_output"]),
        }
    return _SAMPLERS["cov"], _SAMPLERS["points"]


def _reject_kind(cfg, params):
    """Which rule a rejected configuration breaks (the first that applies, in this order)."""
    n, m = 1 << cfg["n_log2"], 1 << cfg["m_log2"]
    if m > params["max_m"]:
        return "m>max_m"
    if n > m:
        return "n>m"
    if cfg["k"] > params["max_k"]:
        return "k>max_k"
    if cfg["o"] == 0:
        return "o==0"
    return "k%m"


def _cover(dut, params, jobs, ends):
    """Sample the jobs and the ports of one test, and report the coverage so far."""
    cov, sample = _coverage(params)
    for job in jobs:
        if "reject" in job.info:
            sample["reject"](_reject_kind(job.info["reject"], params))
            continue
        sample["nm"]((job.info["n"], job.info["m"]))
        sample["relu"](bool(job.info["relu"]))
        sample["data"]("corner" if job.info["corner"] else
                       "small" if job.info["small"] else "random")
        for shift, beat in zip(job.info["shifts"], job.expected):
            if job.info["post_mode"] == "exact" and any(-128 < y < 127 and y for y in beat["y"]):
                sample["exact_shift"](shift)
        for kind in job.info["corrupt_kinds"]:
            sample["malformed"](kind)
    cov.ports(**ends)
    cov.report(dut._log)


def _random_job(gen, params, m, *, corner=False, corrupt=0, n=None, o=None, **options):
    if n is None:
        n = 1 << int(gen.integers(0, m.bit_length()))      # n in {1, 2, ..., m}
    if corrupt and m == 1 << max(1, params["max_m"].bit_length() - 1):
        n = max(n, 2)       # every index is in range: only an ordering error is possible
    unit = max(m, params["act_rows"])
    k = unit * int(gen.integers(1, max(1, min(params["max_k"] // unit, 64 // unit + 2)) + 1))
    k = min(k, params["max_k"])
    o = int(gen.integers(max(1, corrupt + 1), 5)) if o is None else o
    rows = sorted(gen.choice(o, size=corrupt, replace=False).tolist()) if corrupt else ()
    return make_job(gen, params, n=n, m=m, k=k, o=o, relu=bool(gen.integers(0, 2)),
                    corner=corner, corrupt_rows=rows, **options)


def _compare(got, jobs):
    where = [(j, job, r) for j, job in enumerate(jobs) for r in range(len(job.expected))]
    compare(got, expected_beats(jobs), what="output beat",
            describe=lambda i, g, e: (f"job {where[i][0]} ({where[i][1].info}) row {where[i][2]}: "
                                      f"got {g}, expected {e}"))


async def _run_and_check(dut, params, jobs, **run):
    """Start the stream drivers, run ``jobs`` (``run``: :func:`run_jobs`' stall/rng/... options),
    compare every output with the golden model and sample coverage; returns ``(got, ends)``."""
    await start(dut, sources=PORTS, sinks=("o",))
    got, ends = await run_jobs(dut, params, jobs, **run)
    _compare(got, jobs)
    _cover(dut, params, jobs, ends)
    return got, ends


@cocotb.test()
async def spu_every_ratio_random_stalls(dut):
    """Every n:m pattern (random and corner data alternating), ReLU on/off, stalls on every
    stream."""
    params = _params()
    gen = np.random.default_rng(common.rng(1).getrandbits(32))
    jobs = []
    for m in _ratios(params["max_m"]):
        for i, n in enumerate(_ratios(m)):
            jobs.append(_random_job(gen, params, m, n=n, corner=bool((i + m) % 2)))
    got, ends = await _run_and_check(dut, params, jobs, stall=_stall(0.3), rng=common.rng(2))
    common.record(regression_jobs=len(jobs))


@cocotb.test()
async def spu_malformed_then_correct(dut):
    """Malformed indices flag their rows (y forced to 0) and the next GEMMs are exact; a rejected
    configuration answers one cfg_error beat and consumes nothing else."""
    params = _params()
    gen = np.random.default_rng(common.rng(3).getrandbits(32))
    max_m = params["max_m"]
    small_m = min(4, max_m)
    jobs = [
        _random_job(gen, params, small_m, corrupt=1),
        _random_job(gen, params, max_m),
        _random_job(gen, params, max_m, corrupt=2),
        reject_job(params, n_log2=0, m_log2=max_m.bit_length(), k=params["max_k"], o=1),
        _random_job(gen, params, 1),
        reject_job(params, n_log2=2, m_log2=1, k=params["max_k"], o=1),       # n > m
        reject_job(params, n_log2=0, m_log2=0, k=params["max_k"] + 1, o=1),  # k > max_k
        reject_job(params, n_log2=0, m_log2=0, k=params["max_k"], o=0),      # o == 0
        _random_job(gen, params, small_m),
    ]
    for m in _ratios(max_m):        # a flagged GEMM at every ratio, each followed by a clean one
        jobs.append(_random_job(gen, params, m, corrupt=2))
        jobs.append(_random_job(gen, params, m))
    if max_m > 1:
        jobs.insert(5, reject_job(params, n_log2=0, m_log2=max_m.bit_length() - 1,
                                  k=max_m // 2, o=1))      # k % m != 0, k <= max_k
    flagged = sum(e["error"] for job in jobs for e in job.expected)
    assert flagged >= 3, "the test must contain flagged rows"
    got, ends = await _run_and_check(dut, params, jobs, stall=_stall(0.25), rng=common.rng(4))
    assert sum(beat["error"] for beat in got) == flagged


@cocotb.test()
async def spu_back_to_back_no_stall(dut):
    """Full-rate streams: results exact, and the cycle count is reported."""
    params = _params()
    gen = np.random.default_rng(common.rng(5).getrandbits(32))
    k = params["max_k"]
    m = min(4, params["max_m"])
    jobs = [make_job(gen, params, n=1, m=m, k=k, o=4, relu=False),
            make_job(gen, params, n=m, m=m, k=k, o=2, relu=True)]
    got, ends = await _run_and_check(dut, params, jobs)
    first = min(ends[p].first_cycle for p in PORTS)
    cycles = ends["o"].last_cycle - first + 1
    ideal = sum(job.macs for job in jobs) / (params["lanes"] * params["macs"])
    common.record(cycles=cycles, ideal_cycles=ideal)


@cocotb.test()
async def spu_back_to_back_mixed_with_rejects(dut):
    """GEMMs of different n:m, k and o back to back at full rate, each pair separated by a
    rejected configuration: with two X buffers the next GEMM's activations load while the
    current one computes, and a rejection between them must not disturb them."""
    params = _params()
    gen = np.random.default_rng(common.rng(6).getrandbits(32))
    max_m, max_k = params["max_m"], params["max_k"]
    jobs = []
    for i, m in enumerate(list(_ratios(max_m)) * 2):
        job = _random_job(gen, params, m, corner=bool(i % 3 == 2))
        jobs.append(job)
        if i % 2:
            jobs.append(reject_job(params, n_log2=0, m_log2=0, k=max_k, o=0))     # o == 0
        elif i % 4 == 2:
            jobs.append(reject_job(params, n_log2=0, m_log2=0, k=max_k + 1, o=1))    # k > max_k
    got, ends = await _run_and_check(dut, params, jobs, stall=_stall(0.0), rng=common.rng(7))


@cocotb.test()
async def spu_exact_post_ops(dut):
    """Small data and post-ops chosen from the accumulators so that most results are inside
    -128..127 at every shift 0..12: a one-bit error anywhere in the accumulator, the partial
    sums, ``acc + bias``, its product with ``mult`` or the rounding sum changes ``y`` (the random
    post-ops of the other tests saturate nearly everything). Every n:m, twice, stalls."""
    params = _params()
    gen = np.random.default_rng(common.rng(8).getrandbits(32))
    jobs = [_random_job(gen, params, m, o=EXACT_MAX_SHIFT + 1, small=True, post_mode="exact")
            for m in list(_ratios(params["max_m"])) * 2]      # each job: every shift once
    got, ends = await _run_and_check(dut, params, jobs, stall=_stall(0.2), rng=common.rng(9))


@cocotb.test()
async def spu_x_load_overlap_cycles(dut):
    """An n:4 GEMM at full rate with K = max_k, loading X slower than computing row 0: row 0's
    weight beats go while X still arrives, each as soon as the rows of its groups are in, so the
    run takes exactly the cycles of golden.spu.spu_cycles (a beat held until the whole X is in
    costs cycles). ``n <= macs`` keeps each group inside one beat: with ``n > macs`` the last
    group's several beats all wait for the last X rows, cycles the model does not count."""
    params = _params()
    gen = np.random.default_rng(common.rng(10).getrandbits(32))
    m = min(4, params["max_m"])
    n = max(1, min(m // 2, 1 << (params["macs"].bit_length() - 1)))
    load = {"n": n, "m": m, "k": params["max_k"], "o": 2, "b": params["lanes"]}
    jobs = [make_job(gen, params, n=load["n"], m=m, k=load["k"], o=load["o"], relu=False)]
    got, ends = await _run_and_check(dut, params, jobs)
    first = min(ends[p].first_cycle for p in PORTS)
    cycles = ends["o"].last_cycle - first + 1
    model, parts = spu_cycles(params, load)
    assert cycles == model, f"{cycles} cycles, the model {model} ({parts}, workload {load})"


#: Cycles the output is blocked in ``spu_output_fifo_full`` (OUT_DEPTH rows fill long before).
BLOCK_CYCLES = 200
#: Rows of that test's GEMM: row + 1 passes 0b100000, 0b100100000 and 2**11, and the last row
#: index 2304 = 0b100100000000 has bits 11 and 8 set, bit 5 clear (a row counter that permutes
#: the rows of a 64-row block still ends the GEMM at the wrong row).
LONG_O = 2305
#: A weight beat held this long with X loaded means the output FIFO is full.
FULL_HOLD = 64


@cocotb.test()
async def spu_output_fifo_full(dut):
    """LONG_O short rows (one group each) with the output blocked for BLOCK_CYCLES cycles, then
    random back-pressure: the SPU fills its output FIFO with OUT_DEPTH owed rows and must take
    no further row's last beat until one leaves (a row started without room would be lost or
    overwrite another); the row counter then runs past 2304 (bits 5, 8 and 11 of ``row + 1`` in
    every combination)."""
    params = _params()
    gen = np.random.default_rng(common.rng(11).getrandbits(32))
    m = min(4, params["max_m"])
    k = max(m, params["act_rows"])          # the shortest row: one group of X rows
    jobs = [make_job(gen, params, n=1, m=m, k=k, o=LONG_O, relu=False, small=True,
                     post_mode="exact")]
    await start(dut, sources=PORTS, sinks=("o",))
    got, ends = await run_jobs(dut, params, jobs, stall=_stall(0.3), rng=common.rng(12),
                               block_output=BLOCK_CYCLES)
    _compare(got, jobs)
    if ends["w"].longest_hold >= FULL_HOLD:      # sampled before _cover reports
        _coverage(params)[1]["out_full"](True)
    _cover(dut, params, jobs, ends)
