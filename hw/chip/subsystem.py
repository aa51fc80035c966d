"""One SPU subsystem: the SPU, its local memories, a sequencer and a ring port.

The instruction set (encoding, fields, error codes, memory map) is :mod:`sparsehw.golden.chip`;
this module decodes exactly what :func:`sparsehw.golden.chip.decode` and
:func:`sparsehw.golden.chip.check` accept. See ``docs/chip.md``.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from sparsehw.params import Param, ParamSpec, int_in
from sparsehw.golden import chip as isa
from sparsehw.hw.spu import SPU, spu_layouts
from sparsehw.hw.ring import inject_layout, eject_layout


__all__ = ["Subsystem", "SUBSYSTEM_PARAMS", "REG_NAMES", "REGS_MEM", "host_layouts",
           "flit_format", "flit_min", "mem_depths", "div_const"]


#: Host ``mem`` code of the read-only registers (status and counters) of a subsystem.
REGS_MEM = 5
#: Registers read with ``mem = REGS_MEM``, by address: the status word
#: (:func:`sparsehw.golden.chip.status_word`) then 32-bit counters of the last run.
REG_NAMES = ("status", "cycles", "gemm_cycles", "flits_sent", "wait_cycles", "inject_stall",
             "rows_received", "gemms")


def flit_format(lanes, bank_rows, flit_width):
    """Ring flit payload of the chip: ``bank`` (1 bit), ``row``, ``chunk``, then data bytes.

    A flit carries ``bytes`` bytes of one bank row (``lanes`` bytes); a row takes ``chunks``
    flits. Returns a dict with ``header``, ``row_bits``, ``chunk_bits``, ``bytes``, ``chunks``.
    """
    row_bits = exact_log2(bank_rows)
    chunk_bits = 0
    for _ in range(4):          # the chunk field's width depends on the count: settle it
        header = 1 + row_bits + chunk_bits
        per_flit = max(1, min(lanes, (flit_width - header) // 8))
        chunks = -(-lanes // per_flit)
        chunk_bits = ceil_log2(chunks)
    return {"header": 1 + row_bits + chunk_bits, "row_bits": row_bits, "chunk_bits": chunk_bits,
            "bytes": per_flit, "chunks": chunks}


def flit_min(values):
    """Smallest legal flit width: the header with a one-byte chunk, plus that byte."""
    row_bits = exact_log2(values["bank_rows"])
    return 1 + row_bits + ceil_log2(values["lanes"]) + 8


#: The RTL's generation parameters: the chip model's (:data:`sparsehw.golden.chip.CHIP_PARAMS`)
#: plus the flit width, and for a subsystem built alone its ring node number.
FLIT_PARAM = Param("flit_width", 64, lambda v: int_in(flit_min(v), 1024),
                   doc="ring flit payload bits (bank, row, chunk header + activation bytes)",
                   allowed="an integer in 1+log2(bank_rows)+ceil(log2(lanes))+8..1024")
SUBSYSTEM_PARAMS = ParamSpec(
    *isa.CHIP_PARAMS,
    Param("index", 0, lambda v: int_in(0, v["subsystems"] - 1),
          doc="this subsystem's ring node", allowed="an integer in 0..subsystems-1"),
    FLIT_PARAM,
)


def mem_depths(p):
    """Words of each host-visible memory (``MEM_*`` id) of a subsystem."""
    return {isa.MEM_IMEM: p["imem_depth"], isa.MEM_WMEM: p["wmem_depth"],
            isa.MEM_PMEM: p["pmem_depth"], isa.MEM_BANK0: p["bank_rows"],
            isa.MEM_BANK1: p["bank_rows"], REGS_MEM: len(REG_NAMES)}


def host_layouts(p):
    """Host access command/response payloads of a subsystem (the chip adds ``op``/``sub``)."""
    addr_bits = max(ceil_log2(d) for d in mem_depths(p).values())
    data_bits = max([isa.word_bits(mem, p) for mem in isa.MEMORIES] + [32])
    return {
        "cmd": data.StructLayout({"write": 1, "mem": 3, "addr": addr_bits, "data": data_bits}),
        "rsp": data.StructLayout({"data": data_bits, "bad": 1}),
    }


def div_const(value, divisor, width):
    """``value // divisor`` for an unsigned ``value`` of ``width`` bits and a constant divisor,
    as a multiplication by a rounded-up reciprocal (exact for every ``value < 2**width``:
    ``s = width + ceil(log2(divisor))``, ``mult = ceil(2**s / divisor)``)."""
    if divisor & (divisor - 1) == 0:
        return value >> exact_log2(divisor)
    s = width + ceil_log2(divisor)
    mult = -(-(1 << s) // divisor)
    return (value * mult) >> s


def _ring_nodes(subsystems):
    return max(subsystems, 2)


class Subsystem(wiring.Component):
    """An SPU next to its memories, run by a sequencer from a local program; one ring node.

    Memories (``amaranth.lib.memory``): instructions (``imem_depth`` x 128 bits), compressed
    weights (``wmem_depth`` words, one SPU weight beat each), post-op parameters
    (``pmem_depth`` words of 53 bits, one per output row), and two activation banks
    (``bank_rows`` rows of ``lanes`` int8, stored ``act_rows`` rows per memory word so that one
    word is one SPU activation beat, written with byte enables).

    The sequencer runs the program from address 0 one instruction at a time
    (:mod:`sparsehw.golden.chip`): GEMM streams the operands from the memories into the SPU and
    delivers each output row, as it comes out, to its own bank (own ``mask`` bit) and over the
    ring to the other subsystems in ``mask``; SEND reads rows of a bank onto the ring; WAIT
    blocks until the arrival counter of a bank reaches its count; HALT waits for the ring
    injector to drain. Every field is checked before the instruction starts; a failing check
    (smallest code first) stops the subsystem in state ERROR with the code and the pc. A reset
    (``rst``, or the chip's host RESET) clears state, counters and errors, not the memories.

    Parameters
    ----------
    subsystems, lanes, macs, max_m, act_rows, max_k, imem_depth, wmem_depth, pmem_depth, bank_rows
        As :data:`sparsehw.golden.chip.CHIP_PARAMS` (``subsystems`` = nodes on the ring).
    index : int
        This subsystem's node number, ``0..subsystems-1``.
    flit_width : int
        Ring flit payload bits (:func:`flit_format`), ``flit_min..1024``.

    Attributes
    ----------
    host : In(stream.Signature(StructLayout(write 1, mem 3, addr, data)))
        Host memory access, one command per beat: ``write = 1`` writes ``data`` (low bits) to word
        ``addr`` of memory ``mem`` (``MEM_*``; banks by row); ``write = 0`` reads it (``mem =
        REGS_MEM``: status and counters, :data:`REG_NAMES`) and answers one ``rsp`` beat. An
        access outside the memory map (unknown ``mem``, ``addr`` beyond the depth, a write to the
        registers) is ignored and answered (reads) with ``bad = 1``. Ready when no answer is
        pending and, for a bank write, the bank's write port is free this cycle (the sequencer's
        writes have priority).
    rsp : Out(stream.Signature(StructLayout(data, bad 1)))
        One beat per read command, two cycles after it; held until taken.
    start : In(1)
        Pulse: from IDLE or HALTED, clear the counters and run from address 0.
    status : Out(StructLayout(state 2, error 4, row_error 1, pc 16))
        As :func:`sparsehw.golden.chip.status_word`.
    blocked : Out(1)
        Waiting on a WAIT that is not satisfied, with nothing left to inject.
    deadlock : In(1)
        The chip saw every running subsystem blocked and no flit in flight: a blocked WAIT stops
        with ``ERR_DEADLOCK``.
    waiting : Out(1)
        In a WAIT that is not satisfied (for the chip's ring-wait counter).
    inject : Out(stream.Signature(ring inject layout))
        Flits for the ring (``dest``, ``payload`` = ``{bank, row, chunk, data}``).
    eject : In(stream.Signature(ring eject layout))
        Flits from the ring, written into the named bank row; the last chunk of a row adds 1 to
        that bank's arrival counter. Ready unless the bank's write port is taken by a GEMM row
        this cycle.

    Raises
    ------
    TypeError, ValueError
        A parameter of the wrong type or out of range (:data:`SUBSYSTEM_PARAMS`).
    """

    def __init__(self, **params):
        self._p = SUBSYSTEM_PARAMS.validate(**params)
        p = self._p
        self._lay = host_layouts(p)
        self._spu_lay = spu_layouts(lanes=p["lanes"], macs=p["macs"], max_m=p["max_m"],
                                    max_k=p["max_k"], act_rows=p["act_rows"])
        self._flit = flit_format(p["lanes"], p["bank_rows"], p["flit_width"])
        nodes = _ring_nodes(p["subsystems"])
        super().__init__({
            "host": In(stream.Signature(self._lay["cmd"])),
            "rsp": Out(stream.Signature(self._lay["rsp"])),
            "start": In(1),
            "status": Out(data.StructLayout({"state": 2, "error": 4, "row_error": 1,
                                             "pc": 16})),
            "blocked": Out(1),
            "waiting": Out(1),
            "deadlock": In(1),
            "inject": Out(stream.Signature(inject_layout(nodes, p["flit_width"]))),
            "eject": In(stream.Signature(eject_layout(nodes, p["flit_width"]))),
        })

    params = property(lambda self: dict(self._p), doc="Validated generation parameters.")
    layouts = property(lambda self: dict(self._lay), doc="Host command/response layouts.")
    flit = property(lambda self: dict(self._flit), doc="Flit format (see flit_format).")

    def elaborate(self, platform):
        m = Module()
        p = self._p
        L, P, R = p["lanes"], p["macs"], p["act_rows"]
        log_r = exact_log2(R)
        row_w = L * 8
        word_w = R * row_w
        xw_depth = p["bank_rows"] // R
        rows = p["bank_rows"]
        fl = self._flit
        me = p["index"]
        ring_nodes = _ring_nodes(p["subsystems"])

        m.submodules.spu = spu = SPU(lanes=L, macs=P, max_m=p["max_m"], max_k=p["max_k"],
                                     act_rows=R)

        # ---- memories ----------------------------------------------------------------------
        m.submodules.imem = imem = Memory(shape=unsigned(isa.INSTR_BITS),
                                          depth=p["imem_depth"], init=[])
        m.submodules.wmem = wmem = Memory(shape=unsigned(self._spu_lay["w"].size),
                                          depth=p["wmem_depth"], init=[])
        m.submodules.pmem = pmem = Memory(shape=unsigned(self._spu_lay["post"].size),
                                          depth=p["pmem_depth"], init=[])
        banks = []
        for b in range(2):
            bank = Memory(shape=unsigned(word_w), depth=xw_depth, init=[])
            m.submodules[f"bank{b}"] = bank
            banks.append(bank)

        i_fetch, i_host, i_wr = imem.read_port(), imem.read_port(), imem.write_port()
        w_rd, w_host, w_wr = wmem.read_port(), wmem.read_port(), wmem.write_port()
        p_rd, p_host, p_wr = pmem.read_port(), pmem.read_port(), pmem.write_port()
        x_act = [bk.read_port() for bk in banks]
        x_send = [bk.read_port() for bk in banks]
        x_host = [bk.read_port() for bk in banks]
        x_wr = [bk.write_port(granularity=8) for bk in banks]

        # ---- state and counters ------------------------------------------------------------
        regs = {name: Signal(32, name=f"reg_{name}") for name in REG_NAMES[1:]}
        state = Signal(2)
        error = Signal(4)
        row_error = Signal()
        pc = Signal(16)
        m.d.comb += [self.status.state.eq(state), self.status.error.eq(error),
                     self.status.row_error.eq(row_error), self.status.pc.eq(pc)]
        cbits = isa.counter_bits(p)
        arrived = [Signal(cbits, name=f"arrived{b}") for b in range(2)]

        # ---- memory stream readers ---------------------------------------------------------
        def reader(name, rports, width, cnt_bits):
            """Streams ``count`` words from ``base`` of a read port (``sel`` picks one of
            ``rports``, which share address and enable); ``go`` loads base and count."""
            go = Signal(name=f"{name}_go")
            base = Signal(len(rports[0].addr), name=f"{name}_base")
            count = Signal(cnt_bits, name=f"{name}_count")
            sel = Signal(name=f"{name}_sel")
            sel_q = Signal(name=f"{name}_sel_q")
            addr = Signal(len(rports[0].addr), name=f"{name}_addr")
            left = Signal(cnt_bits, name=f"{name}_left")
            inflight = Signal(name=f"{name}_inflight")
            fifo = SyncFIFO(width=width, depth=4)
            m.submodules[f"{name}_fifo"] = fifo
            issue = Signal(name=f"{name}_issue")
            m.d.comb += issue.eq((left != 0) & (fifo.level + inflight < 4))
            for rport in rports:
                m.d.comb += [rport.addr.eq(addr), rport.en.eq(issue)]
            data_q = rports[0].data if len(rports) == 1 else Mux(sel_q, rports[1].data,
                                                                 rports[0].data)
            m.d.comb += [fifo.w_en.eq(inflight), fifo.w_data.eq(data_q)]
            m.d.sync += [inflight.eq(issue), sel_q.eq(sel)]
            with m.If(go):
                m.d.sync += [addr.eq(base), left.eq(count)]
            with m.Elif(issue):
                m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
            return go, base, count, sel, fifo

        act_go, act_base, act_count, act_sel, act_fifo = reader(
            "act", x_act, word_w, ceil_log2(xw_depth) + 1)
        w_go, w_base, w_count, _, w_fifo = reader(
            "w", [w_rd], self._spu_lay["w"].size, ceil_log2(p["wmem_depth"]) + 1)
        p_go, p_base, p_count, _, p_fifo = reader(
            "post", [p_rd], self._spu_lay["post"].size, ceil_log2(p["pmem_depth"]) + 1)
        act_bank = Signal()
        m.d.comb += act_sel.eq(act_bank)

        cfg_valid = Signal()
        cfg_reg = Signal(self._spu_lay["cfg"])
        m.d.comb += [spu.cfg.valid.eq(cfg_valid), spu.cfg.payload.eq(cfg_reg)]
        with m.If(spu.cfg.valid & spu.cfg.ready):
            m.d.sync += cfg_valid.eq(0)
        for port, fifo in ((spu.act, act_fifo), (spu.w, w_fifo), (spu.post, p_fifo)):
            m.d.comb += [port.valid.eq(fifo.r_rdy), port.payload.eq(fifo.r_data),
                         fifo.r_en.eq(port.ready)]

        # ---- injector: rows -> flits (one per chunk per destination) -------------------------
        inj_layout = data.StructLayout({"data": row_w, "bank": 1, "row": fl["row_bits"],
                                        "mask": ring_nodes})
        m.submodules.inj_fifo = inj_fifo = SyncFIFO(width=inj_layout.size, depth=4)
        inj_head = Signal(inj_layout)
        m.d.comb += inj_head.eq(inj_fifo.r_data)
        inj_loaded = Signal()
        inj_rem = Signal(ring_nodes)
        inj_chunk = Signal(max(1, fl["chunk_bits"]))
        cur_mask = Signal(ring_nodes)
        m.d.comb += cur_mask.eq(Mux(inj_loaded, inj_rem, inj_head.mask))
        cur_dest = Signal(range(ring_nodes))
        for i in reversed(range(ring_nodes)):
            with m.If(cur_mask[i]):
                m.d.comb += cur_dest.eq(i)
        fields = {"bank": 1, "row": fl["row_bits"]}
        if fl["chunk_bits"]:
            fields["chunk"] = fl["chunk_bits"]
        fields["data"] = fl["bytes"] * 8
        flit_l = data.StructLayout(fields)
        flit = Signal(flit_l)
        pieces = [inj_head.data[c * fl["bytes"] * 8:
                                           min(row_w, (c + 1) * fl["bytes"] * 8)]
                  for c in range(fl["chunks"])]
        m.d.comb += [flit.bank.eq(inj_head.bank), flit.row.eq(inj_head.row),
                     flit.data.eq(Array(pieces)[inj_chunk] if fl["chunks"] > 1 else pieces[0])]
        if fl["chunk_bits"]:
            m.d.comb += flit.chunk.eq(inj_chunk)
        m.d.comb += [
            self.inject.valid.eq(inj_fifo.r_rdy & (cur_mask != 0)),
            self.inject.payload.dest.eq(cur_dest),
            self.inject.payload.payload.eq(flit.as_value()),
        ]
        inj_fire = Signal()
        m.d.comb += inj_fire.eq(self.inject.valid & self.inject.ready)
        last_chunk = (inj_chunk == fl["chunks"] - 1) if fl["chunks"] > 1 else Const(1)
        rem_after = Signal(ring_nodes)
        m.d.comb += rem_after.eq(cur_mask & ~(Const(1, ring_nodes) << cur_dest))
        m.d.comb += inj_fifo.r_en.eq((inj_fire & last_chunk & (rem_after == 0))
                                     | (inj_fifo.r_rdy & (cur_mask == 0)))
        with m.If(inj_fire):
            with m.If(last_chunk):
                if fl["chunks"] > 1:
                    m.d.sync += inj_chunk.eq(0)
                with m.If(rem_after == 0):
                    m.d.sync += inj_loaded.eq(0)
                with m.Else():
                    m.d.sync += [inj_loaded.eq(1), inj_rem.eq(rem_after)]
            with m.Else():
                m.d.sync += [inj_chunk.eq(inj_chunk + 1), inj_loaded.eq(1),
                             inj_rem.eq(cur_mask)]
            m.d.sync += regs["flits_sent"].eq(regs["flits_sent"] + 1)
        with m.If(self.inject.valid & ~self.inject.ready):
            m.d.sync += regs["inject_stall"].eq(regs["inject_stall"] + 1)
        inj_idle = Signal()
        m.d.comb += inj_idle.eq(~inj_fifo.r_rdy)

        # ---- bank writes: GEMM output > ring receive > host ----------------------------------
        wr_en = [Signal(R * L, name=f"bank{b}_wen") for b in range(2)]
        wr_addr = [Signal(len(x_wr[b].addr), name=f"bank{b}_waddr") for b in range(2)]
        wr_data = [Signal(word_w, name=f"bank{b}_wdata") for b in range(2)]
        for b in range(2):
            m.d.comb += [x_wr[b].en.eq(wr_en[b]), x_wr[b].addr.eq(wr_addr[b]),
                         x_wr[b].data.eq(wr_data[b])]

        def row_write(b, row, value, byte_en):
            """Write one row (``lanes`` bytes, per-byte enables) into bank ``b``."""
            stmts = [wr_addr[b].eq(row >> log_r), wr_data[b].eq(Cat(*([value] * R)))]
            if R > 1:
                stmts.append(wr_en[b].eq(byte_en << (row[:log_r] * L)))
            else:
                stmts.append(wr_en[b].eq(byte_en))
            return stmts

        full_row = Const((1 << L) - 1, L)
        g_dbank = Signal()
        g_drow = Signal(fl["row_bits"])
        g_local = Signal()
        g_mask = Signal(ring_nodes)          # remote destinations
        g_busy = Signal()
        out = spu.o
        out_take = Signal()
        m.d.comb += [
            out.ready.eq(g_busy & (inj_fifo.w_rdy | (g_mask == 0))),
            out_take.eq(out.valid & out.ready),
        ]
        out_write = Signal()
        m.d.comb += out_write.eq(out_take & g_local)
        for b in range(2):
            with m.If(out_write & (g_dbank == b)):
                m.d.comb += row_write(b, g_drow, out.payload.y.as_value(), full_row)
        send_from_out = Signal()
        m.d.comb += send_from_out.eq(out_take & (g_mask != 0))
        with m.If(out_take):
            m.d.sync += g_drow.eq(g_drow + 1)
            with m.If(out.payload.error):
                m.d.sync += row_error.eq(1)
            with m.If(out.payload.last):
                m.d.sync += [g_busy.eq(0), regs["gemms"].eq(regs["gemms"] + 1)]
        with m.If(g_busy):
            m.d.sync += regs["gemm_cycles"].eq(regs["gemm_cycles"] + 1)

        rx = Signal(flit_l)
        m.d.comb += rx.eq(self.eject.payload.payload)
        m.d.comb += self.eject.ready.eq(~(out_write & (g_dbank == rx.bank)))
        rx_fire = Signal()
        m.d.comb += rx_fire.eq(self.eject.valid & self.eject.ready)
        rx_row_val = Signal(row_w)
        rx_row_en = Signal(L)
        if fl["chunks"] > 1:
            vals, ens = [], []
            for c in range(fl["chunks"]):
                lo = c * fl["bytes"]
                hi = min(L, lo + fl["bytes"])
                vals.append((rx.data << (lo * 8))[:row_w])
                ens.append(Const(((1 << (hi - lo)) - 1) << lo, L))
            m.d.comb += [rx_row_val.eq(Array(vals)[rx.chunk]),
                         rx_row_en.eq(Array(ens)[rx.chunk])]
            rx_last = rx.chunk == fl["chunks"] - 1
        else:
            m.d.comb += [rx_row_val.eq(rx.data[:row_w]), rx_row_en.eq(full_row)]
            rx_last = Const(1)
        for b in range(2):
            with m.If(rx_fire & (rx.bank == b)):
                m.d.comb += row_write(b, rx.row, rx_row_val, rx_row_en)
        with m.If(rx_fire & rx_last):
            m.d.sync += regs["rows_received"].eq(regs["rows_received"] + 1)

        # ---- send unit: bank rows -> injector ------------------------------------------------
        s_busy = Signal()
        s_bank = Signal()
        s_addr = Signal(fl["row_bits"])
        s_left = Signal(17)
        s_drow = Signal(fl["row_bits"])
        s_dbank = Signal()
        s_mask = Signal(ring_nodes)
        s_pending = Signal()
        s_pend_row = Signal(fl["row_bits"])
        s_pend_sel = Signal(max(1, log_r))
        s_issue = Signal()
        m.d.comb += s_issue.eq(s_busy & (s_left != 0) & (inj_fifo.level + s_pending < 3))
        for b in range(2):
            m.d.comb += [x_send[b].addr.eq(s_addr >> log_r), x_send[b].en.eq(s_issue)]
        with m.If(s_issue):
            m.d.sync += [s_addr.eq(s_addr + 1), s_left.eq(s_left - 1), s_drow.eq(s_drow + 1),
                         s_pend_row.eq(s_drow),
                         s_pend_sel.eq(s_addr[:log_r] if log_r else 0)]
        m.d.sync += s_pending.eq(s_issue)
        send_word = Signal(word_w)
        m.d.comb += send_word.eq(Mux(s_bank, x_send[1].data, x_send[0].data))
        send_row = Signal(row_w)
        if R > 1:
            m.d.comb += send_row.eq(Array(send_word[r * row_w:(r + 1) * row_w]
                                          for r in range(R))[s_pend_sel])
        else:
            m.d.comb += send_row.eq(send_word)
        with m.If(s_busy & (s_left == 0) & ~s_pending):
            m.d.sync += s_busy.eq(0)

        inj_in = Signal(inj_layout)
        with m.If(send_from_out):
            m.d.comb += [inj_in.data.eq(out.payload.y.as_value()), inj_in.bank.eq(g_dbank),
                         inj_in.row.eq(g_drow), inj_in.mask.eq(g_mask)]
        with m.Else():
            m.d.comb += [inj_in.data.eq(send_row), inj_in.bank.eq(s_dbank),
                         inj_in.row.eq(s_pend_row), inj_in.mask.eq(s_mask)]
        # A GEMM and a SEND never run at once (the sequencer runs one instruction at a time).
        m.d.comb += [inj_fifo.w_en.eq(send_from_out | s_pending), inj_fifo.w_data.eq(inj_in)]

        # ---- host access ---------------------------------------------------------------------
        cmd = self.host.payload
        good = Signal()
        depths = mem_depths(p)
        with m.Switch(cmd.mem):
            for code, depth in depths.items():
                with m.Case(code):
                    writable = code != REGS_MEM
                    m.d.comb += good.eq((cmd.addr < depth) & (~cmd.write | writable))
        rsp_valid = Signal()
        rsp_data = Signal(len(self.rsp.payload.data))
        rd_pending = Signal()
        rd_mem = Signal(3)
        rd_good = Signal()
        rd_sel = Signal(max(1, log_r))
        rd_reg = Signal(32)
        host_bank = Signal()
        m.d.comb += host_bank.eq(cmd.mem == isa.MEM_BANK1)
        host_is_bank = (cmd.mem == isa.MEM_BANK0) | (cmd.mem == isa.MEM_BANK1)
        bank_taken = Signal()
        seq_writes = [(out_write & (g_dbank == b)) | (rx_fire & (rx.bank == b)) for b in range(2)]
        m.d.comb += bank_taken.eq(host_is_bank & Mux(host_bank, seq_writes[1], seq_writes[0]))
        m.d.comb += self.host.ready.eq(~rd_pending & ~rsp_valid & ~(cmd.write & bank_taken))
        host_fire = Signal()
        m.d.comb += host_fire.eq(self.host.valid & self.host.ready)
        addr = cmd.addr
        m.d.comb += [i_host.addr.eq(addr), w_host.addr.eq(addr), p_host.addr.eq(addr)]
        for b in range(2):
            m.d.comb += x_host[b].addr.eq(addr >> log_r)
        status_word = Signal(32)
        m.d.comb += status_word.eq(Cat(state, error, row_error, Const(0, 9), pc))
        with m.If(host_fire & cmd.write & good):
            # (a bank write fires only when bank_taken is low: no other writer this cycle)
            with m.Switch(cmd.mem):
                with m.Case(isa.MEM_IMEM):
                    m.d.comb += [i_wr.en.eq(1), i_wr.addr.eq(addr), i_wr.data.eq(cmd.data)]
                with m.Case(isa.MEM_WMEM):
                    m.d.comb += [w_wr.en.eq(1), w_wr.addr.eq(addr), w_wr.data.eq(cmd.data)]
                with m.Case(isa.MEM_PMEM):
                    m.d.comb += [p_wr.en.eq(1), p_wr.addr.eq(addr), p_wr.data.eq(cmd.data)]
                for b, code in enumerate((isa.MEM_BANK0, isa.MEM_BANK1)):
                    with m.Case(code):
                        m.d.comb += row_write(b, addr, cmd.data[:row_w], full_row)
        with m.If(host_fire & ~cmd.write):
            m.d.sync += [rd_pending.eq(1), rd_mem.eq(cmd.mem), rd_good.eq(good),
                         rd_sel.eq(addr[:log_r] if log_r else 0)]
            with m.Switch(addr):
                for i, name in enumerate(REG_NAMES):
                    with m.Case(i):
                        m.d.sync += rd_reg.eq(status_word if name == "status" else regs[name])
        with m.If(rd_pending):
            m.d.sync += [rd_pending.eq(0), rsp_valid.eq(1)]
            with m.If(~rd_good):
                m.d.sync += rsp_data.eq(0)
            with m.Else():
                with m.Switch(rd_mem):
                    with m.Case(isa.MEM_IMEM):
                        m.d.sync += rsp_data.eq(i_host.data)
                    with m.Case(isa.MEM_WMEM):
                        m.d.sync += rsp_data.eq(w_host.data)
                    with m.Case(isa.MEM_PMEM):
                        m.d.sync += rsp_data.eq(p_host.data)
                    for b, code in enumerate((isa.MEM_BANK0, isa.MEM_BANK1)):
                        with m.Case(code):
                            words = [x_host[b].data[r * row_w:(r + 1) * row_w] for r in range(R)]
                            m.d.sync += rsp_data.eq(Array(words)[rd_sel] if R > 1 else words[0])
                    with m.Default():
                        m.d.sync += rsp_data.eq(rd_reg)
        m.d.comb += [self.rsp.valid.eq(rsp_valid), self.rsp.payload.data.eq(rsp_data),
                     self.rsp.payload.bad.eq(~rd_good)]
        with m.If(self.rsp.valid & self.rsp.ready):
            m.d.sync += rsp_valid.eq(0)

        # ---- decode and checks (golden.chip.decode + check, smallest code first) -------------
        word = i_fetch.data
        opcode = word[:4]

        def field(op, name):
            lsb, width = isa.LAYOUTS[op][name]
            return word[lsb:lsb + width]

        def reserved(op):
            used = 0xF
            for lsb, width in isa.LAYOUTS[op].values():
                used |= ((1 << width) - 1) << lsb
            return (word & Const(((1 << isa.INSTR_BITS) - 1) & ~used, isa.INSTR_BITS)) != 0

        G, S, W = isa.OP_GEMM, isa.OP_SEND, isa.OP_WAIT
        g = {name: field(G, name) for name in isa.LAYOUTS[G]}
        s = {name: field(S, name) for name in isa.LAYOUTS[S]}
        wt = {name: field(W, name) for name in isa.LAYOUTS[W]}
        log_max_m = exact_log2(p["max_m"])
        m_mask = Signal(8)
        m.d.comb += m_mask.eq((Const(1, 9) << g["m_log2"]) - 1)
        nz = Signal(24)
        m.d.comb += nz.eq((g["k"] >> g["m_log2"]) << g["n_log2"])
        bpr = Signal(24)
        m.d.comb += bpr.eq(div_const(nz + (P - 1), P, 25))
        w_words = Signal(41)
        m.d.comb += w_words.eq(g["o"] * bpr)
        err_gemm = [
            (isa.ERR_NM, (g["m_log2"] > log_max_m) | (g["n_log2"] > g["m_log2"])),
            (isa.ERR_K, (g["k"] == 0) | (g["k"] > p["max_k"]) | ((g["k"] & m_mask) != 0)
             | ((g["k"] & (R - 1)) != 0 if R > 1 else Const(0))),
            (isa.ERR_O, g["o"] == 0),
            (isa.ERR_ALIGN, (g["x_addr"] & (R - 1)) != 0 if R > 1 else Const(0)),
            (isa.ERR_SRC_RANGE, g["x_addr"] + g["k"] > rows),
            (isa.ERR_W_RANGE, g["w_addr"] + w_words > p["wmem_depth"]),
            (isa.ERR_P_RANGE, g["p_addr"] + g["o"] > p["pmem_depth"]),
            (isa.ERR_DST_RANGE, g["d_addr"] + g["o"] > rows),
            (isa.ERR_NODE, (g["mask"] >> p["subsystems"]) != 0),
        ]
        err_send = [
            (isa.ERR_SRC_RANGE, s["s_addr"] + s["count"] > rows),
            (isa.ERR_DST_RANGE, s["r_addr"] + s["count"] > rows),
            (isa.ERR_NODE, (s["mask"] >> p["subsystems"]) != 0),
        ]
        dec_err = Signal(4)

        def first_error(items):
            stmts = None
            for code, cond in reversed(items):
                stmts = Mux(cond, code, stmts if stmts is not None else 0)
            return stmts

        with m.Switch(opcode):
            with m.Case(G):
                m.d.comb += dec_err.eq(Mux(reserved(G), isa.ERR_RESERVED, first_error(err_gemm)))
            with m.Case(S):
                m.d.comb += dec_err.eq(Mux(reserved(S), isa.ERR_RESERVED, first_error(err_send)))
            with m.Case(W):
                m.d.comb += dec_err.eq(Mux(reserved(W), isa.ERR_RESERVED, 0))
            with m.Case(isa.OP_HALT):
                m.d.comb += dec_err.eq(Mux(reserved(isa.OP_HALT), isa.ERR_RESERVED, 0))
            with m.Default():
                m.d.comb += dec_err.eq(isa.ERR_OPCODE)

        # ---- sequencer -----------------------------------------------------------------------
        running = Signal()
        m.d.comb += running.eq(state == isa.RUNNING)
        with m.If(running):
            m.d.sync += regs["cycles"].eq(regs["cycles"] + 1)
        m.d.comb += [i_fetch.addr.eq(pc), i_fetch.en.eq(1)]
        wait_bank = Signal()
        wait_count = Signal(16)
        sub = [Signal(cbits, name=f"consume{b}") for b in range(2)]
        local_inc = [Signal(name=f"local_inc{b}") for b in range(2)]
        rx_inc = [Signal(name=f"rx_inc{b}") for b in range(2)]
        for b in range(2):
            m.d.comb += [local_inc[b].eq(out_write & (g_dbank == b)),
                         rx_inc[b].eq(rx_fire & rx_last & (rx.bank == b))]
            m.d.sync += arrived[b].eq(arrived[b] + local_inc[b] + rx_inc[b] - sub[b])
        wait_ok = Signal()
        m.d.comb += wait_ok.eq(Mux(wait_bank, arrived[1], arrived[0]) >= wait_count)

        def stop(code):
            return [state.eq(isa.ERROR), error.eq(code)]

        with m.FSM(name="seq") as fsm:
            with m.State("IDLE"):
                with m.If(self.start & ((state == isa.IDLE) | (state == isa.HALTED))):
                    m.d.sync += [pc.eq(0), state.eq(isa.RUNNING), row_error.eq(0),
                                 arrived[0].eq(0), arrived[1].eq(0)]
                    m.d.sync += [reg.eq(0) for reg in regs.values()]
                    m.next = "FETCH"
            with m.State("FETCH"):
                # the synchronous imem read of pc takes this cycle
                with m.If(pc == p["imem_depth"]):
                    m.d.sync += stop(isa.ERR_PC)
                    m.next = "STOP"
                with m.Else():
                    m.next = "EXEC"
            with m.State("EXEC"):
                with m.If(dec_err != 0):
                    m.d.sync += stop(dec_err)
                    m.next = "STOP"
                with m.Elif(opcode == isa.OP_HALT):
                    m.next = "HALT"
                with m.Elif(opcode == G):
                    m.d.comb += [act_go.eq(1), act_base.eq(g["x_addr"] >> log_r),
                                 act_count.eq(g["k"] >> log_r),
                                 w_go.eq(1), w_base.eq(g["w_addr"]), w_count.eq(w_words),
                                 p_go.eq(1), p_base.eq(g["p_addr"]), p_count.eq(g["o"])]
                    m.d.sync += [act_bank.eq(g["x_bank"]), cfg_valid.eq(1),
                                 cfg_reg.n_log2.eq(g["n_log2"]), cfg_reg.m_log2.eq(g["m_log2"]),
                                 cfg_reg.k.eq(g["k"]), cfg_reg.o.eq(g["o"]),
                                 cfg_reg.relu.eq(g["relu"]),
                                 g_busy.eq(1), g_dbank.eq(g["d_bank"]), g_drow.eq(g["d_addr"]),
                                 g_local.eq(g["mask"][me]),
                                 g_mask.eq(g["mask"] & ~(1 << me))]
                    m.next = "GEMM"
                with m.Elif(opcode == S):
                    m.d.sync += [s_busy.eq(1), s_bank.eq(s["s_bank"]), s_addr.eq(s["s_addr"]),
                                 s_left.eq(Mux(s["mask"] == 0, 0, s["count"])),
                                 s_drow.eq(s["r_addr"]), s_dbank.eq(s["r_bank"]),
                                 s_mask.eq(s["mask"])]
                    m.next = "SEND"
                with m.Else():          # WAIT
                    m.d.sync += [wait_bank.eq(wt["bank"]), wait_count.eq(wt["count"])]
                    m.next = "WAIT"
            with m.State("GEMM"):
                with m.If(~g_busy):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"
            with m.State("SEND"):
                with m.If(~s_busy):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"
            with m.State("WAIT"):
                with m.If(wait_ok):
                    m.d.comb += sub[0].eq(Mux(wait_bank, 0, wait_count))
                    m.d.comb += sub[1].eq(Mux(wait_bank, wait_count, 0))
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "FETCH"
                with m.Elif(self.deadlock):
                    m.d.sync += stop(isa.ERR_DEADLOCK)
                    m.next = "STOP"
                with m.Else():
                    m.d.sync += regs["wait_cycles"].eq(regs["wait_cycles"] + 1)
            with m.State("HALT"):
                with m.If(inj_idle & ~s_busy & ~g_busy):
                    m.d.sync += state.eq(isa.HALTED)
                    m.next = "IDLE"
            with m.State("STOP"):
                pass
        m.d.comb += [self.waiting.eq(fsm.ongoing("WAIT") & ~wait_ok),
                     self.blocked.eq(fsm.ongoing("WAIT") & ~wait_ok & inj_idle)]
        return m
