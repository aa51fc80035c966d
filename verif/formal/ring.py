"""Ring proof wrapper: flits neither lost nor duplicated, per-flow order, bounded waiting.

The :class:`sparsehw.hw.ring.Ring` is instantiated unchanged. The wrapper picks one flow, source
``flow_src`` to destination ``flow_dst`` (free inputs, assumed constant, so one proof covers
every flow), and numbers the flow's flits: it *assumes* that the ``n``-th flit node
``flow_src`` injects towards ``flow_dst`` carries ``n`` (modulo ``2**width``) as its payload,
counts the flow's flits out of ``eject[flow_dst]`` (those with ``src == flow_src``) and
*asserts* that

* a flit of the flow is ejected only while one is outstanding (no duplication, nothing made up),
* it carries the number of the oldest outstanding flit (no loss, no reordering: a lost or
  overtaken flit shows up as a wrong number on the next one; the in-flight count stays far below
  ``2**width``, asserted too).

With ``live=True`` every ``eject`` port is assumed always ready (no back-pressure: the ring alone
decides), and the wrapper also asserts

* ``wait_bound``: no node's injection port stays ``valid & ~ready`` for ``wait_bound`` cycles in
  a row (a waiting router is served),
* ``delivery_bound``: while a flit of the flow is outstanding, one is delivered at least every
  ``delivery_bound`` cycles (so the last flit is not lost either).

Everything else (other flows' traffic, every ``dest``, the ready of the other nodes) is free.
"""

from amaranth.hdl import Assert, Assume, Cover, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from sparsehw.hw.ring import Ring
from sparsehw.verif.formal.protocol import pass_through, streams_of, stream_rules


__all__ = ["RingFlowCheck"]


class RingFlowCheck(wiring.Component):
    """Proof wrapper of a :class:`Ring` (see the module docstring).

    Parameters
    ----------
    live : bool
        Assume every ejection port always ready and assert the two bounds.
    wait_bound, delivery_bound : int
        Cycles, for ``live=True``.
    **params
        Generation parameters of the :class:`Ring` (keep them small: nodes 3, width 4, depth 2).

    Attributes
    ----------
    inject, eject, bad_dest
        The ring's ports, passed through.
    flow_src, flow_dst : In(node bits)
        The observed flow; assumed constant.
    """

    def __init__(self, *, live=False, wait_bound=None, delivery_bound=None, **params):
        self._ring = Ring(**params)
        self._live = live
        self._wait_bound = wait_bound
        self._delivery_bound = delivery_bound
        bits = max(1, (self._ring.nodes - 1).bit_length())
        members = dict(self._ring.signature.members)
        members["flow_src"] = In(bits)
        members["flow_dst"] = In(bits)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.ring = ring = self._ring
        pass_through(m, self, ring)
        if platform != "formal":
            return m
        k, width = ring.nodes, ring.width
        for name, flow, valid, ready, payload in streams_of(ring):
            if flow == "in":        # legal sources; the ejection ports are checked elsewhere
                stream_rules(m, name, flow, valid, ready, payload)

        # The flow: constant, legal node numbers.
        first = Signal(init=1, reset_less=True)
        src_q = Signal.like(self.flow_src, reset_less=True)
        dst_q = Signal.like(self.flow_dst, reset_less=True)
        m.d.sync += [first.eq(0), src_q.eq(self.flow_src), dst_q.eq(self.flow_dst)]
        m.d.comb += [Assume(self.flow_src < k), Assume(self.flow_dst < k)]
        with m.If(~first):
            m.d.comb += [Assume(self.flow_src == src_q), Assume(self.flow_dst == dst_q)]

        # Numbering (wide counters; the payload carries the low bits).
        sent = Signal(8)
        got = Signal(8)
        outstanding = Signal(8)
        m.d.comb += outstanding.eq(sent - got)
        inj = ring.inject
        ej = ring.eject
        inj_fire = Signal()
        ej_fire = Signal()
        for i in range(k):
            with m.If(self.flow_src == i):
                m.d.comb += inj_fire.eq(inj[i].valid & inj[i].ready &
                                        (inj[i].payload.dest == self.flow_dst))
                with m.If(inj[i].valid & (inj[i].payload.dest == self.flow_dst)):
                    m.d.comb += Assume(inj[i].payload.payload == sent[:width])
            with m.If(self.flow_dst == i):
                m.d.comb += ej_fire.eq(ej[i].valid & ej[i].ready &
                                       (ej[i].payload.src == self.flow_src))
                with m.If(ej_fire):
                    m.d.comb += [
                        Assert(outstanding != 0, "ring: flit of the flow ejected with none "
                                                 "outstanding (duplicated or made up)"),
                        Assert(ej[i].payload.payload == got[:width],
                               "ring: flit of the flow out of order or lost"),
                    ]
        with m.If(inj_fire):
            m.d.sync += sent.eq(sent + 1)
        with m.If(ej_fire):
            m.d.sync += got.eq(got + 1)
        # At most depth + nodes + eject_depth flits of one flow can be in flight, far below the
        # numbering's modulus: a tag can never alias.
        limit = min(2 ** width - 1, 255)
        m.d.comb += Assert(outstanding <= limit, "ring: too many flits of the flow in flight")
        m.d.comb += Cover((outstanding >= 2) & ej_fire)

        if self._live:
            for i in range(k):
                m.d.comb += Assume(ej[i].ready)
            if self._wait_bound is not None:
                for i in range(k):
                    waiting = Signal(range(self._wait_bound + 1), name=f"waiting{i}")
                    with m.If(inj[i].valid & ~inj[i].ready):
                        with m.If(waiting < self._wait_bound):
                            m.d.sync += waiting.eq(waiting + 1)
                    with m.Else():
                        m.d.sync += waiting.eq(0)
                    m.d.comb += Assert(waiting < self._wait_bound,
                                       f"ring: node {i} waited wait_bound cycles to inject")
            if self._delivery_bound is not None:
                idle = Signal(range(self._delivery_bound + 1))
                with m.If((outstanding != 0) & ~ej_fire):
                    with m.If(idle < self._delivery_bound):
                        m.d.sync += idle.eq(idle + 1)
                with m.Else():
                    m.d.sync += idle.eq(0)
                m.d.comb += Assert(idle < self._delivery_bound,
                                   "ring: an outstanding flit of the flow was not delivered "
                                   "within delivery_bound cycles")
        return m
