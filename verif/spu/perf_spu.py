"""SPU performance run: one N:M GEMM (K x O x B) fed as fast as the ports accept it.

Cycles are counted from the first input handshake (any port) to the last output handshake.
Ideal cycles = nonzero MACs / (lanes x macs) = O * (K/m*n) * B / (lanes * macs). ``B`` larger than
``lanes`` runs ``B / lanes`` GEMMs back to back on column tiles of ``X`` with the same weights.
The outputs are checked against the golden model as well.
"""


import cocotb
import numpy as np

from sparsehw.verif import common
from sparsehw.verif.spu import PORTS, layouts_of, make_job, run_jobs
from sparsehw.verif.stream import reset, start_clock


# The reference design point (used when no -p is given) is ``perf_defaults`` in
# sparsehw/families/spu.py.
#: The reference workload.
REFERENCE_WORKLOAD = {"n": 1, "m": 1, "k": 1024, "o": 256, "b": 16}


def check_workload(params, workload):
    """Validate workload knobs against the generation parameters (ValueError naming the knob)."""
    n, m, k, o, b = (workload[key] for key in ("n", "m", "k", "o", "b"))
    if m not in (1, 2, 4, 8, 16, 32) or m > params["max_m"]:
        raise ValueError(f"m must be a power of two between 1 and max_m={params['max_m']}, "
                         f"not {m!r}")
    if n < 1 or n > m or n & (n - 1):
        raise ValueError(f"n must be a power of two between 1 and m={m}, not {n!r}")
    unit = max(m, params["act_rows"])
    if k < 1 or k > params["max_k"] or k % unit:
        raise ValueError(f"k must be a multiple of {unit} (max(m, act_rows)) between {unit} "
                         f"and max_k={params['max_k']}, not {k!r}")
    if not 1 <= o < 1 << 16:
        raise ValueError(f"o must be between 1 and 65535, not {o!r}")
    if b < 1 or b % params["lanes"]:
        raise ValueError(f"b must be a positive multiple of lanes={params['lanes']}, not {b!r}")


@cocotb.test()
async def spu_perf(dut):
    params = common.params()
    load = common.workload()
    check_workload(params, load)
    n, m, k, o, b = (load[key] for key in ("n", "m", "k", "o", "b"))
    L, P = params["lanes"], params["macs"]
    gen = np.random.default_rng(common.rng(7).getrandbits(32))
    w = gen.integers(-128, 128, size=(o, k), dtype=np.int64).astype(np.int8)
    jobs = [make_job(gen, params, n=n, m=m, k=k, o=o, relu=bool(t % 2), w=w)
            for t in range(b // L)]

    start_clock(dut)
    for port in PORTS:
        getattr(dut, f"{port}__valid").value = 0
    dut.o__ready.value = 0
    await reset(dut)
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
    """Entry point of ``sparsehw perf spu``: returns the perf record."""
    from sparsehw.hw.spu import SPU
    from sparsehw.verif.runner import run_cocotb
    check_workload(params, workload)
    result = run_cocotb(SPU(**params), "spu", "sparsehw.verif.spu.perf_spu", build_dir=build_dir,
                        sim=sim, seed=seed, params=params, workload=workload)
    record = dict(result.record)
    record["passed"] = bool(result.passed and record.get("passed", False))
    if result.errors:
        record["errors"] = result.errors
    record["sim"] = sim
    record["log"] = str(result.log)
    return record
