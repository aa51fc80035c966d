"""The FiGS swap-register MAC PE array (``figs``) and its baselines: broadcast (``nm_broadcast``),
fan-out (``nm_fanout``) and fixed 2:4 (``nm_fixed24``).

Both engines are weight-stationary arrays of ``rows x cols`` PEs with ``beta`` MAC units each, built
from the same pieces (:class:`_SparseArray`): double-banked weight registers loaded one PE row per
transfer, a west-flowing chain of input registers (one per PE), per-MAC operand multiplexers, a
column reduction and an east-to-west pipeline that carries the column sums out. They differ only
in what a PE row receives and how a MAC finds its operand (see ``docs/figs.md``):

* ``nm_broadcast``: every PE row receives the whole ``M``-wide activation block of its group and
  each MAC picks its operand with an ``M:1`` multiplexer (``max_m:1`` in hardware) by its index.
* ``figs``: the ``N`` rows of a group share the group's ``M`` activations, ``M/N`` per row (the
  row's *sub-block*), held in the row's swap registers. A MAC reads its own swap register or one of
  the ``alpha`` swap registers above or below it (the vertical links), a
  ``(2*alpha+1)*ratio : 1`` multiplexer. The route (link and lane) is computed once, when the
  weight is loaded. A nonzero weight whose sub-block is more than ``alpha`` rows away is served
  by the *swap exchange*: the instance is held at the array input for extra cycles in which the
  swap registers of every group are rotated cyclically (the tile's schedule, computed while the
  weights load), and the partial sums of those phases are added before the result leaves.
"""

import contextlib
import string

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from sparsehw.golden.figs import MAC_STAGES, pipeline_latency
from sparsehw.hw.arith import delay, tree_sum
from sparsehw.params import Param, ParamSpec, int_in, multiple_of, pow2_in


__all__ = ["FigsArray", "NmBroadcastArray", "NmFanoutArray", "NmFixed24Array", "FIGS_PARAMS",
           "NM_BROADCAST_PARAMS", "NM_FANOUT_PARAMS", "NM_FIXED24_PARAMS", "array_layouts",
           "PSUM_WIDTH", "SUPPORTED_RATIOS"]


#: Width of the partial sums on the output stream (two's complement).
PSUM_WIDTH = 32
#: N:M ratios the issue asks for (dense is written 1:1); every one is selectable at run time.
SUPPORTED_RATIOS = ((1, 1), (1, 2), (2, 4), (1, 4), (2, 8), (4, 8), (4, 16), (8, 32))
#: Fields ``n_log2``/``m_log2`` of the weight stream are this wide.
_LOG_BITS = 3
#: The first (registered) level of a MAC's operand select is a ``2**3 = 8:1`` multiplexer: it
#: sits next to the input registers, and only the candidates travel to the multiplier.
_SELECT_LEVEL_BITS = 3
#: Selects of at most this many bits (FiGS's 12:1 at alpha=1, ratio=4; fixed 2:4's 4:1) are one
#: registered level (stage 1), and stage 2 only copies the operand: the multiplier (an ECP5 DSP,
#: whose own registers Yosys does not use) then reads registers that feed nothing else, which
#: the placer is free to put next to it.
_ONE_LEVEL_SELECT_BITS = 4


# 2*width + log2(rows) <= 2*12 + 7 < PSUM_WIDTH: a column sum always fits.
_ROWS = Param("rows", 8, int_in(1, 64), doc="PE rows; a run-time N must divide it")
_COLS = Param("cols", 4, int_in(1, 32), doc="PE columns")
_WIDTH = Param("width", 8, int_in(2, 12), doc="operand width; int8: 8")
_MAX_M = Param("max_m", 32, pow2_in(1, 32), doc="largest run-time M")

#: Generation parameters of :class:`FigsArray` (block ``figs``).
FIGS_PARAMS = ParamSpec(
    _ROWS, _COLS,
    Param("alpha", 1, int_in(0, 7), doc="vertical links each way per swap register"),
    Param("beta", 2, int_in(1, 8), doc="MAC units per PE sharing its swap register"),
    _WIDTH, _MAX_M,
    Param("ratio", 4, lambda v: pow2_in(1, v["max_m"]), allowed="a power of two in 1..max_m",
          doc="largest run-time M/N, the swap-register lanes"),
)

#: Generation parameters of :class:`NmBroadcastArray` (block ``nm_broadcast``).
NM_BROADCAST_PARAMS = ParamSpec(
    _ROWS, _COLS,
    Param("beta", 2, int_in(1, 8), doc="MAC units per PE"),
    _WIDTH, _MAX_M,
)


#: Generation parameters of :class:`NmFanoutArray` (block ``nm_fanout``): those of FiGS without
#: ``alpha``.
NM_FANOUT_PARAMS = ParamSpec(
    _ROWS, _COLS,
    Param("beta", 2, int_in(1, 8), doc="MAC units per PE"),
    _WIDTH, _MAX_M,
    Param("ratio", 4, lambda v: pow2_in(1, v["max_m"]), allowed="a power of two in 1..max_m",
          doc="largest run-time M/N, the port lanes per row"),
)

#: Generation parameters of :class:`NmFixed24Array` (block ``nm_fixed24``): the pattern is 2:4.
NM_FIXED24_PARAMS = ParamSpec(
    Param("rows", 8, multiple_of(2, 64), doc="PE rows (pairs of slots of a 2:4 group)"),
    _COLS,
    Param("beta", 2, int_in(1, 8), doc="MAC units per PE"),
    _WIDTH,
)


def array_layouts(*, rows, cols, beta, width, lanes, max_m):
    """Payload layouts of the array's streams (also used by the testbenches).

    Returns
    -------
    dict
        ``"w"``: one PE row of weights, ``{"entries": [cols*beta] x {"value", "index"},
        "n_log2", "m_log2"}``; ``"i"``: one activation instance, ``{"x": [rows] x [lanes] x
        signed(width), "last"}``; ``"o"``: ``{"psum": [cols*beta] x signed(32), "last"}``;
        ``"fault"``: ``{"index", "config", "route"}``.
    """
    index_bits = max(1, (max_m - 1).bit_length())
    entry = data.StructLayout({"value": signed(width), "index": unsigned(index_bits)})
    return {
        "w": data.StructLayout({"entries": data.ArrayLayout(entry, cols * beta),
                                "n_log2": unsigned(_LOG_BITS), "m_log2": unsigned(_LOG_BITS)}),
        "i": data.StructLayout({"x": data.ArrayLayout(data.ArrayLayout(signed(width), lanes),
                                                      rows),
                                "last": unsigned(1)}),
        "o": data.StructLayout({"psum": data.ArrayLayout(signed(PSUM_WIDTH), cols * beta),
                                "last": unsigned(1)}),
        "fault": data.StructLayout({"index": 1, "config": 1, "route": 1}),
    }


class _SparseArray(wiring.Component):
    """Shared datapath and control of both engines (not a block of its own).

    Parameters
    ----------
    rows, cols, beta, width, max_m : int
        See :class:`FigsArray`; validated by the subclass.
    figs : bool
        ``True`` for swap registers with ``alpha`` vertical links, ``False`` for broadcast.
    fanout : bool
        The port carries ``ratio`` lanes per row (FiGS's port); each group's ``M``-block is
        fanned out to its ``N`` rows at the array's east edge (broadcast datapath inside).
    fixed : bool
        Fan-out engine for the one pattern 2:4 (``max_m = 4``, ``ratio = 2``): any other
        ``n_log2``/``m_log2`` is a config fault; the two indices of a group must ascend.
    alpha, ratio : int
        FiGS and fan-out only.
    """

    def __init__(self, *, rows, cols, beta, width, max_m, figs, alpha=0, ratio=1,
                 fanout=False, fixed=False):
        self._rows, self._cols, self._beta, self._width, self._max_m = \
            rows, cols, beta, width, max_m
        self._figs = figs
        self._fanout = fanout or fixed
        self._fixed = fixed
        self._alpha = alpha
        self._ratio = ratio
        self._lanes = ratio if (figs or self._fanout) else max_m
        self._layouts = array_layouts(rows=rows, cols=cols, beta=beta, width=width,
                                      lanes=self._lanes, max_m=max_m)
        super().__init__({
            "w": In(stream.Signature(self._layouts["w"])),
            "i": In(stream.Signature(self._layouts["i"])),
            "o": Out(stream.Signature(self._layouts["o"])),
            "fault": Out(self._layouts["fault"]),
        })

    rows = property(lambda self: self._rows, doc="Number of PE rows.")
    cols = property(lambda self: self._cols, doc="Number of PE columns.")
    beta = property(lambda self: self._beta, doc="MAC units per PE.")
    width = property(lambda self: self._width, doc="Operand width in bits (signed).")
    max_m = property(lambda self: self._max_m, doc="Largest run-time group size M.")
    lanes = property(lambda self: self._lanes, doc="Activations per PE row per instance.")
    macs = property(lambda self: self._rows * self._cols * self._beta, doc="MAC units.")
    layouts = property(lambda self: dict(self._layouts), doc="Stream payload layouts.")

    @property
    def sel_bits(self):
        """Width of a MAC's stored operand select."""
        choices = (2 * self._alpha + 1) * self._ratio if self._figs else self._max_m
        return max(1, (choices - 1).bit_length())

    def elaborate(self, platform):
        m = Module()
        R, C, W = self._rows, self._cols, self._width
        beta, lanes, alpha, ratio, figs = self._beta, self._lanes, self._alpha, self._ratio, \
            self._figs
        fan, fixed = self._fanout, self._fixed
        E = C * beta
        sel_bits = self.sel_bits
        # Data registers without reset (issue 15, as act_engine's in stop 26): the broadcast
        # engine's since stop 27, FiGS's and the fan-out engine's since stop 28. Every weight
        # register (value, operand select, FiGS's rotation) and every per-bank pattern register
        # (FiGS's N - 1 of the east-edge rotation and, since stop 30, its schedule; the fan-out's
        # N and M/N) is written before a tile can issue from its bank (full/fresh are reset), and
        # every pipeline data register (the instance, FiGS's phase bits, bank and last, the MAC
        # pipeline, the sums) is read only under the valid it travels with (st_valid, the
        # delayed valid, o.valid), which keep their reset, as does all control (full, fresh,
        # pointers, row_hot, FiGS's exchange state, fault). No output under a valid
        # depends on the reset values, so a reset multiplexer there is logic no handshake can
        # see. The fixed 2:4 engine keeps its resets (its netlist unchanged).
        dr = dict(reset_less=not fixed)

        # -- weight loading: one PE row per transfer into the bank `load_ptr` --------------------
        full = Signal(2)            # bank holds a complete tile not yet released
        # ... whose instances are not all issued: the next instance may use it (a bank stays
        # full until its last output is accepted, but is stale for the instances after its
        # last one: those of the tile two ahead wait for the reload)
        fresh = Signal(2)
        if figs:
            # FiGS: fresh[k] = loaded[k] ^ issued[k], each toggled by one side (a bank's load
            # completes / its last instance issues), so neither side's path ends in the other's
            # register (issue 14: load_ptr -> w_fire -> set_full -> fresh crossed the array)
            loaded = Signal(2)
            issued = Signal(2)
            m.d.comb += fresh.eq(loaded ^ issued)
        load_ptr = Signal()         # bank the next weight rows go to
        use_ptr = Signal()          # bank the next activation instance uses
        row_hot = Signal(R, init=1)    # one-hot: the row the next transfer loads

        wval = [[[Signal(signed(W), name=f"wv{k}_r{r}_e{e}", **dr) for e in range(E)]
                 for r in range(R)] for k in range(2)]
        wsel = [[[Signal(sel_bits, name=f"ws{k}_r{r}_e{e}", **dr) for e in range(E)]
                 for r in range(R)] for k in range(2)]
        if figs:
            # Swap exchange: the largest run-time N, each MAC's rotation, each bank's schedule
            # (bit t: rotation t is needed; bit 0 always set) and N.
            max_n = min(R & -R, self._max_m)
            n_bits = exact_log2(max_n)
            rot_bits = max(1, n_bits)
            wrot = [[[Signal(rot_bits, name=f"wr{k}_r{r}_e{e}", **dr) for e in range(E)]
                     for r in range(R)] for k in range(2)]
            # Each bank's schedule, rotations 1..max_n-1 (rotation 0 is in every schedule: no
            # register). Written at every row of the bank's load (at row 0 the row's own), so
            # without reset, like the weights.
            sched = [Signal(max_n - 1, name=f"sched{k}", **dr) for k in range(2)]
            # N - 1 of each bank's pattern (decoded at load: the east-edge rotation reads it)
            bank_nmask = [Signal(rot_bits, name=f"nmask{k}", **dr) for k in range(2)]
        if fan and not fixed:
            # each bank's pattern, for the fan-out network
            bank_nlog = [Signal(_LOG_BITS, name=f"nlog{k}", **dr) for k in range(2)]
            bank_qlog = [Signal(_LOG_BITS, name=f"qlog{k}", **dr) for k in range(2)]

        wp = self.w.payload
        n_log2, m_log2 = wp.n_log2, wp.m_log2
        # Only constant shifts and Switch/Case below: the run-time N, M select among them, so
        # no operator mixes widths (Verilator -Wall lint).
        q_log2 = Signal(_LOG_BITS)
        m.d.comb += q_log2.eq(m_log2 - n_log2)
        r_twos = exact_log2(R & -R)     # N must divide rows: n_log2 <= trailing zeros of rows
        bad_config = Signal()
        checks = [n_log2 > m_log2, ~_in_range(m, m_log2, exact_log2(self._max_m), "m_ok"),
                  ~_in_range(m, n_log2, r_twos, "n_ok")]
        if figs or fan:
            checks.append(~_in_range(m, q_log2, exact_log2(ratio), "q_ok"))
        if fixed:
            checks = [~(_is(n_log2, 1) & _is(m_log2, 2))]
        m.d.comb += bad_config.eq(Cat(*checks).any())

        bad_index = Signal()
        bad_route = Signal()
        if figs:
            load_nmask = _low_mask(m, n_log2, n_bits, rot_bits, "load_nmask")     # N - 1
        index_flags, route_flags = [], []
        # new_sel[r][e], new_rot[r][e]: entry e's operand select and rotation were the row loaded
        # row r. FiGS decodes every row in parallel (row r's slot r mod N is a constant per N)
        # and the one-hot row counter only picks a row's result (issue 14, timing: no path from
        # a row counter through the decode).
        new_sel = [[] for _ in range(R)]
        new_rot = [[] for _ in range(R)]
        for e in range(E):
            ent = wp.entries[e]
            index_flags.append((ent.index >> m_log2).any())
            if not figs:
                for r in range(R):
                    new_sel[r].append(ent.index)
                continue
            ib = len(ent.index)
            sub = Signal(ib, name=f"sub{e}")            # index // (M/N)
            lane = Signal(max(1, exact_log2(ratio)), name=f"lane{e}")    # index % (M/N)
            with m.Switch(q_log2):
                for ql in range(exact_log2(ratio) + 1):
                    with m.Case(ql):
                        m.d.comb += sub.eq(ent.index >> ql)
                        if ql:
                            m.d.comb += lane.eq(ent.index[:ql])
                with m.Default():
                    m.d.comb += sub.eq(ent.index)
            for r in range(R):
                slot_w = Signal(ib, name=f"slot_w{e}_r{r}")      # r mod N
                with m.Switch(n_log2):
                    for nl in range(1, max(R, 2).bit_length()):
                        with m.Case(nl):
                            m.d.comb += slot_w.eq(r & ((1 << nl) - 1))
                    with m.Default():
                        m.d.comb += slot_w.eq(0)
                sel = Signal(sel_bits, name=f"new_sel{e}_r{r}")
                disp = Signal(signed(ib + 1), name=f"disp{e}_r{r}")
                m.d.comb += disp.eq(sub - slot_w)
                near = Signal(name=f"near{e}_r{r}")
                rot = Signal(rot_bits, name=f"new_rot{e}_r{r}")
                with m.Switch(disp):
                    lo, hi = -(1 << ib), (1 << ib) - 1     # representable in disp
                    for d in range(max(-alpha, lo), min(alpha, hi) + 1):
                        with m.Case(d):
                            link = Const(d + alpha, max(1, (2 * alpha).bit_length()))
                            if ratio > 1:
                                m.d.comb += sel.eq(Cat(lane[:exact_log2(ratio)], link))
                            else:
                                m.d.comb += sel.eq(link)
                            m.d.comb += near.eq(1)
                    with m.Default():
                        # exchange phase: own register (link alpha), rotation (sub-slot) mod N
                        link = Const(alpha, max(1, (2 * alpha).bit_length()))
                        if ratio > 1:
                            m.d.comb += sel.eq(Cat(lane[:exact_log2(ratio)], link))
                        else:
                            m.d.comb += sel.eq(link)
                        m.d.comb += near.eq(0)
                # (sub - slot) mod N, 0 when the one-step route reaches
                m.d.comb += rot.eq(disp[:rot_bits] & load_nmask & (~near).replicate(rot_bits))
                new_sel[r].append(sel)
                new_rot[r].append(rot)
        if fixed:
            # 2:4 metadata: slot 1's index must exceed slot 0's (the row loaded just before)
            index_flags = []
            for k in range(2):
                for r in range(1, R, 2):
                    for e in range(E):
                        index_flags.append((load_ptr == k) & row_hot[r] &
                                           (wp.entries[e].index <= wsel[k][r - 1][e]))
        m.d.comb += bad_index.eq(Cat(*index_flags).any())
        m.d.comb += bad_route.eq(Cat(*route_flags).any() if route_flags else 0)
        if figs:
            # rotations 1..max_n-1 this row needs (zero weights need none), decoded only where a
            # legal weight of the row can need them (_row_rotations: a rotation only an index
            # >= M reaches is a flagged tile's, whose results are undefined)
            row_rots = Signal(max_n - 1, name="row_rots")
            nonzero = [wp.entries[e].value.any() for e in range(E)]
            needs = []
            for t in range(1, max_n):
                rows_t = [r for r in range(R) if t in _row_rotations(r, max_n, alpha)]
                needs.append(Cat(*[
                    row_hot[r] & Cat(*[_is(new_rot[r][e], t) & nonzero[e]
                                       for e in range(E)]).any()
                    for r in range(R) if r in rows_t]).any() if rows_t else Const(0, 1))
            m.d.comb += row_rots.eq(Cat(*needs))

        set_full = Signal(2)
        clr_full = Signal(2)
        if figs:
            # Issue 14 (timing, stop 31): w.ready (the load bank is not full) is a register
            # written with its next value, and the row a transfer writes is a one-hot over
            # both banks (bit k*R + r; a left rotation goes from bank k's last row to the other
            # bank's row 0, as load_ptr toggles), so each row's write enable is one AND of
            # registers and w.valid (seed 2's critical path before: load_ptr -> w.ready ->
            # the row enables -> every weight register's enable, 9.6 ns of which 8.1 routing).
            w_free = Signal(init=1)
            load_hot = Signal(2 * R, init=1)
            m.d.comb += self.w.ready.eq(w_free)
            w_fire = self.w.valid & w_free
            with m.If(w_fire):
                m.d.sync += load_hot.eq(load_hot.rotate_left(1))
            full_next = (full & ~clr_full) | set_full
            ptr_next = load_ptr ^ (w_fire & row_hot[R - 1])
            m.d.sync += w_free.eq(~Mux(ptr_next, full_next[1], full_next[0]))

            def row_write(k, r):
                return load_hot[k * R + r]
        else:
            m.d.comb += self.w.ready.eq(~(full >> load_ptr)[0])
            w_fire = self.w.valid & self.w.ready

            def row_write(k, r):
                return (load_ptr == k) & row_hot[r]
        with m.If(w_fire):
            for k in range(2):
                for r in range(R):
                    with m.If(row_write(k, r)):
                        for e in range(E):
                            m.d.sync += [wval[k][r][e].eq(wp.entries[e].value),
                                         wsel[k][r][e].eq(new_sel[r][e])]
                            if figs:
                                m.d.sync += wrot[k][r][e].eq(new_rot[r][e])
                if figs:
                    with m.If(load_ptr == k):
                        m.d.sync += [sched[k].eq(Mux(row_hot[0], row_rots,
                                                     sched[k] | row_rots)),
                                     bank_nmask[k].eq(load_nmask)]
                if fan and not fixed:
                    with m.If(load_ptr == k):
                        m.d.sync += [bank_nlog[k].eq(n_log2), bank_qlog[k].eq(q_log2)]
            m.d.sync += [self.fault.index.eq(self.fault.index | bad_index),
                         self.fault.config.eq(self.fault.config | bad_config),
                         self.fault.route.eq(self.fault.route | bad_route)]
            m.d.sync += row_hot.eq(row_hot.rotate_left(1))
            with m.If(row_hot[R - 1]):
                m.d.sync += load_ptr.eq(~load_ptr)
                m.d.comb += set_full.eq(Mux(load_ptr, 0b10, 0b01))

        # -- streaming pipeline: stage c holds the instance at PE column c ------------------------
        x_layout = self._layouts["i"]["x"].shape
        if fan:     # inside the array every row holds its group's whole M-block
            x_layout = data.ArrayLayout(data.ArrayLayout(signed(W), self._max_m), R)
        st_valid = [Signal(name=f"st{c}_valid") for c in range(C)]
        st_bank = [Signal(name=f"st{c}_bank", **dr) for c in range(C)]
        st_last = [Signal(name=f"st{c}_last", **dr) for c in range(C)]
        st_x = [Signal(x_layout, name=f"st{c}_x", **dr) for c in range(C)]
        # Sums of the columns east of c (c+1 .. C-1) travel with the instance.
        st_acc = [[Signal(signed(PSUM_WIDTH), name=f"st{c}_acc{e}", **dr)
                   for e in range((c + 1) * beta, E)] for c in range(C)]
        out_valid = Signal()
        out_bank = Signal(**dr)
        out_last = Signal(**dr)
        # the output register (FiGS: the accumulator of an instance's phases; its output FIFO
        # follows)
        out_psum = [Signal(signed(PSUM_WIDTH), name=f"out_psum{e}", **dr) for e in range(E)]

        if figs:
            # No stall (issue 14, timing): the pipeline moves every cycle and results wait in
            # an output FIFO with room for everything in flight; an instance issues only with
            # a free slot reserved (a credit, taken in its first phase). o.ready reaches the
            # FIFO and the credit count only, not the enable of every register (the critical
            # path before: o.valid -> adv -> a weight register's gate, 10.0 ns).
            adv = None
            out_depth = pipeline_latency(C) + 1
            credits = Signal(range(out_depth + 1), init=out_depth)
            has_credit = Signal(init=1)         # credits != 0, a register of its own
        else:
            adv = Signal()
            m.d.comb += adv.eq(~out_valid | self.o.ready)
        if figs:
            # Swap exchange: the instance stays at the input for one phase per rotation of the
            # bank's schedule; cur_oh is the current rotation (one-hot), i.ready rises in the
            # final phase.
            st_oh = [Signal(max_n, name=f"st{c}_rot", **dr) for c in range(C)]
            st_first = [Signal(name=f"st{c}_first", **dr) for c in range(C)]
            st_final = [Signal(name=f"st{c}_final", **dr) for c in range(C)]
            cur_oh = Signal(max_n, init=1)
            sched_u = Signal(max_n - 1)
            # N - 1 of the bank in use, a register one cycle behind use_ptr: the rotation reads
            # it only at rotations t > 0 (at t = 0 the row's source is itself, whatever the
            # mask), that is in the later phases of an instance, when use_ptr and its bank
            # have not changed for a cycle or more (use_ptr toggles on an instance's final
            # phase; a bank is loaded before its first instance). So the lag is never seen, and
            # the input rotation starts from a register instead of use_ptr's fan-out (the
            # critical path with the select registered: use_ptr -> nmask -> st3_x, 9.2 ns).
            use_nmask = Signal(rot_bits)
            m.d.comb += sched_u.eq(Mux(use_ptr, sched[1], sched[0]))
            m.d.sync += use_nmask.eq(Mux(use_ptr, bank_nmask[1], bank_nmask[0]))
            # cur_up[t - 1]: 1 <= t <= current rotation (a register next to cur_oh: the
            # exchange control's i.ready does not wait for it to be decoded; rotation 0 is
            # always done, no register)
            cur_up = Signal(max_n - 1)
            # remaining[t - 1]: rotation t (1..max_n-1) is in the schedule and not yet done
            remaining = Signal(max_n - 1)
            m.d.comb += remaining.eq(sched_u & ~cur_up)
            rem = list(remaining)
            # The next rotation (the lowest remaining one) as one-hot, binary and thermometer,
            # each bit a balanced OR tree over `remaining`: no prefix-OR chain (the critical
            # path in stop 31 went sched -> a chain of 8 LUTs -> cur_up / cur_rot, 8.9 ns), and
            # no multiplexer on `final` (with nothing remaining every term below is 0).
            lowest = [rem[t - 1] & ~_or_tree(rem[:t - 1]) for t in range(1, max_n)]
            final = Signal()
            m.d.comb += final.eq(~_or_tree(rem))
            new_oh = Cat(final, *lowest)
            # the current rotation in binary, a register next to cur_oh
            cur_rot = Signal(rot_bits)
            next_rot = Cat(*[_or_tree([lowest[t - 1] for t in range(1, max_n) if t >> b & 1])
                             for b in range(rot_bits)])
            # 1 <= t <= the next rotation: t is at or below the lowest remaining one
            next_up = Cat(*[_or_tree(rem[t - 1:]) & ~_or_tree(rem[:t - 1])
                            for t in range(1, max_n)])
            issue = Signal()
            # a slot is reserved in an instance's first phase; its later phases need none
            go = has_credit | ~cur_oh[0]
            m.d.comb += [issue.eq(go & (fresh >> use_ptr)[0] & self.i.valid),
                         self.i.ready.eq(go & (fresh >> use_ptr)[0] & final)]
            with m.If(issue):
                m.d.sync += [cur_oh.eq(new_oh), cur_rot.eq(next_rot), cur_up.eq(next_up)]
            # rotated instance: row r of group g takes row g*N + (r%N + rot) % N
            x_in = []
            for r in range(R):
                base = (r // max_n) * max_n
                off = Const(r - base, rot_bits)
                moved = Signal(rot_bits, name=f"xmoved{r}")
                src = Signal(rot_bits, name=f"xsrc{r}")
                m.d.comb += [moved.eq(off + cur_rot),
                             src.eq((off & ~use_nmask) | (moved & use_nmask))]
                block = [self.i.payload.x[base + j].as_value() for j in range(max_n)]
                x_in.append(Array(block)[src] if max_n > 1 else block[0])
        else:
            m.d.comb += self.i.ready.eq(adv & (fresh >> use_ptr)[0])
        if fan:
            fanned = self._fan_out(m, use_ptr, bank_nlog if not fixed else None,
                                   bank_qlog if not fixed else None)
        i_fire = self.i.valid & self.i.ready
        clr_fresh = Signal(2)
        with m.If(i_fire & self.i.payload.last):
            m.d.sync += use_ptr.eq(~use_ptr)
            m.d.comb += clr_fresh.eq(Mux(use_ptr, 0b10, 0b01))

        # Operand select in one registered level (at most _ONE_LEVEL_SELECT_BITS), else two:
        # 2**lo_bits:1 by the low select bits (next to the window), then one of the
        # 2**(sel_bits - lo_bits) candidates next to the multiplier.
        lo_bits = min(_SELECT_LEVEL_BITS, sel_bits)
        hi_bits = sel_bits - lo_bits
        one_level = sel_bits <= _ONE_LEVEL_SELECT_BITS

        def column_sums(c):
            """Registered column sums of PE column ``c`` (``beta`` of them), MAC_STAGES cycles
            behind the instance. Stage 0, as the instance enters the column: the select (and
            FiGS rotation) of the bank it uses. Stage 1: the operand select's first level (the whole select
            when it is one level) and the weight; 2: the operand (second select level, or a copy)
            and a copy of the weight; 3: the product; 4: the adder tree's first level (sums of
            row pairs); 5: the column sum. With a one-level select the multiplier reads
            registers that feed nothing else (the placer may put them next to the DSP, far from
            the select).
            Call under ``adv`` (FiGS: every cycle). Every engine selects from its column's input
            registers (FiGS: the swap registers and their links; the others: the row's
            ``max_m``-wide copy, one
            per column, so that each copy feeds only ``beta`` MACs per row)."""
            entering = st_bank[c + 1] if c + 1 < C else use_ptr   # st_bank[c]'s next value
            sums = []
            for b in range(beta):
                e = c * beta + b
                products = []
                for r in range(R):
                    x = st_x[c]
                    if figs:
                        window = []
                        for d in range(-alpha, alpha + 1):
                            rr = r + d
                            for l in range(lanes):
                                window.append(x[rr][l] if 0 <= rr < R else Const(0, signed(W)))
                    else:
                        window = [x[r][l] for l in range(self._max_m)]
                    # FiGS's window ((2*alpha+1)*ratio registers) need not fill its select:
                    # its multiplexers have no entries for the selects beyond it
                    full = len(window) == 1 << sel_bits
                    tag = f"c{c}_r{r}_e{e}"
                    # The bank's select (and rotation) is chosen as the instance enters the
                    # column, from the bank it brings (`entering`): the weight registers of a
                    # bank stay unchanged while any of its instances is in flight, so this is
                    # the value st_bank[c] would select, and the operand select starts from a
                    # register next to it instead of st_bank[c]'s fan-out to every MAC of
                    # the column (the critical path before: st_bank -> cand, 8.8 ns of which
                    # 6.9 routing). nm_fixed24's 2-bit select is not on its critical path: it
                    # keeps the select from st_bank (its netlist and figures unchanged).
                    if fixed:
                        sel = Mux(st_bank[c], wsel[1][r][e], wsel[0][r][e])
                    else:
                        sel = Signal(sel_bits, name=f"sel_{tag}", **dr)
                        m.d.sync += sel.eq(Mux(entering, wsel[1][r][e], wsel[0][r][e]))
                    weight = Mux(st_bank[c], wval[1][r][e], wval[0][r][e])
                    if figs:       # only in the phase of the weight's rotation
                        rot_w = Signal(rot_bits, name=f"rot_{tag}", **dr)
                        m.d.sync += rot_w.eq(Mux(entering, wrot[1][r][e], wrot[0][r][e]))
                        weight = Mux(Array(list(st_oh[c]))[rot_w], weight, 0)
                    weight_1 = Signal(signed(W), name=f"wq1_{tag}", **dr)
                    weight_2 = Signal(signed(W), name=f"wq2_{tag}", **dr)
                    m.d.sync += [weight_1.eq(weight), weight_2.eq(weight_1)]
                    operand = Signal(signed(W), name=f"op_{tag}", **dr)
                    if one_level:
                        selected = Signal(signed(W), name=f"cand0_{tag}", **dr)
                        m.d.sync += [selected.eq(Array(window)[sel] if full
                                                 else _select(window, sel)),
                                     operand.eq(selected)]
                    else:
                        cands = []
                        for h in range(-(-len(window) >> lo_bits)):
                            cand = Signal(signed(W), name=f"cand{h}_{tag}", **dr)
                            part = window[h << lo_bits:(h + 1) << lo_bits]
                            m.d.sync += cand.eq(Array(part)[sel[:lo_bits]] if full
                                                else _select(part, sel[:lo_bits]))
                            cands.append(cand)
                        sel_hi = Signal(hi_bits, name=f"selhi_{tag}", **dr)
                        m.d.sync += [sel_hi.eq(sel[lo_bits:]),
                                     operand.eq(Array(cands)[sel_hi] if full
                                                else _select(cands, sel_hi))]
                    product = Signal(signed(2 * W), name=f"prod_{tag}", **dr)
                    m.d.sync += product.eq(operand * weight_2)
                    products.append(product)
                # stage 4: the first level of the column's adder tree (pairs of rows)
                pairs = []
                for j in range(0, R, 2):
                    pair = Signal(signed(2 * W + 1), name=f"pair_c{c}_r{j}_e{e}", **dr)
                    m.d.sync += pair.eq(tree_sum(products[j:j + 2]))
                    pairs.append(pair)
                products = pairs
                total = Signal(signed(PSUM_WIDTH), name=f"colsum_c{c}_e{e}", **dr)
                m.d.sync += total.eq(tree_sum(products))
                sums.append(total)
            return sums

        # control of the instance at column 0, delayed by MAC_STAGES to meet its column sum
        ctl = [st_valid[0], st_bank[0], st_last[0]]
        if figs:
            ctl += [st_first[0]]
        # the valid keeps its reset; with `dr`, bank, last and FiGS's phase bits travel without
        late = [delay(m, sig, MAC_STAGES, sig.name, adv,
                      reset_less=dr["reset_less"] and sig is not st_valid[0]) for sig in ctl]
        d_valid, d_bank, d_last = late[:3]
        if figs:
            d_first = late[3]
            # an instance's final phase: its sum enters the output FIFO (a register of its
            # own, next to the FIFO's control, not the valid that enables the accumulator)
            d_push = delay(m, st_valid[0] & st_final[0], MAC_STAGES, "st0_push")

        with (m.If(adv) if adv is not None else contextlib.nullcontext()):
            if figs:
                m.d.sync += [st_valid[C - 1].eq(issue), st_bank[C - 1].eq(use_ptr),
                             st_last[C - 1].eq(self.i.payload.last),
                             st_oh[C - 1].eq(cur_oh), st_first[C - 1].eq(cur_oh[0]),
                             st_final[C - 1].eq(final)]
                for r in range(R):
                    m.d.sync += st_x[C - 1][r].eq(x_in[r])
            else:
                m.d.sync += [st_valid[C - 1].eq(i_fire), st_bank[C - 1].eq(use_ptr),
                             st_last[C - 1].eq(self.i.payload.last)]
                if fan:
                    for r in range(R):
                        for j in range(self._max_m):
                            m.d.sync += st_x[C - 1][r][j].eq(fanned[r][j])
                else:
                    m.d.sync += st_x[C - 1].eq(self.i.payload.x)
            for c in range(C - 1, 0, -1):
                here = column_sums(c)
                m.d.sync += [st_valid[c - 1].eq(st_valid[c]), st_bank[c - 1].eq(st_bank[c]),
                             st_last[c - 1].eq(st_last[c])]
                m.d.sync += st_x[c - 1].eq(st_x[c])
                if figs:
                    m.d.sync += [st_oh[c - 1].eq(st_oh[c]),
                                 st_first[c - 1].eq(st_first[c]),
                                 st_final[c - 1].eq(st_final[c])]
                # st_acc[c]: the sums of the columns east of c, MAC_STAGES behind the instance
                carried = here + st_acc[c]
                for dst, src in zip(st_acc[c - 1], carried):
                    m.d.sync += dst.eq(src)
            carried = column_sums(0) + st_acc[0]
            if figs:       # the phases of an instance are added; the final one is emitted
                phase_sum = [Signal(signed(PSUM_WIDTH), name=f"phase_sum{e}") for e in range(E)]
                for dst, acc, src in zip(phase_sum, out_psum, carried):
                    m.d.comb += dst.eq(Mux(d_first, src, src + acc))
                with m.If(d_valid):
                    for acc, src in zip(out_psum, phase_sum):
                        m.d.sync += acc.eq(src)
            else:
                m.d.sync += [out_valid.eq(d_valid), out_bank.eq(d_bank),
                             out_last.eq(d_last)]
                for dst, src in zip(out_psum, carried):
                    m.d.sync += dst.eq(src)

        if figs:
            # The output FIFO: a head register (the output, held while o.ready is low, as the
            # stream rules ask) and a memory of out_depth - 1 entries behind it. A sum goes
            # straight into the head when the head is free (or leaves) and the memory is
            # empty, so the latency is unchanged (cols + 6); otherwise into the memory. The
            # credits (out_depth) ensure it is never written full.
            word = Cat(*phase_sum, d_last, d_bank)
            store_depth = out_depth - 1
            m.submodules.out_store = store = Memory(shape=unsigned(len(word)),
                                                    depth=store_depth, init=[])
            wport = store.write_port()
            rport = store.read_port(domain="comb")
            w_at = Signal(range(store_depth))
            r_at = Signal(range(store_depth))
            stored = Signal(range(store_depth + 1))       # entries in the memory
            # stored != 0, a register of its own: it chooses the head's source for all its
            # bits (the FIFO's count -> head enable -> count loop was seed 3's critical path,
            # 8.5 ns of which 7.3 routing)
            stored_any = Signal()
            head = Signal(len(word), name="out_head", **dr)
            take = Signal()         # the head is free or leaves in this cycle
            from_store = Signal()
            bypass = Signal()
            to_store = Signal()
            m.d.comb += [take.eq(~out_valid | self.o.ready),
                         from_store.eq(take & stored_any),
                         bypass.eq(take & ~stored_any & d_push),
                         to_store.eq(d_push & ~bypass),
                         wport.addr.eq(w_at), wport.data.eq(word), wport.en.eq(to_store),
                         rport.addr.eq(r_at)]
            with m.If(to_store):
                m.d.sync += w_at.eq(Mux(w_at == store_depth - 1, 0, w_at + 1))
            with m.If(from_store):
                m.d.sync += r_at.eq(Mux(r_at == store_depth - 1, 0, r_at + 1))
            with m.If(from_store | bypass):
                m.d.sync += head.eq(Mux(stored_any, rport.data, word))
            with m.If(take):
                m.d.sync += out_valid.eq(stored_any | d_push)
            with m.If(to_store & ~from_store):
                m.d.sync += [stored.eq(stored + 1), stored_any.eq(1)]
            with m.Elif(from_store & ~to_store):
                m.d.sync += [stored.eq(stored - 1), stored_any.eq(stored[1:].any())]
            m.d.comb += [out_last.eq(head[E * PSUM_WIDTH]),
                         out_bank.eq(head[E * PSUM_WIDTH + 1])]
            m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.last.eq(out_last)]
            for e in range(E):
                m.d.comb += self.o.payload.psum[e].eq(head[e * PSUM_WIDTH:(e + 1) * PSUM_WIDTH])
            reserve = issue & cur_oh[0]
            done = self.o.valid & self.o.ready
            with m.If(reserve & ~done):
                m.d.sync += [credits.eq(credits - 1), has_credit.eq(credits[1:].any())]
            with m.Elif(done & ~reserve):
                m.d.sync += [credits.eq(credits + 1), has_credit.eq(1)]
        else:
            m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.last.eq(out_last)]
            for e in range(E):
                m.d.comb += self.o.payload.psum[e].eq(out_psum[e])
        with m.If(self.o.valid & self.o.ready & out_last):
            m.d.comb += clr_full.eq(Mux(out_bank, 0b10, 0b01))
        m.d.sync += full.eq((full & ~clr_full) | set_full)
        if figs:    # a bank is loaded only when not full, so not fresh; issued only when fresh
            m.d.sync += [loaded.eq(loaded ^ set_full), issued.eq(issued ^ clr_fresh)]
        else:
            m.d.sync += fresh.eq((fresh & ~clr_fresh) | set_full)
        return m

    def _fan_out(self, m, use_ptr, bank_nlog, bank_qlog):
        """The fan-out network: ``fanned[r][j]`` (``j < max_m``) is activation ``j`` of row
        ``r``'s group, i.e. port row ``g*N + j // q`` lane ``j % q`` (``g = r // N``, ``q =
        M/N``) when ``j < M``, else 0, for the pattern of the bank in use. Plain AND-OR gates
        over the supported ``(N, q)`` cases (no process on a register that may never change)."""
        R, W, max_m, ratio = self._rows, self._width, self._max_m, self._ratio
        x = self.i.payload.x
        if self._fixed:
            cases = [((1, 1), Const(1, 1))]
        else:
            use_nlog = Signal(_LOG_BITS)
            use_qlog = Signal(_LOG_BITS)
            m.d.comb += [use_nlog.eq(Mux(use_ptr, bank_nlog[1], bank_nlog[0])),
                         use_qlog.eq(Mux(use_ptr, bank_qlog[1], bank_qlog[0]))]
            top_n = min(exact_log2(R & -R), exact_log2(max_m))
            cases = []
            for nl in range(top_n + 1):
                for ql in range(exact_log2(ratio) + 1):
                    if nl + ql <= exact_log2(max_m):
                        hit = Signal(name=f"fan_n{nl}_q{ql}")
                        m.d.comb += hit.eq(_is(use_nlog, nl) & _is(use_qlog, ql))
                        cases.append(((nl, ql), hit))
        fanned = []
        for r in range(R):
            row = []
            for j in range(max_m):
                terms = []
                for (nl, ql), hit in cases:
                    n_, q_ = 1 << nl, 1 << ql
                    if j < n_ * q_:
                        src = x[(r // n_) * n_ + j // q_][j % q_].as_unsigned()
                        terms.append(src & hit.replicate(W))
                value = Signal(signed(W), name=f"fan_r{r}_j{j}")
                m.d.comb += value.eq(_or_all(terms, W) if terms else 0)
                row.append(value)
            fanned.append(row)
        return fanned


def _row_rotations(r, max_n, alpha):
    """The exchange rotations ``t`` a legal weight of PE row ``r`` can need: ``(sub - s) mod
    N`` for each run-time ``N`` (a power of two up to ``max_n``), the row's slot ``s = r mod
    N`` and each sub-block ``sub < N`` (an index ``< M``) farther than ``alpha`` rows away."""
    rots = set()
    for nl in range(exact_log2(max_n) + 1):
        n = 1 << nl
        slot = r % n
        rots.update(d % n for d in range(-slot, n - slot) if abs(d) > alpha)
    return rots


def _select(values, sel):
    """``values[sel]`` for ``len(values) <= 2**len(sel)``, a tree of 2:1 multiplexers over the
    values only: no entry for a select beyond the list (none is ever stored)."""
    if len(values) == 1:
        return values[0]
    top = (len(values) - 1).bit_length() - 1        # the select bit that splits the list
    low, high = values[:1 << top], values[1 << top:]
    return Mux(sel[top], _select(high, sel[:top]), _select(low, sel[:top]))


def _or_tree(bits):
    """OR of 1-bit values as a balanced tree (0 for none)."""
    bits = list(bits)
    if not bits:
        return Const(0, 1)
    while len(bits) > 1:
        bits = [bits[i] | bits[i + 1] if i + 1 < len(bits) else bits[i]
                for i in range(0, len(bits), 2)]
    return bits[0]


def _or_all(terms, width):
    """Bitwise OR of ``width``-bit values."""
    result = terms[0]
    for t in terms[1:]:
        result = result | t
    return result[:width]


def _is(value, const):
    """1 when ``value == const``, as an AND of bits (no width-mismatched comparison)."""
    return Cat(*[value[b] if const >> b & 1 else ~value[b] for b in range(len(value))]).all()


def _low_mask(m, log2, top, bits, name):
    """``2**log2 - 1`` (``bits`` wide) for ``log2`` in 0..top, 0 otherwise. Plain gates: bit
    ``b`` is set when ``b < log2 <= top`` (a combinational Switch on a register that never
    changes would stay X in Icarus)."""
    result = Signal(bits, name=name)
    m.d.comb += result.eq(Cat(*[
        Cat(*[_is(log2, nl) for nl in range(b + 1, top + 1)]).any() if b < top else Const(0, 1)
        for b in range(bits)]))
    return result


def _in_range(m, value, high, name):
    """1 when ``0 <= value <= high``, built as a Switch (constant comparisons would be narrowed
    by Yosys and trip Verilator's width lint)."""
    result = Signal(name=name)
    with m.Switch(value):
        with m.Case(*range(min(high, (1 << len(value)) - 1) + 1)):
            m.d.comb += result.eq(1)
        with m.Default():
            m.d.comb += result.eq(0)
    return result


_ATTRIBUTES_DOC = string.Template("""
    Attributes
    ----------
    w : In(stream.Signature(StructLayout))
        ``cols*beta*(width + log2(max_m)) + 6`` bits. One PE row of weights per transfer: ``entries[cols*beta]`` of ``{value: signed(width),
        index: log2(max_m) bits}`` (entry ``c*beta + u`` is MAC ``u`` of PE column ``c``, i.e.
        output channel ``c*beta + u`` of the tile), and the tile's pattern as ``n_log2``,
        ``m_log2`` (3 bits each; repeat them on every row). Rows are written in order 0..rows-1
        into the free weight bank; after row ``rows-1`` the bank is complete. ``ready`` is low
        while both banks hold tiles that are still in use (back-pressure); a bank is released
        when the output transfer marked ``last`` of its tile leaves the array.
    i : In(stream.Signature(StructLayout))
        ``rows*lanes*width + 1`` bits $lanes.
        One activation instance (one column of the activation matrix restricted to the tile's K
        range) per transfer: ``x[rows][lanes]`` signed(width) and ``last`` (last instance of the
        tile: the next instance uses the other bank). ``ready`` is low while the bank the next
        instance needs is not complete, $i_ready.
    o : Out(stream.Signature(StructLayout))
        ``cols*beta*32 + 1`` bits. Per instance, the tile's int32 partial sums ``psum[cols*beta]`` (sum over the tile's K
        range; accumulation over K tiles is the consumer's) and ``last``. Latency ``cols + 6``
        cycles from the input transfer; one instance per cycle (FiGS: per ``P`` cycles, ``P``
        the tile's exchange phases)$o_flow
    fault : Out(StructLayout({"index": 1, "config": 1, "route": 1}))
        Sticky run-time error flags, cleared by reset: ``index``, a loaded index is ``>= M``;
        ``config``, the pattern is not supported (``N > M``, ``M > max_m``, ``N`` does not
        divide ``rows``, $ratio_check); ``route`` is never set any more (kept so
        both engines share one layout): FiGS serves weights beyond its ``alpha`` links with the
        swap exchange. Results of a faulty tile are undefined; the flags say so.
""")


def _attributes_doc(*, lanes="(``lanes`` = ``ratio`` for FiGS, ``max_m`` for broadcast)",
                    i_ready="or while the output is stalled",
                    o_flow="; back-pressure stalls the whole array (``i.ready`` falls\n"
                           "        combinationally with ``o.ready``).",
                    ratio_check="or for FiGS ``M/N > ratio``"):
    """The ``Attributes`` section of an array's docstring in its engine's wording (the defaults:
    the engines that stall on back-pressure, with FiGS's and broadcast's port widths)."""
    return _ATTRIBUTES_DOC.substitute(lanes=lanes, i_ready=i_ready, o_flow=o_flow,
                                      ratio_check=ratio_check)


class FigsArray(_SparseArray):
    __doc__ = """FiGS swap-register MAC PE array.

    Weight-stationary. PE row ``r`` holds slot ``s = r mod N`` of group ``r // N`` of the tile
    for ``cols*beta`` output channels; its swap registers receive the row's sub-block: the
    ``M/N`` activations at K offsets ``r*M/N .. r*M/N + M/N - 1`` of the tile (the tile covers
    ``rows*M/N`` K positions). The instance moves one PE column west per cycle. Every MAC of PE
    ``(r, c)`` reads its operand from the swap register of row ``r + d`` at column ``c``,
    ``|d| <= alpha``, where ``d`` is the row distance between its weight's sub-block
    (``index // (M/N)``) and its own slot, then multiplies; the ``rows`` products of a MAC
    column are summed into one partial sum per output channel.

    Swap exchange: while a tile's weights load, every nonzero weight with ``|d| > alpha`` gets
    the rotation ``d mod N`` and the tile's schedule collects the rotations it needs
    (:func:`golden.figs.tile_schedule`). Each instance then occupies the input for ``P`` cycles,
    one per scheduled rotation (``i.ready`` rises in the last): in the phase of rotation ``t`` the
    instance enters with the sub-blocks of every group rotated by ``t`` slots, only the MACs of
    that rotation multiply (reading their own swap register), and the ``P`` partial sums are
    added before the result leaves. ``P = 1`` when the tile routes in one step.

    Parameters
    ----------
    rows : int
        PE rows, 1..64. A run-time ``N`` must divide it.
    cols : int
        PE columns, 1..32.
    alpha : int
        Vertical links per swap register in each direction, 0..7.
    beta : int
        MAC units per PE (sharing the PE's swap register), 1..8.
    width : int
        Operand width (signed), 2..12; 8 for int8.
    max_m : int
        Largest run-time ``M``, power of two 1..32.
    ratio : int
        Largest run-time ``M/N`` (lanes of a swap register), power of two in 1..``max_m``.

    The defaults and ranges are :data:`FIGS_PARAMS` (``sparsehw list`` shows them).
""" + _attributes_doc(
    i_ready="or (in an instance's first phase) while no output\n"
            "        FIFO entry is free",
    o_flow=(". Back-pressure does not stall the array: results wait in an\n"
            "        output FIFO of ``cols + 7`` entries (the latency + 1: the head register is "
            "the\n        output, ``cols + 6`` entries behind it), an instance issues only with "
            "an entry\n        reserved (a registered credit count), and ``i.ready`` does not "
            "depend on\n        ``o.ready`` combinationally.")) + """
    Raises
    ------
    TypeError
        A parameter of the wrong type, or an unknown one (``rows must be an integer in 1..64,
        not '8'``).
    ValueError
        A parameter out of its range (``ratio must be a power of two in 1..4, not 8``).
    """

    def __init__(self, **params):
        super().__init__(**FIGS_PARAMS.validate(**params), figs=True)

    alpha = property(lambda self: self._alpha, doc="Vertical links each way per swap register.")
    ratio = property(lambda self: self._ratio, doc="Largest run-time M/N.")


class NmBroadcastArray(_SparseArray):
    __doc__ = """Broadcast N:M PE array (VEGETA / sparse-tensor-core style baseline).

    Same array, weights, column reduction and control as :class:`FigsArray`; but every PE row
    ``r`` receives the whole ``M``-wide activation block of its group ``r // N`` (K offsets
    ``(r//N)*M .. (r//N)*M + M - 1`` of the tile), and each MAC selects its operand by its index
    with a ``max_m:1`` multiplexer. No vertical links.

    Parameters
    ----------
    rows : int
        PE rows, 1..64. A run-time ``N`` must divide it.
    cols : int
        PE columns, 1..32.
    beta : int
        MAC units per PE, 1..8.
    width : int
        Operand width (signed), 2..12; 8 for int8.
    max_m : int
        Largest run-time ``M`` (lanes per row), power of two 1..32.

    The defaults and ranges are :data:`NM_BROADCAST_PARAMS` (``sparsehw list`` shows them).
""" + _attributes_doc() + """
    Raises
    ------
    TypeError
        A parameter of the wrong type, or an unknown one (``rows must be an integer in 1..64,
        not '8'``).
    ValueError
        A parameter out of its range (``ratio must be a power of two in 1..4, not 8``).
    """

    def __init__(self, **params):
        super().__init__(**NM_BROADCAST_PARAMS.validate(**params), figs=False)


class NmFanoutArray(_SparseArray):
    __doc__ = """Fan-out N:M PE array: FiGS's port bandwidth, the broadcast engine's datapath.

    The activation port is FiGS's: row ``r`` carries the ``M/N`` activations at K offsets
    ``r*M/N .. r*M/N + M/N - 1`` of the tile (``lanes = ratio``), so each group's ``M``-block
    enters the array once. At the array's east edge (where instances enter) a fan-out network
    (wires and one AND-OR multiplexer per row and lane over the supported ``(N, M/N)`` cases,
    selected by the tile's pattern) gives every PE row of group ``g`` the whole block ``x[g*N .. g*N+N-1][0..M/N-1]``
    (``max_m`` lanes per row, zero beyond ``M``); from there on the array is
    :class:`NmBroadcastArray`: ``max_m``-lane input registers per PE, a ``max_m:1`` operand
    multiplexer per MAC selected by the weight's index. One instance per cycle for every
    pattern: no exchange, no links.

    Parameters
    ----------
    rows : int
        PE rows, 1..64. A run-time ``N`` must divide it.
    cols : int
        PE columns, 1..32.
    beta : int
        MAC units per PE, 1..8.
    width : int
        Operand width (signed), 2..12; 8 for int8.
    max_m : int
        Largest run-time ``M``, power of two 1..32.
    ratio : int
        Largest run-time ``M/N`` (port lanes per row), power of two in 1..``max_m``.

    The defaults and ranges are :data:`NM_FANOUT_PARAMS` (``sparsehw list`` shows them).
""" + _attributes_doc(lanes="(``lanes`` = ``ratio``)",
                       ratio_check="or ``M/N > ratio``") + """
    Raises
    ------
    TypeError
        A parameter of the wrong type, or an unknown one (``alpha``).
    ValueError
        A parameter out of its range (``ratio must be a power of two in 1..4, not 8``).
    """

    def __init__(self, **params):
        super().__init__(**NM_FANOUT_PARAMS.validate(**params), figs=False, fanout=True)

    ratio = property(lambda self: self._ratio, doc="Largest run-time M/N.")


class NmFixed24Array(_SparseArray):
    __doc__ = """Fixed-ratio 2:4 PE array (2:4 sparse-tensor-core style baseline).

    The fan-out engine (:class:`NmFanoutArray`) built for one pattern: ``max_m = 4``,
    ``ratio = 2``. PE rows ``2g`` and ``2g+1`` are the two slots of 2:4 group ``g``; the port
    carries each group's 4 activations once (row ``r``: K offsets ``2r, 2r+1``), the fan-out
    gives both rows of the group all 4, and each MAC picks one with a ``4:1`` multiplexer by its
    2-bit index. A tile covers ``2*rows`` K positions. The engine never exploits more than 2:4:
    a sparser model (1:4, 1:8, 2:8, ...) runs as 2:4 with zero weights, and a denser or
    unevenly distributed one (a 4-block with more than two nonzeros, dense 1:1) as two 2:4
    passes over the same activations (:func:`golden.figs.fixed24_passes`; the choice is the
    compiler's, the hardware sees 2:4 tiles only).

    Parameters
    ----------
    rows : int
        PE rows, an even number 2..64.
    cols : int
        PE columns, 1..32.
    beta : int
        MAC units per PE, 1..8.
    width : int
        Operand width (signed), 2..12; 8 for int8.

    The defaults and ranges are :data:`NM_FIXED24_PARAMS` (``sparsehw list`` shows them).

    Attributes
    ----------
    w : In(stream.Signature(StructLayout))
        ``cols*beta*(width + 2) + 6`` bits. One PE row of weights per transfer, as for
        :class:`FigsArray` with 2-bit indices; ``n_log2``, ``m_log2`` must be 1, 2 (2:4).
        Back-pressure as for :class:`FigsArray`.
    i : In(stream.Signature(StructLayout))
        ``rows*2*width + 1`` bits: ``x[rows][2]`` and ``last``; row ``r`` carries K offsets
        ``2r, 2r+1`` of the tile. Back-pressure as for :class:`FigsArray`.
    o : Out(stream.Signature(StructLayout))
        ``cols*beta*32 + 1`` bits, as for :class:`FigsArray`: latency ``cols + 6`` cycles, one
        instance per cycle, back-pressure stalls the whole array.
    fault : Out(StructLayout({"index": 1, "config": 1, "route": 1}))
        Sticky run-time error flags, cleared by reset: ``index``, a group's two indices (slot 0
        in row ``2g``, slot 1 in row ``2g+1``, per MAC) do not ascend (2:4 metadata names two
        distinct positions in order); ``config``, ``n_log2``/``m_log2`` are not 1/2; ``route``
        is never set. Results of a faulty tile are undefined; later tiles are unaffected.

    Raises
    ------
    TypeError
        A parameter of the wrong type, or an unknown one (``max_m``: the pattern is fixed).
    ValueError
        A parameter out of its range (``rows must be a multiple of 2 in 2..64, not 7``).
    """

    def __init__(self, **params):
        super().__init__(**NM_FIXED24_PARAMS.validate(**params), max_m=4, ratio=2, figs=False,
                         fixed=True)
