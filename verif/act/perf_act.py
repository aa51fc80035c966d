"""``sparsehw perf act_engine``: ``rows`` commands of one operation fed as fast as the ports
accept them (no stalls), outputs checked against the golden model and against float64.

Record: ``op``, ``n``, ``rows``, ``cycles`` (first input handshake to last output handshake),
``ideal_cycles`` (element-wise: ``rows * ceil(n / lanes)``; row-wise: the first row's load pass,
then every row's read-back passes (softmax two, layernorm one) of ``ceil(n / lanes)`` beats
through the one pipeline, since a row loads into the second row buffer while the previous one
is read back), ``elements_per_cycle``,
``utilization = ideal_cycles / cycles``, ``latency`` (cycles from the first input beat to the
first output beat), ``max_abs_error``/``rms_error`` (RTL outputs in real units, ``y * 2**-fout``,
against float64 on the real inputs; formats and input ranges in :data:`verif.act.PERF_FORMATS`),
``mismatches`` (beats differing from golden/act.py).
"""

import cocotb
import numpy as np

from sparsehw.golden import act as golden
from sparsehw.verif import common
from sparsehw.verif.act import PERF_FORMATS, make_job, run_jobs
from sparsehw.verif.stream import reset, start_clock


def _workload(params, workload):
    values = golden.ACT_WORKLOAD.validate(params, **workload)
    if values["n"] == 0:
        values["n"] = params["max_row"] if values["op"] in golden.ROW_OPS else 1024
    return values


@cocotb.test()
async def act_perf(dut):
    params = common.params()
    load = _workload(params, common.workload())
    op, n, rows = load["op"], load["n"], load["rows"]
    L = params["lanes"]
    fin, fout, low, high = PERF_FORMATS[op]
    gen = np.random.default_rng(common.rng(7).getrandbits(32))
    jobs = []
    for _ in range(rows):
        xs = gen.integers(low, high + 1, size=n)
        if op == "recip":
            xs = np.where(xs == 0, 1, xs)
        jobs.append(make_job(gen, params, op, n, fin=fin, fout=fout, xs=xs,
                             gamma=[4096] * n if op == "layernorm" else None,
                             beta=[0] * n if op == "layernorm" else None))
    start_clock(dut)
    for port in ("cmd", "i", "p"):
        getattr(dut, f"{port}__valid").value = 0
    dut.o__ready.value = 0
    await reset(dut)
    beats = -(-n // L)
    got, ends = await run_jobs(dut, params, jobs, timeout_cycles=rows * (4 * beats + 100) + 1000)
    expected = [beat for job in jobs for beat in job.expected]
    mismatches = sum(g != e for g, e in zip(got, expected)) + abs(len(got) - len(expected))

    errors = []
    b = 0
    for job in jobs:
        ys = [y for beat in got[b:b + len(job.expected)] for y in beat["y"]][:n]
        b += len(job.expected)
        ref = golden.reference(op, job.xs, fin=fin, gamma=[1.0] * n, beta_real=[0.0] * n)
        errors.append(np.array(ys, dtype=np.float64) * 2.0 ** -fout - ref)
    errors = np.concatenate(errors)
    first = ends["i"].first_cycle
    cycles = ends["o"].last_cycle - min(ends["cmd"].first_cycle, first) + 1
    read_back = {"softmax": 2, "layernorm": 1}.get(op)
    ideal = rows * beats if read_back is None else beats + rows * read_back * beats
    common.record(op=op, n=n, rows=rows, lanes=L, fin=fin, fout=fout, cycles=cycles,
                  ideal_cycles=ideal, utilization=round(ideal / cycles, 4),
                  elements_per_cycle=round(rows * n / cycles, 4),
                  latency=ends["o"].first_cycle - first,
                  max_abs_error=float(np.abs(errors).max()),
                  rms_error=float(np.sqrt((errors ** 2).mean())),
                  outputs_checked=len(expected), mismatches=mismatches,
                  passed=mismatches == 0)
    assert mismatches == 0, f"{mismatches} output beats differ from the golden model"


def run_perf(params, workload, *, sim, seed, build_dir):
    """Entry point of ``sparsehw perf act_engine``: the perf record."""
    from sparsehw.hw.act_engine import ActEngine
    from sparsehw.verif.runner import perf_record, run_cocotb
    engine_params = {k: params[k] for k in ("lanes", "max_row", "ops")}
    workload = _workload(params, workload)
    if workload["op"] not in engine_params["ops"].split(","):
        raise ValueError(f"op must be one of the operations built ({engine_params['ops']}), "
                         f"not {workload['op']!r}")
    result = run_cocotb(ActEngine(**engine_params), "act_engine", "sparsehw.verif.act.perf_act",
                        build_dir=build_dir, sim=sim, seed=seed, params=params,
                        workload=workload)
    return perf_record(result, sim=sim)
