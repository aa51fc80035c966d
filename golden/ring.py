"""Golden model of the bidirectional ring interconnect (:mod:`hw.ring`).

Numeric and ordering rules
--------------------------
Nodes are numbered ``0 .. k-1``. Clockwise (CW, direction ``+1``) goes from node ``x`` to
``(x + 1) mod k``; counter-clockwise (CCW, ``-1``) from ``x`` to ``(x - 1) mod k``.

Routing is minimal and deterministic: a flit from ``src`` to ``dst`` takes the shorter direction.
**Tie-break** (``k`` even, ``dst = src + k/2``): CW when ``src`` is even, CCW when ``src`` is odd.
The rule depends only on the pair, so one flow always uses one path (per-flow order), and it splits
the tied traffic of uniform load evenly over both directions (the ``8/k`` bound needs that).
A flit to its own node (``dst == src``) never enters the ring (``hops = 0``, direction ``0``).

**Zero-load latency** (cycles from the injection handshake to the ejection handshake, ejection
always ready, no other traffic): ``hops * CYCLES_PER_HOP + LATENCY_CONSTANT`` with
``CYCLES_PER_HOP = 1`` and ``LATENCY_CONSTANT = 1``, for every pair including ``dst == src``.

**Starvation onset** (ejection always ready): a router whose injection candidate (queue head,
or the flit at its injection port when the queue is empty) has not entered the ring for
``starve`` consecutive cycles, counted from the first cycle it was offered, is *starving* from
cycle ``t0 + starve`` on (``t0`` = that first cycle). From that cycle, no router that is not
needy injects a flit that would pass it, so the last such flit, injected ``h`` hops upstream in
cycle ``t0 + starve - 1``, passes it in cycle ``t0 + starve - 1 + h`` and the candidate enters
the ring in cycle ``t0 + starve + h`` when the slots it sees were taken only by the flits of a
router ``h`` hops upstream (``h = 0``: its own arriving slot is free and it was only yielding to
a needy router; it enters in the cycle it starves): :func:`starvation_delay`. Its latency is
then ``starvation_delay + zero_load_latency``.

**Injection wait bound** (ejection always ready): a candidate enters the ring at most
:func:`injection_wait_bound` ``= starve + 1 + (k - 1) * quota + k // 2`` cycles after it became
the candidate: ``starve`` cycles until its router starves, one for the routers upstream to yield,
at most ``quota`` injections of each of the ``k - 1`` other (needy) routers in the round, and
``k // 2`` cycles for the flits already on the ring to pass (a flit travels at most ``k // 2``
hops). See ``docs/ring.md`` (*No starvation*).

**Back-pressure capacity** (one flow ``src -> dst`` alone, ``dst``'s ejection port stalled,
``src`` offering without pause): the ejection buffer takes ``eject_depth`` flits before it
back-pressures; then the flit that cannot be buffered waits in the slot arriving at ``dst`` and
the flits behind it in the slots of the links before it (one per hop), and then ``src``'s
injection queue fills (``depth``): the injection port accepts
:func:`stalled_flow_capacity` ``= eject_depth + hops + depth`` flits and then refuses (a local
flow: ``eject_depth``, the local buffer). When the port is released and ``src`` keeps
offering, ``dst`` ejects the flow's flits one per cycle, without a gap, until the last.

**Fairness rounds**: a starving router is *needy* while it has injected fewer than ``quota``
flits in the current round; its injections past the quota (where no needy router lies in the
flit's path) leave it spent until the round ends.

**Delivery**: the multiset of delivered ``(src, dst, payload)`` equals the injected one (nothing
lost, duplicated or corrupted), and for every flow ``(src, dst)`` the delivery order equals the
injection order.

**Ejection order** (one node's ``eject`` port, three buffers in the order CW ``0``, CCW ``1``,
local ``2``; each buffer first-in first-out): the candidates are the non-empty buffers; if any
of them is full, only the full ones. A beat offered and not taken stays offered until it is
taken (its buffer is served next whatever arrives meanwhile). Otherwise, among the candidates,
a head whose source has not been served in the current round is preferred; ties go
round-robin over the buffers, starting at the one after the buffer served last (``0`` after
reset). Serving a head whose source was not yet served adds it to the round; serving a head
when every non-empty buffer's head has a served source starts a new round that holds only
that source (the round is empty after reset). :func:`eject_order` replays this for buffers
that receive nothing more while the port is always ready.

**Ideal throughput** (flits/cycle/node, injection and ejection capped at 1) as in Dally & Towles:
uniform ``min(1, 8/k)``, neighbour ``1``, tornado ``1/(ceil(k/2) - 1)`` (``1`` when that
denominator is 0 or 1), hotspot ``1/k``. :func:`channel_bound` recomputes the bound from the
channel loads of this module's routing function; it equals the formula when ``k`` is a multiple
of 4 (and for every ``k`` except uniform traffic with ``k = 2 mod 4``, where an odd number of
tied flows crosses each link and no per-flow tie rule splits them evenly).
"""

from collections import Counter, defaultdict

from sparsehw.params import Param, ParamSpec, check, int_in


__all__ = ["RING_PARAMS", "CYCLES_PER_HOP", "LATENCY_CONSTANT", "PATTERNS", "EJECT_BUFFERS",
           "route", "zero_load_latency", "starvation_delay", "injection_wait_bound",
           "stalled_flow_capacity",
           "pattern_destinations", "ideal_throughput", "channel_bound",
           "mean_zero_load_latency", "eject_buffer", "eject_order", "check_delivery",
           "DeliveryError"]


CYCLES_PER_HOP = 1
LATENCY_CONSTANT = 1
PATTERNS = ("uniform", "neighbour", "tornado", "hotspot")

#: Generation parameters of the ring (:class:`sparsehw.hw.ring.Ring`), declared once: the
#: components validate with it, the registry lists it, and this model checks ``k`` (= ``nodes``)
#: with the same rule.
RING_PARAMS = ParamSpec(
    Param("nodes", 4, int_in(2, 16), doc="nodes on the ring"),
    Param("width", 32, int_in(1, 1024), doc="payload bits per flit"),
    Param("depth", 16, int_in(2, 64), doc="entries per injection queue"),
    Param("eject_depth", 16, int_in(2, 64), doc="entries per ejection buffer"),
    Param("starve", 255, int_in(1, 1023),
          doc="cycles an injection waits before its router starves"),
    Param("quota", 4, int_in(1, 16), doc="injections per starving router per fairness round"),
)


def _check_k(k):
    """``TypeError`` for a ``k`` that is not an integer, ``ValueError`` outside 2..16."""
    check("k", k, RING_PARAMS["nodes"].rule)


def route(src, dst, k):
    """Direction and hop count of the flit ``src -> dst`` on a ``k``-node ring.

    Returns
    -------
    (int, int)
        ``(direction, hops)``: direction ``+1`` (CW), ``-1`` (CCW) or ``0`` (``src == dst``).
    """
    _check_k(k)
    for name, value in (("src", src), ("dst", dst)):
        check(name, value, int_in(0, k - 1))
    cw = (dst - src) % k
    ccw = (k - cw) % k
    if cw == 0:
        return 0, 0
    if cw < ccw:
        return +1, cw
    if ccw < cw:
        return -1, ccw
    return (+1 if src % 2 == 0 else -1), cw


def zero_load_latency(src, dst, k):
    """Cycles from injection handshake to ejection handshake of a lone flit ``src -> dst``."""
    return route(src, dst, k)[1] * CYCLES_PER_HOP + LATENCY_CONSTANT


def starvation_delay(starve, upstream_hops):
    """Cycles from a candidate's first offer to its entering the ring when it starves (see the
    module docstring, *Starvation onset*): ``starve + upstream_hops``, where ``upstream_hops`` is
    the distance of the router whose passing flits took every slot it saw (0: none did)."""
    check("starve", starve, RING_PARAMS["starve"].rule)
    check("upstream_hops", upstream_hops, int_in(0, 15))
    return starve + upstream_hops


def stalled_flow_capacity(src, dst, k, depth, eject_depth):
    """Flits the injection port of ``src`` accepts for ``dst`` while ``dst``'s ejection port
    stalls and nothing else is in flight (module docstring, *Back-pressure capacity*):
    ``eject_depth + hops + depth``, or ``eject_depth`` for a local flow (``src == dst``)."""
    check("depth", depth, RING_PARAMS["depth"].rule)
    check("eject_depth", eject_depth, RING_PARAMS["eject_depth"].rule)
    hops = route(src, dst, k)[1]
    return eject_depth + (hops + depth if hops else 0)


def injection_wait_bound(k, starve, quota):
    """Most cycles an injection candidate waits for the ring with ejection always ready (module
    docstring, *Injection wait bound*): ``starve + 1 + (k - 1) * quota + k // 2``."""
    _check_k(k)
    check("starve", starve, RING_PARAMS["starve"].rule)
    check("quota", quota, RING_PARAMS["quota"].rule)
    return starve + 1 + (k - 1) * quota + k // 2


def pattern_destinations(pattern, src, k, hot=0):
    """``{dst: probability}`` of node ``src``'s traffic under ``pattern``."""
    _check_k(k)
    if pattern == "uniform":
        return {d: 1.0 / k for d in range(k)}
    if pattern == "neighbour":
        return {(src + 1) % k: 1.0}
    if pattern == "tornado":
        return {(src + (k + 1) // 2 - 1) % k: 1.0}
    if pattern == "hotspot":
        return {hot % k: 1.0}
    raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, not {pattern!r}")


def ideal_throughput(pattern, k):
    """Ideal saturation throughput (flits/cycle/node) of ``pattern`` on a ``k``-node ring."""
    _check_k(k)
    if pattern == "uniform":
        return min(1.0, 8.0 / k)
    if pattern == "neighbour":
        return 1.0
    if pattern == "tornado":
        hops = (k + 1) // 2 - 1
        return 1.0 if hops <= 1 else 1.0 / hops
    if pattern == "hotspot":
        return 1.0 / k
    raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, not {pattern!r}")


def channel_bound(pattern, k, hot=0):
    """Throughput bound from the loads that :func:`route` puts on every channel.

    Each node injects ``r`` flits/cycle; a CW or CCW link, an injection port and an ejection
    port each carry at most 1 flit/cycle. Returns the largest ``r`` that respects all of them.
    """
    load = Counter()
    for src in range(k):
        load[("inj", src)] += 1.0
        for dst, p in pattern_destinations(pattern, src, k, hot).items():
            load[("ej", dst)] += p
            direction, hops = route(src, dst, k)
            for h in range(hops):
                load[(direction, (src + direction * h) % k)] += p
    return min(1.0, 1.0 / max(load.values()))


def mean_zero_load_latency(pattern, k, hot=0):
    """Average of :func:`zero_load_latency` over ``pattern``'s traffic (all sources equally)."""
    total = 0.0
    for src in range(k):
        for dst, p in pattern_destinations(pattern, src, k, hot).items():
            total += p * zero_load_latency(src, dst, k)
    return total / k


#: Ejection buffers of a router, in the order of the ejection port's round-robin.
EJECT_BUFFERS = ("cw", "ccw", "local")


def eject_buffer(src, dst, k):
    """Index in :data:`EJECT_BUFFERS` of the buffer at ``dst`` that flits from ``src`` enter:
    ``0`` (CW), ``1`` (CCW) or ``2`` (local, ``src == dst``)."""
    return {+1: 0, -1: 1, 0: 2}[route(src, dst, k)[0]]


def eject_order(buffers, *, depth, offered=None, served=(), last=None):
    """Order in which one node's ejection port serves what its buffers hold (module docstring,
    *Ejection order*), when nothing more arrives and the port is always ready.

    Parameters
    ----------
    buffers : sequence of three sequences
        Contents of the CW, CCW and local ejection buffers, oldest first; each item is a tuple
        whose first element is the flit's source node (the rest is carried along).
    depth : int
        Entries of each buffer (``eject_depth``): a buffer holding ``depth`` items is full.
    offered : int or None
        Buffer whose head is already offered (not yet taken): it is served first.
    served : iterable of int
        Sources already served in the current round (empty after reset).
    last : int or None
        Buffer served last (None: none since reset; the round-robin starts at buffer 0).

    Returns
    -------
    list of (int, tuple)
        ``(buffer, item)`` in the order served.

    Raises
    ------
    ValueError
        Not three buffers, a buffer holding more than ``depth`` items, or ``offered`` not a
        non-empty buffer.
    """
    queues = [list(b) for b in buffers]
    if len(queues) != 3:
        raise ValueError(f"buffers must hold three sequences (CW, CCW, local), not {len(queues)}")
    for q in queues:
        if len(q) > depth:
            raise ValueError(f"a buffer holds at most depth = {depth} items, not {len(q)}")
    if offered is not None and not (offered in range(3) and queues[offered]):
        raise ValueError(f"offered must name a non-empty buffer (0, 1 or 2), not {offered!r}")
    served = set(served)
    start = 0 if last is None else (last + 1) % 3
    order = []
    while any(queues):
        waiting = [b for b in range(3) if queues[b]]
        full = [b for b in waiting if len(queues[b]) == depth]
        candidates = full or waiting
        rotation = [(start + i) % 3 for i in range(3)]
        if offered is not None:
            pick, offered = offered, None
        else:
            fresh = [b for b in rotation if b in candidates and queues[b][0][0] not in served]
            pick = fresh[0] if fresh else next(b for b in rotation if b in candidates)
        heads = [queues[b][0][0] for b in waiting]
        item = queues[pick].pop(0)
        if item[0] not in served:
            served.add(item[0])
        elif all(src in served for src in heads):
            served = {item[0]}                      # a new round
        order.append((pick, item))
        start = (pick + 1) % 3
    return order


class DeliveryError(AssertionError):
    """Delivered traffic differs from injected traffic (loss, duplication, corruption, order)."""


def check_delivery(injected, delivered):
    """Scoreboard: raise :class:`DeliveryError` unless ``delivered`` is a correct delivery.

    Parameters
    ----------
    injected, delivered : iterable of (src, dst, payload)
        In injection order (per source) and in delivery order (per destination).

    The multisets must be equal and, for every flow ``(src, dst)``, the payload sequence of
    ``delivered`` must equal that of ``injected``.
    """
    sent = defaultdict(list)
    got = defaultdict(list)
    for src, dst, payload in injected:
        sent[(src, dst)].append(payload)
    for src, dst, payload in delivered:
        got[(src, dst)].append(payload)
    missing = Counter(x for f, seq in sent.items() for x in ((f, p) for p in seq))
    extra = Counter(x for f, seq in got.items() for x in ((f, p) for p in seq))
    if missing != extra:
        lost = missing - extra
        spurious = extra - missing
        raise DeliveryError(f"delivered multiset differs: {sum(lost.values())} lost "
                            f"(e.g. {list(lost)[:3]}), {sum(spurious.values())} unexpected "
                            f"(e.g. {list(spurious)[:3]})")
    for flow, seq in sent.items():
        if got[flow] != seq:
            first = next(i for i, (a, b) in enumerate(zip(seq, got[flow])) if a != b)
            raise DeliveryError(f"flow {flow} out of order at packet {first}: expected "
                                f"{seq[first]:#x}, got {got[flow][first]:#x}")
