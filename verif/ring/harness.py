"""Verification IP of the ring: :class:`RingHarness`, hardware traffic generators, checkers and
counters around a :class:`sparsehw.hw.ring.Ring`.

cocotb only programs the run-time configuration and reads counters (:mod:`.tb_harness`), so
long load sweeps and soaks cost little Python time (:mod:`.perf_ring`).
"""

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from sparsehw.golden.ring import RING_PARAMS
from sparsehw.hw.ring import Ring, RingParameters, node_bits
from sparsehw.params import Param, ParamSpec, int_in


__all__ = ["RingHarness", "HARNESS_PARAMS", "PATTERN_CODES", "check_byte"]


#: Run-time pattern codes of :class:`RingHarness` (its ``pattern`` input).
PATTERN_CODES = {"uniform": 0, "neighbour": 1, "tornado": 2, "hotspot": 3}

#: Parameters of :class:`RingHarness`: the ring's, except the payload width (fixed at
#: :attr:`RingHarness.WIDTH`), and the source queue depth.
HARNESS_PARAMS = ParamSpec(
    *(RING_PARAMS[name] for name in ("nodes", "depth", "eject_depth", "starve", "quota")),
    Param("queue", 64, int_in(2, 256), doc="source queue entries per node"),
)


def check_byte(src, dest, seq):
    """The ``check`` field of a harness payload: ``(seq ^ (src << 4) ^ dest ^ 0x5A) & 0xFF``."""
    return (seq ^ (src << 4) ^ dest ^ 0x5A) & 0xFF


class RingHarness(RingParameters, wiring.Component):
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

    Attributes
    ----------
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

    Raises
    ------
    TypeError, ValueError
        A parameter is not an integer or out of its range (:data:`HARNESS_PARAMS`).
    """

    WIDTH = 48

    def __init__(self, **params):
        values = HARNESS_PARAMS.validate(**params)
        self._queue = values.pop("queue")
        self._params = RING_PARAMS.validate(**values, width=self.WIDTH)
        nodes = self.nodes
        bits = node_bits(nodes)
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

    check_byte = staticmethod(check_byte)

    def elaborate(self, platform):
        m = Module()
        k = self.nodes
        bits = node_bits(k)
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
