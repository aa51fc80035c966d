"""SPU performance run: one N:M GEMM (K x O x B) fed as fast as the ports accept it.

Cycles are counted from the first input handshake (any port) to the last output handshake.
Ideal cycles = nonzero MACs / (lanes x macs) = O * (K/m*n) * B / (lanes * macs). ``B`` larger than
``lanes`` runs ``B / lanes`` GEMMs back to back on column tiles of ``X`` with the same weights.
The outputs are checked against the golden model as well.
"""


import cocotb
import numpy as np

from sparsehw.golden.spu import SPU_WORKLOAD
from sparsehw.hw.spu import SPU, SPU_PARAMS
from sparsehw.verif import common
from sparsehw.verif.spu import PORTS, layouts_of, make_job, run_jobs
from sparsehw.verif.stream import start


# The reference design point (used when no -p is given) is ``perf_defaults`` in
# sparsehw/families/spu.py; the reference workload is the defaults of ``SPU_WORKLOAD``.


def check_workload(params, workload):
    """``workload`` validated against the generation parameters ``params`` (defaults filled in);
    ``ValueError``/``TypeError`` ``NAME must be ALLOWED, not VALUE`` naming the knob."""
    return SPU_WORKLOAD.validate(params, **workload)


@cocotb.test()
async def spu_perf(dut):
    params = common.params(SPU_PARAMS)
    load = check_workload(params, common.workload())
    n, m, k, o, b = (load[key] for key in ("n", "m", "k", "o", "b"))
    L, P = params["lanes"], params["macs"]
    gen = np.random.default_rng(common.rng(7).getrandbits(32))
    w = gen.integers(-128, 128, size=(o, k), dtype=np.int64).astype(np.int8)
    jobs = [make_job(gen, params, n=n, m=m, k=k, o=o, relu=bool(t % 2), w=w)
            for t in range(b // L)]

    await start(dut, sources=PORTS, sinks=("o",))
    got, ends = await run_jobs(dut, params, jobs,
                               timeout_cycles=4 * sum(len(j.beats["w"]) for j in jobs) + 10000)
    expected = [beat for job in jobs for beat in job.expected]
    mismatches = sum(g != e for g, e in zip(got, expected)) + abs(len(got) - len(expected))

    first = min(ends[p].first_cycle for p in PORTS)
    cycles = ends["o"].last_cycle - first + 1
    ideal = o * (k // m * n) * b / (L * P)
    lay = layouts_of(params)
    port_bits = {}
    for port in PORTS + ("o",):
        width = lay[port].size
        port_bits[port] = {"beats": ends[port].transfers, "width": width,
                           "bits_per_cycle": round(ends[port].transfers * width / cycles, 3),
                           "beat_rate": round(ends[port].transfers / cycles, 4)}
    input_bits = sum(port_bits[p]["bits_per_cycle"] for p in PORTS)
    common.record(cycles=cycles, ideal_cycles=ideal, utilization=round(ideal / cycles, 4),
                  input_bits_per_cycle=round(input_bits, 3), ports=port_bits,
                  outputs_checked=len(expected), mismatches=mismatches,
                  passed=mismatches == 0)
    assert mismatches == 0, f"{mismatches} output rows differ from the golden model"


def run_perf(params, workload, *, sim, seed, build_dir):
    """Entry point of ``sparsehw perf spu``: the perf record (:func:`verif.runner.perf_record`)."""
    from sparsehw.verif.runner import perf_record, run_cocotb
    workload = check_workload(params, workload)
    result = run_cocotb(SPU(**params), "spu", "sparsehw.verif.spu.perf_spu", build_dir=build_dir,
                        sim=sim, seed=seed, params=params, workload=workload)
    return perf_record(result, sim=sim)
