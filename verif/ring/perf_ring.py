"""``sparsehw perf ring``: load sweep or soak on :class:`~sparsehw.verif.ring.harness.RingHarness`
(Verilator).

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

from sparsehw.golden.ring import PATTERNS
from sparsehw.params import Param, ParamSpec, boolean, int_in, one_of
from sparsehw.verif.ring.harness import RingHarness
from sparsehw.verif.runner import run_cocotb


__all__ = ["RING_WORKLOAD", "run_perf"]


#: Workload knobs of ``sparsehw perf ring -w NAME=VALUE``; ``hot`` depends on ``nodes`` (pass the
#: generation parameters as the context of :meth:`~sparsehw.params.ParamSpec.validate`).
RING_WORKLOAD = ParamSpec(
    Param("pattern", "uniform", one_of(*PATTERNS, "all"),
          doc="traffic pattern; all: the four in one simulation"),
    Param("hot", 0, lambda v: int_in(0, v["nodes"] - 1), allowed="an integer in 0..nodes-1",
          doc="hotspot node"),
    Param("warmup", 1000, int_in(100, 1_000_000), doc="cycles before each measurement window"),
    Param("window", 4000, int_in(100, 10_000_000), doc="measured cycles per load point"),
    Param("soak", False, boolean(), doc="saturate-then-drain soak instead of the load sweep"),
    Param("soak_cycles", 100_000, int_in(1000, 100_000_000),
          doc="saturation cycles of the soak"),
    kind="workload knob",
)


def run_perf(params, workload, *, sim, seed, build_dir):
    """Run the load sweep (or the soak) for the ring with generation parameters ``params``.

    Raises
    ------
    TypeError, ValueError
        An unknown workload knob, or a value of the wrong type or out of range
        (:data:`RING_WORKLOAD`), before anything is built.
    """
    RING_WORKLOAD.validate(params, **workload)
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
