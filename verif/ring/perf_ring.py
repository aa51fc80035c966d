"""``sparsehw perf ring``: load sweep or soak on :class:`hw.ring.RingHarness` (Verilator).

The record holds ``saturation_throughput`` (accepted flits/cycle/node at the highest offered load
whose accepted throughput is still >= 0.97 x the offered load, refined by bisection),
``ideal_throughput`` (:func:`golden.ring.ideal_throughput`), ``zero_load_latency`` (mean network
latency at offered load 0.01, cycles), ``curve`` (per offered load: accepted, latency from
creation, network latency, smallest per-node accepted rate) and the common perf keys:
``cycles`` = measured window, ``ideal_cycles`` = cycles an ideal ring needs for the flits the
ring accepted in one window at saturation, ``utilization`` = saturation / ideal,
``input_bits_per_cycle`` = payload bits accepted per cycle at saturation (all nodes, at the
block's ``width``).

``-w pattern=all`` sweeps the four patterns in one simulation (one Verilator build per k and
parameters); the record then has ``patterns`` (one full record per pattern), ``utilization`` =
the smallest of the four, and the uniform pattern's figures at the top level.
"""

from sparsehw.hw.ring import RingHarness
from sparsehw.verif.runner import run_cocotb


def _check_workload(params, workload):
    k = params["nodes"]
    if not 0 <= workload.get("hot", 0) < k:
        raise ValueError(f"hot must be a node in 0..{k - 1}, not {workload['hot']!r}")
    for name, low, high in (("warmup", 100, 1_000_000), ("window", 100, 10_000_000),
                            ("soak_cycles", 1000, 100_000_000)):
        value = workload.get(name)
        if value is not None and not low <= value <= high:
            raise ValueError(f"{name} must be in {low}..{high}, not {value!r}")


def run_perf(params, workload, *, sim, seed, build_dir):
    _check_workload(params, workload)
    harness = RingHarness(nodes=params["nodes"], depth=params["depth"],
                          eject_depth=params["eject_depth"], starve=params["starve"],
                          quota=params["quota"])
    soak = bool(workload.get("soak", False))
    result = run_cocotb(harness, "ring_harness", "sparsehw.verif.ring.tb_harness", build_dir=build_dir,
                        sim=sim, seed=seed, params=params, workload=workload,
                        testcase="soak" if soak else "sweep")
    record = dict(result.record)
    record["passed"] = result.passed
    if not result.passed:
        record["log"] = str(result.log)
        record["errors_text"] = result.errors
        return record
    if soak:
        return record
    window = workload.get("window", 4000)
    sat, ideal = record["saturation_throughput"], record["ideal_throughput"]
    record["total_cycles"] = record.pop("cycles")
    record.update(cycles=window, ideal_cycles=round(window * sat / ideal),
                  input_bits_per_cycle=sat * params["nodes"] * params["width"])
    return record
