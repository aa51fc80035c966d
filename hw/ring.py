"""Bidirectional ring interconnect: router, arbiter and ring.

The ring is two slotted unidirectional rings (CW and CCW). Every router owns one register per
direction (the slot on its outgoing link), so a flit advances one hop per cycle. Traffic already
on the ring has priority over injection. A flit whose ejection buffer is full stays where it is,
and so does the run of flits queued directly behind it (a local stall, computed from registered
state); the rest of the ring moves on, and flits never overtake each other. Injection is fair by
rounds: a starving router with quota left in the current round is *needy*, and no other router
injects a flit that would pass a needy router, so the needy router gets the next free slot while
slots it cannot use stay in use. See ``docs/ring.md`` for the deadlock, starvation and ordering
arguments; the hardware traffic harness around the ring (verification IP) is
:class:`sparsehw.verif.ring.harness.RingHarness`.

Interfaces between the parts, per direction (CW, CCW): a router's outgoing slot joins the next
router's incoming slot (:class:`SlotSignature`), and every router's arbitration port
(:class:`ArbitrationSignature`) joins the ring's arbitration logic for that direction (the
combinational logic that computes the hold and fairness inputs of every router from the state of
all of them); both with ``wiring.connect``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

import sparsehw.golden.ring as golden
from sparsehw.golden.ring import RING_PARAMS
from sparsehw.params import check, int_in


__all__ = ["RING_PARAMS", "Ring", "RingRouter", "SlotSignature",
           "ArbitrationSignature", "RingParameters", "inject_layout", "eject_layout",
           "flit_layout", "node_bits"]


_LOCAL, _CW, _CCW, _BAD = 0, 1, 2, 3


def node_bits(nodes):
    """Bits of a node number."""
    return max(1, (nodes - 1).bit_length())


def inject_layout(nodes, width):
    """Payload of an injection port: ``dest`` (node index) and ``payload`` (``width`` bits)."""
    return data.StructLayout({"dest": node_bits(nodes), "payload": width})


def eject_layout(nodes, width):
    """Payload of an ejection port: ``src`` (sending node) and ``payload``."""
    return data.StructLayout({"src": node_bits(nodes), "payload": width})


def flit_layout(nodes, width):
    """A flit on the ring: ``dest``, ``src`` and ``payload``."""
    bits = node_bits(nodes)
    return data.StructLayout({"dest": bits, "src": bits, "payload": width})


class SlotSignature(wiring.Signature):
    """One ring link as its sender sees it: the slot register leaving a router.

    Attributes
    ----------
    valid : Out(1)
        The slot holds a flit.
    flit : Out(flit_layout(nodes, width))
        The flit (``dest``, ``src``, ``payload``); meaningful while ``valid``, except ``dest``,
        meaningful only while ``valid`` and not ``home`` (the sender keeps only the ``dest``
        bits that vary among the flits passing the receiver).
    home : Out(1)
        The flit is for the receiving router (``dest`` is the sender's neighbour in this
        direction), decoded when the slot is loaded so that the receiver's ``block`` and
        ``passing`` come straight from registers (timing); meaningful while ``valid``.

    A router's outgoing slot (``Out``) joins the next router's incoming slot (``In``, the
    flipped signature) with ``wiring.connect``. There is no ``ready``: whether the receiver
    takes the slot is decided ring-wide (``hold`` of :class:`ArbitrationSignature`).
    """

    def __init__(self, nodes, width):
        super().__init__({"valid": Out(1), "flit": Out(flit_layout(nodes, width)),
                          "home": Out(1)})

    def __eq__(self, other):
        return type(other) is type(self) and self.members == other.members


class ArbitrationSignature(wiring.Signature):
    """What one router tells the ring's arbitration logic of one direction and hears back
    (router side).

    Attributes
    ----------
    block : Out(1)
        The arriving flit is for this router and its ejection buffer is full (registered state).
    passing : Out(1)
        The arriving flit is for another router (registered state).
    need : Out(1)
        This router is starving and has injected fewer than ``quota`` flits in the current
        fairness round (registered state).
    starving : Out(1)
        This router's injection candidate waited ``starve`` cycles (sticky until it has nothing
        to send; registered state).
    hold : In(1)
        The downstream router does not take the outgoing slot this cycle: keep it, inject
        nothing.
    round_over : In(1)
        No router's ``need`` is set: a new fairness round starts (quotas are given back).
    needs : In(nodes)
        Bit ``i``: router ``i`` is *needy* (``need``, or ``starving`` while ``round_over``).
    """

    def __init__(self, nodes):
        super().__init__({"block": Out(1), "passing": Out(1), "need": Out(1),
                          "starving": Out(1), "hold": In(1), "round_over": In(1),
                          "needs": In(nodes)})

    def __eq__(self, other):
        return type(other) is type(self) and self.members == other.members


def _validate(given, index=None):
    """The ring parameters, validated by :data:`RING_PARAMS` (and the router index)."""
    values = RING_PARAMS.validate(**given)
    if index is not None:
        check("index", index, int_in(0, values["nodes"] - 1))
    return values


class RingParameters:
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


def _circular_storage(m, width, depth, w_data, r_data, do_write, do_read):
    """The storage shared by :class:`_Buffer` and :class:`_Queue`: ``depth`` entries in a
    memory written at ``produce`` on ``do_write`` and read asynchronously at ``consume`` into
    ``r_data``, each pointer stepping round the memory on its own event. Returns ``(produce,
    incr)``, ``incr`` the pointer step (``_Buffer`` steps its key pointer with it)."""
    def incr(value):
        return Mux(value == depth - 1, 0, value + 1)

    produce = Signal(range(depth))
    consume = Signal(range(depth))
    m.submodules.storage = storage = Memory(shape=width, depth=depth, init=[])
    w_port = storage.write_port()
    r_port = storage.read_port(domain="comb")
    m.d.comb += [w_port.addr.eq(produce), w_port.data.eq(w_data), w_port.en.eq(do_write),
                 r_port.addr.eq(consume), r_data.eq(r_port.data)]
    with m.If(do_write):
        m.d.sync += produce.eq(incr(produce))
    with m.If(do_read):
        m.d.sync += consume.eq(incr(consume))
    return produce, incr


class _Buffer(wiring.Component):
    """A first-in first-out buffer of ``depth`` entries whose flags and head *key* are
    registers: the router's ejection buffers (key: the packed ``src`` bits).

    It behaves like :class:`~amaranth.lib.fifo.SyncFIFO` (``r_rdy = level != 0``,
    ``w_rdy = level != depth``, a write to an empty buffer is readable in the next cycle,
    ``r_data`` is the head's payload read asynchronously), with two differences that make the
    router's ejection choice start at flip-flops (timing; no cycle changes): ``full`` (``level ==
    depth``) and ``r_rdy`` are registers loaded with next cycle's value, and the key of every
    entry is kept in a memory of its own, read one entry ahead (at the entry after the head,
    from a register address), so that the head's key is a register (``r_key``).

    Parameters
    ----------
    width : int
        Payload bits per entry.
    key_bits : int
        Key bits per entry (0: no key).
    depth : int
        Entries, at least 2.

    Attributes
    ----------
    w_en : In(1)
        Write ``w_data`` (and ``w_key``); ignored while ``full``.
    w_data : In(width)
    w_key : In(key_bits)
        Only when ``key_bits``, like ``r_key``.
    full : Out(1)
        ``depth`` entries are stored (registered).
    r_en : In(1)
        Read the head; ignored while not ``r_rdy``.
    r_rdy : Out(1)
        At least one entry is stored (registered).
    r_data : Out(width)
        Payload of the head (meaningful while ``r_rdy``).
    r_key : Out(key_bits)
        Key of the head (registered; meaningful while ``r_rdy``).
    """

    def __init__(self, *, width, key_bits, depth):
        self._width, self._key_bits, self._depth = width, key_bits, depth
        members = {"w_en": In(1), "w_data": In(width), "full": Out(1), "r_en": In(1),
                   "r_rdy": Out(1), "r_data": Out(width)}
        if key_bits:
            members.update(w_key=In(key_bits), r_key=Out(key_bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        depth = self._depth

        level = Signal(range(depth + 1))
        do_write = Signal()
        do_read = Signal()
        m.d.comb += [do_write.eq(self.w_en & ~self.full), do_read.eq(self.r_en & self.r_rdy)]
        produce, incr = _circular_storage(m, self._width, depth, self.w_data, self.r_data,
                                          do_write, do_read)

        with m.If(do_write & ~do_read):
            m.d.sync += level.eq(level + 1)
        with m.Elif(do_read & ~do_write):
            m.d.sync += level.eq(level - 1)
        # Next cycle's ``level == depth`` and ``level != 0``.
        with m.If(do_read & ~do_write):
            m.d.sync += [self.full.eq(0), self.r_rdy.eq(level != 1)]
        with m.Elif(do_write & ~do_read):
            m.d.sync += [self.full.eq(level == depth - 1), self.r_rdy.eq(1)]

        if self._key_bits:
            # The head's key: the written entry's when it becomes the head (the buffer is
            # empty, or its only entry is read), else after a read the entry's behind the head,
            # read from ``key_storage`` at ``after`` (``consume + 1``, a register of its own).
            after = Signal(range(depth), init=1 % depth)
            with m.If(do_read):
                m.d.sync += after.eq(incr(after))
            m.submodules.key_storage = key_storage = Memory(shape=self._key_bits, depth=depth,
                                                            init=[])
            key_w = key_storage.write_port()
            key_r = key_storage.read_port(domain="comb")
            m.d.comb += [key_w.addr.eq(produce), key_w.data.eq(self.w_key),
                         key_w.en.eq(do_write), key_r.addr.eq(after)]
            with m.If(do_write & (~self.r_rdy | (do_read & (level == 1)))):
                m.d.sync += self.r_key.eq(self.w_key)
            with m.Elif(do_read):
                m.d.sync += self.r_key.eq(key_r.data)
        return m


class _Queue(wiring.Component):
    """A router's injection queue with the bypass built in: a first-in first-out buffer of
    ``depth`` entries whose write does not depend on the read (timing).

    A write (``w_en`` while ``w_rdy``) always stores the entry, also when the queue is empty
    and the entry is read in the same cycle (the router's bypass: the flit goes onto the ring
    from the injection port); that read takes the entry just written, so the queue stays
    empty. The injection decision (``r_en``) therefore drives only the read side: the
    storage's write enable and write pointer come from the injection port alone. Seen from
    the ports it is :class:`~amaranth.lib.fifo.SyncFIFO` with a bypass (``w_rdy = level !=
    depth``; ``r_rdy = level != 0``, a register loaded with next cycle's value).

    Attributes
    ----------
    w_en : In(1)
    w_data : In(width)
    w_rdy : Out(1)
        Fewer than ``depth`` entries are stored.
    r_en : In(1)
        Read the head, or while empty the entry written in this cycle (ignored without one).
    r_rdy : Out(1)
        At least one entry is stored (registered).
    r_data : Out(width)
        Payload of the head (meaningful while ``r_rdy``).
    """

    def __init__(self, *, width, depth):
        self._width, self._depth = width, depth
        super().__init__({"w_en": In(1), "w_data": In(width), "w_rdy": Out(1),
                          "r_en": In(1), "r_rdy": Out(1), "r_data": Out(width)})

    def elaborate(self, platform):
        m = Module()
        depth = self._depth

        level = Signal(range(depth + 1))
        do_write = Signal()
        do_read = Signal()
        m.d.comb += [self.w_rdy.eq(level != depth), do_write.eq(self.w_en & self.w_rdy),
                     do_read.eq(self.r_en & (self.r_rdy | do_write))]
        _circular_storage(m, self._width, depth, self.w_data, self.r_data, do_write, do_read)
        # Next cycle's ``level`` and ``level != 0``.
        with m.If(do_write & ~do_read):
            m.d.sync += [level.eq(level + 1), self.r_rdy.eq(1)]
        with m.Elif(do_read & ~do_write):
            m.d.sync += [level.eq(level - 1), self.r_rdy.eq(level != 1)]
        return m


class RingRouter(RingParameters, wiring.Component):
    """One node of the bidirectional ring.

    The router is generated for its place in the ring: it builds logic only for the flits the
    routing function (:func:`sparsehw.golden.ring.route`) can put on its links, queues and
    buffers, so its ``*_in`` slots must carry only those (as in :class:`Ring`); a queue,
    ejection buffer or slot no route uses is not built (at 2 nodes each router sends one way
    and receives from the other); see ``docs/ring.md``, "Generation-time pruning".

    Parameters
    ----------
    nodes : int
        Nodes on the ring, 2..16 (default 4).
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

    Attributes
    ----------
    inject : In(stream.Signature(inject_layout(nodes, width)))
        Injection. ``ready`` depends combinationally on ``payload.dest``: it is the free space of
        the queue of the flit's direction (local traffic: the local ejection buffer). A flit that
        finds its queue empty and its slot free is put on the ring in the same cycle (bypass).
        An out-of-range ``dest`` is accepted, dropped, and sets :attr:`bad_dest`.
    eject : Out(stream.Signature(eject_layout(nodes, width)))
        Ejection from the CW, CCW and local ejection buffers: full buffers first, and among
        the candidates fair per source (rounds in which each source is served once,
        round-robin over the buffers); ``valid`` is registered state. A beat offered and not
        taken is held (``valid`` and ``payload`` stable until ``ready``: the choice is locked
        while the sink stalls). Back-pressure fills the
        buffers, then stops the flit that cannot be buffered and the flits queued right behind
        it on the ring (never drops or reorders).
    cw_in, ccw_in : In(SlotSignature(nodes, width))
        Slot arriving from the CW upstream neighbour (``index-1``) / CCW upstream (``index+1``).
    cw_out, ccw_out : Out(SlotSignature(nodes, width))
        Registered slot leaving towards ``index+1`` / ``index-1``; it holds while ``hold``.
    cw_arb, ccw_arb : Out(ArbitrationSignature(nodes))
        To and from the ring's arbitration logic of that direction: ``block``/``passing`` (what the
        arriving flit does), ``need``/``starving`` (fairness state), and back ``hold``,
        ``round_over`` and ``needs``. A router that is not needy injects a flit only if no needy
        router lies strictly between it and the flit's destination, so it never takes a slot a
        needy router could use.
    bad_dest : Out(1)
        Sticky: a flit with ``dest >= nodes`` was injected here.

    Raises
    ------
    TypeError, ValueError
        A parameter is not an integer or out of its range (:data:`RING_PARAMS`; ``index`` in
        ``0..nodes-1``).
    """

    def __init__(self, *, index=0, **params):
        self._params = _validate(params, index)
        self._index = index
        nodes, width = self.nodes, self.width
        super().__init__({
            "inject": In(stream.Signature(inject_layout(nodes, width))),
            "eject": Out(stream.Signature(eject_layout(nodes, width))),
            "cw_in": In(SlotSignature(nodes, width)), "cw_out": Out(SlotSignature(nodes, width)),
            "cw_arb": Out(ArbitrationSignature(nodes)),
            "ccw_in": In(SlotSignature(nodes, width)),
            "ccw_out": Out(SlotSignature(nodes, width)),
            "ccw_arb": Out(ArbitrationSignature(nodes)),
            "bad_dest": Out(1),
        })

    index = property(lambda self: self._index, doc="This router's node number.")

    def elaborate(self, platform):
        m = Module()
        k, me = self.nodes, self.index
        flit_l = flit_layout(k, self.width)
        ej_l = eject_layout(k, self.width)

        # Direction of the injected flit, from the golden routing function.
        direction = Signal(2)
        with m.Switch(self.inject.p.dest):
            for dest in range(2 ** node_bits(k)):
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
        # Its source is this router: the buffer stores the payload only.
        local = m.submodules.local = _Buffer(width=self.width, key_bits=0,
                                                  depth=self.eject_depth)
        m.d.comb += [local.w_data.eq(self.inject.p.payload),
                     local.w_en.eq(self.inject.valid & (direction == _LOCAL))]
        local_head = Signal(ej_l, name="local_head")
        m.d.comb += [local_head.src.eq(me), local_head.payload.eq(local.r_data)]
        head_of = {"local": local_head}

        ready = Signal()
        with m.Switch(direction):
            with m.Case(_LOCAL):
                m.d.comb += ready.eq(~local.full)
            with m.Case(_BAD):
                m.d.comb += ready.eq(1)
        with m.If(self.inject.valid & (direction == _BAD)):
            m.d.sync += self.bad_dest.eq(1)

        ejects = {}
        for name, code, arrive, depart, arb in (("cw", _CW, self.cw_in, self.cw_out, self.cw_arb),
                                               ("ccw", _CCW, self.ccw_in, self.ccw_out,
                                                self.ccw_arb)):
            hold, block, passing = arb.hold, arb.block, arb.passing
            step = +1 if code == _CW else -1
            downstream = (me + step) % k
            bits = node_bits(k)
            # What the topology allows (generation time, from the golden routing function):
            # the flits that can be on the outgoing and on the arriving link, the destinations
            # this router sends this way, the sources whose flits eject here from this link.
            out_flits = _link_flits(me, k, step)
            in_flits = _link_flits((me - step) % k, k, step)
            sends = _routed(me, k, step)
            src_free, src_fixed = _free_bits([src for src, _ in out_flits], bits)
            # ``dest`` of a slot is read only for a flit that passes the downstream router (a
            # flit for that router is ``home``): the bits that vary among those flits.
            dest_free, dest_fixed = _free_bits(
                [dest for _, dest in out_flits if dest != downstream]
                or [dest for _, dest in out_flits], bits)
            ejecting = [src for src, dest in in_flits if dest == me]
            ej_free, ej_fixed = _free_bits(ejecting, bits)
            always_home = all(dest == downstream for _, dest in out_flits)
            can_pass = any(dest != me for _, dest in in_flits)

            # The outgoing slot register: the bits of ``src`` that vary among the flits this
            # link can carry and of ``dest`` among those that pass the downstream router (the
            # others are constants), and ``home`` unless every such flit is for the downstream
            # router. Only ``valid`` is reset: the rest is read only while ``valid``.
            fields = {"dest": len(dest_free), "src": len(src_free), "payload": self.width}
            out = Signal(data.StructLayout({f: n for f, n in fields.items() if n}),
                         name=f"{name}_out", reset_less=True)
            out_valid = Signal(name=f"{name}_out_valid")
            out_dest = out.dest if dest_free else Cat()
            out_src = out.src if src_free else Cat()
            m.d.comb += [depart.valid.eq(out_valid),
                         depart.flit.dest.eq(_unpack(out_dest, dest_free, dest_fixed, bits)),
                         depart.flit.src.eq(_unpack(out_src, src_free, src_fixed, bits)),
                         depart.flit.payload.eq(out.payload)]
            if always_home:
                m.d.comb += depart.home.eq(1)
            else:
                out_home = Signal(name=f"{name}_out_home", reset_less=True)
                m.d.comb += depart.home.eq(out_home)

            # The ejection buffer (only where flits eject from this link) stores the varying
            # bits of the source and the payload; the injection queue (only where this router
            # sends this way) the varying bits of the destination and the payload (the source
            # is this router). A part no route uses is not built (at 2 nodes each router sends
            # one way and receives from the other).
            ejects[name] = None
            head_of[name] = Signal(ej_l, name=f"{name}_eject_head")
            if ejecting:
                efifo = m.submodules[f"{name}_eject"] = _Buffer(width=self.width,
                                                                key_bits=len(ej_free),
                                                                depth=self.eject_depth)
                e_src = efifo.r_key if ej_free else Cat()
                m.d.comb += [head_of[name].src.eq(_unpack(e_src, ej_free, ej_fixed, bits)),
                             head_of[name].payload.eq(efifo.r_data)]
                ejects[name] = efifo

            # The arriving flit either ejects here (if its buffer has room), passes on, or is
            # blocked (for this node, buffer full). Ejection does not depend on ``hold``.
            # ``arrive.home`` (decoded by the sender) and the buffer's ``full`` (a register) make
            # ``block`` and ``passing`` plain registers, so the ring-wide hold terms start at
            # flip-flops (timing). A link whose every flit is for this router has no passing
            # logic, one whose every flit passes no ejection.
            here = Signal(name=f"{name}_here")
            if ejecting:
                full = efifo.full
                if can_pass:
                    m.d.comb += [here.eq(arrive.valid & arrive.home),
                                 passing.eq(arrive.valid & ~arrive.home)]
                else:
                    m.d.comb += [here.eq(arrive.valid), passing.eq(0)]
                m.d.comb += block.eq(here & full)
                m.d.comb += [efifo.w_data.eq(arrive.flit.payload), efifo.w_en.eq(here)]
                if ej_free:
                    m.d.comb += efifo.w_key.eq(_pack(arrive.flit.src, ej_free))
            else:
                full = Const(0)
                m.d.comb += passing.eq(arrive.valid)
            usable = Signal(name=f"{name}_usable")
            m.d.comb += usable.eq(~arrive.valid | (here & ~full))
            do_inj = Signal(name=f"{name}_inject")
            cand = None
            if sends:
                cand = self._injection(m, name, code, arb, step, sends, direction=direction,
                                       new_flit=new_flit, usable=usable, ready=ready,
                                       do_inj=do_inj)

            if out_flits:
                # The outgoing slot: holds while the downstream router does not take it. It takes
                # the passing flit or the injected one (never both: a passing flit makes the slot
                # unusable). The flit bits are read only while ``valid``, so they are loaded from
                # the candidate whenever no flit passes; the choice is then the registered
                # ``passing``, not the injection decision (timing).
                with m.If(~hold):
                    m.d.sync += out_valid.eq(do_inj | passing)
                    with m.If(passing):
                        m.d.sync += _load(out, arrive.flit, dest_free, src_free)
                        if not always_home:
                            m.d.sync += out_home.eq(arrive.flit.dest == downstream)
                    with m.Else():
                        if sends:           # (a link that only passes flits loads nothing here)
                            m.d.sync += _load(out, cand, dest_free, src_free)
                            if not always_home:
                                m.d.sync += out_home.eq(cand.dest == downstream)

        # Ejection: per-source rounds, round-robin over the CW, CCW and local buffers. A head
        # whose source has not been served in the current round goes first; when every waiting
        # head's source has been served, a new round starts. So the port is shared per source,
        # not per buffer (under hotspot traffic a direction carrying many sources gets more).
        # Full buffers come first (a full ring buffer holds the ring behind it; a full local
        # buffer holds the injection port), and the rounds apply among them.
        sources = [ejects["cw"], ejects["ccw"], local]
        heads = [Signal(ej_l, name=f"head{i}") for i in range(3)]
        m.d.comb += [h.eq(head_of[n]) for h, n in zip(heads, ("cw", "ccw", "local"))]
        # ``full`` and ``r_rdy`` of every buffer and the ``src`` of its head are registers
        # (:class:`_Buffer`), so the choice starts at flip-flops (timing).
        urgent = Signal(3)
        nonempty = Signal(3, name="eject_rdy")
        # (a buffer not built, None, is never full and never has a head)
        m.d.comb += [urgent.eq(Cat(Const(0) if s is None else s.full for s in sources)),
                     nonempty.eq(Cat(Const(0) if s is None else s.r_rdy for s in sources))]
        # One bit per node (a head's ``src`` is a node number; the padding is never selected).
        mask = Signal(k, name="served_src")
        padded = Cat(mask, Const(0, 2 ** node_bits(k) - k))
        unserved = Signal(3)
        m.d.comb += unserved.eq(Cat(~padded.bit_select(h.src, 1) for h in heads))
        # The candidates are the buffers of the best class among: full with an unserved
        # source, full, not full with an unserved source, not full (full buffers first; among
        # them the unserved sources first), i.e. a buffer's class is the 2-bit number
        # ``(~full, ~unserved)``; among the candidates the round-robin order decides. Written
        # as pairwise comparisons, so every buffer's pick is shallow logic of registers
        # (timing): buffer ``i`` is picked when it has a head and beats every other buffer
        # with a head (a better class, or the same class and earlier in the round-robin).
        # ``first`` (one-hot): where the round-robin starts, the buffer after the one served
        # last.
        first = Signal(3, name="rr_first", init=1)
        rank = [Signal(2, name=f"eject_class{i}") for i in range(3)]
        for i in range(3):
            m.d.comb += rank[i].eq(Cat(~unserved[i], ~urgent[i]))
        pick = Signal(3, name="eject_pick")
        for i in range(3):
            beats = []
            for j in ((i + 1) % 3, (i + 2) % 3):
                # ``i`` comes before ``j`` in the round-robin: before its successor unless the
                # round starts there, before its predecessor only when the round starts at ``i``.
                earlier = ~first[j] if j == (i + 1) % 3 else first[i]
                beats.append(~nonempty[j] | (rank[i] < rank[j])
                             | ((rank[i] == rank[j]) & earlier))
            m.d.comb += pick[i].eq(nonempty[i] & beats[0] & beats[1])
        # A beat offered and not taken stays offered: the choice is locked (``held`` and
        # ``held_grant``, registered) until the handshake, so ``valid`` and ``payload`` do not
        # change while the sink stalls, even when another buffer fills up meanwhile (the stream
        # rule; the buffer's head cannot change without a read).
        held = Signal()
        held_grant = Signal(3)
        grant = Signal(3, name="eject_grant")
        m.d.comb += grant.eq(Mux(held, held_grant, pick))
        m.d.sync += [held.eq(self.eject.valid & ~self.eject.ready), held_grant.eq(grant)]
        m.d.comb += [self.eject.valid.eq(grant.any()),
                     self.inject.ready.eq(ready)]
        with m.Switch(grant):
            for i in range(3):
                with m.Case(1 << i):
                    m.d.comb += self.eject.payload.eq(heads[i])
        for i, source in enumerate(sources):
            if source is not None:
                m.d.comb += source.r_en.eq(self.eject.ready & grant[i])
        onehots = []
        for i, h in enumerate(heads):
            onehot = Signal(k, name=f"head{i}_src_bit")
            m.d.comb += onehot.eq(1 << h.src)
            onehots.append(Mux(grant[i], onehot, 0))
        with m.If(self.eject.valid & self.eject.ready):
            m.d.sync += first.eq(Cat(grant[2], grant[0], grant[1]))
            # The served source's bit, from one-hot codes of the heads' registered sources.
            bit = Signal.like(mask, name="served_bit")
            m.d.comb += bit.eq(onehots[0] | onehots[1] | onehots[2])
            waiting = Signal(3)
            m.d.comb += waiting.eq(nonempty & unserved)
            # The granted head is waiting (a buffer with a head), so: its source joins the
            # served ones, or, when no waiting head's source is unserved (the granted one was
            # served too), a new round starts with it. ``mask | bit`` is ``mask`` when the
            # granted source was served already.
            m.d.sync += mask.eq(bit | Mux(waiting.any(), mask, 0))
        return m

    def _injection(self, m, name, code, arb, step, sends, *, direction, new_flit, usable, ready,
                   do_inj):
        """The injection side of direction ``name`` (``code``, ``step``), built only when this
        router sends that way (``sends``: the destinations): the injection queue, the candidate
        (queue head, else the port's flit), the fairness state and ``do_inj``; returns the
        candidate flit."""
        k, me, bits = self.nodes, self.index, node_bits(self.nodes)
        hold, need, needs, round_over = arb.hold, arb.need, arb.needs, arb.round_over
        q_free, q_fixed = _free_bits(sends, bits)
        flit_l = flit_layout(k, self.width)
        queue = m.submodules[f"{name}_queue"] = _Queue(width=len(q_free) + self.width,
                                                       depth=self.depth)

        # Candidate for injection: queue head, else the injection port itself (bypass).
        wants = Signal(name=f"{name}_wants")
        m.d.comb += wants.eq(self.inject.valid & (direction == code))
        cand_valid = Signal(name=f"{name}_cand_valid")
        cand = Signal(flit_l, name=f"{name}_cand")
        # ``q_rdy``: the queue is not empty (a register of the queue).
        q_rdy = queue.r_rdy
        head_dest = Signal(range(2 ** bits), name=f"{name}_head_dest")
        m.d.comb += head_dest.eq(_unpack(queue.r_data[self.width:], q_free, q_fixed, bits))
        m.d.comb += cand_valid.eq(q_rdy | wants)
        with m.If(q_rdy):
            m.d.comb += [cand.dest.eq(head_dest),
                         cand.src.eq(me), cand.payload.eq(queue.r_data[:self.width])]
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
        # ``starving`` (``wait == starve``) and ``spent`` (``used == quota``) are registers
        # of their own, loaded with the value the comparison will have next cycle (timing).
        wait = Signal(range(self.starve + 1), name=f"{name}_wait")
        starving = Signal(name=f"{name}_starving")
        used = Signal(range(self.quota + 1), name=f"{name}_used")
        spent = Signal(name=f"{name}_spent")
        # ``need`` (``starving & ~spent``) is a register too, loaded with next cycle's
        # value (timing: the ring-wide fairness inputs start at flip-flops).
        need_r = Signal(name=f"{name}_need")
        m.d.comb += [arb.starving.eq(starving), need.eq(need_r)]
        # Whether the fairness rules let this router inject, computed in parallel for the
        # two possible candidates (the queue head and the injection port's flit) from
        # registered state and chosen by the queue's registered ``q_rdy`` at the end, so
        # the queue's level and the candidate multiplexer are off the decision's path
        # (timing; the same decision as on the chosen candidate).
        own = Signal(name=f"{name}_own_turn")
        m.d.comb += own.eq(need | (starving & round_over))

        def allowed_for(dest_value, label):
            in_path = Signal(name=f"{name}_path_needy_{label}")
            # Only the destinations this router sends this way (a candidate has no other).
            with m.Switch(dest_value):
                for dest in sends:
                    with m.Case(dest):
                        mask = _between_mask(me, dest, k, step)
                        m.d.comb += in_path.eq((needs & mask).any())
                with m.Default():
                    m.d.comb += in_path.eq(0)
            ok = Signal(name=f"{name}_allowed_{label}")
            m.d.comb += ok.eq(own | ~in_path)
            return ok

        allowed_head = allowed_for(head_dest, "head")
        allowed_port = allowed_for(self.inject.p.dest, "port")
        m.d.comb += do_inj.eq(~hold & usable & Mux(q_rdy, allowed_head,
                                                    wants & allowed_port))
        # A flit injected from the port (bypass: the queue is empty) is written to the
        # queue and read from it in the same cycle (:class:`_Queue`).
        m.d.comb += [queue.r_en.eq(do_inj),
                     queue.w_data.eq(Cat(self.inject.p.payload,
                                         _pack(self.inject.p.dest, q_free))),
                     queue.w_en.eq(wants)]
        with m.If(direction == code):
            m.d.comb += ready.eq(queue.w_rdy)
        # Starving is sticky: it ends only when the router has nothing more to send, or
        # when it injected without being starving.
        starving_next = Signal(name=f"{name}_starving_next")
        spent_next = Signal(name=f"{name}_spent_next")
        m.d.comb += [starving_next.eq(starving), spent_next.eq(spent)]
        with m.If(~cand_valid | (do_inj & ~starving)):
            m.d.sync += wait.eq(0)
            m.d.comb += starving_next.eq(0)
        with m.Elif(~starving):
            m.d.sync += wait.eq(wait + 1)
            m.d.comb += starving_next.eq(wait == self.starve - 1)
        with m.If(round_over):
            m.d.sync += used.eq(do_inj & starving)
            m.d.comb += spent_next.eq(do_inj & starving & (self.quota == 1))
        with m.Elif(do_inj & need_r):
            # Saturates at ``quota``: a starving router that has used its quota may still
            # inject where no needy router lies in its path, and stays spent.
            m.d.sync += used.eq(used + 1)
            m.d.comb += spent_next.eq(used == self.quota - 1)
        m.d.sync += [starving.eq(starving_next), spent.eq(spent_next),
                     need_r.eq(starving_next & ~spent_next)]
        return cand


class Ring(RingParameters, wiring.Component):
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

    Attributes
    ----------
    inject : In(stream.Signature(inject_layout(nodes, width))).array(nodes)
        Injection port of each node (``dest``, ``payload``); ``ready`` may depend on
        ``payload.dest`` combinationally. Zero-load latency to ``eject[dest]`` is
        ``hops + 1`` cycles (:func:`sparsehw.golden.ring.zero_load_latency`).
    eject : Out(stream.Signature(eject_layout(nodes, width))).array(nodes)
        Ejection port of each node (``src``, ``payload``); honours back-pressure.
    bad_dest : Out(nodes)
        Bit ``i`` is set (sticky) when node ``i`` was given a ``dest >= nodes``; the flit is
        dropped.

    Raises
    ------
    TypeError, ValueError
        A parameter is not an integer or out of its range (:data:`RING_PARAMS`).
    """

    def __init__(self, **params):
        self._params = _validate(params)
        nodes, width = self.nodes, self.width
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
        directions = (("cw", +1, [(r.cw_in, r.cw_out, r.cw_arb) for r in routers]),
                      ("ccw", -1, [(r.ccw_in, r.ccw_out, r.ccw_arb) for r in routers]))
        for name, step, ports in directions:
            arbitration = [ArbitrationSignature(k).flip().create(path=(f"{name}_arb{i}",))
                           for i in range(k)]
            for i, (arrive, _depart, arb) in enumerate(ports):
                wiring.connect(m, arb, arbitration[i])
                upstream_depart = ports[(i - step) % k][1]
                wiring.connect(m, upstream_depart, arrive)
            _arbitrate(m, arbitration, step, name)
        return m


def _arbitrate(m, ports, step, name):
    """Ring-wide flow control and fairness of one direction (combinational, added to ``m``).

    ``ports`` are the arbiter's side of every router's :class:`ArbitrationSignature` (flipped),
    router ``i`` first; ``step`` is ``+1`` (CW: router ``i`` sends to ``i+1``) or ``-1`` (CCW).
    From every router's registered ``block``/``passing``/``need``/``starving`` it drives each
    router's ``hold`` (the slot it sends downstream is not taken this cycle), ``round_over`` and
    ``needs``. It is logic of :class:`Ring` rather than a submodule of its own: a module boundary
    here leaves the logic the same but changes what Yosys' technology mapping makes of it (ECP5
    LUT counts), and the measured figures must not move with a refactoring.
    """
    k = len(ports)
    blocks = [port.block for port in ports]
    # A router no flit can pass (every flit on its arriving link is for it; the same rule as
    # the router's own ``passing``, which is 0 there) ends every run of passing flits.
    passes = [port.passing if any(dest != i for _, dest in _link_flits((i - step) % k, k, step))
              else None for i, port in enumerate(ports)]
    # Needy routers: need, or starving when no router has need (a round boundary).
    raw = Signal(k, name=f"{name}_need_raw")
    starving = Signal(k, name=f"{name}_starving")
    round_over = Signal(name=f"{name}_round_over")
    needs = Signal(k, name=f"{name}_needs")
    m.d.comb += [raw.eq(Cat(port.need for port in ports)),
                 starving.eq(Cat(port.starving for port in ports)),
                 round_over.eq(~raw.any()),
                 needs.eq(Mux(round_over, starving, raw))]
    # hold_in[x]: the slot arriving at router x is not consumed this cycle. It is, when walking
    # downstream from x, a run of passing flits ends in a blocked flit. Written out as a sum of
    # products of registered state (no combinational ring).
    hold_in = []
    for x in range(k):
        term = blocks[(x + step * (k - 1)) % k]
        for dist in range(k - 2, -1, -1):
            node = (x + step * dist) % k
            term = blocks[node] if passes[node] is None else blocks[node] | (passes[node] & term)
        held = Signal(name=f"{name}_hold_in{x}")
        m.d.comb += held.eq(term)
        hold_in.append(held)
    for i, port in enumerate(ports):
        m.d.comb += [port.hold.eq(hold_in[(i + step) % k]),
                     port.needs.eq(needs),
                     port.round_over.eq(round_over)]


def _between_mask(src, dest, k, step):
    """Bit mask of the nodes strictly between ``src`` and ``dest`` walking in ``step``."""
    mask, node = 0, (src + step) % k
    while node != dest and node != src:
        mask |= 1 << node
        node = (node + step) % k
    return mask


# -- Generation-time pruning ----------------------------------------------------------------------
# The routing function (:func:`sparsehw.golden.ring.route`) fixes at generation time which flits
# can ever be on a link: the router builds registers, FIFO bits and decode logic only for those.
# Every pruned signal is one whose value on a valid flit is already fixed by the topology, so the
# pruning cannot change a flit, a handshake or a cycle (docs/ring.md, "Generation-time pruning").


def _routed(src, k, step):
    """Destinations ``src`` sends in direction ``step`` (:func:`golden.route`)."""
    return [dest for dest in range(k) if golden.route(src, dest, k)[0] == step]


def _link_flits(sender, k, step):
    """``(src, dest)`` of every flit that can be in the slot leaving ``sender`` in ``step``.

    A flit ``src -> dest`` routed in ``step`` occupies the links leaving ``src`` and the
    routers it passes (strictly between ``src`` and ``dest``).
    """
    flits = set()
    for src in range(k):
        for dest in _routed(src, k, step):
            node = src
            while node != dest:
                if node == sender:
                    flits.add((src, dest))
                node = (node + step) % k
    return flits


def _free_bits(values, bits):
    """``(free, fixed)``: the bit positions of ``bits``-bit numbers on which ``values`` differ,
    and the value of every other bit (an empty set leaves every bit free)."""
    values = sorted(set(values))
    if not values:
        return list(range(bits)), 0
    free = [b for b in range(bits) if len({(v >> b) & 1 for v in values}) > 1]
    return free, values[0] & ~sum(1 << b for b in free)


def _pack(value, free):
    """The ``free`` bits of ``value``, packed (a zero-width value when there are none)."""
    return Cat(*(value[b] for b in free))


def _load(out, flit, dest_free, src_free):
    """Statements loading the slot register ``out`` (the varying bits only) from ``flit``."""
    stmts = [out.payload.eq(flit.payload)]
    if dest_free:
        stmts.append(out.dest.eq(_pack(flit.dest, dest_free)))
    if src_free:
        stmts.append(out.src.eq(_pack(flit.src, src_free)))
    return stmts


def _unpack(packed, free, fixed, bits):
    """A ``bits``-bit value: the packed ``free`` bits in place, ``fixed`` elsewhere."""
    return Cat(*(packed[free.index(b)] if b in free else Const((fixed >> b) & 1, 1)
                 for b in range(bits)))
