"""SPU: N:M sparse int8 GEMM datapath with fused bias, requantization and ReLU (S4-style).

The golden model is :mod:`golden.spu` (numeric rules in :mod:`golden.nm`); the design note is
``docs/spu.md``.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from sparsehw.params import Param, ParamSpec, int_in, one_of, pow2_in


__all__ = ["SPU", "SPU_PARAMS", "spu_layouts", "OUT_DEPTH", "MAX_K_LIMIT"]


#: Rows the output FIFO holds; the datapath only starts a row's last beat when a slot is free.
#: Larger than the pipeline latency, so rows of one weight beat stream at one per cycle.
OUT_DEPTH = 16
#: Largest ``max_k``: ``K * 2**14 <= 2**30 < 2**31`` keeps the int32 accumulator exact.
MAX_K_LIMIT = 1 << 16
#: Width of the ``o`` (output rows) field of the configuration.
O_BITS = 16


#: The generation parameters (defaults, ranges; ``sparsehw list`` shows them).
SPU_PARAMS = ParamSpec(
    Param("lanes", 4, int_in(1, 64), doc="batch columns in parallel"),
    Param("macs", 2, int_in(1, 16), doc="nonzero weights per cycle"),
    Param("max_m", 32, pow2_in(1, 32), doc="largest group size"),
    Param("act_rows", 2, pow2_in(1, 16), doc="activation rows per beat"),
    Param("max_k", 128, lambda v: pow2_in(max(v["max_m"], v["act_rows"]), MAX_K_LIMIT),
          doc="largest K", allowed=f"a power of two in max(max_m, act_rows)..{MAX_K_LIMIT}"),
    Param("x_buffers", 1, one_of(1, 2),
          doc="activation buffers: 2 loads the next GEMM's X while the current one computes"),
)


def spu_layouts(*, lanes, macs, max_m, max_k, act_rows):
    """The payload layouts of an SPU with these generation parameters (no validation).

    Returns a dict with keys ``cfg``, ``act``, ``w``, ``post``, ``o``.
    """
    idx_bits = max(1, exact_log2(max_m))
    k_bits = exact_log2(max_k) + 1
    return {
        "cfg": data.StructLayout({
            "n_log2": unsigned(3), "m_log2": unsigned(3), "k": unsigned(k_bits),
            "o": unsigned(O_BITS), "relu": unsigned(1)}),
        "act": data.ArrayLayout(data.ArrayLayout(signed(8), lanes), act_rows),
        "w": data.ArrayLayout(data.StructLayout({"value": signed(8),
                                                 "index": unsigned(idx_bits)}), macs),
        "post": data.StructLayout({"bias": signed(32), "mult": unsigned(16),
                                   "shift": unsigned(5)}),
        "o": data.StructLayout({"y": data.ArrayLayout(signed(8), lanes),
                                  "error": unsigned(1), "cfg_error": unsigned(1),
                                  "last": unsigned(1)}),
    }


class SPU(wiring.Component):
    """N:M sparse int8 GEMM ``Y = post(W X + bias)`` with run-time N:M, K, O and ReLU.

    ``W`` (O x K, int8) arrives compressed (values and in-group indices, :func:`golden.nm.compress`),
    ``X`` (K x ``lanes``, int8) row by row. Each cycle the datapath takes ``macs`` nonzero weights
    of one output row and multiplies each with the ``lanes`` activations of the row of ``X`` its
    index selects: ``lanes * macs`` MACs per cycle whatever the sparsity, so cycles are
    proportional to the nonzeros (linear speedup).

    Accumulation is exact in int32: ``|w * x| <= 2**14`` and a row has at most ``K <= max_k <=
    2**16`` products, so ``|acc| <= 2**30 < 2**31``.

    Parameters
    ----------
    lanes : int
        Batch columns computed in parallel (``B`` of the GEMM), 1..64.
    macs : int
        Nonzero weights consumed per cycle (MACs per lane), 1..16.
    max_m : int
        Largest group size ``m``, a power of two in 1..32.
    act_rows : int
        Rows of ``X`` per activation beat, a power of two in 1..16.
    max_k : int
        Largest ``K``, a power of two between ``max(max_m, act_rows)`` and 65536.
    x_buffers : int
        Activation buffers, 1 or 2 (default 1). With 2 the ``X`` buffer is double-buffered: the
        next configuration is accepted, and its activations loaded into the other bank, while
        the current GEMM computes, so back-to-back GEMMs lose no cycles to loading ``X``.

    The defaults and ranges are :data:`SPU_PARAMS` (``sparsehw list`` shows them).

    Attributes
    ----------
    cfg : In(stream.Signature(cfg layout))
        One beat per GEMM: ``n_log2`` (3 bits, ``n = 2**n_log2``), ``m_log2`` (3 bits), ``k``
        (``log2(max_k)+1`` bits), ``o`` (16 bits, output rows), ``relu`` (1 bit). With
        ``x_buffers=1`` accepted only between GEMMs (``ready`` is low while a GEMM is taking
        weights); with ``x_buffers=2`` accepted as soon as the previous configuration's ``X`` has
        fully arrived and that GEMM has started (it may still be computing), so its activations
        load into the free bank meanwhile. Rejected (one output beat
        with ``cfg_error = 1``, nothing else consumed) unless ``m <= max_m``, ``n <= m``,
        ``0 < k <= max_k``, ``k % m == 0``, ``k % act_rows == 0`` and ``o > 0``.
    act : In(stream.Signature(ArrayLayout(ArrayLayout(signed(8), lanes), act_rows)))
        ``k / act_rows`` beats per GEMM; beat ``i`` holds rows ``i*act_rows ..`` of ``X`` (element
        ``[r][b]`` is ``X[i*act_rows + r, b]``). Ready whenever the GEMM still needs rows, so the
        whole of ``X`` loads at ``act_rows`` rows per cycle while computation proceeds. The beats
        belong to the oldest accepted configuration whose ``X`` is incomplete (with
        ``x_buffers=2`` that may be the next GEMM's while the current one computes).
    w : In(stream.Signature(ArrayLayout(StructLayout(value: signed(8), index: unsigned(max(1, log2(max_m))), macs)))
        Per output row ``ceil(nz / macs)`` beats, ``nz = k / m * n``; entry ``p`` of beat ``t``
        is nonzero ``j = t*macs + p`` of the row, which belongs to group ``j // n`` and column
        ``k = (j // n) * m + index``. Entries with ``j >= nz`` (end of a row's last beat) are
        ignored. A beat is accepted when the activation rows its groups span have arrived and,
        for a row's last beat, when that row's post-op parameters are held and the output FIFO
        has room. One beat per cycle at best.
    post : In(stream.Signature(StructLayout(bias: signed(32), mult: unsigned(16), shift: unsigned(5))))
        One beat per output row, in row order (see :func:`golden.nm.spu_post`). Queued in a
        two-entry FIFO (``ready`` whenever it has room; a row takes its head).
    o : Out(stream.Signature(StructLayout(y: ArrayLayout(signed(8), lanes), error, cfg_error, last)))
        One beat per output row (``last`` on the GEMM's last row), or one ``cfg_error`` beat for a
        rejected configuration. ``error`` marks a row with a malformed index (an index ``>= m``
        or indices not strictly ascending inside a group); its ``y`` is forced to 0. Latency from
        a row's last weight beat: 14 cycles (pipeline stages S0..S9, then the FIFO). A rejected
        configuration's beat follows every output row of the GEMMs accepted before it.
        Back-pressure: an ``OUT_DEPTH``-row (16) FIFO; when it is full of owed rows the datapath
        stops taking last beats.

    Raises
    ------
    TypeError
        A parameter is not an integer, or is unknown
        (``lanes must be an integer in 1..64, not 4.0``).
    ValueError
        A parameter is outside its range (``max_m must be a power of two in 1..32, not 3``).
    """

    def __init__(self, **params):
        values = SPU_PARAMS.validate(**params)
        self._lanes, self._macs, self._max_m, self._act_rows, self._max_k, self._x_buffers = (
            values[name] for name in ("lanes", "macs", "max_m", "act_rows", "max_k", "x_buffers"))
        self._layouts = spu_layouts(lanes=self._lanes, macs=self._macs, max_m=self._max_m,
                                    max_k=self._max_k, act_rows=self._act_rows)
        super().__init__({
            "cfg": In(stream.Signature(self._layouts["cfg"])),
            "act": In(stream.Signature(self._layouts["act"])),
            "w": In(stream.Signature(self._layouts["w"])),
            "post": In(stream.Signature(self._layouts["post"])),
            "o": Out(stream.Signature(self._layouts["o"])),
        })

    lanes = property(lambda self: self._lanes, doc="Batch columns computed in parallel.")
    macs = property(lambda self: self._macs, doc="Nonzero weights consumed per cycle.")
    max_m = property(lambda self: self._max_m, doc="Largest group size m.")
    max_k = property(lambda self: self._max_k, doc="Largest K.")
    act_rows = property(lambda self: self._act_rows, doc="Rows of X per activation beat.")
    x_buffers = property(lambda self: self._x_buffers, doc="Activation buffers (1 or 2).")
    layouts = property(lambda self: dict(self._layouts), doc="Payload layouts by port name.")

    def elaborate(self, platform):
        m = Module()
        L, P, R = self._lanes, self._macs, self._act_rows
        log_r = exact_log2(R)
        log_max_m = exact_log2(self._max_m)
        idx_bits = max(1, log_max_m)
        k_bits = exact_log2(self._max_k) + 1
        e_bits = k_bits + 5            # entry counters: nz + macs fits
        word_bits = R * L * 8
        X2 = self._x_buffers == 2
        a_bits = exact_log2(self._max_k // R)     # word address inside one bank

        # ---- activation buffer: max_k/R words of R rows, one read port per MAC ----------------
        m.submodules.xbuf = xbuf = Memory(shape=unsigned(word_bits), depth=self._max_k // R * self._x_buffers,
                                          init=[])
        wport = xbuf.write_port()
        rports = [xbuf.read_port() for _ in range(P)]

        # ---- GEMM configuration ----------------------------------------------------------------
        running = Signal()
        cfg_reject = Signal()          # a rejected cfg waits to emit its error beat
        n_log2 = Signal(3)
        m_log2 = Signal(3)
        mask_m = Signal(idx_bits)      # m - 1
        mask_n = Signal(6)             # n - 1
        shift_d = Signal(3)            # m_log2 - n_log2: (j >> n_log2) << m_log2 == (j & ~mask_n) << shift_d
        o_last = Signal(O_BITS)        # o - 1: index of the GEMM's last output row
        relu = Signal()
        nz = Signal(e_bits)            # nonzeros per row
        loaded = Signal(k_bits + 1)    # rows of X written
        # Nonzeros whose groups are entirely in X: ((loaded >> m_log2) << n_log2) of the loader's
        # configuration (a beat may go when its last entry is below it: docs/spu.md), kept
        # incrementally: it grows by ``ld_inc`` when a beat completes a group (``loaded & (m-1)``
        # equals ``ld_cross``: (m - act_rows) mod m), and ``avail_p`` is the value it takes then.
        avail = Signal(e_bits)
        avail_p = Signal(e_bits)       # avail + ld_inc
        ld_mask = Signal(idx_bits)     # the loader's m - 1
        ld_cross = Signal(idx_bits)    # (m - act_rows) mod m
        ld_inc = Signal(e_bits)        # (max(m, act_rows) >> m_log2) << n_log2
        ld_nz = Signal(e_bits)         # the loader's nonzeros per row
        ld_last = Signal(k_bits)       # the loader's k - act_rows: ``loaded`` before its last beat
        ld_more = Signal()             # loaded < k (a register: the act handshake, timing)
        row = Signal(O_BITS)
        e_base = Signal(e_bits)        # row nonzero index of entry 0 of the current beat
        e_end = Signal(e_bits)         # e_base + macs
        e_end_p = Signal(e_bits)       # e_end + macs
        # e_base + p for every MAC p (e_p[0] is e_base), kept as registers so that S0 computes
        # each entry's column straight from flip-flops (timing).
        e_p = [Signal(e_bits, name=f"e_p{p}", init=p) for p in range(P)]
        rem = Signal(e_bits)           # nz - e_base: entries of the row not yet taken
        prev_idx = Signal(idx_bits)
        inflight = Signal(range(OUT_DEPTH + 1))
        # ``inflight == 0`` and ``inflight < OUT_DEPTH`` as registers of their own, loaded with the
        # value the comparison will have next cycle (timing: the reject and S0 handshakes).
        no_rows = Signal(init=1)
        room = Signal(init=1)

        c = self.cfg.payload

        def start_gemm(cfg):
            """The datapath's registers for a GEMM of configuration ``cfg`` (both X modes)."""
            cfg_nz = ld_nz if X2 else (cfg.k >> cfg.m_log2) << cfg.n_log2
            return [
                running.eq(1), n_log2.eq(cfg.n_log2), m_log2.eq(cfg.m_log2),
                mask_m.eq((Const(1, idx_bits + 1) << cfg.m_log2) - 1),
                mask_n.eq((Const(1, 7) << cfg.n_log2) - 1),
                shift_d.eq(cfg.m_log2 - cfg.n_log2),
                o_last.eq(cfg.o - 1), relu.eq(cfg.relu),
                nz.eq(cfg_nz), rem.eq(cfg_nz), row.eq(0), e_base.eq(0), e_end.eq(P),
                e_end_p.eq(2 * P),
            ] + [e_p[p].eq(p) for p in range(P)]

        # The loader's registers of an accepted configuration ``c`` (both X modes).
        c_nz = (c.k >> c.m_log2) << c.n_log2
        c_inc = Mux(c.m_log2 <= log_r, (Const(R, e_bits) >> c.m_log2) << c.n_log2,
                    Const(1, e_bits) << c.n_log2)
        c_mask = ((Const(1, idx_bits + 1) << c.m_log2) - 1)[:idx_bits]
        load_start = [loaded.eq(0), avail.eq(0), avail_p.eq(c_inc), ld_inc.eq(c_inc),
                      ld_mask.eq(c_mask), ld_nz.eq(c_nz), ld_last.eq(c.k - R), ld_more.eq(1),
                      ld_cross.eq(((Const(1, 8) << c.m_log2) - R)[:idx_bits] & c_mask)]
        accept = Signal()              # a valid configuration is accepted: the loader restarts

        c_m_ok = c.m_log2 <= log_max_m
        c_k_m_ok = ((c.k >> c.m_log2) << c.m_log2) == c.k
        c_ok = (c_m_ok & (c.n_log2 <= c.m_log2) & (c.k != 0) & (c.k <= self._max_k) & c_k_m_ok
                & (c.k[:log_r] == 0 if log_r else Const(1)) & (c.o != 0))
        if X2:
            # The loader holds the newest accepted configuration (``pend``) while its X arrives in
            # bank ``lbank``; it hands it to the datapath (``handoff``, bank ``cbank``) when the
            # datapath is idle or in the cycle it takes the current GEMM's last beat, and is
            # released for the next configuration once that X is complete and handed over.
            pend = Signal(self._layouts["cfg"])
            held = Signal()            # pend is a valid configuration whose X is loading
            handed = Signal()          # pend has been handed to the datapath
            lbank = Signal()
            cbank = Signal()
            handoff = Signal()
            release = Signal()
            m.d.comb += release.eq(held & handed & ~ld_more)
            with m.If(release):
                m.d.sync += [held.eq(0), handed.eq(0), lbank.eq(~lbank)]
            m.d.comb += self.cfg.ready.eq((~held | release) & ~cfg_reject)
            with m.If(self.cfg.valid & self.cfg.ready):     # after release: overrides it
                with m.If(c_ok):
                    m.d.sync += [pend.eq(c), held.eq(1), handed.eq(0)] + load_start
                    m.d.comb += accept.eq(1)
                with m.Else():
                    m.d.sync += cfg_reject.eq(1)
        else:
            m.d.comb += self.cfg.ready.eq(~running & ~cfg_reject)
            with m.If(self.cfg.valid & self.cfg.ready):
                with m.If(c_ok):
                    m.d.sync += start_gemm(c) + load_start
                    m.d.comb += accept.eq(1)
                with m.Else():
                    m.d.sync += cfg_reject.eq(1)

        # ---- activation loading ----------------------------------------------------------------
        if X2:
            m.d.comb += [
                self.act.ready.eq(held & ld_more),
                wport.addr.eq(Cat((loaded >> log_r)[:a_bits], lbank)),
            ]
        else:
            m.d.comb += [
                self.act.ready.eq(running & ld_more),
                wport.addr.eq(loaded >> log_r),
            ]
        m.d.comb += [
            wport.data.eq(self.act.payload.as_value()),
            wport.en.eq(self.act.valid & self.act.ready),
        ]
        act_fire = Signal()
        cross = Signal()               # this beat completes a group of the loader's m
        m.d.comb += [act_fire.eq(self.act.valid & self.act.ready),
                     cross.eq((loaded[:idx_bits] & ld_mask) == ld_cross)]
        with m.If(act_fire):
            # loaded and k are multiples of act_rows: loaded + R < k unless loaded == k - R
            m.d.sync += [loaded.eq(loaded + R), ld_more.eq(loaded != ld_last)]
            with m.If(cross):
                m.d.sync += [avail.eq(avail_p), avail_p.eq(avail_p + ld_inc)]

        # ---- post-op parameters: a two-row queue ------------------------------------------------
        # Its ready is the queue's own level (registered), not the datapath's take: the handshake
        # is off the S0 timing path, and two entries keep one row per cycle at full rate.
        m.submodules.post_fifo = post_fifo = SyncFIFO(width=self._layouts["post"].size, depth=2)
        post_full = Signal()           # the next row's parameters are held
        post_reg = Signal(self._layouts["post"])
        post_take = Signal()           # the held parameters go down the pipeline this cycle
        m.d.comb += [
            post_fifo.w_data.eq(self.post.payload.as_value()),
            post_fifo.w_en.eq(self.post.valid),
            self.post.ready.eq(post_fifo.w_rdy),
            post_full.eq(post_fifo.r_rdy),
            post_reg.eq(post_fifo.r_data),
            post_fifo.r_en.eq(post_take),
        ]

        # ---- S0: weight beat handshake (registered counters only: rem, e_end, avail) ------------
        entries = self.w.payload
        last_beat = Signal()
        m.d.comb += last_beat.eq(rem <= P)
        last_row = Signal()
        m.d.comb += last_row.eq(row == o_last)
        # The beat's last entry min(e_base + P, nz) - 1 has its group in X (``need <= loaded``):
        # ``x_in = (e_end <= avail) | (nz <= avail)``, kept as a register loaded with the value it
        # has next cycle, chosen among comparisons of registers (timing: the handshake starts at
        # a flip-flop). See the update after the fire0 block.
        x_in = Signal()
        # With two buffers the datapath's X is complete unless the loader still holds it.
        x_ready = (x_in | ~(held & handed)) if X2 else x_in
        can = Signal()
        m.d.comb += can.eq(running & x_ready
                           & (~last_beat | (post_full & room)))
        m.d.comb += self.w.ready.eq(can)
        fire0 = Signal()
        m.d.comb += fire0.eq(self.w.valid & can)

        # S0 -> SA registers: the beat and what the address/check stage needs, frozen with it
        sa_valid = Signal()
        sa_first = Signal()
        sa_last = Signal()
        sa_glast = Signal()
        sa_relu = Signal()
        sa_post = Signal(self._layouts["post"])
        sa_prev = Signal(idx_bits)
        sa_mask_m = Signal(idx_bits)
        sa_bank = Signal()
        # Column of entry p: ((e >> n_log2) << m_log2) | index, computed in S0 from registers
        # (so the buffer's read address in SA comes straight from flip-flops), and whether the
        # entry starts a group.
        sa_col = [Signal(k_bits + 6, name=f"sa_col{p}") for p in range(P)]
        sa_gs = [Signal(name=f"sa_gs{p}") for p in range(P)]
        sa_ev = [Signal(name=f"sa_ev{p}") for p in range(P)]
        sa_idx = [Signal(idx_bits, name=f"sa_idx{p}") for p in range(P)]
        sa_val = [Signal(signed(8), name=f"sa_val{p}") for p in range(P)]
        m.d.sync += sa_valid.eq(fire0)
        m.d.comb += post_take.eq(fire0 & last_beat)
        # The SA registers load every cycle (only ``sa_valid`` says a beat is there): fire0 then
        # enables only the counters (timing: its fan-out).
        m.d.sync += [
            sa_first.eq(e_base == 0), sa_last.eq(last_beat), sa_glast.eq(last_row),
            sa_relu.eq(relu), sa_post.eq(post_reg), sa_prev.eq(prev_idx),
            sa_mask_m.eq(mask_m),
        ]
        if X2:
            m.d.sync += sa_bank.eq(cbank)
        for p in range(P):
            ev = rem > p
            group_base = Cat(e_p[p][:6] & ~mask_n, e_p[p][6:])    # (e >> n_log2) << n_log2
            m.d.sync += [sa_col[p].eq((group_base << shift_d) | (entries[p].index & mask_m)),
                         sa_gs[p].eq((e_p[p][:6] & mask_n) == 0), sa_ev[p].eq(ev),
                         sa_idx[p].eq(entries[p].index),
                         sa_val[p].eq(Mux(ev, entries[p].value, 0))]
        with m.If(fire0):
            m.d.sync += prev_idx.eq(entries[P - 1].index)
            with m.If(last_beat):
                m.d.sync += [e_base.eq(0), e_end.eq(P), e_end_p.eq(2 * P), rem.eq(nz),
                             row.eq(row + 1)]
                m.d.sync += [e_p[p].eq(p) for p in range(P)]
                with m.If(last_row):
                    m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += [e_base.eq(e_base + P), e_end.eq(e_end_p), e_end_p.eq(e_end_p + P),
                             rem.eq(rem - P)]
                m.d.sync += [e_p[p].eq(e_p[p] + P) for p in range(P)]

        if X2:      # after the fire0 block: a hand-off in a GEMM's last cycle overrides it
            m.d.comb += handoff.eq(held & ~handed & (~running | (fire0 & last_beat & last_row)))
            with m.If(handoff):
                m.d.sync += start_gemm(pend) + [cbank.eq(lbank), handed.eq(1)]

        # x_in next cycle: (e_end' <= avail') | (nz' <= avail'). avail' is 0 after an accepted
        # configuration (x_in' = 0: e_end' and nz' are positive), else avail or avail_p; e_end' is
        # macs after a GEMM starts (nz' = ld_nz) or a row's last beat, e_end_p after another
        # beat, else e_end.
        x_next = {}
        for a_name, a in (("a0", avail), ("a1", avail_p)):
            c_p = Signal(name=f"x_{a_name}_first")
            c_e = Signal(name=f"x_{a_name}_stay")
            c_e1 = Signal(name=f"x_{a_name}_next")
            c_nz = Signal(name=f"x_{a_name}_nz")
            m.d.comb += [c_p.eq(P <= a), c_e.eq(e_end <= a), c_e1.eq(e_end_p <= a),
                         c_nz.eq(nz <= a)]
            nxt = Signal(name=f"x_{a_name}")
            value = Mux(fire0, Mux(last_beat, c_p, c_e1), c_e) | c_nz
            if X2:
                value = Mux(handoff, c_p | (ld_nz <= a), value)
            m.d.comb += nxt.eq(value)
            x_next[a_name] = nxt
        with m.If(accept):
            m.d.sync += x_in.eq(0)
        with m.Elif(act_fire & cross):
            m.d.sync += x_in.eq(x_next["a1"])
        with m.Else():
            m.d.sync += x_in.eq(x_next["a0"])

        # ---- SA: read the X word of each entry's column (registered address), index checks -----
        beat_err = Signal()
        errs = []
        sels = []
        for p in range(P):
            idx_p = sa_idx[p]
            k_p = sa_col[p]
            m.d.comb += rports[p].addr.eq(Cat((k_p >> log_r)[:a_bits], sa_bank) if X2
                                          else k_p >> log_r)
            prev = sa_prev if p == 0 else sa_idx[p - 1]
            group_start = sa_gs[p]
            out_of_range = (idx_p & ~sa_mask_m) != 0
            not_ascending = ~group_start & (idx_p <= prev)
            errs.append(sa_ev[p] & (out_of_range | not_ascending))
            sels.append(k_p[:log_r] if log_r else Const(0, 1))
        m.d.comb += beat_err.eq(Cat(errs).any())
        row_err = Signal()             # a malformed index in an earlier beat of this row
        err_so_far = Mux(sa_first, 0, row_err) | beat_err

        # SA -> S1 registers (the X rows are read meanwhile)
        s1_valid = Signal()
        s1_first = Signal()
        s1_last = Signal()
        s1_err = Signal()
        s1_val = [Signal(signed(8), name=f"s1_val{p}") for p in range(P)]
        s1_sel = [Signal(max(1, log_r), name=f"s1_sel{p}") for p in range(P)]
        s1_post = Signal(self._layouts["post"])
        s1_relu = Signal()
        s1_glast = Signal()
        m.d.sync += s1_valid.eq(sa_valid)
        with m.If(sa_valid):
            m.d.sync += [
                row_err.eq(err_so_far),
                s1_first.eq(sa_first), s1_last.eq(sa_last), s1_err.eq(err_so_far),
                s1_post.eq(sa_post), s1_relu.eq(sa_relu), s1_glast.eq(sa_glast),
            ]
            m.d.sync += [s1_val[p].eq(sa_val[p]) for p in range(P)]
            m.d.sync += [s1_sel[p].eq(sels[p]) for p in range(P)]

        def carry(prefix, fields, cond=None):
            """Registers ``prefix_<field>`` following ``src`` fields (on ``cond`` if given)."""
            out = {}
            stmts = []
            for name, sig in fields.items():
                reg = Signal.like(sig, name=f"{prefix}_{name}")
                out[name] = reg
                stmts.append(reg.eq(sig))
            if cond is None:
                m.d.sync += stmts
            else:
                with m.If(cond):
                    m.d.sync += stmts
            return out

        # ---- S1: the buffer words, registered straight out of the memory ------------------------
        ctl1 = {"valid": s1_valid, "first": s1_first, "last": s1_last, "err": s1_err,
                "post": s1_post, "relu": s1_relu, "glast": s1_glast}
        ctl1b = carry("s1b", ctl1)
        s1b_val = [Signal(signed(8), name=f"s1b_val{p}") for p in range(P)]
        s1b_sel = [Signal(max(1, log_r), name=f"s1b_sel{p}") for p in range(P)]
        s1b_word = [Signal(word_bits, name=f"s1b_word{p}") for p in range(P)]
        for p in range(P):
            m.d.sync += [s1b_val[p].eq(s1_val[p]), s1b_sel[p].eq(s1_sel[p]),
                         s1b_word[p].eq(rports[p].data)]

        # ---- S1c: the X row each MAC selects ----------------------------------------------------
        ctl1c = carry("s1c", ctl1b)
        s1c_val = [Signal(signed(8), name=f"s1c_val{p}") for p in range(P)]
        s1c_x = [Signal(L * 8, name=f"s1c_x{p}") for p in range(P)]
        for p in range(P):
            rows = Array(s1b_word[p].word_select(r, L * 8) for r in range(R))
            m.d.sync += [s1c_val[p].eq(s1b_val[p]),
                         s1c_x[p].eq(rows[s1b_sel[p]] if R > 1 else s1b_word[p])]

        # ---- S2: lanes*macs products (8x8), straight from registers into the multipliers -------
        ctl2 = carry("s2", ctl1c)
        s2_prod = [[Signal(signed(16), name=f"s2_prod{p}_{b}") for b in range(L)]
                   for p in range(P)]
        for p in range(P):
            for b in range(L):
                x = s1c_x[p].word_select(b, 8).as_signed()
                m.d.sync += s2_prod[p][b].eq(s1c_val[p] * x)

        # ---- S2b: adder tree over the macs ------------------------------------------------------
        ctl2b = carry("s2b", ctl2)
        sum_bits = 16 + max(1, (P - 1).bit_length())
        s2b_sum = [Signal(signed(sum_bits), name=f"s2b_sum{b}") for b in range(L)]
        for b in range(L):
            m.d.sync += s2b_sum[b].eq(sum(s2_prod[p][b] for p in range(P)))

        # ---- S3: int32 accumulators (reset on a row's first beat) -------------------------------
        acc = [Signal(signed(32), name=f"acc{b}") for b in range(L)]
        s3_valid = Signal()
        s3_acc = [Signal(signed(32), name=f"s3_acc{b}") for b in range(L)]
        row_done = ctl2b["valid"] & ctl2b["last"]
        m.d.sync += s3_valid.eq(row_done)
        for b in range(L):
            acc_next = Signal(signed(32), name=f"acc_next{b}")
            m.d.comb += acc_next.eq(Mux(ctl2b["first"], 0, acc[b]) + s2b_sum[b])
            with m.If(ctl2b["valid"]):
                m.d.sync += acc[b].eq(acc_next)
                with m.If(ctl2b["last"]):
                    m.d.sync += s3_acc[b].eq(acc_next)
        ctl3 = carry("s3", {k: ctl2b[k] for k in ("err", "post", "relu", "glast")},
                     cond=row_done)

        # ---- S4: + bias -------------------------------------------------------------------------
        s4_valid = Signal()
        m.d.sync += s4_valid.eq(s3_valid)
        ctl4 = carry("s4", {"err": ctl3["err"], "mult": ctl3["post"].mult,
                                  "shift": ctl3["post"].shift, "relu": ctl3["relu"],
                                  "glast": ctl3["glast"]})
        s4_t = [Signal(signed(33), name=f"s4_t{b}") for b in range(L)]
        for b in range(L):
            m.d.sync += s4_t[b].eq(s3_acc[b] + ctl3["post"].bias)

        # ---- S5: * mult as two 17x16 products (t = t_hi * 2**16 + t_lo) --------------------------
        s5_valid = Signal()
        m.d.sync += s5_valid.eq(s4_valid)
        ctl5 = carry("s5", ctl4)
        s5_lo = [Signal(unsigned(32), name=f"s5_lo{b}") for b in range(L)]
        s5_hi = [Signal(signed(34), name=f"s5_hi{b}") for b in range(L)]
        for b in range(L):
            m.d.sync += [s5_lo[b].eq(s4_t[b][:16] * ctl4["mult"]),
                         s5_hi[b].eq(s4_t[b][16:].as_signed() * ctl4["mult"])]

        # ---- S6: + rounding constant on the low product ------------------------------------------
        s6_valid = Signal()
        m.d.sync += s6_valid.eq(s5_valid)
        ctl6 = carry("s6", ctl5)
        rnd = Signal(32)
        m.d.comb += rnd.eq((Const(1, 33) << ctl5["shift"]) >> 1)
        s6_lo = [Signal(unsigned(33), name=f"s6_lo{b}") for b in range(L)]
        s6_hi = [Signal(signed(34), name=f"s6_hi{b}") for b in range(L)]
        for b in range(L):
            m.d.sync += [s6_lo[b].eq(s5_lo[b] + rnd), s6_hi[b].eq(s5_hi[b])]

        # ---- S7: (acc + bias) * mult + rnd ------------------------------------------------------
        s7_valid = Signal()
        m.d.sync += s7_valid.eq(s6_valid)
        ctl7 = carry("s7", ctl6)
        s7_p = [Signal(signed(51), name=f"s7_p{b}") for b in range(L)]
        for b in range(L):
            m.d.sync += s7_p[b].eq((s6_hi[b] << 16) + s6_lo[b])

        # ---- S8: >> shift -----------------------------------------------------------------------
        s8_valid = Signal()
        m.d.sync += s8_valid.eq(s7_valid)
        ctl8 = carry("s8", {k: ctl7[k] for k in ("err", "relu", "glast")})
        s8_sh = [Signal(signed(51), name=f"s8_sh{b}") for b in range(L)]
        for b in range(L):
            m.d.sync += s8_sh[b].eq(s7_p[b] >> ctl7["shift"])

        # ---- S9: saturate, ReLU, error -> 0 -> output FIFO --------------------------------------
        out_layout = self._layouts["o"]
        s9_out = Signal(out_layout)
        for b in range(L):
            shifted = s8_sh[b]
            sat = Mux(shifted > 127, 127, Mux(shifted < -128, -128, shifted))
            y = Mux(ctl8["err"] | (ctl8["relu"] & (shifted < 0)), 0, sat)
            m.d.comb += s9_out.y[b].eq(y)
        m.d.comb += [s9_out.error.eq(ctl8["err"]), s9_out.last.eq(ctl8["glast"])]
        s9_valid = s8_valid

        reject_out = Signal(out_layout)
        m.d.comb += [reject_out.cfg_error.eq(1), reject_out.last.eq(1)]
        reject_fire = Signal()
        if X2:      # every row of the GEMMs before it granted (not running) and delivered
            m.d.comb += reject_fire.eq(cfg_reject & ~running & no_rows)
        else:
            m.d.comb += reject_fire.eq(cfg_reject & no_rows)
        with m.If(reject_fire):
            m.d.sync += cfg_reject.eq(0)

        # Wired by hand: wiring.connect(m, out_fifo.r_stream, flipped(self.o)) is equivalent but
        # orders the Verilog assigns differently (the generated Verilog is kept byte-identical).
        m.submodules.out_fifo = out_fifo = SyncFIFOBuffered(width=out_layout.size,
                                                            depth=OUT_DEPTH)
        m.d.comb += [
            out_fifo.w_en.eq(s9_valid | reject_fire),
            out_fifo.w_data.eq(Mux(s9_valid, s9_out.as_value(), reject_out.as_value())),
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
        ]

        # ---- credits: rows owed to the output FIFO ---------------------------------------------
        grant = (fire0 & last_beat) | reject_fire
        done = self.o.valid & self.o.ready
        with m.If(grant & ~done):
            m.d.sync += [inflight.eq(inflight + 1), no_rows.eq(0),
                         room.eq(inflight < OUT_DEPTH - 1)]
        with m.Elif(done & ~grant):
            m.d.sync += [inflight.eq(inflight - 1), no_rows.eq(inflight == 1), room.eq(1)]

        return m
