"""One SPU subsystem: the SPU, its local memories, a sequencer and a ring port.

The instruction set (encoding, fields, error codes, memory map) is :mod:`sparsehw.golden.chip`;
this module decodes exactly what :func:`sparsehw.golden.chip.decode` and
:func:`sparsehw.golden.chip.check` accept. See ``docs/chip.md``.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from sparsehw.params import Param, ParamSpec, Rule, boolean, int_in
from sparsehw.golden import chip as isa
from sparsehw.hw.act_engine import ActEngine
from sparsehw.hw.spu import SPU, spu_layouts
from sparsehw.hw.ring import inject_layout, eject_layout


__all__ = ["Subsystem", "SUBSYSTEM_PARAMS", "ACT_PARAMS_RTL", "REG_NAMES", "REGS_MEM",
           "host_layouts", "flit_format", "flit_min", "mem_depths", "div_const"]


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
def _act_engine_rule(values):
    lanes = values["lanes"]
    if lanes <= 16 and lanes & (lanes - 1) == 0:
        return boolean()
    return Rule("False unless lanes is a power of two <= 16 (the engine's lanes)",
                lambda v: v in (0,), (bool, int))


#: The activation engine's generation parameters, named as in
#: :data:`sparsehw.golden.chip.MODEL_PARAMS` (``act_engine`` needs ``lanes`` a power of two
#: <= 16, the engine's own limit).
ACT_PARAMS_RTL = (
    Param("act_engine", False, _act_engine_rule,
          doc=isa.MODEL_PARAMS["act_engine"].doc + "; builds an ActEngine per subsystem",
          allowed="a boolean (True needs lanes a power of two <= 16)"),
    isa.MODEL_PARAMS["act_max_row"],
)
SUBSYSTEM_PARAMS = ParamSpec(
    *isa.CHIP_PARAMS,
    *ACT_PARAMS_RTL,
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
    (:mod:`sparsehw.golden.chip`), each one fetched, decoded and checked ahead of time in a
    pipeline (instruction register, ``golden.chip.SEQ_CHECK_STAGES`` check stages, an issue
    slot; docs/chip.md "Sequencer pipeline"), so an instruction costs 2 cycles of its own, and
    a run 6 more to fill the pipeline. GEMM streams the operands from the memories into the SPU
    (each reader: the memory read, a data register, a 4-word FIFO; the register costs each GEMM
    one cycle, ``golden.chip.CYCLE_COSTS["gemm_read"]``) and delivers each output row, as it
    comes out, to its own bank (own ``mask`` bit) and over the ring to the other subsystems in
    ``mask``; SEND reads rows of a bank onto the ring; WAIT
    blocks until the arrival counter of a bank reaches its count; HALT waits for the ring
    injector to drain. Every field is checked before the instruction starts; a failing check
    (smallest code first) stops the subsystem in state ERROR with the code and the pc. A reset
    (``rst``, or the chip's host RESET) clears state, counters and errors, not the memories.

    Parameters
    ----------
    subsystems, lanes, macs, max_m, act_rows, max_k, imem_depth, wmem_depth, pmem_depth, bank_rows
        As :data:`sparsehw.golden.chip.CHIP_PARAMS` (``subsystems`` = nodes on the ring).
    act_engine : bool
        Build an :class:`sparsehw.hw.act_engine.ActEngine` (``lanes``, ``max_row =
        act_max_row``) and execute ACT (opcode 5; without it ACT is ``ERR_OPCODE``). True needs
        ``lanes`` a power of two <= 16. Default False.
    act_max_row : int
        Longest softmax/layernorm ACT (``count``), a power of two in ``2*lanes..4096``.
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
        pending and, for a write, the 2-entry write queue has room (for a read: it is empty); a
        queued write lands when its memory's write port is free (the sequencer's bank writes
        have priority), at the earliest the cycle after it was taken.
    rsp : Out(stream.Signature(StructLayout(data, bad 1)))
        One beat per read command, three cycles after it; held until taken.
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

        # Read ports the ACT unit shares (act_engine): their drivers are muxed with the ACT
        # unit's below, as whole expressions (no process that Icarus might not run at time 0).
        shared = {} if p["act_engine"] else None

        def drive(port, addr, en):
            if shared is None:
                m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
            else:
                shared[id(port)] = (port, addr, en)

        # ---- memory stream readers ---------------------------------------------------------
        def reader(name, rports, width, cnt_bits):
            """Streams ``count`` words from ``base`` of a read port (``sel`` picks one of
            ``rports``, which share address and enable); ``go`` loads base and count.

            A word takes three cycles to the FIFO's output: the memory read, a data register
            (each port's read data goes straight into a register, no logic after a block RAM's
            output; issue #14), then the FIFO write. A read issues while the FIFO has room for it
            and the two in flight (``rd_v``: read data on the port, ``q_v``: in the register);
            the credit loop is four cycles long, so the 4-word FIFO keeps one word per cycle."""
            go = Signal(name=f"{name}_go")
            base = Signal(len(rports[0].addr), name=f"{name}_base")
            count = Signal(cnt_bits, name=f"{name}_count")
            sel = Signal(name=f"{name}_sel")
            sel_q = Signal(name=f"{name}_sel_q")
            sel_qq = Signal(name=f"{name}_sel_qq")
            addr = Signal(len(rports[0].addr), name=f"{name}_addr")
            left = Signal(cnt_bits, name=f"{name}_left")
            rd_v = Signal(name=f"{name}_rd_v")
            q_v = Signal(name=f"{name}_q_v")
            fifo = SyncFIFO(width=width, depth=4)
            m.submodules[f"{name}_fifo"] = fifo
            issue = Signal(name=f"{name}_issue")
            m.d.comb += issue.eq((left != 0) & (fifo.level + rd_v + q_v < 4))
            for rport in rports:
                drive(rport, addr, issue)
            data_q = [Signal(width, name=f"{name}_q{i}") for i in range(len(rports))]
            m.d.sync += [q.eq(rport.data) for q, rport in zip(data_q, rports)]
            word = data_q[0] if len(rports) == 1 else Mux(sel_qq, data_q[1], data_q[0])
            m.d.comb += [fifo.w_en.eq(q_v), fifo.w_data.eq(word)]
            m.d.sync += [rd_v.eq(issue), q_v.eq(rd_v), sel_q.eq(sel), sel_qq.eq(sel_q)]
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
        if p["act_engine"]:
            act_wr = [Signal(name=f"act_wr{b}") for b in range(2)]
            m.d.comb += self.eject.ready.eq(~(out_write & (g_dbank == rx.bank))
                                            & ~Mux(rx.bank, act_wr[1], act_wr[0]))
        else:
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
        # A row read takes two cycles to the injector: the bank read (s_pending), then the
        # row registers (s_q: each bank's read data goes straight into its own register, the
        # bank multiplexer and the row select work from them; issue #14, docs/chip.md
        # "Sequencer pipeline").
        s_pending = Signal()
        s_pend_row = Signal(fl["row_bits"])
        s_pend_sel = Signal(max(1, log_r))
        s_q = Signal()
        s_q_row = Signal(fl["row_bits"])
        s_q_sel = Signal(max(1, log_r))
        s_q_words = [Signal(word_w, name=f"s_q_word{b}") for b in range(2)]
        s_issue = Signal()
        # at most 4 rows in the FIFO once the ones in flight have landed
        m.d.comb += s_issue.eq(s_busy & (s_left != 0) & (inj_fifo.level + s_pending + s_q < 4))
        for b in range(2):
            drive(x_send[b], s_addr >> log_r, s_issue)
        with m.If(s_issue):
            m.d.sync += [s_addr.eq(s_addr + 1), s_left.eq(s_left - 1), s_drow.eq(s_drow + 1),
                         s_pend_row.eq(s_drow),
                         s_pend_sel.eq(s_addr[:log_r] if log_r else 0)]
        m.d.sync += [s_pending.eq(s_issue), s_q.eq(s_pending)]
        with m.If(s_pending):
            m.d.sync += [s_q_words[0].eq(x_send[0].data), s_q_words[1].eq(x_send[1].data),
                         s_q_row.eq(s_pend_row), s_q_sel.eq(s_pend_sel)]
        s_q_word = Signal(word_w)
        m.d.comb += s_q_word.eq(Mux(s_bank, s_q_words[1], s_q_words[0]))
        send_row = Signal(row_w)
        if R > 1:
            m.d.comb += send_row.eq(Array(s_q_word[r * row_w:(r + 1) * row_w]
                                          for r in range(R))[s_q_sel])
        else:
            m.d.comb += send_row.eq(s_q_word)
        with m.If(s_busy & (s_left == 0) & ~s_pending & ~s_q):
            m.d.sync += s_busy.eq(0)

        inj_in = Signal(inj_layout)
        with m.If(send_from_out):
            m.d.comb += [inj_in.data.eq(out.payload.y.as_value()), inj_in.bank.eq(g_dbank),
                         inj_in.row.eq(g_drow), inj_in.mask.eq(g_mask)]
        with m.Else():
            m.d.comb += [inj_in.data.eq(send_row), inj_in.bank.eq(s_dbank),
                         inj_in.row.eq(s_q_row), inj_in.mask.eq(s_mask)]
        # A GEMM and a SEND never run at once (the sequencer runs one instruction at a time).
        m.d.comb += [inj_fifo.w_en.eq(send_from_out | s_q), inj_fifo.w_data.eq(inj_in)]

        # ---- ACT unit (act_engine): bank slices through the activation engine ----------------
        # (docs/chip.md, "ACT"): element-wise ops stream whole rows; softmax/layernorm run one
        # engine command per lane, gathering lane j of `count` rows and scattering the results
        # back into lane j (byte-lane writes); add runs in this datapath without the engine.
        act = None
        if p["act_engine"]:
            act = self._act_unit(m, row_write, x_send, x_act, p_rd, act_wr, row_error, shared)
            for port, addr, en in shared.values():        # ports the ACT unit does not use
                m.d.comb += [port.addr.eq(addr), port.en.eq(en)]

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
        rd_q = Signal(name="rd_q")             # the read data is in the *_host_q registers
        rd_mem = Signal(3)
        rd_good = Signal()
        rd_sel = Signal(max(1, log_r))
        rd_reg = Signal(32)
        # Host writes go through a 2-entry FIFO (issue #14): `host.ready` comes from registers
        # only (the FIFO's level, the read state), not from the sequencer's use of the bank
        # write ports this cycle; a queued write takes its memory's port when it is free (a
        # bank's: when no sequencer writer has it). Reads wait until the queue is empty, so a
        # read sees every earlier write; ISSUE waits for it too (a program never starts before
        # its last host write has landed).
        hw_layout = data.StructLayout({"mem": 3, "addr": len(cmd.addr), "data": len(cmd.data)})
        m.submodules.host_wfifo = hwf = SyncFIFO(width=hw_layout.size, depth=2)
        hw = Signal(hw_layout)
        m.d.comb += hw.eq(hwf.r_data)
        seq_writes = [(out_write & (g_dbank == b)) | (rx_fire & (rx.bank == b)) for b in range(2)]
        if act is not None:
            seq_writes = [seq_writes[b] | act_wr[b] for b in range(2)]
        hw_taken = Signal()
        m.d.comb += hw_taken.eq(((hw.mem == isa.MEM_BANK0) & seq_writes[0])
                                | ((hw.mem == isa.MEM_BANK1) & seq_writes[1]))
        m.d.comb += self.host.ready.eq(~rd_pending & ~rd_q & ~rsp_valid
                                       & Mux(cmd.write, hwf.w_rdy, ~hwf.r_rdy))
        host_fire = Signal()
        m.d.comb += host_fire.eq(self.host.valid & self.host.ready)
        m.d.comb += [hwf.w_en.eq(host_fire & cmd.write & good),
                     hwf.w_data.eq(Cat(cmd.mem, cmd.addr, cmd.data)),
                     hwf.r_en.eq(hwf.r_rdy & ~hw_taken)]
        addr = cmd.addr
        m.d.comb += [i_host.addr.eq(addr), w_host.addr.eq(addr), p_host.addr.eq(addr)]
        for b in range(2):
            m.d.comb += x_host[b].addr.eq(addr >> log_r)
        status_word = Signal(32)
        m.d.comb += status_word.eq(Cat(state, error, row_error, Const(0, 9), pc))
        m.d.comb += [i_wr.addr.eq(hw.addr), i_wr.data.eq(hw.data),
                     w_wr.addr.eq(hw.addr), w_wr.data.eq(hw.data),
                     p_wr.addr.eq(hw.addr), p_wr.data.eq(hw.data),
                     i_wr.en.eq(hwf.r_rdy & (hw.mem == isa.MEM_IMEM)),
                     w_wr.en.eq(hwf.r_rdy & (hw.mem == isa.MEM_WMEM)),
                     p_wr.en.eq(hwf.r_rdy & (hw.mem == isa.MEM_PMEM))]
        for b, code in enumerate((isa.MEM_BANK0, isa.MEM_BANK1)):
            # (only when hw_taken is low: no other writer of this bank this cycle)
            with m.If(hwf.r_rdy & (hw.mem == code) & ~seq_writes[b]):
                m.d.comb += row_write(b, hw.addr, hw.data[:row_w], full_row)
        with m.If(host_fire & ~cmd.write):
            m.d.sync += [rd_pending.eq(1), rd_mem.eq(cmd.mem), rd_good.eq(good),
                         rd_sel.eq(addr[:log_r] if log_r else 0)]
            with m.Switch(addr):
                for i, name in enumerate(REG_NAMES):
                    with m.Case(i):
                        m.d.sync += rd_reg.eq(status_word if name == "status" else regs[name])
        # The read data of every host port goes straight into a register (rd_q: no logic
        # after a block RAM's output), the response multiplexer works from those a cycle later.
        i_q, w_q, p_q = (Signal(len(port.data), name=f"{n}_host_q")
                         for n, port in (("imem", i_host), ("wmem", w_host), ("pmem", p_host)))
        x_q = [Signal(word_w, name=f"bank{b}_host_q") for b in range(2)]
        m.d.sync += rd_q.eq(rd_pending)
        with m.If(rd_pending):
            m.d.sync += [rd_pending.eq(0), i_q.eq(i_host.data), w_q.eq(w_host.data),
                         p_q.eq(p_host.data), x_q[0].eq(x_host[0].data),
                         x_q[1].eq(x_host[1].data)]
        with m.If(rd_q):
            m.d.sync += rsp_valid.eq(1)
            with m.If(~rd_good):
                m.d.sync += rsp_data.eq(0)
            with m.Else():
                with m.Switch(rd_mem):
                    with m.Case(isa.MEM_IMEM):
                        m.d.sync += rsp_data.eq(i_q)
                    with m.Case(isa.MEM_WMEM):
                        m.d.sync += rsp_data.eq(w_q)
                    with m.Case(isa.MEM_PMEM):
                        m.d.sync += rsp_data.eq(p_q)
                    for b, code in enumerate((isa.MEM_BANK0, isa.MEM_BANK1)):
                        with m.Case(code):
                            words = [x_q[b][r * row_w:(r + 1) * row_w] for r in range(R)]
                            m.d.sync += rsp_data.eq(Array(words)[rd_sel] if R > 1 else words[0])
                    with m.Default():
                        m.d.sync += rsp_data.eq(rd_reg)
        m.d.comb += [self.rsp.valid.eq(rsp_valid), self.rsp.payload.data.eq(rsp_data),
                     self.rsp.payload.bad.eq(~rd_good)]
        with m.If(self.rsp.valid & self.rsp.ready):
            m.d.sync += rsp_valid.eq(0)

        # ---- instruction pipeline: fetch, instruction register, decode and checks -------------
        # (docs/chip.md, "Sequencer pipeline"). The front end reads the word at `fa`, registers
        # it (`ir`), and evaluates golden.chip.decode + check (smallest code first) over
        # isa.SEQ_CHECK_STAGES register stages whose last one is the issue slot. It runs ahead
        # of the sequencer (prefetch: programs have no branches) and stalls while the slot is
        # full; a start, or a host write into imem, flushes it and refetches from the next
        # instruction not yet issued. Nothing combinational runs from the memory's read data
        # or from the checks into the datapath's enables.
        G, S, W = isa.OP_GEMM, isa.OP_SEND, isa.OP_WAIT
        kinds = [G, S, W, isa.OP_HALT] + ([isa.OP_ACT] if act is not None else [])
        adv = Signal(name="fe_adv")            # every front-end stage advances this cycle
        flush = Signal(name="fe_flush")
        flush_to = Signal(len(i_fetch.addr), name="fe_flush_to")
        fa = Signal(len(i_fetch.addr), name="fe_addr")
        fv = Signal(name="fe_read_valid")     # i_fetch.data holds a word fetched for the pipe
        m.d.comb += [i_fetch.addr.eq(fa), i_fetch.en.eq(adv)]
        with m.If(flush):
            m.d.sync += [fa.eq(flush_to), fv.eq(0)]
        with m.Elif(adv):
            m.d.sync += [fa.eq(fa + 1), fv.eq(1)]

        def stage(n, valid_in, values):
            """One register stage (loads with ``adv``): returns ``(valid, {name: register})``."""
            valid = Signal(name=f"fe{n}_valid")
            regs_n = {}
            for key, value in values.items():
                value = Value.cast(value)
                reg = Signal(value.shape(), name=f"fe{n}_{key}")
                regs_n[key] = reg
                with m.If(adv):
                    m.d.sync += reg.eq(value)
            with m.If(flush):
                m.d.sync += valid.eq(0)
            with m.Elif(adv):
                m.d.sync += valid.eq(valid_in)
            return valid, regs_n

        def field(word, op, name):
            lsb, width = isa.LAYOUTS[op][name]
            return word[lsb:lsb + width]

        def reserved(word, op):
            used = 0xF
            for lsb, width in isa.LAYOUTS[op].values():
                used |= ((1 << width) - 1) << lsb
            return (word & Const(((1 << isa.INSTR_BITS) - 1) & ~used, isa.INSTR_BITS)) != 0

        def first_error(items):
            out = Const(0, 4)
            for code, cond in reversed(items):
                out = Mux(cond, code, out)
            return out

        # stage 1: the instruction register
        v1, s1 = stage(1, fv, {"word": i_fetch.data})
        # stage 2: opcode, reserved bits, every check that needs no product (booleans), nz
        word = s1["word"]
        opcode = word[:4]
        g = {name: field(word, G, name) for name in isa.LAYOUTS[G]}
        s = {name: field(word, S, name) for name in isa.LAYOUTS[S]}
        log_max_m = exact_log2(p["max_m"])
        nz_bits = p["max_k"].bit_length()      # nz <= k <= max_k once ERR_NM and ERR_K pass
        c2 = {"word": word, "res": Const(0, 1)}
        for op in kinds:
            c2[f"is{op}"] = opcode == op
            c2["res"] = c2["res"] | ((opcode == op) & reserved(word, op))
        m_mask = (Const(1, 9) << g["m_log2"]) - 1
        c2.update({
            "g_nm": (g["m_log2"] > log_max_m) | (g["n_log2"] > g["m_log2"]),
            "g_k": (g["k"] == 0) | (g["k"] > p["max_k"]) | ((g["k"] & m_mask) != 0)
            | ((g["k"] & (R - 1)) != 0 if R > 1 else Const(0)),
            "g_o": g["o"] == 0,
            "g_align": (g["x_addr"] & (R - 1)) != 0 if R > 1 else Const(0),
            "g_src": g["x_addr"] + g["k"] > rows,
            "g_p": g["p_addr"] + g["o"] > p["pmem_depth"],
            "g_dst": g["d_addr"] + g["o"] > rows,
            "g_node": (g["mask"] >> p["subsystems"]) != 0,
            "nz": ((g["k"] >> g["m_log2"]) << g["n_log2"])[:nz_bits],
            "s_src": s["s_addr"] + s["count"] > rows,
            "s_dst": s["r_addr"] + s["count"] > rows,
            "s_node": (s["mask"] >> p["subsystems"]) != 0,
        })
        if act is not None:
            av = {name: field(word, isa.OP_ACT, name) for name in isa.LAYOUTS[isa.OP_ACT]}
            a_add = av["op"] == isa.ACT_ADD
            a_ln = av["op"] == isa.ACT_OPS["layernorm"]
            a_row = (av["op"] == isa.ACT_OPS["softmax"]) | a_ln

            def overlap(bank, addr):
                dist = Mux(addr > av["d_addr"], addr - av["d_addr"], av["d_addr"] - addr)
                return (bank == av["d_bank"]) & (addr != av["d_addr"]) & (dist < av["count"])
            c2.update({
                "a_op": av["op"] == 7,
                "a_res": (~a_add & (av["b_bank"] | (av["b_addr"] != 0)))
                | (~a_ln & (av["p_addr"] != 0)),
                "a_k": (av["count"] == 0) | (a_row & (av["count"] > p["act_max_row"])),
                "a_src": (av["s_addr"] + av["count"] > rows)
                | (a_add & (av["b_addr"] + av["count"] > rows)),
                "a_p": a_ln & (av["p_addr"] + av["count"] > p["pmem_depth"]),
                "a_dst": av["d_addr"] + av["count"] > rows,
                "a_ovl": overlap(av["s_bank"], av["s_addr"])
                | (a_add & overlap(av["b_bank"], av["b_addr"])),
            })
        v2, s2 = stage(2, v1, c2)
        # stage 3: weight words per row; the error codes in priority order around ERR_W_RANGE
        other = Mux(s2["res"], isa.ERR_RESERVED,
                    Mux(s2[f"is{S}"], first_error([(isa.ERR_SRC_RANGE, s2["s_src"]),
                                                   (isa.ERR_DST_RANGE, s2["s_dst"]),
                                                   (isa.ERR_NODE, s2["s_node"])]), 0))
        if act is not None:
            other = Mux(s2["res"] | ~s2[f"is{isa.OP_ACT}"], other,
                        Mux(s2["a_op"], isa.ERR_ACT_OP,
                            first_error([(isa.ERR_RESERVED, s2["a_res"]),
                                         (isa.ERR_K, s2["a_k"]),
                                         (isa.ERR_SRC_RANGE, s2["a_src"]),
                                         (isa.ERR_P_RANGE, s2["a_p"]),
                                         (isa.ERR_DST_RANGE, s2["a_dst"]),
                                         (isa.ERR_OVERLAP, s2["a_ovl"])])))
        known = 0
        for op in kinds:
            known = s2[f"is{op}"] | known
        c3 = {"word": s2["word"], **{f"is{op}": s2[f"is{op}"] for op in kinds},
              "bpr": div_const(s2["nz"] + (P - 1), P, nz_bits + 1)[:nz_bits],
              "g_pre": Mux(s2["res"], isa.ERR_RESERVED,
                           first_error([(isa.ERR_NM, s2["g_nm"]), (isa.ERR_K, s2["g_k"]),
                                        (isa.ERR_O, s2["g_o"]), (isa.ERR_ALIGN, s2["g_align"]),
                                        (isa.ERR_SRC_RANGE, s2["g_src"])])),
              "g_post": first_error([(isa.ERR_P_RANGE, s2["g_p"]),
                                     (isa.ERR_DST_RANGE, s2["g_dst"]),
                                     (isa.ERR_NODE, s2["g_node"])]),
              "other": Mux(known, other, isa.ERR_OPCODE)}
        v3, s3 = stage(3, v2, c3)
        # stage 4: the weight words of the GEMM (o * bpr)
        c4 = {key: value for key, value in s3.items() if key != "bpr"}
        c4["w_words"] = field(s3["word"], G, "o") * s3["bpr"]
        v4, s4 = stage(4, v3, c4)
        # stage 5, the issue slot: the weight range and the final error code
        w_range = field(s4["word"], G, "w_addr") + s4["w_words"] > p["wmem_depth"]
        c5 = {key: value for key, value in s4.items() if key not in ("g_pre", "g_post", "other")}
        c5["err"] = Mux(s4[f"is{G}"],
                        Mux(s4["g_pre"] != 0, s4["g_pre"],
                            Mux(w_range, isa.ERR_W_RANGE, s4["g_post"])),
                        s4["other"])
        slot_v, slot = stage(5, v4, c5)
        assert 4 == isa.SEQ_CHECK_STAGES       # stages 2..5: the model's issue_fill follows
        word = slot["word"]
        g = {name: field(word, G, name) for name in isa.LAYOUTS[G]}
        s = {name: field(word, S, name) for name in isa.LAYOUTS[S]}
        wt = {name: field(word, W, name) for name in isa.LAYOUTS[W]}
        if act is not None:
            av = {name: field(word, isa.OP_ACT, name) for name in isa.LAYOUTS[isa.OP_ACT]}
        w_words = slot["w_words"]

        # ---- sequencer -----------------------------------------------------------------------
        running = Signal()
        m.d.comb += running.eq(state == isa.RUNNING)
        with m.If(running):
            m.d.sync += regs["cycles"].eq(regs["cycles"] + 1)
        wait_bank = Signal()
        wait_count = Signal(16)
        consume = [Signal(name=f"consume{b}") for b in range(2)]
        local_inc = [Signal(name=f"local_inc{b}") for b in range(2)]
        rx_inc = [Signal(name=f"rx_inc{b}") for b in range(2)]
        enough = [Signal(name=f"enough{b}") for b in range(2)]
        for b in range(2):
            m.d.comb += [local_inc[b].eq(out_write & (g_dbank == b)),
                         rx_inc[b].eq(rx_fire & rx_last & (rx.bank == b)),
                         enough[b].eq(arrived[b] >= wait_count)]
            # Both next values are computed beside the comparison, which then only selects
            # one (the compare, the bank select and the subtraction in series were the
            # subsystem's critical path, stop 25: arrived1 -> arrived0, 32 levels), and the
            # increments, which come late (a row write, a ring delivery), are added last.
            inc = local_inc[b] + rx_inc[b]
            left = arrived[b] - wait_count
            m.d.sync += arrived[b].eq(Mux(consume[b], left + inc, arrived[b] + inc))
        wait_ok = Signal()
        m.d.comb += wait_ok.eq(Mux(wait_bank, enough[1], enough[0]))
        start_go = Signal()
        imem_written = Signal()

        def stop(code):
            return [state.eq(isa.ERROR), error.eq(code)]

        with m.FSM(name="seq") as fsm:
            with m.State("IDLE"):
                with m.If(self.start & ((state == isa.IDLE) | (state == isa.HALTED))):
                    m.d.comb += start_go.eq(1)
                    m.d.sync += [pc.eq(0), state.eq(isa.RUNNING), row_error.eq(0),
                                 arrived[0].eq(0), arrived[1].eq(0)]
                    m.d.sync += [reg.eq(0) for reg in regs.values()]
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                # the instruction at pc waits in the issue slot (after a start or a flush: until
                # the pipeline has filled)
                with m.If(pc == p["imem_depth"]):
                    m.d.sync += stop(isa.ERR_PC)
                    m.next = "STOP"
                with m.Elif(~slot_v | imem_written | hwf.r_rdy):
                    pass
                with m.Elif(slot["err"] != 0):
                    m.d.sync += stop(slot["err"])
                    m.next = "STOP"
                with m.Elif(slot[f"is{isa.OP_HALT}"]):
                    m.next = "HALT"
                with m.Elif(slot[f"is{G}"]):
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
                with m.Elif(slot[f"is{S}"]):
                    m.d.sync += [s_busy.eq(1), s_bank.eq(s["s_bank"]), s_addr.eq(s["s_addr"]),
                                 s_left.eq(Mux(s["mask"] == 0, 0, s["count"])),
                                 s_drow.eq(s["r_addr"]), s_dbank.eq(s["r_bank"]),
                                 s_mask.eq(s["mask"])]
                    m.next = "SEND"
                if act is not None:
                    with m.Elif(slot[f"is{isa.OP_ACT}"]):
                        fields, act_busy = act
                        m.d.sync += [act_busy.eq(1)] + [reg.eq(av[name])
                                                        for name, reg in fields.items()]
                        m.next = "ACT"
                with m.Else():          # WAIT
                    m.d.sync += [wait_bank.eq(wt["bank"]), wait_count.eq(wt["count"])]
                    m.next = "WAIT"
            with m.State("GEMM"):
                with m.If(~g_busy):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "ISSUE"
            with m.State("SEND"):
                with m.If(~s_busy):
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "ISSUE"
            if act is not None:
                with m.State("ACT"):
                    with m.If(~act[1]):
                        m.d.sync += pc.eq(pc + 1)
                        m.next = "ISSUE"
            with m.State("WAIT"):
                with m.If(wait_ok):
                    m.d.comb += [consume[0].eq(~wait_bank), consume[1].eq(wait_bank)]
                    m.d.sync += pc.eq(pc + 1)
                    m.next = "ISSUE"
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
        # The front end advances unless the slot holds an instruction not taken this cycle; a
        # flush (start, or the cycle after a host imem write: `imem_written`, a register, so
        # that the host port's ready logic does not reach the front end) restarts it at the
        # next instruction not yet issued: pc in ISSUE (which takes nothing while a flush is
        # due), pc + 1 while pc's instruction executes.
        in_issue = fsm.ongoing("ISSUE")
        m.d.sync += imem_written.eq(i_wr.en)
        m.d.comb += [
            adv.eq(~slot_v | in_issue),
            flush.eq(start_go | imem_written),
            flush_to.eq(Mux(start_go, 0, Mux(in_issue, pc, pc + 1))),
        ]
        m.d.comb += [self.waiting.eq(fsm.ongoing("WAIT") & ~wait_ok),
                     self.blocked.eq(fsm.ongoing("WAIT") & ~wait_ok & inj_idle)]
        return m

    def _act_unit(self, m, row_write, x_send, x_act, p_rd, act_wr, row_error, shared):
        """The ACT instruction's datapath (only with ``act_engine``; docs/chip.md, "ACT").

        Returns ``(fields, busy)``: the ACT field registers the sequencer loads with ``busy``,
        which stays high until the last row is written. The source rows are read through the
        SEND unit's bank ports, add's ``b`` rows through the GEMM activation ports and
        layernorm's gamma/beta through the post-op port (the sequencer runs one instruction at
        a time, so those units are idle); writes take the banks' write ports before the ring.
        """
        p = self._p
        L, R = p["lanes"], p["act_rows"]
        log_l, log_r = exact_log2(L), exact_log2(R)
        row_w = 8 * L
        rb = exact_log2(p["bank_rows"])
        chunk_rows = 65535 // L          # rows of one element-wise engine command
        m.submodules.act = eng = ActEngine(lanes=L, max_row=p["act_max_row"])
        fields = {name: Signal(width, name=f"act_{name}")
                  for name, (_, width) in isa.LAYOUTS[isa.OP_ACT].items()}
        busy = Signal(name="act_busy")
        is_ln = fields["op"] == isa.ACT_OPS["layernorm"]

        def reader(name, ports, bank, width, pick):
            """Streams ``count`` words (rows of a bank, or post-op words) from ``start`` into a
            4-word FIFO; ``go`` loads start and count."""
            go = Signal(name=f"{name}_go")
            start = Signal(len(ports[0].addr) + (log_r if bank is not None else 0),
                           name=f"{name}_start")
            count = Signal(17, name=f"{name}_count")
            addr = Signal(len(start), name=f"{name}_addr")
            left = Signal(17, name=f"{name}_left")
            inflight = Signal(name=f"{name}_inflight")
            fifo = SyncFIFO(width=width, depth=4)
            m.submodules[f"{name}_fifo"] = fifo
            issue = Signal(name=f"{name}_issue")
            m.d.comb += issue.eq((left != 0) & (fifo.level + inflight < 4))
            for port in ports:
                _, old_addr, old_en = shared.pop(id(port))
                m.d.comb += [port.addr.eq(Mux(busy, addr >> log_r if bank is not None else addr,
                                              old_addr)),
                             port.en.eq(Mux(busy, issue, old_en))]
            if bank is not None:
                bank_q = Signal(name=f"{name}_bank_q")
                sel_q = Signal(max(1, log_r), name=f"{name}_sel_q")
                m.d.sync += bank_q.eq(bank)
                if R > 1:
                    m.d.sync += sel_q.eq(addr[:log_r])
                word = Mux(bank_q, ports[1].data, ports[0].data)
                value = word.word_select(sel_q, row_w) if R > 1 else word
            else:
                value = pick(ports[0].data)
            m.d.comb += [fifo.w_en.eq(inflight), fifo.w_data.eq(value)]
            m.d.sync += inflight.eq(issue)
            with m.If(go):
                m.d.sync += [addr.eq(start), left.eq(count)]
            with m.Elif(issue):
                m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
            return go, start, count, fifo

        s_go, s_start, s_count, s_fifo = reader("act_s", x_send, fields["s_bank"], row_w, None)
        b_go, b_start, b_count, b_fifo = reader("act_b", x_act, fields["b_bank"], row_w, None)
        q_go, q_start, q_count, q_fifo = reader("act_p", [p_rd], None, 32, lambda d: d[:32])

        # ---- writes ----------------------------------------------------------------------------
        wr = Signal(name="act_wr")
        wr_row = Signal(rb, name="act_wr_row")
        wr_val = Signal(row_w, name="act_wr_val")
        wr_en = Signal(L, name="act_wr_en")
        for b in range(2):
            m.d.comb += act_wr[b].eq(wr & (fields["d_bank"] == b))
            with m.If(act_wr[b]):
                m.d.comb += row_write(b, wr_row, wr_val, wr_en)

        def to8(value, shift):
            """``sat8(rshift_round(value, shift))`` (round half up, saturate)."""
            rnd = (Const(1, 2) << shift) >> 1
            t = (value + rnd) >> shift
            return Mux(t > 127, 127, Mux(t < -128, -128, t))[:8]

        y8 = Signal(row_w, name="act_y8")
        m.d.comb += y8.eq(Cat(*[to8(eng.o.payload.y[e], fields["oshift"]) for e in range(L)]))

        # ---- row-wise gather (lane `lane` of consecutive rows -> engine beats) ---------------
        lane = Signal(max(1, log_l), name="act_lane")
        i_fire = Signal(name="act_i_fire")
        p_fire = Signal(name="act_p_fire")
        m.d.comb += [i_fire.eq(eng.i.valid & eng.i.ready), p_fire.eq(eng.p.valid & eng.p.ready)]
        gathering = Signal(name="act_gathering")

        def gather(name, fifo, bits, extract, fire):
            buf = Signal(bits * L, name=f"{name}_buf")
            valid = Signal(name=f"{name}_valid")
            pos = Signal(max(1, log_l), name=f"{name}_pos")
            left = Signal(17, name=f"{name}_left")
            pop = Signal(name=f"{name}_pop")
            m.d.comb += pop.eq(gathering & fifo.r_rdy & (left != 0) & (~valid | fire))
            with m.If(fire):
                m.d.sync += [valid.eq(0), buf.eq(0)]
            with m.If(pop):
                for e in range(L):
                    with m.If(pos == e):
                        m.d.sync += buf[e * bits:(e + 1) * bits].eq(extract(fifo.r_data))
                m.d.sync += [pos.eq(pos + 1), left.eq(left - 1)]
                with m.If((pos == L - 1) | (left == 1)):
                    m.d.sync += [valid.eq(1), pos.eq(0)]
            init = [buf.eq(0), valid.eq(0), pos.eq(0), left.eq(fields["count"])]
            return buf, valid, pop, init

        gx, gx_valid, gx_pop, gx_init = gather(
            "act_gx", s_fifo, 8, lambda row: row.word_select(lane, 8) if L > 1 else row, i_fire)
        gp, gp_valid, gp_pop, gp_init = gather("act_gp", q_fifo, 32, lambda w: w, p_fire)
        m.d.comb += [
            eng.p.valid.eq(gp_valid),
            eng.p.payload.gamma.eq(Cat(*[gp[32 * e:32 * e + 16] for e in range(L)])),
            eng.p.payload.beta.eq(Cat(*[gp[32 * e + 16:32 * e + 32] for e in range(L)])),
            q_fifo.r_en.eq(gp_pop),
        ]

        # ---- row-wise scatter (an output beat -> lane `lane` of `lanes` rows) ----------------
        sc_valid = Signal(name="act_sc_valid")
        sc_y = Signal(row_w, name="act_sc_y")
        sc_pos = Signal(max(1, log_l), name="act_sc_pos")
        out_left = Signal(17, name="act_out_left")
        sc_end = Signal(name="act_sc_end")     # the scatter's last write of this beat
        m.d.comb += sc_end.eq(sc_valid & ((sc_pos == L - 1) | (out_left == 1)))

        left = Signal(17, name="act_left")      # element-wise: rows not yet commanded; add: rows
        src = Signal(rb, name="act_src")
        wrow = Signal(rb, name="act_wrow")
        chunk = Signal(17, name="act_chunk")
        both = Signal(name="act_add_both")
        m.d.comb += chunk.eq(Mux(left > chunk_rows, chunk_rows, left))
        is_add = fields["op"] == isa.ACT_ADD
        is_row = (fields["op"] == isa.ACT_OPS["softmax"]) | is_ln
        # The FSM holds only registers; every comb output is one expression of the state below.
        with m.FSM(name="act") as fsm:
            with m.State("IDLE"):
                with m.If(busy):
                    m.d.sync += [wrow.eq(fields["d_addr"]), src.eq(fields["s_addr"]),
                                 left.eq(fields["count"]), lane.eq(0)]
                    with m.If(is_add):
                        m.next = "ADD"
                    with m.Elif(is_row):
                        m.next = "CMD_ROW"
                    with m.Else():
                        m.next = "CMD_ELEM"
            with m.State("CMD_ELEM"):
                with m.If(eng.cmd.ready):
                    m.d.sync += [src.eq(src + chunk), left.eq(left - chunk)]
                    m.next = "ELEM"
            with m.State("ELEM"):
                with m.If(eng.o.valid):
                    m.d.sync += wrow.eq(wrow + 1)
                    with m.If(eng.o.payload.domain != 0):
                        m.d.sync += row_error.eq(1)
                    with m.If(eng.o.payload.last):
                        with m.If(left == 0):
                            m.d.sync += busy.eq(0)
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "CMD_ELEM"
            with m.State("CMD_ROW"):
                with m.If(eng.cmd.ready):
                    m.d.sync += gx_init + gp_init + [out_left.eq(fields["count"]),
                                                     wrow.eq(fields["d_addr"]), sc_valid.eq(0)]
                    m.next = "ROW"
            with m.State("ROW"):
                with m.If(sc_valid):
                    m.d.sync += [wrow.eq(wrow + 1), sc_pos.eq(sc_pos + 1),
                                 out_left.eq(out_left - 1)]
                    with m.If(sc_end):
                        m.d.sync += sc_valid.eq(0)
                        with m.If(out_left == 1):
                            with m.If(lane == L - 1):
                                m.d.sync += busy.eq(0)
                                m.next = "IDLE"
                            with m.Else():
                                m.d.sync += lane.eq(lane + 1)
                                m.next = "CMD_ROW"
                with m.If(eng.o.valid & eng.o.ready):      # after the above: takes priority
                    m.d.sync += [sc_valid.eq(1), sc_y.eq(y8), sc_pos.eq(0)]
            with m.State("ADD"):
                with m.If(both):
                    m.d.sync += [wrow.eq(wrow + 1), left.eq(left - 1)]
                    with m.If(left == 1):
                        m.d.sync += busy.eq(0)
                        m.next = "IDLE"
        st = {name: fsm.ongoing(name) for name in ("IDLE", "CMD_ELEM", "ELEM", "CMD_ROW", "ROW",
                                                    "ADD")}
        cmd_fire = (st["CMD_ELEM"] | st["CMD_ROW"]) & eng.cmd.ready
        s_row, b_row = s_fifo.r_data, b_fifo.r_data
        total = [(s_row.word_select(e, 8).as_signed() << fields["fin"])
                 + (b_row.word_select(e, 8).as_signed() << fields["fout"]) for e in range(L)]
        scatter = Cat(*[sc_y.word_select(sc_pos, 8) if L > 1 else sc_y] * L)
        m.d.comb += [
            both.eq(s_fifo.r_rdy & b_fifo.r_rdy),
            s_go.eq((st["IDLE"] & busy & is_add) | cmd_fire),
            s_start.eq(Mux(st["CMD_ELEM"], src, fields["s_addr"])),
            s_count.eq(Mux(st["CMD_ELEM"], chunk, fields["count"])),
            b_go.eq(st["IDLE"] & busy & is_add),
            b_start.eq(fields["b_addr"]), b_count.eq(fields["count"]),
            q_go.eq(st["CMD_ROW"] & eng.cmd.ready & is_ln),
            q_start.eq(fields["p_addr"]), q_count.eq(fields["count"]),
            eng.cmd.valid.eq(st["CMD_ELEM"] | st["CMD_ROW"]),
            eng.cmd.payload.op.eq(fields["op"]),
            eng.cmd.payload.n.eq(Mux(st["CMD_ELEM"], chunk << log_l, fields["count"])),
            eng.cmd.payload.fin.eq(fields["fin"]),
            eng.cmd.payload.fout.eq(fields["fout"]),
            gathering.eq(st["ROW"]),
            eng.i.valid.eq(Mux(st["ELEM"], s_fifo.r_rdy, st["ROW"] & gx_valid)),
            eng.i.payload.x.eq(Mux(st["ELEM"], s_fifo.r_data, gx)),
            s_fifo.r_en.eq((st["ELEM"] & eng.i.ready) | gx_pop | (st["ADD"] & both)),
            b_fifo.r_en.eq(st["ADD"] & both),
            eng.o.ready.eq(st["ELEM"] | (st["ROW"] & (~sc_valid | (sc_end & (out_left != 1))))),
            wr.eq((st["ELEM"] & eng.o.valid) | (st["ROW"] & sc_valid) | (st["ADD"] & both)),
            wr_row.eq(wrow),
            wr_val.eq(Mux(st["ELEM"], y8, Mux(st["ROW"], scatter,
                                               Cat(*[to8(t, fields["oshift"]) for t in total])))),
            wr_en.eq(Mux(st["ROW"], Const(1, L) << lane, (1 << L) - 1)),
        ]
        return fields, busy
