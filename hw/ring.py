"""Bidirectional ring interconnect: router, ring and a hardware traffic harness.

The ring is two slotted unidirectional rings (CW and CCW). Every router owns one register per
direction (the slot on its outgoing link), so a flit advances one hop per cycle. Traffic already
on the ring has priority over injection. A flit whose ejection buffer is full stays where it is,
and so does the run of flits queued directly behind it (a local stall, computed from registered
state); the rest of the ring moves on, and flits never overtake each other. Injection is fair by
rounds: a starving router with quota left in the current round is *needy*, and no other router
injects a flit that would pass a needy router, so the needy router gets the next free slot while
slots it cannot use stay in use. See ``docs/ring.md`` for the deadlock, starvation and ordering
arguments.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

import sparsehw.golden.ring as golden


__all__ = ["Ring", "RingRouter", "RingHarness", "inject_layout", "eject_layout",
           "PATTERN_CODES"]


#: Run-time pattern codes of :class:`RingHarness`.
PATTERN_CODES = {"uniform": 0, "neighbour": 1, "tornado": 2, "hotspot": 3}

_LOCAL, _CW, _CCW, _BAD = 0, 1, 2, 3

#: Default injection queue entries, ejection buffer entries, starvation threshold and quota.
DEPTH, EJECT_DEPTH, STARVE, QUOTA = 16, 16, 255, 4


def _check_int(name, value, low, high):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer in {low}..{high}, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, not {value!r}")
    return value


def _node_bits(nodes):
    return max(1, (nodes - 1).bit_length())


def inject_layout(nodes, width):
    """Payload of an injection port: ``dest`` (node index) and ``payload`` (``width`` bits)."""
    return data.StructLayout({"dest": _node_bits(nodes), "payload": width})


def eject_layout(nodes, width):
    """Payload of an ejection port: ``src`` (sending node) and ``payload``."""
    return data.StructLayout({"src": _node_bits(nodes), "payload": width})


def _flit_layout(nodes, width):
    bits = _node_bits(nodes)
    return data.StructLayout({"dest": bits, "src": bits, "payload": width})


def _slot_layout(nodes, width):
    return data.StructLayout({"valid": 1, "flit": _flit_layout(nodes, width)})


def _check_common(nodes, width, depth, eject_depth, starve, quota):
    """Validate the parameters every ring component shares; return them as a dict."""
    return {"nodes": _check_int("nodes", nodes, 2, 16),
            "width": _check_int("width", width, 1, 1024),
            "depth": _check_int("depth", depth, 2, 64),
            "eject_depth": _check_int("eject_depth", eject_depth, 2, 64),
            "starve": _check_int("starve", starve, 1, 1023),
            "quota": _check_int("quota", quota, 1, 16)}


class _RingParameters:
    """Read-only views of the shared ring parameters kept in ``self._params``."""

    nodes = property(lambda self: self._params["nodes"], doc="Nodes on the ring.")
    width = property(lambda self: self._params["width"], doc="Payload bits per flit.")
    depth = property(lambda self: self._params["depth"], doc="Entries per injection queue.")
    eject_depth = property(lambda self: self._params["eject_depth"],
                           doc="Entries per ejection buffer.")
    starve = property(lambda self: self._params["starve"],
                      doc="Starvation threshold in cycles.")
    quota = property(lambda self: self._params["quota"],
                     doc="Injections per router per fairness round.")


class RingRouter(_RingParameters, wiring.Component):
    """One node of the bidirectional ring.

    Parameters
    ----------
    nodes : int
        Nodes on the ring, 2..16.
    index : int
        This router's node number, ``0 .. nodes-1``.
    width : int
        Payload bits per flit, 1..1024.
    depth : int
        Entries of each injection queue (CW, CCW), 2..64.
    eject_depth : int
        Entries of each ejection buffer (CW, CCW, local), 2..64.
    starve : int
        Cycles an injection candidate may wait for a slot before the router is *starving* and
        claims a fair share (see :class:`Ring`), 1..1023.
    quota : int
        Injections per router and direction in one fairness round, 1..16.

    Members
    -------
    inject : In(stream.Signature(inject_layout(nodes, width)))
        Injection. ``ready`` depends combinationally on ``payload.dest``: it is the free space of
        the queue of the flit's direction (local traffic: the local ejection buffer). A flit that
        finds its queue empty and its slot free is put on the ring in the same cycle (bypass).
        An out-of-range ``dest`` is accepted, dropped, and sets :attr:`bad_dest`.
    eject : Out(stream.Signature(eject_layout(nodes, width)))
        Ejection from the CW, CCW and local ejection buffers: full buffers first, and among
        the candidates fair per source (rounds in which each source is served once,
        round-robin over the buffers); ``valid`` is registered state. Back-pressure fills the buffers, then stops the flit that cannot be buffered and
        the flits queued right behind it on the ring (never drops or reorders).
    cw_in, ccw_in : In(slot)
        Slot arriving from the CW upstream neighbour (``index-1``) / CCW upstream (``index+1``).
    cw_out, ccw_out : Out(slot)
        Registered slot leaving towards ``index+1`` / ``index-1``.
    cw_block, ccw_block : Out(1)
        The arriving flit is for this node and its ejection buffer is full (registered state).
    cw_pass, ccw_pass : Out(1)
        The arriving flit is for another node (registered state).
    cw_hold, ccw_hold : In(1)
        The downstream router does not take ``*_out`` this cycle: keep it, inject nothing.
        :class:`Ring` computes it from every router's ``*_block`` / ``*_pass``.
    cw_need, ccw_need : Out(1)
        This router is starving (its candidate waited ``starve`` cycles; sticky until it has
        nothing to send) and has injected fewer than ``quota`` flits in the current fairness
        round (registered state).
    cw_starving, ccw_starving : Out(1)
        This router is starving (registered state).
    cw_round_over, ccw_round_over : In(1)
        No router's ``*_need`` is set: every starving router has used its quota, and a new
        round starts (its quota is given back this cycle).
    cw_needs, ccw_needs : In(nodes)
        Bit ``i``: router ``i`` is *needy*, i.e. ``need``, or ``starving`` while
        ``round_over``. A router that is not needy injects a flit only if no needy router lies
        strictly between it and the flit's destination, so it never takes a slot a needy
        router could use.
    bad_dest : Out(1)
        Sticky: a flit with ``dest >= nodes`` was injected here.
    """

    def __init__(self, *, nodes=4, index=0, width=32, depth=DEPTH, eject_depth=EJECT_DEPTH,
                 starve=STARVE, quota=QUOTA):
        self._params = _check_common(nodes, width, depth, eject_depth, starve, quota)
        self._index = _check_int("index", index, 0, nodes - 1)
        slot = _slot_layout(nodes, width)
        super().__init__({
            "inject": In(stream.Signature(inject_layout(nodes, width))),
            "eject": Out(stream.Signature(eject_layout(nodes, width))),
            "cw_in": In(slot), "cw_out": Out(slot),
            "ccw_in": In(slot), "ccw_out": Out(slot),
            "cw_block": Out(1), "ccw_block": Out(1),
            "cw_pass": Out(1), "ccw_pass": Out(1),
            "cw_hold": In(1), "ccw_hold": In(1),
            "cw_need": Out(1), "ccw_need": Out(1),
            "cw_starving": Out(1), "ccw_starving": Out(1),
            "cw_round_over": In(1), "ccw_round_over": In(1),
            "cw_needs": In(nodes), "ccw_needs": In(nodes),
            "bad_dest": Out(1),
        })

    index = property(lambda self: self._index, doc="This router's node number.")

    def elaborate(self, platform):
        m = Module()
        k, me = self.nodes, self.index
        flit_l = _flit_layout(k, self.width)
        ej_l = eject_layout(k, self.width)

        # Direction of the injected flit, from the golden routing function.
        direction = Signal(2)
        with m.Switch(self.inject.p.dest):
            for dest in range(2 ** _node_bits(k)):
                with m.Case(dest):
                    if dest >= k:
                        code = _BAD
                    else:
                        code = {0: _LOCAL, +1: _CW, -1: _CCW}[golden.route(me, dest, k)[0]]
                    m.d.comb += direction.eq(code)
        new_flit = Signal(flit_l)
        m.d.comb += [new_flit.dest.eq(self.inject.p.dest), new_flit.src.eq(me),
                     new_flit.payload.eq(self.inject.p.payload)]

        # Local traffic goes straight into the local ejection buffer.
        local = m.submodules.local = SyncFIFO(width=ej_l.size, depth=self.eject_depth)
        local_w = Signal(ej_l)
        m.d.comb += [local_w.src.eq(me), local_w.payload.eq(self.inject.p.payload),
                     local.w_data.eq(local_w),
                     local.w_en.eq(self.inject.valid & (direction == _LOCAL))]

        ready = Signal()
        with m.Switch(direction):
            with m.Case(_LOCAL):
                m.d.comb += ready.eq(local.w_rdy)
            with m.Case(_BAD):
                m.d.comb += ready.eq(1)
        with m.If(self.inject.valid & (direction == _BAD)):
            m.d.sync += self.bad_dest.eq(1)

        ejects = {}
        for name, code in (("cw", _CW), ("ccw", _CCW)):
            arrive = getattr(self, f"{name}_in")
            out = getattr(self, f"{name}_out")
            hold = getattr(self, f"{name}_hold")
            block = getattr(self, f"{name}_block")
            passing = getattr(self, f"{name}_pass")
            need = getattr(self, f"{name}_need")
            needs = getattr(self, f"{name}_needs")
            round_over = getattr(self, f"{name}_round_over")

            efifo = m.submodules[f"{name}_eject"] = SyncFIFO(width=ej_l.size,
                                                             depth=self.eject_depth)
            queue = m.submodules[f"{name}_queue"] = SyncFIFO(width=flit_l.size, depth=self.depth)
            ejects[name] = efifo

            # The arriving flit either ejects here (if its buffer has room), passes on, or is
            # blocked (for this node, buffer full). Ejection does not depend on ``hold``.
            here = Signal(name=f"{name}_here")
            m.d.comb += [here.eq(arrive.valid & (arrive.flit.dest == me)),
                         block.eq(here & ~efifo.w_rdy),
                         passing.eq(arrive.valid & ~here)]
            e_w = Signal(ej_l, name=f"{name}_eject_w")
            m.d.comb += [e_w.src.eq(arrive.flit.src), e_w.payload.eq(arrive.flit.payload),
                         efifo.w_data.eq(e_w), efifo.w_en.eq(here & efifo.w_rdy)]
            usable = Signal(name=f"{name}_usable")
            m.d.comb += usable.eq(~arrive.valid | (here & efifo.w_rdy))

            # Candidate for injection: queue head, else the injection port itself (bypass).
            wants = Signal(name=f"{name}_wants")
            m.d.comb += wants.eq(self.inject.valid & (direction == code))
            cand_valid = Signal(name=f"{name}_cand_valid")
            cand = Signal(flit_l, name=f"{name}_cand")
            m.d.comb += cand_valid.eq(queue.r_rdy | wants)
            with m.If(queue.r_rdy):
                m.d.comb += cand.eq(queue.r_data)
            with m.Else():
                m.d.comb += cand.eq(new_flit)

            # Fairness rounds: a router whose candidate has waited ``starve`` cycles is
            # *starving*, sticky until it has nothing to send. A starving router that has
            # injected fewer than ``quota`` flits in the current round is *needy* and may inject
            # whenever a slot is usable. Every other router yields only to needy routers its
            # flit would pass: it injects if no needy router lies strictly between it and the
            # flit's destination (where the slot is freed again, so a needy destination loses
            # nothing); slots no needy router can use stay in use. When every starving router
            # has used its quota, the next round starts in the same cycle, so routers that wait
            # behind a starving one get no slot in between and starve in turn (then share).
            wait = Signal(range(self.starve + 1), name=f"{name}_wait")
            starving = getattr(self, f"{name}_starving")
            used = Signal(range(self.quota + 1), name=f"{name}_used")
            m.d.comb += [starving.eq(wait == self.starve),
                         need.eq(starving & (used != self.quota))]
            in_path = Signal(name=f"{name}_path_needy")
            with m.Switch(cand.dest):
                for dest in range(k):
                    with m.Case(dest):
                        mask = _between_mask(me, dest, k, +1 if code == _CW else -1)
                        m.d.comb += in_path.eq((needs & mask).any())
            allowed = Signal(name=f"{name}_allowed")
            m.d.comb += allowed.eq(need | (starving & round_over) | ~in_path)
            do_inj = Signal(name=f"{name}_inject")
            m.d.comb += do_inj.eq(~hold & usable & cand_valid & allowed)
            bypass = Signal(name=f"{name}_bypass")
            m.d.comb += bypass.eq(do_inj & ~queue.r_rdy)
            m.d.comb += [queue.r_en.eq(do_inj),
                         queue.w_data.eq(new_flit),
                         queue.w_en.eq(wants & ~bypass)]
            with m.If(direction == code):
                m.d.comb += ready.eq(queue.w_rdy)
            # Starving is sticky: it ends only when the router has nothing more to send, or
            # when it injected without being starving.
            with m.If(~cand_valid | (do_inj & ~starving)):
                m.d.sync += wait.eq(0)
            with m.Elif(~starving):
                m.d.sync += wait.eq(wait + 1)
            with m.If(round_over):
                m.d.sync += used.eq(do_inj & starving)
            with m.Elif(do_inj & starving):
                m.d.sync += used.eq(used + 1)

            # The outgoing slot: holds while the downstream router does not take it.
            with m.If(~hold):
                with m.If(do_inj):
                    m.d.sync += [out.valid.eq(1), out.flit.eq(cand)]
                with m.Else():
                    m.d.sync += [out.valid.eq(passing), out.flit.eq(arrive.flit)]

        # Ejection: per-source rounds, round-robin over the CW, CCW and local buffers. A head
        # whose source has not been served in the current round goes first; when every waiting
        # head's source has been served, a new round starts. So the port is shared per source,
        # not per buffer (under hotspot traffic a direction carrying many sources gets more).
        # Full buffers come first (a full ring buffer holds the ring behind it; a full local
        # buffer holds the injection port), and the rounds apply among them.
        sources = [ejects["cw"], ejects["ccw"], local]
        heads = [Signal(ej_l, name=f"head{i}") for i in range(3)]
        m.d.comb += [h.eq(s.r_data) for h, s in zip(heads, sources)]
        urgent = Signal(3)
        m.d.comb += urgent.eq(Cat(s.r_rdy & ~s.w_rdy for s in sources))
        eligible = Signal(3)
        m.d.comb += eligible.eq(Mux(urgent.any(), urgent, Cat(s.r_rdy for s in sources)))
        mask = Signal(2 ** _node_bits(k), name="served_src")
        fresh = Signal(3)
        unserved = Signal(3)
        m.d.comb += [unserved.eq(Cat(~mask.bit_select(h.src, 1) for h in heads)),
                     fresh.eq(eligible & unserved)]
        rr = Signal(range(3))
        sel = Signal(range(3))
        any_valid = Signal()
        for start in range(3):
            with m.If(rr == start):
                order = [(start + i) % 3 for i in range(3)]
                for pick in reversed(order):
                    with m.If(eligible[pick] & (fresh[pick] | ~fresh.any())):
                        m.d.comb += [sel.eq(pick), any_valid.eq(1)]
        m.d.comb += [self.eject.valid.eq(any_valid),
                     self.eject.payload.eq(Array(heads)[sel]),
                     self.inject.ready.eq(ready)]
        for i, source in enumerate(sources):
            m.d.comb += source.r_en.eq(self.eject.ready & any_valid & (sel == i))
        with m.If(self.eject.valid & self.eject.ready):
            m.d.sync += rr.eq(Array(Const((i + 1) % 3, 2) for i in range(3))[sel])
            bit = Signal.like(mask, name="served_bit")
            m.d.comb += bit.eq(1 << self.eject.p.src)
            waiting = Signal(3)
            m.d.comb += waiting.eq(Cat(s.r_rdy for s in sources) & unserved)
            with m.If(unserved.bit_select(sel, 1)):
                m.d.sync += mask.eq(mask | bit)
            with m.Elif(~waiting.any()):
                # Every waiting head's source was served: a new round.
                m.d.sync += mask.eq(bit)
        return m


class Ring(_RingParameters, wiring.Component):
    """Bidirectional ring of :class:`RingRouter` s with minimal routing.

    Parameters
    ----------
    nodes : int
        Nodes, 2..16 (default 4).
    width : int
        Payload bits per flit, 1..1024 (default 32).
    depth : int
        Entries of each router injection queue, 2..64 (default 16).
    eject_depth : int
        Entries of each router ejection buffer (CW, CCW, local), 2..64 (default 16). Deeper
        buffers block the ring less often when ejection is the bottleneck.
    starve : int
        Cycles an injection candidate waits before its router is starving and the fairness
        rounds start, 1..1023 (default 255).
    quota : int
        Injections each starving router may make per fairness round, 1..16 (default 4).

    Members
    -------
    inject : In(stream.Signature(inject_layout(nodes, width))).array(nodes)
        Injection port of each node (``dest``, ``payload``); ``ready`` may depend on
        ``payload.dest`` combinationally. Zero-load latency to ``eject[dest]`` is
        ``hops + 1`` cycles (:func:`golden.ring.zero_load_latency`).
    eject : Out(stream.Signature(eject_layout(nodes, width))).array(nodes)
        Ejection port of each node (``src``, ``payload``); honours back-pressure.
    bad_dest : Out(nodes)
        Bit ``i`` is set (sticky) when node ``i`` was given a ``dest >= nodes``; the flit is
        dropped.

    Raises
    ------
    TypeError, ValueError
        A parameter is not an integer or out of its range.
    """

    def __init__(self, *, nodes=4, width=32, depth=DEPTH, eject_depth=EJECT_DEPTH, starve=STARVE,
                 quota=QUOTA):
        self._params = _check_common(nodes, width, depth, eject_depth, starve, quota)
        super().__init__({
            "inject": In(stream.Signature(inject_layout(nodes, width))).array(nodes),
            "eject": Out(stream.Signature(eject_layout(nodes, width))).array(nodes),
            "bad_dest": Out(nodes),
        })


    def elaborate(self, platform):
        m = Module()
        k = self.nodes
        routers = []
        for i in range(k):
            router = RingRouter(index=i, **self._params)
            m.submodules[f"router{i}"] = router
            routers.append(router)
            wiring.connect(m, wiring.flipped(self.inject[i]), router.inject)
            wiring.connect(m, router.eject, wiring.flipped(self.eject[i]))
            m.d.comb += self.bad_dest[i].eq(router.bad_dest)
        for name, step in (("cw", +1), ("ccw", -1)):
            blocks = [getattr(r, f"{name}_block") for r in routers]
            passes = [getattr(r, f"{name}_pass") for r in routers]
            # Needy routers: need, or starving when no router has need (a round boundary).
            raw = Signal(k, name=f"{name}_need_raw")
            starving = Signal(k, name=f"{name}_starving")
            round_over = Signal(name=f"{name}_round_over")
            needs = Signal(k, name=f"{name}_needs")
            m.d.comb += [raw.eq(Cat(getattr(r, f"{name}_need") for r in routers)),
                         starving.eq(Cat(getattr(r, f"{name}_starving") for r in routers)),
                         round_over.eq(~raw.any()),
                         needs.eq(Mux(round_over, starving, raw))]
            # hold_in[x]: the slot arriving at router x is not consumed this cycle. It is, when
            # walking downstream from x, a run of passing flits ends in a blocked flit. Written
            # out as a sum of products of registered state (no combinational ring).
            hold_in = []
            for x in range(k):
                term = blocks[(x + step * (k - 1)) % k]
                for dist in range(k - 2, -1, -1):
                    node = (x + step * dist) % k
                    term = blocks[node] | (passes[node] & term)
                held = Signal(name=f"{name}_hold_in{x}")
                m.d.comb += held.eq(term)
                hold_in.append(held)
            for i, router in enumerate(routers):
                m.d.comb += [getattr(router, f"{name}_hold").eq(hold_in[(i + step) % k]),
                             getattr(router, f"{name}_needs").eq(needs),
                             getattr(router, f"{name}_round_over").eq(round_over)]
            upstream = [routers[(i - step) % k] for i in range(k)]
            for i, router in enumerate(routers):
                m.d.comb += getattr(router, f"{name}_in").eq(getattr(upstream[i], f"{name}_out"))
        return m


def _between_mask(src, dest, k, step):
    """Bit mask of the nodes strictly between ``src`` and ``dest`` walking in ``step``."""
    mask, node = 0, (src + step) % k
    while node != dest and node != src:
        mask |= 1 << node
        node = (node + step) % k
    return mask


class RingHarness(_RingParameters, wiring.Component):
    """A :class:`Ring` with a traffic generator, a checker and counters at every node.

    Each node has a xorshift32 generator. Every cycle with ``gen_en`` set, it creates a packet
    with probability ``load / 65536`` (``load`` = 65536 means every cycle) and a destination by
    ``pattern``: 0 uniform over all nodes (``(r16 * nodes) >> 16``), 1 neighbour ``x+1``,
    2 tornado ``x + ceil(k/2) - 1``, 3 hotspot ``hot``. Packets wait in a source queue of
    ``queue`` entries; a packet created while it is full is refused (counted, not sent).

    Payload (48 bits): ``seq`` (8, per-flow sequence number), ``check`` (8, a function of src,
    dest and seq), ``gen`` (16, creation cycle), ``inj`` (16, injection cycle). The ejection side
    checks ``seq`` against a per-source counter and ``check``; any mismatch (loss, duplication,
    reordering, corruption) increments ``errors``.

    Parameters
    ----------
    nodes, depth, eject_depth, starve, quota : int
        As for :class:`Ring` (the ring's payload width is fixed at 48).
    queue : int
        Source queue entries per node, 2..256 (default 64; Dally & Towles measure with
        unbounded source queues, a short one refuses packets below saturation).

    Members
    -------
    pattern : In(2), load : In(17), hot : In(node bits), gen_en : In(1)
        Run-time traffic configuration.
    measure : In(1)
        Window counters count only while set. ``clear`` : In(1) zeroes them.
    eject_stall : In(16)
        Each node's ejection ``ready`` is low with probability ``eject_stall / 65536``
        (second xorshift32 per node); 0 = always ready.
    generated, refused, injected, ejected : Out(32).array(nodes)
        Window counters per node (ejected: at the destination).
    lat_sum, net_lat_sum : Out(48)
        Window sums of ejected packets' latency from creation / from injection (cycles).
    lat_max : Out(16)
        Largest creation-to-ejection latency in the window.
    inflight : Out(32)
        Flits injected and not yet ejected (since reset).
    max_idle : Out(32)
        Longest run of cycles with flits in flight and no ejection anywhere (since reset).
    errors : Out(32)
        Ejected flits that failed the sequence or check test (since reset).
    bad_dest : Out(nodes)
        From the ring (never set by the generators).
    cycle : Out(32)
        Free-running cycle counter.
    """

    WIDTH = 48

    def __init__(self, *, nodes=4, depth=DEPTH, eject_depth=EJECT_DEPTH, starve=STARVE,
                 quota=QUOTA, queue=64):
        self._params = _check_common(nodes, self.WIDTH, depth, eject_depth, starve, quota)
        self._queue = _check_int("queue", queue, 2, 256)
        bits = _node_bits(nodes)
        super().__init__({
            "pattern": In(2), "load": In(17), "hot": In(bits), "gen_en": In(1),
            "measure": In(1), "clear": In(1), "eject_stall": In(16),
            "generated": Out(32).array(nodes), "refused": Out(32).array(nodes),
            "injected": Out(32).array(nodes), "ejected": Out(32).array(nodes),
            "lat_sum": Out(48), "net_lat_sum": Out(48), "lat_max": Out(16),
            "inflight": Out(32), "max_idle": Out(32), "errors": Out(32),
            "bad_dest": Out(nodes), "cycle": Out(32),
        })

    queue = property(lambda self: self._queue, doc="Source queue entries per node.")

    @staticmethod
    def check_byte(src, dest, seq):
        """The ``check`` field: ``(seq ^ (src << 4) ^ dest ^ 0x5A) & 0xFF``."""
        return (seq ^ (src << 4) ^ dest ^ 0x5A) & 0xFF

    def elaborate(self, platform):
        m = Module()
        k = self.nodes
        bits = _node_bits(k)
        ring = m.submodules.ring = Ring(**self._params)
        m.d.comb += self.bad_dest.eq(ring.bad_dest)
        pay_l = data.StructLayout({"seq": 8, "check": 8, "gen": 16, "inj": 16})
        src_l = data.StructLayout({"dest": bits, "gen": 16})

        m.d.sync += self.cycle.eq(self.cycle + 1)
        now = self.cycle[:16]
        inj_total = []
        ej_total = []
        lat_terms = []
        for i in range(k):
            # -- generator ----------------------------------------------------------------------
            state = Signal(32, init=(0x9E3779B9 * (i + 1)) & 0xFFFFFFFF or 1, name=f"rng{i}")
            x1 = Signal(32, name=f"rng{i}_a")
            x2 = Signal(32, name=f"rng{i}_b")
            x3 = Signal(32, name=f"rng{i}_c")
            m.d.comb += [x1.eq(state ^ (state << 13)[:32]), x2.eq(x1 ^ (x1 >> 17)),
                         x3.eq(x2 ^ (x2 << 5)[:32])]
            m.d.sync += state.eq(x3)
            fire = Signal(name=f"fire{i}")
            m.d.comb += fire.eq(self.gen_en & (state[16:] < self.load))
            dest = Signal(bits, name=f"gen_dest{i}")
            uni = Signal(16 + bits + 1, name=f"uni{i}")
            m.d.comb += uni.eq(state[:16] * k)
            with m.Switch(self.pattern):
                with m.Case(0):
                    m.d.comb += dest.eq(uni[16:])
                with m.Case(1):
                    m.d.comb += dest.eq((i + 1) % k)
                with m.Case(2):
                    m.d.comb += dest.eq((i + (k + 1) // 2 - 1) % k)
                with m.Case(3):
                    m.d.comb += dest.eq(self.hot)
            srcq = m.submodules[f"srcq{i}"] = SyncFIFO(width=src_l.size, depth=self.queue)
            entry = Signal(src_l, name=f"entry{i}")
            m.d.comb += [entry.dest.eq(dest), entry.gen.eq(now),
                         srcq.w_data.eq(entry), srcq.w_en.eq(fire)]

            # -- injection -----------------------------------------------------------------------
            head = Signal(src_l, name=f"head{i}")
            m.d.comb += head.eq(srcq.r_data)
            seq_tx = Array(Signal(8, name=f"seq_tx{i}_{d}") for d in range(k))
            payload = Signal(pay_l, name=f"payload{i}")
            tx_seq = Signal(8, name=f"tx_seq{i}")
            m.d.comb += tx_seq.eq(seq_tx[head.dest])
            m.d.comb += [payload.seq.eq(tx_seq),
                         payload.check.eq(tx_seq ^ (i << 4) ^ head.dest ^ 0x5A),
                         payload.gen.eq(head.gen), payload.inj.eq(now)]
            port = ring.inject[i]
            m.d.comb += [port.valid.eq(srcq.r_rdy), port.p.dest.eq(head.dest),
                         port.p.payload.eq(payload), srcq.r_en.eq(port.ready)]
            did_inj = Signal(name=f"did_inj{i}")
            m.d.comb += did_inj.eq(port.valid & port.ready)
            with m.If(did_inj):
                m.d.sync += seq_tx[head.dest].eq(tx_seq + 1)
            inj_total.append(did_inj)

            # -- ejection and checking ----------------------------------------------------------
            out = ring.eject[i]
            bp = Signal(32, init=(0x85EBCA6B * (i + 3)) & 0xFFFFFFFF or 1, name=f"bp{i}")
            y1 = Signal(32, name=f"bp{i}_a")
            y2 = Signal(32, name=f"bp{i}_b")
            y3 = Signal(32, name=f"bp{i}_c")
            m.d.comb += [y1.eq(bp ^ (bp << 13)[:32]), y2.eq(y1 ^ (y1 >> 17)),
                         y3.eq(y2 ^ (y2 << 5)[:32])]
            m.d.sync += bp.eq(y3)
            m.d.comb += out.ready.eq(bp[16:] >= self.eject_stall)
            got = Signal(pay_l, name=f"got{i}")
            m.d.comb += got.eq(out.p.payload)
            seq_rx = Array(Signal(8, name=f"seq_rx{i}_{s}") for s in range(k))
            exp = Signal(8, name=f"exp{i}")
            m.d.comb += exp.eq(seq_rx[out.p.src])
            did_ej = Signal(name=f"did_ej{i}")
            m.d.comb += did_ej.eq(out.valid & out.ready)
            bad = Signal(name=f"bad{i}")
            m.d.comb += bad.eq(did_ej & ((got.seq != exp)
                                         | (got.check != (got.seq ^ (out.p.src << 4) ^ i ^ 0x5A))
                                         | (out.p.src >= k)))
            with m.If(did_ej):
                m.d.sync += seq_rx[out.p.src].eq(got.seq + 1)
            ej_total.append(did_ej)
            lat = Signal(16, name=f"lat{i}")
            net = Signal(16, name=f"net{i}")
            m.d.comb += [lat.eq(now - got.gen), net.eq(now - got.inj)]
            lat_terms.append((did_ej, lat, net, bad))

            # -- window counters ------------------------------------------------------------------
            with m.If(self.clear):
                m.d.sync += [self.generated[i].eq(0), self.refused[i].eq(0),
                             self.injected[i].eq(0), self.ejected[i].eq(0)]
            with m.Elif(self.measure):
                with m.If(fire):
                    m.d.sync += self.generated[i].eq(self.generated[i] + 1)
                    with m.If(~srcq.w_rdy):
                        m.d.sync += self.refused[i].eq(self.refused[i] + 1)
                with m.If(did_inj):
                    m.d.sync += self.injected[i].eq(self.injected[i] + 1)
                with m.If(did_ej):
                    m.d.sync += self.ejected[i].eq(self.ejected[i] + 1)

        # -- global sums ---------------------------------------------------------------------------
        lat_add = sum(t[1] * t[0] for t in lat_terms)
        net_add = sum(t[2] * t[0] for t in lat_terms)
        err_add = sum(t[3] for t in lat_terms)
        n_inj = sum(inj_total)
        n_ej = sum(ej_total)
        cur_max = Signal(16)
        chain = self.lat_max
        for j, (did, lat, _net, _bad) in enumerate(lat_terms):
            nxt = Signal(16, name=f"lat_max_{j}")
            m.d.comb += nxt.eq(chain)
            with m.If(did & (lat > chain)):
                m.d.comb += nxt.eq(lat)
            chain = nxt
        m.d.comb += cur_max.eq(chain)
        with m.If(self.clear):
            m.d.sync += [self.lat_sum.eq(0), self.net_lat_sum.eq(0), self.lat_max.eq(0)]
        with m.Elif(self.measure):
            m.d.sync += [self.lat_sum.eq(self.lat_sum + lat_add),
                         self.net_lat_sum.eq(self.net_lat_sum + net_add),
                         self.lat_max.eq(cur_max)]
        m.d.sync += [self.inflight.eq(self.inflight + n_inj - n_ej),
                     self.errors.eq(self.errors + err_add)]
        idle = Signal(32)
        with m.If((self.inflight != 0) & (n_ej == 0)):
            m.d.sync += idle.eq(idle + 1)
            with m.If(idle + 1 > self.max_idle):
                m.d.sync += self.max_idle.eq(idle + 1)
        with m.Else():
            m.d.sync += idle.eq(0)
        return m
