"""Perf workload of the four engines (``sparsehw perf figs`` / ``nm_broadcast`` / ``nm_fanout`` /
``nm_fixed24``).

The cocotb test :func:`perf_gemm` runs one K x O x B GEMM (workload knobs ``n``, ``m``, ``k``,
``o``, ``b``, ``budget``, ``mask``, ``stall``), checks it against the golden GEMM and records
cycles, utilization and the activation bits per cycle actually delivered. With ``sweep=1`` it
runs every supported ratio twice in one simulation: with unlimited bandwidth and with the budget
the FiGS array needs at that ratio (``rows * M/N * width`` bits/cycle), and records them under
``by_ratio``. Activations are random int8 without zeros, so ``act_values`` (the nonzero values in
the delivered payloads) is the number of activations that crossed the port.
"""

import cocotb
import numpy as np

from sparsehw.golden import figs as gf
from sparsehw.golden.figs import FIGS_WORKLOAD
from sparsehw.hw.figs import SUPPORTED_RATIOS
from sparsehw.verif import common
from sparsehw.verif.figs import PORTS, dut_params, make_weights, run_gemm
from sparsehw.verif.stream import start


def _one(fig, engine, params, n, m, k, o, b, budget):
    rows, cols, beta, width = params["rows"], params["cols"], params["beta"], params["width"]
    macs = rows * cols * beta
    ideal = o * (k * n // m) * b / macs
    need = gf.input_bits_per_cycle(engine, n, m, rows=rows, width=width)
    return {
        "n": n, "m": m, "budget": budget, "cycles": fig["cycles"], "ideal_cycles": ideal,
        "utilization": ideal / fig["cycles"],
        "input_bits_per_cycle": fig["act_bits"] / fig["cycles"],
        "predicted_bits_per_cycle": need,
        "predicted_cycles": gf.predicted_cycles(engine, n, m, k=k, o=o, b=b, rows=rows,
                                                cols=cols, beta=beta, width=width,
                                                budget=budget, phases=fig["phases"]),
        "required_alpha": fig["required_alpha"], "routable": True,
        "phases_max": max(fig["phases"]), "phases_mean": sum(fig["phases"]) / len(fig["phases"]),
        "instances": fig["instances"], "tiles": fig["tiles"],
        "act_values": fig["act_values"],
    }


@cocotb.test()
async def perf_gemm(dut):
    wl = common.workload()
    engine = wl["engine"]
    params = dut_params(engine)
    await start(dut, **PORTS)
    rng = np.random.default_rng(common.rng(11).randrange(1 << 30))
    k, o, b = wl["k"], wl["o"], wl["b"]
    x = rng.integers(-128, 128, size=(k, b))
    x[x == 0] = 1       # no zero activations: act_values counts every activation delivered
    stall = wl.get("stall", 0.0)

    def supported(n, m):
        if k % m:
            return False
        if engine == "nm_fixed24":       # every pattern, as 2:4 tiles
            return True
        if params["rows"] % n or m > params["max_m"]:
            return False
        return engine not in ("figs", "nm_fanout") or m // n <= params["ratio"]

    async def measure(n, m, budget, w):
        salt = 100 * n + m
        fig = await run_gemm(dut, engine, params, w, x, n, m, stall=stall, budget=budget,
                             rngs=(common.rng(salt), common.rng(salt + 1),
                                   common.rng(salt + 2)))
        assert int(dut.fault.value) == 0
        return _one(fig, engine, params, n, m, k, o, b, budget)

    if wl.get("sweep"):
        by_ratio = {}
        for n, m in SUPPORTED_RATIOS:
            if not supported(n, m):
                continue
            w = make_weights(wl["mask"], o, k, n, m, rng)
            figs_need = gf.input_bits_per_cycle("figs", n, m, rows=params["rows"],
                                                width=params["width"])
            full = await measure(n, m, 0, w)
            limited = await measure(n, m, figs_need, w)
            by_ratio[f"{n}:{m}"] = {"full": full, "at_figs_budget": limited}
            dut._log.info(f"{engine} {n}:{m}: {full}")
        common.record(by_ratio=by_ratio)
    n, m = wl["n"], wl["m"]
    if not supported(n, m):
        raise AssertionError(f"{engine} with {params} does not support {n}:{m} with k={k}")
    w = make_weights(wl["mask"], o, k, n, m, rng)
    common.record(**await measure(n, m, wl["budget"], w))


def check_workload(params, workload):
    """``workload`` validated (defaults filled in); ``ValueError``/``TypeError`` naming the knob."""
    return FIGS_WORKLOAD.validate(params, **workload)


def run_perf(engine, params, workload, *, sim, seed, build_dir):
    """Host side of ``sparsehw perf``: the perf record (:func:`verif.runner.perf_record`)."""
    from sparsehw.hw.figs import FigsArray, NmBroadcastArray, NmFanoutArray, NmFixed24Array
    from sparsehw.verif.runner import perf_record, run_cocotb
    workload = check_workload(params, workload)
    cls = {"figs": FigsArray, "nm_broadcast": NmBroadcastArray, "nm_fanout": NmFanoutArray,
           "nm_fixed24": NmFixed24Array}[engine]
    result = run_cocotb(cls(**params), engine, "sparsehw.verif.figs.perf_figs", build_dir=build_dir,
                        sim=sim, seed=seed, params=params, workload={**workload, "engine": engine})
    return perf_record(result, sim=sim)
