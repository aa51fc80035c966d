"""cocotb tests of :class:`sparsehw.verif.ring.harness.RingHarness`: the hardware traffic generators, checkers and
counters around the ring. cocotb only programs the configuration inputs and reads counters, so
long runs cost little Python time.

Tests
-----
``harness_quick``
    Short run for ``make test``: random traffic under load and ejection back-pressure, then a
    drain; every created packet is delivered, checked, and the watchdog never fired.
``sweep``
    Offered-load sweep for ``sparsehw perf`` (see :mod:`sparsehw.verif.ring.perf_ring`).
``soak``
    Saturate-then-drain soak (>= 100,000 cycles with the default workload).
"""

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

import sparsehw.golden.ring as golden
from sparsehw.verif.ring.harness import PATTERN_CODES
from sparsehw.verif import common
from sparsehw.verif.stream import start

#: A run fails when flits are in flight and no flit is ejected for this many cycles.
WATCHDOG = 1024
#: Accepted throughput tracks the offered load while accepted >= TRACK * offered.
TRACK = 0.97


class Harness:
    """Programs a RingHarness and reads its counters."""

    def __init__(self, dut, k):
        self.dut, self.k = dut, k

    async def start(self):
        for name in ("pattern", "load", "hot", "gen_en", "measure", "clear", "eject_stall"):
            getattr(self.dut, name).value = 0
        await start(self.dut)         # clock and reset (the harness has no stream ports)

    def configure(self, *, pattern=None, load=None, hot=None, eject_stall=None):
        if pattern is not None:
            self.dut.pattern.value = PATTERN_CODES[pattern]
        if load is not None:
            self.dut.load.value = min(65536, round(load * 65536))
        if hot is not None:
            self.dut.hot.value = hot
        if eject_stall is not None:
            self.dut.eject_stall.value = min(65535, round(eject_stall * 65536))

    def read(self, name):
        return [int(getattr(self.dut, f"{name}__{i}").value) for i in range(self.k)]

    def get(self, name):
        return int(getattr(self.dut, name).value)

    async def clear(self):
        self.dut.clear.value = 1
        await RisingEdge(self.dut.clk)
        self.dut.clear.value = 0

    async def window(self, cycles):
        """Clear the window counters, count for ``cycles`` cycles, return the figures."""
        await self.clear()
        self.dut.measure.value = 1
        await ClockCycles(self.dut.clk, cycles)
        self.dut.measure.value = 0
        await RisingEdge(self.dut.clk)
        k = self.k
        gen, ref, inj, ej = (self.read(n) for n in ("generated", "refused", "injected", "ejected"))
        delivered = sum(ej)
        return {
            "offered_measured": sum(gen) / (cycles * k),
            "accepted": delivered / (cycles * k),
            "refused": sum(ref),
            "latency": self.get("lat_sum") / delivered if delivered else float("nan"),
            "net_latency": self.get("net_lat_sum") / delivered if delivered else float("nan"),
            "max_latency": self.get("lat_max"),
            "min_node_accepted": min(inj) / cycles,
            "mean_node_accepted": sum(inj) / (cycles * k),
        }

    async def drain(self, limit):
        """Stop the generators and wait until the source queues and the ring are empty."""
        self.dut.gen_en.value = 0
        waited = 0
        last = None
        while True:
            await ClockCycles(self.dut.clk, 64)
            waited += 64
            inflight = self.get("inflight")
            state = (inflight, self.get("cycle"))
            if inflight == 0 and last is not None and last[0] == 0:
                return waited
            last = state
            assert waited < limit, f"drain did not finish in {limit} cycles ({inflight} in flight)"

    def check_health(self):
        assert self.get("errors") == 0, f"{self.get('errors')} flits failed the order/check test"
        assert self.get("bad_dest") == 0, "a generator produced an out-of-range destination"
        assert self.get("max_idle") < WATCHDOG, \
            f"watchdog: flits in flight and no ejection for {self.get('max_idle')} cycles"


async def _conserve(h, cycles, fair=None, **config):
    """Run ``cycles`` with measurement on from the first created packet to the end of the drain,
    then check conservation: every created, unrefused packet was ejected exactly once. With
    ``fair``, also check that no node injected less than ``fair`` x the mean during the loaded
    part (counted after a warm-up of a quarter of ``cycles``)."""
    await h.clear()
    h.configure(**config)
    h.dut.measure.value = 1
    h.dut.gen_en.value = 1
    warm = cycles // 4
    await ClockCycles(h.dut.clk, warm)
    before = h.read("injected")
    await ClockCycles(h.dut.clk, cycles - warm)
    during = [b - a for a, b in zip(before, h.read("injected"))]
    await h.drain(limit=50 * cycles)
    await ClockCycles(h.dut.clk, 4)
    h.dut.measure.value = 0
    await RisingEdge(h.dut.clk)
    gen, ref, inj, ej = (h.read(n) for n in ("generated", "refused", "injected", "ejected"))
    assert sum(gen) > 0
    assert sum(gen) - sum(ref) == sum(inj) == sum(ej), \
        f"created {sum(gen)} refused {sum(ref)} injected {sum(inj)} ejected {sum(ej)}"
    h.check_health()
    if fair is not None:
        mean = sum(during) / len(during)
        assert min(during) >= fair * mean, \
            f"{config}: per-node injections {during}, min < {fair} x mean {mean:.1f}"
    dut_log = h.dut._log
    dut_log.info(f"{config}: injections during load {during}")
    return sum(ej), (min(during) / (sum(during) / len(during)) if sum(during) else 0.0)


@cocotb.test()
async def harness_quick(dut):
    p = common.params()
    k = p.get("nodes", 4)
    h = Harness(dut, k)
    await h.start()
    cycles = common.workload().get("cycles", 1500)
    total = 0
    fairness = {}
    # Offered load 1.0 for every pattern (hotspot twice: the hot node at both ends), with and
    # without ejection back-pressure: conservation, order, watchdog and per-node fairness.
    for pattern, load, stall, hot in (("uniform", 0.5, 0.0, 0), ("hotspot", 1.0, 0.0, 0),
                                      ("hotspot", 1.0, 0.3, k - 1), ("tornado", 1.0, 0.5, 0),
                                      ("neighbour", 1.0, 0.0, 0), ("uniform", 1.0, 0.0, 0)):
        flits, fair = await _conserve(h, cycles, fair=0.5 if load == 1.0 else None,
                                      pattern=pattern, load=load, hot=hot, eject_stall=stall)
        total += flits
        fairness[f"{pattern}/{load}/{stall}/{hot}"] = round(fair, 3)
    # Low load, no back-pressure: network latency is close to the zero-load model.
    h.configure(pattern="neighbour", load=0.02, eject_stall=0.0)
    h.dut.gen_en.value = 1
    figures = await h.window(cycles)
    await h.drain(limit=10 * cycles)
    model = golden.mean_zero_load_latency("neighbour", k)
    assert model <= figures["net_latency"] <= model + 0.5, (figures, model)
    h.check_health()
    common.record(cycles=int(dut.cycle.value), flits=total, fairness=fairness)


def _loads(bound):
    """Offered loads of a sweep: 0.05, 0.1 .. 1.0 and 0.5/0.8/0.9/0.95 x the bound."""
    grid = {0.05} | {round(0.1 * i, 4) for i in range(1, 11)}
    grid |= {round(f * bound, 4) for f in (0.5, 0.8, 0.9, 0.95)}
    return sorted(x for x in grid if 0 < x <= 1.0)


async def _sweep_pattern(h, pattern, hot, warmup, window):
    """One pattern's load sweep (all points in this simulation); returns its record."""
    dut, k = h.dut, h.k
    bound = golden.ideal_throughput(pattern, k)
    h.configure(pattern=pattern, hot=hot, eject_stall=0.0)

    async def point(load, drain=False):
        if drain:
            await h.drain(limit=100 * window)
        h.configure(load=load)
        h.dut.gen_en.value = 1
        await ClockCycles(dut.clk, warmup)
        figures = await h.window(window)
        figures["offered"] = load
        figures["tracks"] = figures["accepted"] >= TRACK * figures["offered_measured"]
        return figures

    zero = await point(0.01, drain=True)
    curve = []
    for load in _loads(bound):
        curve.append(await point(load))
    # Saturation: bisection between the highest tracking grid load and the next one above it.
    tracking = [c for c in curve if c["tracks"]]
    best = max(tracking, key=lambda c: c["offered"]) if tracking else None
    refined = []
    if best is not None:
        above = [c["offered"] for c in curve if c["offered"] > best["offered"]]
        low, high = best["offered"], (above[0] if above else None)
        for _ in range(3 if high is not None else 0):
            mid = round((low + high) / 2, 5)
            c = await point(mid, drain=True)
            refined.append(c)
            if c["tracks"]:
                low, best = mid, c
            else:
                high = mid
    await h.drain(limit=100 * window)
    h.check_health()
    full = [c for c in curve if c["offered"] == 1.0][0]
    peak = max(c["accepted"] for c in curve + refined)
    sat = best["accepted"] if best else 0.0
    return dict(
        pattern=pattern, hot=hot,
        saturation_throughput=sat,
        saturation_offered=best["offered"] if best else 0.0,
        ideal_throughput=bound,
        utilization=sat / bound,
        zero_load_latency=zero["net_latency"],
        zero_load_latency_with_queue=zero["latency"],
        zero_load_latency_model=golden.mean_zero_load_latency(pattern, k, hot),
        peak_accepted=peak,
        accepted_at_full_load=full["accepted"],
        full_load_vs_peak=full["accepted"] / peak if peak else 0.0,
        min_node_vs_mean_at_full_load=(full["min_node_accepted"] / full["mean_node_accepted"]
                                       if full["mean_node_accepted"] else 0.0),
        curve=[{key: c[key] for key in ("offered", "offered_measured", "accepted", "latency",
                                        "net_latency", "min_node_accepted", "tracks")}
               for c in curve],
        refinement=[{key: c[key] for key in ("offered", "accepted", "tracks")} for c in refined],
    )


@cocotb.test()
async def sweep(dut):
    """Load sweep of ``pattern`` (or of every pattern, ``pattern=all``) in one simulation."""
    p, w = common.params(), common.workload()
    k = p.get("nodes", 4)
    pattern, hot = w.get("pattern", "uniform"), w.get("hot", 0)
    warmup, window = w.get("warmup", 1000), w.get("window", 4000)
    h = Harness(dut, k)
    await h.start()
    names = golden.PATTERNS if pattern == "all" else (pattern,)
    results = []
    for name in names:
        results.append(await _sweep_pattern(h, name, hot, warmup, window))
        dut._log.info(f"{name}: sat {results[-1]['saturation_throughput']:.3f} "
                      f"util {results[-1]['utilization']:.3f} "
                      f"fair {results[-1]['min_node_vs_mean_at_full_load']:.3f}")
    record = dict(results[0]) if len(results) == 1 else {
        "patterns": results,
        "utilization": min(r["utilization"] for r in results),
        **{key: results[0][key] for key in ("saturation_throughput", "ideal_throughput",
                                           "zero_load_latency", "curve")}}
    common.record(**record, cycles=int(dut.cycle.value), errors=h.get("errors"),
                  max_idle=h.get("max_idle"))


@cocotb.test()
async def soak(dut):
    p, w = common.params(), common.workload()
    k = p.get("nodes", 4)
    cycles = w.get("soak_cycles", 100000)
    pattern, hot = w.get("pattern", "uniform"), w.get("hot", 0)
    h = Harness(dut, k)
    await h.start()
    h.configure(pattern=pattern, hot=hot)
    # Phase 1: offered load 1.0, ejection always ready; phase 2: also 50 % random ejection
    # back-pressure. Then drain. Counters run throughout, so conservation covers the whole run.
    await h.clear()
    h.dut.measure.value = 1
    h.configure(load=1.0, eject_stall=0.0)
    h.dut.gen_en.value = 1
    step = 1024
    done = 0
    last_ej = 0
    while done < cycles:
        if done >= cycles // 2:
            h.configure(eject_stall=0.5)
        await ClockCycles(dut.clk, step)
        done += step
        ej = sum(h.read("ejected"))
        assert ej > last_ej or h.get("inflight") == 0, f"no progress in {step} cycles at {done}"
        last_ej = ej
    full_inj = h.read("injected")
    drain = await h.drain(limit=50 * cycles)
    h.dut.measure.value = 0
    await RisingEdge(dut.clk)
    gen, ref, inj, ej = (h.read(n) for n in ("generated", "refused", "injected", "ejected"))
    assert sum(gen) - sum(ref) == sum(inj) == sum(ej), (sum(gen), sum(ref), sum(inj), sum(ej))
    h.check_health()
    mean = sum(full_inj) / k
    common.record(soak_cycles=done, drain_cycles=drain, flits=sum(ej),
                  accepted=sum(full_inj) / (done * k),
                  min_node_vs_mean=min(full_inj) / mean if mean else 0.0,
                  max_idle=h.get("max_idle"), errors=h.get("errors"),
                  cycles=int(dut.cycle.value), passed_soak=True)
