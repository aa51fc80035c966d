"""cocotb regression of :class:`sparsehw.hw.ring.Ring` against :mod:`sparsehw.golden.ring`.

- every source/destination pair alone: latency equals :func:`golden.ring.zero_load_latency`;
- random traffic with random injection gaps and random ejection back-pressure, checked by the
  scoreboard :func:`golden.ring.check_delivery` (multiset and per-flow order);
- out-of-range destinations (when ``nodes`` is not a power of two) are flagged and dropped;
- starvation (onset, wait bound, rounds of ``quota``), flits for needy routers, the ejection
  port's order (:func:`golden.ring.eject_order`);
- every pair offered in the first cycle after reset: the zero-load latency;
- a flit blocked in the slot arriving at a router keeps that router from injecting in that
  direction (flow-control rule 1 of ``docs/ring.md``).

Workload knobs (``verif.common.workload()``): ``packets`` per node (default 120), ``stall``
probability on every stream (default 0.3).

Functional coverage (``verif.coverage``, block ``ring``, reported after every test,
cumulative): ``pair`` (every source/destination flow delivered, local ones included),
``starvation`` (every router starved in each direction a 2-hop route passes it, with the exact
onset checked; ``nodes >= 4``), ``queue_full`` (every injection port refused while its source
offered: the injection queue full), ``back_pressure`` (every ejection port held a flit while
stalled), ``bad_dest`` (an out-of-range destination flagged; only when ``nodes`` is not a power
of two), ``needy_dest`` (a flit for a needy router delivered at zero-load latency, every router
and direction; ``nodes >= 3``), ``eject_share`` (every node with each ejection buffer the full
one: full-first and per-source rounds checked; ``nodes >= 3``), ``eject_order`` (every node's
exact ejection order checked against :func:`golden.ring.eject_order`, with no buffer full and
with each fed buffer full) and the five handshake bins of every ``inject<i>`` and ``eject<i>``
port. None of them depends on the ring's latency.
"""

import cocotb
from amaranth.hdl import Shape
from cocotb.triggers import ReadOnly, RisingEdge

import sparsehw.golden.ring as golden
from sparsehw.hw.ring import eject_layout, inject_layout
from sparsehw.verif import common
from sparsehw.verif.coverage import Coverage
from sparsehw.verif.stream import (StreamSource, collect, endpoints, pack, restart, start,
                                   unpack)


def _setup():
    p = common.params()
    k, width = p.get("nodes", 4), p.get("width", 32)
    return k, width, inject_layout(k, width), eject_layout(k, width)


_COVER = {}


def _coverage(k):
    """``(coverage, samplers)`` of this simulation (one set per process)."""
    if not _COVER:
        cov = Coverage("ring")
        pairs = [(s, d) for s in range(k) for d in range(k)]
        cases = [(victim, step) for _, victim, _, step in _starvation_cases(k)]
        bits = Shape.cast(inject_layout(k, 8)["dest"].shape).width
        points = {
            "pair": cov.point("pair", pairs, labels=[f"{s}->{d}" for s, d in pairs]),
            "queue_full": cov.point("queue_full", list(range(k))),
            "back_pressure": cov.point("back_pressure", list(range(k))),
        }
        if cases:
            points["starvation"] = cov.point(
                "starvation", cases, labels=[f"{v}{'cw' if d > 0 else 'ccw'}" for v, d in cases])
        shares = _eject_share_cases(k)
        if shares:
            points["eject_share"] = cov.point(
                "eject_share", shares, labels=[f"{n}{full}" for n, full in shares])
        needy = [(needy, step) for _, needy, _, step in _needy_dest_cases(k)]
        if needy:
            points["needy_dest"] = cov.point(
                "needy_dest", needy, labels=[f"{v}{'cw' if d > 0 else 'ccw'}" for v, d in needy])
        orders = _eject_order_bins(k)
        points["eject_order"] = cov.point("eject_order", orders,
                                          labels=[f"{n}{kind}" for n, kind in orders])
        if k != 2 ** bits:
            points["bad_dest"] = cov.point("bad_dest", ["flagged"])
        _COVER.update(cov=cov, points=points)
    return _COVER["cov"], _COVER["points"]


def _eject_order_bins(k):
    """``(node, kind)`` of :func:`ejection_order_matches_the_model_at_every_node`: every node
    in a random drain case (``mixed``; at small ``eject_depth`` a buffer may fill there too)
    and with each buffer that some source feeds deliberately filled."""
    return [(node, kind) for node in range(k)
            for kind in ["mixed"] + [golden.EJECT_BUFFERS[b] for b in range(3)
                                     if any(golden.eject_buffer(src, node, k) == b
                                            for src in range(k))]]


def _cover_delivered(k, delivered):
    """Sample ``(src, dst, payload)`` deliveries (after the scoreboard accepted them)."""
    _, sample = _coverage(k)
    for src, dst, _ in delivered:
        sample["pair"]((src, dst))


def _cover_ports(dut, k, **ends):
    """Sample refused injections and held ejections of these endpoints (``inject<i>`` /
    ``eject<i>``), register their handshake bins, report the coverage so far."""
    cov, sample = _coverage(k)
    for name, end in ends.items():
        node = int(name.lstrip("injectj"))
        if end.states["held"]:
            sample["queue_full" if name.startswith("inject") else "back_pressure"](node)
    cov.ports(**ends)
    cov.report(dut._log)


def _report(dut, k):
    _coverage(k)[0].report(dut._log)


async def _start(dut, k):
    """Clock, injection idle, ejection always ready, reset."""
    for i in range(k):
        getattr(dut, f"eject__{i}__ready").value = 1
    await start(dut, sources=[f"inject__{i}" for i in range(k)])


@cocotb.test()
async def every_pair_alone_has_the_documented_latency(dut):
    k, width, inj_l, ej_l = _setup()
    await _start(dut, k)
    rng = common.rng(10)
    for src in range(k):
        for dst in range(k):
            latency, payload = await _lone_flit_latency(dut, k, width, inj_l, ej_l, src, dst,
                                                        rng)
            assert latency == golden.zero_load_latency(src, dst, k), \
                f"{src}->{dst}: latency {latency}, model {golden.zero_load_latency(src, dst, k)}"
            await ReadOnly()
            assert all(getattr(dut, f"eject__{i}__valid").value == 0 for i in range(k))
            await RisingEdge(dut.clk)
            _cover_delivered(k, [(src, dst, payload)])
    common.record(pairs=k * k)
    _report(dut, k)


@cocotb.test()
async def random_traffic_with_stalls_matches_scoreboard(dut):
    k, width, inj_l, ej_l = _setup()
    load = common.workload()
    packets, stall = load.get("packets", 120), load.get("stall", 0.3)
    await _start(dut, k)
    rng = common.rng(20)
    injected = []
    sources, sinks = zip(*(endpoints(dut, f"inject__{i}", f"eject__{i}", stall=stall,
                                     salt=100 + 2 * i) for i in range(k)))
    for i in range(k):
        # Bursts to one destination (stress per-flow order) mixed with uniform destinations.
        items = []
        while len(items) < packets:
            dst = rng.randrange(k)
            for _ in range(rng.choice((1, 1, 2, 5))):
                items.append((dst, rng.getrandbits(width)))
        items = items[:packets]
        injected += [(i, dst, payload) for dst, payload in items]
        sources[i].send_nowait(pack(inj_l, {"dest": d, "payload": p}) for d, p in items)
    first = sinks[0]._cycle
    for i in range(k):
        expected = sum(1 for _, d, _ in injected if d == i)
        await collect(sinks[i], expected, timeout_cycles=60 * packets * k)
    for _ in range(4 * k):                          # nothing extra may arrive
        await RisingEdge(dut.clk)
    delivered = []
    for i in range(k):
        for bits in sinks[i].items:                 # every item, so an extra one is caught
            item = unpack(ej_l, bits)
            delivered.append((item["src"], i, item["payload"]))
    golden.check_delivery(injected, delivered)
    assert int(dut.bad_dest.value) == 0
    cycles = max(s.last_cycle for s in sinks if s.last_cycle is not None) - first + 1
    common.record(cycles=cycles, flits=len(injected))
    _cover_delivered(k, delivered)
    _cover_ports(dut, k, **{f"inject{i}": sources[i] for i in range(k)},
                 **{f"eject{i}": sinks[i] for i in range(k)})


@cocotb.test()
async def out_of_range_destination_is_flagged_and_dropped(dut):
    k, width, inj_l, ej_l = _setup()
    await _start(dut, k)
    bits = Shape.cast(inj_l["dest"].shape).width
    if k == 2 ** bits:
        assert int(dut.bad_dest.value) == 0         # no out-of-range value exists
        _report(dut, k)
        return
    node = k - 1
    valid = getattr(dut, f"inject__{node}__valid")
    getattr(dut, f"inject__{node}__payload").value = pack(inj_l, {"dest": k, "payload": 1})
    valid.value = 1
    await ReadOnly()
    assert getattr(dut, f"inject__{node}__ready").value == 1
    await RisingEdge(dut.clk)
    valid.value = 0
    for _ in range(2 * k + 4):
        await ReadOnly()
        assert all(getattr(dut, f"eject__{i}__valid").value == 0 for i in range(k))
        await RisingEdge(dut.clk)
    assert int(dut.bad_dest.value) == 1 << node
    _coverage(k)[1]["bad_dest"]("flagged")
    _report(dut, k)


# -- monitor: every handshake with its cycle, and the stream rule on every eject port -----------

class _PortStats:
    """Handshake statistics of one port, as :mod:`verif.stream`'s drivers keep them (for
    :meth:`verif.coverage.Coverage.ports`)."""

    def __init__(self):
        self.states = {"transfer": 0, "held": 0, "empty": 0}
        self.back_to_back = 0
        self.longest_hold = 0
        self._last = False
        self._hold = 0

    def sample(self, valid, ready):
        fired = valid and ready
        if fired:
            self.states["transfer"] += 1
            self.back_to_back += self._last
        if valid and not ready:
            self.states["held"] += 1
            self._hold += 1
            self.longest_hold = max(self.longest_hold, self._hold)
        else:
            self._hold = 0
        if not valid:
            self.states["empty"] += 1
        self._last = fired


class _Monitor:
    """Records every injection and ejection handshake with its cycle number (edges since the
    monitor started; a handshake sampled in cycle ``c`` happens at the edge ending it) and checks
    the stream rule on every ``eject`` port: once ``valid`` is high and ``ready`` low, the next
    cycle must show ``valid`` high and the same ``payload``."""

    def __init__(self, dut, k, inj_l, ej_l):
        self.dut, self.k, self.inj_l, self.ej_l = dut, k, inj_l, ej_l
        self.cycle = 0
        self.injected = [[] for _ in range(k)]      # (cycle, dest, payload) per source
        self.ejected = [[] for _ in range(k)]       # (cycle, src, payload) per destination
        self.violations = []
        self.stalled_beats = 0                      # cycles with eject valid & ~ready
        self.held = [0] * k                         # ... per eject port
        self.eject_stats = [_PortStats() for _ in range(k)]
        cocotb.start_soon(self._run())

    async def _run(self):
        dut, k = self.dut, self.k
        ports = [(getattr(dut, f"inject__{i}__valid"), getattr(dut, f"inject__{i}__ready"),
                  getattr(dut, f"inject__{i}__payload"), getattr(dut, f"eject__{i}__valid"),
                  getattr(dut, f"eject__{i}__ready"), getattr(dut, f"eject__{i}__payload"))
                 for i in range(k)]
        offered = [None] * k                        # payload offered and not taken last cycle
        while True:
            await ReadOnly()
            for i, (iv, ir, ip, ev, er, ep) in enumerate(ports):
                if iv.value == 1 and ir.value == 1:
                    item = unpack(self.inj_l, int(ip.value))
                    self.injected[i].append((self.cycle, item["dest"], item["payload"]))
                valid = ev.value == 1
                self.eject_stats[i].sample(valid, er.value == 1)
                payload = int(ep.value) if valid else None
                if offered[i] is not None and payload != offered[i]:
                    self.violations.append(
                        f"cycle {self.cycle}: eject[{i}] {'changed payload' if valid else 'dropped valid'}"
                        f" while stalled ({offered[i]:#x} -> "
                        f"{'-' if payload is None else hex(payload)})")
                if valid and er.value == 1:
                    item = unpack(self.ej_l, payload)
                    self.ejected[i].append((self.cycle, item["src"], item["payload"]))
                    offered[i] = None
                elif valid:
                    offered[i] = payload
                    self.stalled_beats += 1
                    self.held[i] += 1
                else:
                    offered[i] = None
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    def delivered(self):
        return [(src, i, payload) for i in range(self.k) for _, src, payload in self.ejected[i]]

    def sent(self):
        return [(i, dest, payload) for i in range(self.k) for _, dest, payload in self.injected[i]]


async def _long_stalls(dut, port, rng, stop, longest, blackout=lambda: False):
    """Drive ``<port>__ready``: low while ``blackout()``, then low for 1..``longest`` cycles,
    then high for 1..3, until ``stop()``; then always high."""
    ready = getattr(dut, f"{port}__ready")
    ready.value = 0
    while blackout():
        await RisingEdge(dut.clk)
    while not stop():
        ready.value = 0
        for _ in range(rng.randint(1, longest)):
            await RisingEdge(dut.clk)
        ready.value = 1
        for _ in range(rng.randint(1, 3)):
            await RisingEdge(dut.clk)
    ready.value = 1


@cocotb.test()
async def heavy_back_pressure_holds_eject_beats_and_fills_queues(dut):
    """Every flow (all sources x all destinations, local included), sources never pause; every
    ejection port first blocked until every injection port has been refused (the ring, the
    ejection buffers and every injection queue full), then stalled for long random runs (up to
    four ejection buffers' worth): the ring holds, the queues fill again. Checks the stream
    rule on every ``eject`` port (valid held and payload stable while stalled), then the
    scoreboard."""
    k, width, inj_l, ej_l = _setup()
    p = common.params()
    eject_depth = p.get("eject_depth", 16)
    depth = p.get("depth", 16)
    packets = common.workload().get("packets", 120)
    await _start(dut, k)
    mon = _Monitor(dut, k, inj_l, ej_l)
    rng = common.rng(30)
    sources = [StreamSource(dut, f"inject__{i}") for i in range(k)]
    # enough flits to fill every buffer of the ring (CW, CCW, local ejection and injection
    # queues: at most 3 * eject_depth + 3 * depth per node, plus the links) and then some
    per_node = max(packets, 6 * k, 4 * (depth + eject_depth) + 8)
    for i in range(k):
        items = []
        while len(items) < per_node:
            dests = list(range(k))
            rng.shuffle(dests)                      # every flow, in bursts
            for dst in dests:
                items += [(dst, rng.getrandbits(width)) for _ in range(rng.choice((1, 2, 4)))]
        items = items[:per_node]
        sources[i].send_nowait(pack(inj_l, {"dest": d, "payload": x}) for d, x in items)
    done = [False]
    blocked = [True]
    for i in range(k):
        cocotb.start_soon(_long_stalls(dut, f"eject__{i}", common.rng(40 + i), lambda: done[0],
                                       4 * eject_depth, lambda: blocked[0]))
    total = k * per_node
    for _ in range(20 * per_node):
        if all(s.states["held"] for s in sources):
            break
        await RisingEdge(dut.clk)
    blocked[0] = False
    full_at = mon.cycle
    for _ in range(400 * per_node):
        if sum(len(e) for e in mon.ejected) >= total:
            break
        if all(s.pending == 0 for s in sources):
            done[0] = True                          # drain at full speed
        await RisingEdge(dut.clk)
    for _ in range(4 * k):
        await RisingEdge(dut.clk)
    assert not mon.violations, "; ".join(mon.violations[:5])
    golden.check_delivery(mon.sent(), mon.delivered())
    # The stimulus did what it claims: beats were stalled, and at least half of the injection
    # ports were refused (a queue full) at some point.
    assert mon.stalled_beats > 0
    refused = [s.states["held"] for s in sources]
    assert all(refused), f"injection ports never refused: {refused}"
    assert int(dut.bad_dest.value) == 0
    common.record(heavy_flits=total, heavy_cycles=mon.cycle, stalled_beats=mon.stalled_beats,
                  refused_cycles=refused, all_queues_full_at=full_at)
    _cover_delivered(k, mon.delivered())
    _, sample = _coverage(k)
    for i in range(k):
        if mon.held[i]:
            sample["back_pressure"](i)
    _cover_ports(dut, k, **{f"inject{i}": sources[i] for i in range(k)},
                 **{f"eject{i}": mon.eject_stats[i] for i in range(k)})


def _starvation_cases(k):
    """``(upstream, victim, dest, direction)``: every router as the victim in both directions,
    where the upstream neighbour's flits to ``dest`` take 2 hops through the victim."""
    cases = []
    for step in (+1, -1):
        for victim in range(k):
            up, dest = (victim - step) % k, (victim + step) % k
            if golden.route(up, dest, k) == (step, 2) and golden.route(victim, dest, k) == \
                    (step, 1):
                cases.append((up, victim, dest, step))
    return cases


async def _starvation_case(dut, mon, k, width, inj_l, case, starve, quota, rng):
    """One starvation scenario (see :func:`starvation_onset_and_injection_wait_bound`); returns
    the victim's onset and the upstream node's longest wait."""
    up, victim, dest, _ = case
    inj = {n: len(mon.injected[n]) for n in range(k)}
    ej = len(mon.ejected[dest])
    run = starve + 24 * quota                       # the victim stays backlogged past the
    flood = 2 * starve + 48 * quota + 4 * k         # upstream node's own onset
    upstream = StreamSource(dut, f"inject__{up}")
    upstream.send_nowait(pack(inj_l, {"dest": dest, "payload": rng.getrandbits(width)})
                         for _ in range(flood))
    for _ in range(3 * k):                          # the link into the victim is full
        await RisingEdge(dut.clk)
    node = StreamSource(dut, f"inject__{victim}")
    node.send_nowait(pack(inj_l, {"dest": dest, "payload": rng.getrandbits(width)})
                     for _ in range(run))
    total = flood + run
    for _ in range(20 * total):
        if len(mon.ejected[dest]) - ej >= total:
            break
        await RisingEdge(dut.clk)
    for _ in range(4 * k):
        await RisingEdge(dut.clk)
    upstream.stop()
    node.stop()
    assert len(mon.ejected[dest]) - ej == total, \
        f"case {case}: {len(mon.ejected[dest]) - ej} of {total} flits delivered"
    # Entry cycle of each flit into the ring: ejection cycle - zero-load latency (the
    # destination takes at most one flit per cycle from one link and is always ready, so
    # nothing queues there).
    entries = {s: [c - golden.zero_load_latency(s, dest, k)
                   for c, s2, _ in mon.ejected[dest][ej:] if s2 == s] for s in (up, victim)}
    t0 = mon.injected[victim][inj[victim]][0]       # the victim's first offer (queued at once)
    onset = entries[victim][0] - t0
    assert onset == golden.starvation_delay(starve, 1), \
        f"case {case}: the victim's first flit entered {onset} cycles after its offer, model " \
        f"{golden.starvation_delay(starve, 1)} (starve={starve})"
    bound = golden.injection_wait_bound(k, starve, quota)
    waits = {}
    for s in (up, victim):
        waits[s] = [b - a - 1 for a, b in zip(entries[s], entries[s][1:])]
        assert max(waits[s]) <= bound, \
            f"case {case}: node {s} waited {max(waits[s])} cycles, bound {bound}"
    assert max(waits[up]) == golden.starvation_delay(starve, 0), \
        f"case {case}: upstream node's longest wait {max(waits[up])}, model " \
        f"{golden.starvation_delay(starve, 0)}"
    # Both share the link after the upstream node's onset: the victim still gets slots.
    first_up_after = next(e for e in entries[up] if e > entries[victim][0])
    assert any(e > first_up_after for e in entries[victim]), \
        f"case {case}: the victim got no slot after the upstream node starved"
    # ... by fairness rounds: until either has no flit left, neither enters more than
    # ``2 * quota`` in a row (a starving router injects at most ``quota`` flits per round while
    # the other is needy; a run can end one round and start the next, e.g. at the upstream
    # node's onset: 4 in a row at quota 2, nodes 5).
    shared = sorted((e, s) for s in (up, victim) for e in entries[s]
                    if first_up_after <= e <= min(entries[up][-1], entries[victim][-1]))
    runs, last = [], None
    for _, s in shared:
        if s == last:
            runs[-1][1] += 1
        else:
            runs.append([s, 1])
            last = s
    assert all(n <= 2 * quota for _, n in runs), \
        f"case {case}: runs of consecutive entries (node, flits) {runs[:12]}..., quota {quota}"
    # ... and equally: while both are starving, every round gives each of them ``quota`` flits,
    # so over the shared window (which cuts at most one round at each end) their counts differ
    # by at most ``2 * quota`` (a router whose round ended early, e.g. ``spent`` set before its
    # quota was used, gets fewer slots than the other).
    counts = {s: sum(1 for _, s2 in shared if s2 == s) for s in (up, victim)}
    assert abs(counts[up] - counts[victim]) <= 2 * quota, \
        f"case {case}: entries of (upstream, victim) in the shared window {counts}, more than " \
        f"2 x quota = {2 * quota} apart"
    return onset, max(waits[up])


@cocotb.test()
async def starvation_onset_and_injection_wait_bound(dut):
    """For every router and direction (where a 2-hop route passes it, ``nodes >= 4``): its
    upstream neighbour floods the node after it, through it; then the victim offers a long run
    of flits to the same destination. The victim sees only the upstream flits, so it starves:
    its first flit must enter the ring exactly :func:`golden.starvation_delay` (``starve``, plus 1
    hop to the upstream node) after it was offered. The upstream node then yields until it
    starves in turn (its arriving slot is free: delay ``starve + 0``, its longest wait); from
    then on they share by rounds (runs of at most ``2 * quota``, counts at most ``2 * quota``
    apart). Every wait between two consecutive flits of either node stays
    within :func:`golden.injection_wait_bound`. Ejection always ready; cases one after the
    other, the ring drained in between; every flit checked by the scoreboard."""
    k, width, inj_l, ej_l = _setup()
    cases = _starvation_cases(k)
    if not cases:
        common.record(starvation="skipped (no 2-hop route below 4 nodes)")
        _report(dut, k)
        return
    p = common.params()
    starve = p.get("starve", 255)
    quota = p.get("quota", 4)
    await _start(dut, k)
    mon = _Monitor(dut, k, inj_l, ej_l)
    rng = common.rng(50)
    onsets, longest = set(), set()
    for case in cases:
        onset, wait = await _starvation_case(dut, mon, k, width, inj_l, case, starve, quota, rng)
        onsets.add(onset)
        longest.add(wait)
        _coverage(k)[1]["starvation"]((case[1], case[3]))      # onset reached and checked
    golden.check_delivery(mon.sent(), mon.delivered())
    assert int(dut.bad_dest.value) == 0
    _cover_delivered(k, mon.delivered())
    _report(dut, k)
    common.record(starvation_cases=len(cases), starvation_onset=sorted(onsets),
                  longest_wait=sorted(longest),
                  wait_bound=golden.injection_wait_bound(k, starve, quota),
                  starvation_cycles=mon.cycle)


def _needy_dest_cases(k):
    """``(sender, needy, blocked, direction)``: ``needy``'s 1-hop neighbour ``blocked`` in that
    direction stalls its ejection, so ``needy`` starves there; ``sender`` is ``needy``'s 1-hop
    neighbour on the other side, whose flits for ``needy`` go the same direction."""
    cases = []
    for step in (+1, -1):
        for needy in range(k):
            sender, blocked = (needy - step) % k, (needy + step) % k
            if sender != blocked and golden.route(needy, blocked, k) == (step, 1) and \
                    golden.route(sender, needy, k) == (step, 1):
                cases.append((sender, needy, blocked, step))
    return cases


@cocotb.test()
async def flits_for_a_needy_router_are_not_held_back(dut):
    """A router yields only to needy routers its flit would *pass* (``hw.ring``: "injects a flit
    only if no needy router lies strictly between it and the flit's destination"), so a flit
    *for* a needy router is not held back. For every router and direction (where its 1-hop
    neighbours on both sides use that direction): the downstream neighbour ``blocked`` stops
    ejecting, the router sends it flits until its ejection buffer is full and the router's
    candidate has waited ``starve`` cycles and more (the router is starving and needy); then
    the upstream neighbour sends it flits one by one: each must arrive with the zero-load
    latency (``golden.zero_load_latency``). Then ``blocked`` ejects again, everything drains,
    and the scoreboard checks every flit."""
    k, width, inj_l, ej_l = _setup()
    cases = _needy_dest_cases(k)
    if not cases:
        common.record(needy_dest="skipped (no such neighbours)")
        _report(dut, k)
        return
    p = common.params()
    starve, eject_depth = p.get("starve", 255), p.get("eject_depth", 16)
    await _start(dut, k)
    mon = _Monitor(dut, k, inj_l, ej_l)
    rng = common.rng(60)
    for sender, needy, blocked, step in cases:
        ready = getattr(dut, f"eject__{blocked}__ready")
        ready.value = 0
        jam = StreamSource(dut, f"inject__{needy}")
        count = eject_depth + 2 * k + 8                 # fills the buffer, then waits on the ring
        jam.send_nowait(pack(inj_l, {"dest": blocked, "payload": rng.getrandbits(width)})
                        for _ in range(count))
        for _ in range(eject_depth + starve + 4 * k + 8):
            await RisingEdge(dut.clk)
        start = len(mon.injected[sender])
        probe = StreamSource(dut, f"inject__{sender}")
        for _ in range(4):
            probe.send_nowait([pack(inj_l, {"dest": needy, "payload": rng.getrandbits(width)})])
            for _ in range(3 * k + 4):
                await RisingEdge(dut.clk)
        probe.stop()
        sent = [(c, x) for c, d, x in mon.injected[sender][start:] if d == needy]
        assert len(sent) == 4, f"case {(sender, needy, blocked, step)}: {len(sent)} of 4 taken"
        arrived = {x: c for c, s, x in mon.ejected[needy] if s == sender}
        for cycle, payload in sent:
            assert payload in arrived, \
                f"case {(sender, needy, blocked, step)}: a flit for the needy router {needy} " \
                f"was not delivered while it starved"
            latency = arrived[payload] - cycle
            assert latency == golden.zero_load_latency(sender, needy, k), \
                f"case {(sender, needy, blocked, step)}: a flit for the needy router took " \
                f"{latency} cycles, zero-load latency " \
                f"{golden.zero_load_latency(sender, needy, k)}"
        ready.value = 1
        await jam.wait_idle(timeout_cycles=20 * count)
        for _ in range(20 * count):
            if len(mon.ejected[blocked]) == sum(1 for src in range(k)
                                                for _, d, _ in mon.injected[src] if d == blocked):
                break
            await RisingEdge(dut.clk)
        for _ in range(4 * k + 8):
            await RisingEdge(dut.clk)
        jam.stop()
        _coverage(k)[1]["needy_dest"]((needy, step))
    golden.check_delivery(mon.sent(), mon.delivered())
    assert int(dut.bad_dest.value) == 0
    _cover_delivered(k, mon.delivered())
    _report(dut, k)
    common.record(needy_dest_cases=len(cases), needy_dest_cycles=mon.cycle)


def _eject_share_cases(k):
    """``(node, full)``: every node whose three ejection buffers (CW, CCW, local) can all be fed,
    each buffer in turn the one kept full. The CW buffer is fed by ``node - 1``, the CCW buffer
    by ``node + 1`` (1 hop each), the local one by ``node`` itself."""
    cases = []
    for node in range(k):
        if (node - 1) % k != (node + 1) % k and \
                golden.route((node - 1) % k, node, k) == (+1, 1) and \
                golden.route((node + 1) % k, node, k) == (-1, 1):
            cases += [(node, full) for full in ("cw", "ccw", "local")]
    return cases


@cocotb.test()
async def ejection_serves_a_full_buffer_first_and_sources_by_rounds(dut):
    """The ejection port's two rules (``hw.ring.RingRouter``: "full buffers first, and among the
    candidates fair per source (rounds in which each source is served once)"), observed at the
    port. For every node and each of its three ejection buffers as the one kept full: while the
    port is stalled, the two other buffers get a few flits each (from their one source, never
    enough to fill them) and the chosen buffer's source floods the node, so that buffer is full
    and refilled as soon as it has room. Then the port is always ready. While both other
    buffers still hold flits: the flooding source gets at least every other beat (its buffer is
    full again one cycle after each read, and full comes first), and neither of the other two
    sources is served three times in a row among their beats (each once per round; a round
    boundary may repeat one). Then everything
    drains and the scoreboard checks every flit."""
    k, width, inj_l, ej_l = _setup()
    cases = _eject_share_cases(k)
    if not cases:
        common.record(eject_share="skipped (no such node)")
        _report(dut, k)
        return
    eject_depth = common.params().get("eject_depth", 16)
    await _start(dut, k)
    mon = _Monitor(dut, k, inj_l, ej_l)
    rng = common.rng(70)
    few = max(1, min(6, eject_depth - 2))
    for node, full in cases:
        feeders = {"cw": (node - 1) % k, "ccw": (node + 1) % k, "local": node}
        flood_src = feeders[full]
        others = [feeders[name] for name in ("cw", "ccw", "local") if name != full]
        ready = getattr(dut, f"eject__{node}__ready")
        ready.value = 0
        start = len(mon.ejected[node])
        sources = []
        for src in others:
            source = StreamSource(dut, f"inject__{src}")
            source.send_nowait(pack(inj_l, {"dest": node, "payload": rng.getrandbits(width)})
                               for _ in range(few))
            sources.append(source)
        for _ in range(2 * k + 4):                      # the few arrive first
            await RisingEdge(dut.clk)
        flood = eject_depth + 4 * few + 8
        flooder = StreamSource(dut, f"inject__{flood_src}")
        flooder.send_nowait(pack(inj_l, {"dest": node, "payload": rng.getrandbits(width)})
                            for _ in range(flood))
        for _ in range(eject_depth + 2 * k + 8):        # the flooded buffer is full
            await RisingEdge(dut.clk)
        ready.value = 1
        total = flood + 2 * few
        for _ in range(20 * total):
            if len(mon.ejected[node]) - start >= total:
                break
            await RisingEdge(dut.clk)
        for source in sources + [flooder]:
            source.stop()
        order = [src for _, src, _ in mon.ejected[node][start:]]
        assert len(order) == total, f"case {(node, full)}: {len(order)} of {total} ejected"
        # the window in which both other sources still have flits waiting
        last = min(max(i for i, s in enumerate(order) if s == src) for src in others)
        window = order[:last + 1]
        label = f"case {(node, full)} (sources {flood_src} full, {others[0]}, {others[1]})"
        for a, b in zip(window, window[1:]):
            assert flood_src in (a, b), \
                f"{label}: two beats in a row without the full buffer's source: {window}"
        # Rounds: within a round each source once; a source may be served again right after
        # a round boundary, so at most twice in a row among the two other sources' beats.
        rest = [src for src in window if src != flood_src]
        for a, b, c in zip(rest, rest[1:], rest[2:]):
            assert not a == b == c, \
                f"{label}: source {a} served three times in a row while the other waited: " \
                f"{window}"
        _coverage(k)[1]["eject_share"]((node, full))
    golden.check_delivery(mon.sent(), mon.delivered())
    assert int(dut.bad_dest.value) == 0
    _cover_delivered(k, mon.delivered())
    _report(dut, k)
    common.record(eject_share_cases=len(cases), eject_share_cycles=mon.cycle)


#: Drain cases per node of :func:`ejection_order_matches_the_model_at_every_node`; every third
#: one has a full buffer (each buffer of the node in turn).
_ORDER_CASES = 12


def _order_case(rng, k, node, depth, case):
    """``(sources, full)`` of one drain case at ``node``: the sources of the flits sent to it,
    in sending order, and the buffer made full (``None``: none). Plain cases: 3..9 flits from
    random sources (at most ``min(eject_depth, 6)`` per buffer). Every third case: one buffer
    (each fed buffer in turn) gets ``eject_depth`` flits, each other fed buffer 1..3 (fewer
    than ``eject_depth``), and the first flit sent is not for the full buffer, so the full one
    is not the beat offered first and full-first decides the next beat."""
    feeders = [[src for src in range(k) if golden.eject_buffer(src, node, k) == b]
               for b in range(3)]
    fed = [b for b in range(3) if feeders[b]]
    if case % 3 != 2:
        cap = min(depth, 6)
        length = min(rng.randint(3, 9), cap * len(fed))
        sources, count = [], [0, 0, 0]
        while len(sources) < length:
            src = rng.randrange(k)
            buffer = golden.eject_buffer(src, node, k)
            if count[buffer] < cap:
                sources.append(src)
                count[buffer] += 1
        return sources, None
    full = fed[(case // 3) % len(fed)]
    others = [rng.choice(feeders[b]) for b in fed if b != full
              for _ in range(rng.randint(1, min(depth - 1, 3)))]
    sources = others + [rng.choice(feeders[full]) for _ in range(depth)]
    first = sources.pop(0)
    rng.shuffle(sources)
    return [first] + sources, full


@cocotb.test()
async def ejection_order_matches_the_model_at_every_node(dut):
    """The exact order of the ejection port (``hw.ring.RingRouter``: full buffers first, fair
    per source by rounds, round-robin over the buffers; a beat offered is held) against
    :func:`golden.eject_order`, at every node. Each case starts from reset (no source served,
    round-robin at the CW buffer); the node's port is stalled and flits for it are sent one at
    a time (:func:`_order_case`: random sources, so a ring buffer fed by two sources, e.g. 1 and
    2 hops upstream at ``nodes = 5``, holds both interleaved; every third case with one buffer
    full), each arriving alone on an idle ring before the next is sent: the first one's beat is
    offered and held, the buffers' contents are known. Then the port is always ready and the
    whole drain order (sources and payloads) must equal the model's. After the random cases,
    one directed case per ordered pair ``(a, b)`` of the node's fed buffers: two flits from one
    source of ``a`` (``a``'s beat offered), then two from one source of ``b``: after ``a`` and
    ``b`` are served once, both heads' sources are served and the round-robin starts after
    ``b``, so the tie between the two buffers is decided by the round-robin alone (every order
    of every pair; random cases need not reach it). The scoreboard checks every flit at the
    end."""
    k, width, inj_l, ej_l = _setup()
    depth = common.params().get("eject_depth", 16)
    await _start(dut, k)
    mon = _Monitor(dut, k, inj_l, ej_l)
    rng = common.rng(80)
    cases = 0
    for node in range(k):
        ready = getattr(dut, f"eject__{node}__ready")
        feeders = [[src for src in range(k) if golden.eject_buffer(src, node, k) == b]
                   for b in range(3)]
        pairs = [(a, b) for a in range(3) for b in range(3)
                 if a != b and feeders[a] and feeders[b]]
        for case in range(_ORDER_CASES + len(pairs)):
            await restart(dut, sources=[f"inject__{i}" for i in range(k)])
            ready.value = 0
            if case < _ORDER_CASES:
                sent, full = _order_case(rng, k, node, depth, case)
            else:
                a, b = pairs[case - _ORDER_CASES]
                sent, full = [feeders[a][0]] * 2 + [feeders[b][0]] * 2, None
            cases += 1
            buffers = [[], [], []]
            for src in sent:
                payload = rng.getrandbits(width)
                valid = getattr(dut, f"inject__{src}__valid")
                getattr(dut, f"inject__{src}__payload").value = pack(
                    inj_l, {"dest": node, "payload": payload})
                valid.value = 1
                await ReadOnly()
                assert getattr(dut, f"inject__{src}__ready").value == 1, \
                    f"node {node}, case {case}: node {src} refused a flit on an idle ring"
                await RisingEdge(dut.clk)
                valid.value = 0
                buffers[golden.eject_buffer(src, node, k)].append((src, payload))
                for _ in range(golden.zero_load_latency(src, node, k) + 2):   # it arrives
                    await RisingEdge(dut.clk)
            expected = [item for _, item in golden.eject_order(
                buffers, depth=depth, offered=golden.eject_buffer(sent[0], node, k))]
            start = len(mon.ejected[node])
            ready.value = 1
            for _ in range(2 * len(sent) + 4 * k + 8):
                await RisingEdge(dut.clk)
            got = [(src, payload) for _, src, payload in mon.ejected[node][start:]]
            assert got == expected, \
                f"node {node}, case {case}: ejection order (source, payload) {got}, model " \
                f"{expected} (sent from {sent})"
            _coverage(k)[1]["eject_order"](
                (node, "mixed" if full is None else golden.EJECT_BUFFERS[full]))
    assert not mon.violations, "; ".join(mon.violations[:5])
    golden.check_delivery(mon.sent(), mon.delivered())
    assert int(dut.bad_dest.value) == 0
    _cover_delivered(k, mon.delivered())
    _report(dut, k)
    common.record(eject_order_cases=cases, eject_order_cycles=mon.cycle)


async def _lone_flit_latency(dut, k, width, inj_l, ej_l, src, dst, rng):
    """Offer one flit ``src -> dst`` now (the ring idle, every port ready); returns the cycles
    from its injection handshake to its ejection handshake (None: not ejected within ``4 k + 7``
    cycles) and the payload, checking node, source and payload."""
    payload = rng.getrandbits(width)
    valid = getattr(dut, f"inject__{src}__valid")
    getattr(dut, f"inject__{src}__payload").value = pack(inj_l, {"dest": dst,
                                                                  "payload": payload})
    valid.value = 1
    await ReadOnly()
    assert getattr(dut, f"inject__{src}__ready").value == 1, "idle ring refused a flit"
    await RisingEdge(dut.clk)                       # injection handshake at this edge
    valid.value = 0
    for cycle in range(1, 4 * k + 8):
        await ReadOnly()
        fired = [i for i in range(k) if getattr(dut, f"eject__{i}__valid").value == 1]
        if fired:
            assert fired == [dst], f"{src}->{dst}: flit appeared at nodes {fired}"
            got = unpack(ej_l, getattr(dut, f"eject__{dst}__payload").value)
            assert got == {"src": src, "payload": payload}, f"{src}->{dst}: got {got}"
            await RisingEdge(dut.clk)               # ejection handshake at this edge
            return cycle, payload
        await RisingEdge(dut.clk)
    return None, payload


@cocotb.test()
async def a_flit_offered_right_after_reset_has_the_documented_latency(dut):
    """Every pair, each from its own reset, the flit offered in the first cycle after ``rst``
    falls (the stream rules allow ``valid`` then): its latency is
    :func:`golden.zero_load_latency`, as on a ring that has run idle (a router holding fairness
    state out of reset, e.g. ``starving`` set, would delay a flit that passes it)."""
    k, width, inj_l, ej_l = _setup()
    await _start(dut, k)
    rng = common.rng(90)
    for src in range(k):
        for dst in range(k):
            await restart(dut, sources=[f"inject__{i}" for i in range(k)])
            latency, _ = await _lone_flit_latency(dut, k, width, inj_l, ej_l, src, dst, rng)
            assert latency == golden.zero_load_latency(src, dst, k), \
                f"{src}->{dst} right after reset: latency {latency}, model " \
                f"{golden.zero_load_latency(src, dst, k)}"
    _report(dut, k)
    common.record(after_reset_pairs=k * k)


def _blocked_slot_cases(k):
    """``(up, node, down, step)``: ``up`` sends to its 1-hop neighbour ``node`` in direction
    ``step``, and ``node`` sends to its 1-hop neighbour ``down`` the same way."""
    return [((node - step) % k, node, (node + step) % k, step)
            for step in (+1, -1) for node in range(k)
            if golden.route((node - step) % k, node, k) == (step, 1)
            and golden.route(node, (node + step) % k, k) == (step, 1)]


@cocotb.test()
async def a_blocked_arriving_flit_keeps_the_router_from_injecting(dut):
    """Flow-control rule 1 (``docs/ring.md``): a router injects only into a slot that arrives
    empty or whose flit ejects here in this cycle. For every router and direction with a 1-hop
    neighbour on both sides: the router's ejection port stalls, its upstream neighbour sends it
    ``eject_depth + 1`` flits (the buffer of that direction fills, the last flit waits, blocked,
    in the arriving slot), then the router is offered a flit for its downstream neighbour. While
    the port stalls that flit must not be delivered (the arriving slot is never empty and never
    ejects); after the port is released every flit arrives (scoreboard)."""
    k, width, inj_l, ej_l = _setup()
    depth = common.params().get("eject_depth", 16)
    await _start(dut, k)
    mon = _Monitor(dut, k, inj_l, ej_l)
    rng = common.rng(91)
    for up, node, down, step in _blocked_slot_cases(k):
        await restart(dut, sources=[f"inject__{i}" for i in range(k)])
        ready = getattr(dut, f"eject__{node}__ready")
        ready.value = 0
        feeder = StreamSource(dut, f"inject__{up}")
        feeder.send_nowait(pack(inj_l, {"dest": node, "payload": rng.getrandbits(width)})
                           for _ in range(depth + 1))
        for _ in range(depth + 4 * k + 8):          # the buffer fills, the last flit waits
            await RisingEdge(dut.clk)
        before = len(mon.ejected[down])
        sender = StreamSource(dut, f"inject__{node}")
        sender.send_nowait([pack(inj_l, {"dest": down, "payload": rng.getrandbits(width)})])
        for _ in range(4 * k + 8):
            await RisingEdge(dut.clk)
        assert len(mon.ejected[down]) == before, \
            f"router {node} ({'cw' if step > 0 else 'ccw'}) injected a flit for {down} while " \
            f"the flit arriving from {up} was blocked"
        ready.value = 1
        for _ in range(2 * depth + 4 * k + 8):
            await RisingEdge(dut.clk)
        feeder.stop()
        sender.stop()
        assert len(mon.ejected[down]) == before + 1, \
            f"router {node}: the flit for {down} was not delivered after the port was released"
    assert not mon.violations, "; ".join(mon.violations[:5])
    golden.check_delivery(mon.sent(), mon.delivered())
    assert int(dut.bad_dest.value) == 0
    _report(dut, k)
    common.record(blocked_slot_cases=len(_blocked_slot_cases(k)))


@cocotb.test()
async def a_stalled_flow_fills_its_buffers_exactly_then_streams(dut):
    """Back-pressure capacity (golden module docstring): every flow alone (local ones included),
    each from its own reset, with its destination's ejection port stalled and its source offering
    without pause. The injection port must accept exactly :func:`golden.stalled_flow_capacity`
    flits (the ejection buffer holds ``eject_depth`` before it back-pressures, then the held slots
    and the injection queue) and then refuse; when the port is released, the destination must
    eject the flow one flit per cycle until the last, and the source's remaining flits must be
    accepted one per cycle (ejection into a buffer with room never waits, and a buffer that was
    full takes a flit again in the cycle after a read)."""
    k, width, inj_l, ej_l = _setup()
    p = common.params()
    depth, eject_depth = p.get("depth", 16), p.get("eject_depth", 16)
    await _start(dut, k)
    mon = _Monitor(dut, k, inj_l, ej_l)
    rng = common.rng(92)
    settle = 4 * k + 8
    for src in range(k):
        for dst in range(k):
            await restart(dut, sources=[f"inject__{i}" for i in range(k)])
            capacity = golden.stalled_flow_capacity(src, dst, k, depth, eject_depth)
            total = capacity + eject_depth + 2
            ready = getattr(dut, f"eject__{dst}__ready")
            ready.value = 0
            inj, ej = len(mon.injected[src]), len(mon.ejected[dst])
            source = StreamSource(dut, f"inject__{src}")
            source.send_nowait(pack(inj_l, {"dest": dst, "payload": rng.getrandbits(width)})
                               for _ in range(total))
            quiet = 0
            for _ in range(4 * total + settle):     # until no handshake for ``settle`` cycles
                count = len(mon.injected[src])
                await RisingEdge(dut.clk)
                quiet = quiet + 1 if len(mon.injected[src]) == count else 0
                if quiet > settle:
                    break
            accepted = len(mon.injected[src]) - inj
            assert accepted == capacity, \
                f"{src}->{dst}: {accepted} flits accepted while the ejection port stalled, " \
                f"model {capacity} (eject_depth={eject_depth}, depth={depth})"
            assert len(mon.ejected[dst]) == ej
            ready.value = 1
            for _ in range(4 * total + settle):
                if len(mon.ejected[dst]) - ej >= total:
                    break
                await RisingEdge(dut.clk)
            source.stop()
            cycles = [c for c, _, _ in mon.ejected[dst][ej:]]
            assert len(cycles) == total, f"{src}->{dst}: {len(cycles)} of {total} delivered"
            gaps = [b - a for a, b in zip(cycles, cycles[1:]) if b - a != 1]
            assert not gaps, f"{src}->{dst}: gaps of {gaps} cycles between ejections after " \
                             f"the port was released"
            # ... and the ring takes the rest one flit per cycle: the source's remaining flits
            # are accepted in consecutive cycles (a buffer that back-pressured with a free entry
            # would hold the ring for a cycle, and the injection port with it).
            taken = [c for c, _, _ in mon.injected[src][inj + capacity:]]
            gaps = [b - a for a, b in zip(taken, taken[1:]) if b - a != 1]
            assert len(taken) == total - capacity and not gaps, \
                f"{src}->{dst}: after the release the remaining {total - capacity} flits were " \
                f"accepted with gaps of {gaps} cycles"
    assert not mon.violations, "; ".join(mon.violations[:5])
    golden.check_delivery(mon.sent(), mon.delivered())
    assert int(dut.bad_dest.value) == 0
    _report(dut, k)
    common.record(stalled_flow_cases=k * k)


@cocotb.test()
async def a_router_past_its_quota_stays_spent_until_the_round_ends(dut):
    """Fairness rounds (golden module docstring): for every starvation case of
    :func:`starvation_onset_and_injection_wait_bound`, the upstream node floods the node after
    the victim, through the victim, with one flit for the victim itself after every ``quota``
    of them (it passes no router, so the upstream node may inject it even when it has used its
    quota); the victim offers a long run to the same destination. Once both starve they share
    by rounds of ``quota`` each: a router that injected past its quota must stay spent, so over
    the window in which both send, the upstream node's flits that pass the victim and the
    victim's own differ by at most ``2 * quota`` (a router that counted past its quota and
    became needy again in the same round takes the victim's slots)."""
    k, width, inj_l, ej_l = _setup()
    cases = _starvation_cases(k)
    if not cases:
        common.record(spent_cases="skipped (no 2-hop route below 4 nodes)")
        _report(dut, k)
        return
    p = common.params()
    starve, quota = p.get("starve", 255), p.get("quota", 4)
    await _start(dut, k)
    mon = _Monitor(dut, k, inj_l, ej_l)
    rng = common.rng(93)
    spreads = []
    for up, victim, dest, _ in cases:
        await restart(dut, sources=[f"inject__{i}" for i in range(k)])
        inj = {n: len(mon.injected[n]) for n in range(k)}
        ej = {n: len(mon.ejected[n]) for n in (victim, dest)}
        # Only flits for ``dest`` until both starve (a flit for the victim frees the victim's
        # slot, so it would not starve), then the mixed run.
        dests = [dest] * (2 * starve + 8 * quota + 4 * k) + ([dest] * quota + [victim]) * 24
        run = 2 * starve + 48 * quota
        upstream = StreamSource(dut, f"inject__{up}")
        upstream.send_nowait(pack(inj_l, {"dest": d, "payload": rng.getrandbits(width)})
                             for d in dests)
        for _ in range(3 * k):
            await RisingEdge(dut.clk)
        node = StreamSource(dut, f"inject__{victim}")
        node.send_nowait(pack(inj_l, {"dest": dest, "payload": rng.getrandbits(width)})
                         for _ in range(run))
        total = len(dests) + run
        for _ in range(20 * total):
            if sum(len(mon.ejected[n]) - ej[n] for n in ej) >= total:
                break
            await RisingEdge(dut.clk)
        upstream.stop()
        node.stop()
        got = sum(len(mon.ejected[n]) - ej[n] for n in ej)
        assert got == total, f"case {(up, victim, dest)}: {got} of {total} flits delivered"
        entries = {s: [c - golden.zero_load_latency(s, dest, k)
                       for c, s2, _ in mon.ejected[dest][ej[dest]:] if s2 == s]
                   for s in (up, victim)}
        first_up_after = next(e for e in entries[up] if e > entries[victim][0])
        end = min(entries[up][-1], entries[victim][-1])
        counts = {s: sum(1 for e in entries[s] if first_up_after <= e <= end)
                  for s in (up, victim)}
        assert counts[victim] > 2 * quota, f"case {(up, victim, dest)}: no sharing {counts}"
        spreads.append(counts[up] - counts[victim])
        assert abs(counts[up] - counts[victim]) <= 2 * quota, \
            f"case {(up, victim, dest)}: flits passing the victim {counts[up]}, the victim's " \
            f"{counts[victim]} in the shared window: more than 2 x quota = {2 * quota} apart"
        assert len(mon.injected[up]) - inj[up] == len(dests)
        dut._log.info(f"spent case {(up, victim, dest)}: shared window counts {counts}")
    golden.check_delivery(mon.sent(), mon.delivered())
    assert int(dut.bad_dest.value) == 0
    _report(dut, k)
    common.record(spent_cases=len(cases), spent_spreads=spreads)
