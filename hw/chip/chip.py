"""The chip: ``subsystems`` SPU subsystems on a bidirectional ring, and a host port."""

from amaranth.hdl import Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sparsehw.params import ParamSpec
from sparsehw.golden import chip as isa
from sparsehw.hw.ring import Ring
from sparsehw.hw.chip.subsystem import (ACT_PARAMS_RTL, FLIT_PARAM, REGS_MEM, Subsystem,
                                        host_layouts, _ring_nodes)


__all__ = ["Chip", "CHIP_RTL_PARAMS", "HOST_OPS", "CHIP_MEM", "CHIP_REG_NAMES",
           "chip_host_layouts"]


#: The chip RTL's generation parameters: the chip model's (:data:`sparsehw.golden.chip.MODEL_PARAMS`,
#: the activation engine included) plus the ring flit width.
CHIP_RTL_PARAMS = ParamSpec(*isa.CHIP_PARAMS, *ACT_PARAMS_RTL, FLIT_PARAM)

#: Host command ``op`` codes.
HOST_OPS = {"write": 0, "read": 1, "start": 2, "reset": 3}
#: ``mem`` code of the chip-level registers (``op = read``, any ``sub``).
CHIP_MEM = 6
#: Chip-level registers by address (32 bits each).
CHIP_REG_NAMES = ("status", "cycles", "ring_flits", "ring_wait_cycles", "ring_busy_cycles")


def chip_host_layouts(p):
    """Host command and response payloads of a chip with validated parameters ``p``."""
    sub = host_layouts({**p, "index": 0})
    return {
        "cmd": data.StructLayout({"op": 2, "sub": 4, "mem": 3,
                                  "addr": sub["cmd"]["addr"].shape,
                                  "data": sub["cmd"]["data"].shape}),
        "rsp": data.StructLayout({"data": sub["rsp"]["data"].shape, "bad": 1}),
    }


class Chip(wiring.Component):
    """``subsystems`` :class:`Subsystem` s on a :class:`sparsehw.hw.ring.Ring`, with a host port.

    The host loads every memory of every subsystem, starts the chip, and reads memories,
    statuses and counters back, all through one command stream and one response stream. The
    workload then runs without the host: each subsystem's sequencer runs its program, and rows
    travel between subsystems over the ring (``width = flit_width``). With one subsystem there
    is no ring: the subsystem's injection port loops back to its ejection port.

    Host commands (``cmd`` payload ``op, sub, mem, addr, data``):

    - ``op = 0`` write: ``data`` to word ``addr`` of memory ``mem`` of subsystem ``sub``
      (memory map: :mod:`sparsehw.golden.chip`; banks by row).
    - ``op = 1`` read: one ``rsp`` beat with word ``addr`` of ``mem`` of subsystem ``sub``;
      ``mem = 5`` reads the subsystem's status/counters (:data:`REG_NAMES`), ``mem = 6`` the
      chip's (:data:`CHIP_REG_NAMES`; ``status`` bit 0 = done, bit 1 = running, bit 2 = a
      subsystem stopped on an error).
    - ``op = 2`` start: every subsystem runs its program from address 0 (ignored while running).
    - ``op = 3`` reset: every subsystem and the ring return to IDLE (state, error, pc, counters,
      FIFOs, flits in flight); memories keep their contents.

    A command naming ``sub >= subsystems`` or an address outside the map is ignored; a read of
    one answers ``bad = 1``.

    Parameters
    ----------
    subsystems : int
        1..16 (default 4).
    lanes, macs, max_m, act_rows, max_k, imem_depth, wmem_depth, pmem_depth, bank_rows
        Per subsystem, as :data:`sparsehw.golden.chip.CHIP_PARAMS`.
    act_engine : bool
        An :class:`sparsehw.hw.act_engine.ActEngine` per subsystem, so that ACT (opcode 5)
        executes (default False: ``ERR_OPCODE``, and the Verilog of the chip without it).
        True needs ``lanes`` a power of two <= 16.
    act_max_row : int
        The engines' ``max_row`` (longest softmax/layernorm ACT), a power of two in
        ``2*lanes..4096``; default 256.
    flit_width : int
        Ring payload bits per flit (:func:`sparsehw.hw.chip.subsystem.flit_format`).

    Attributes
    ----------
    cmd : In(stream.Signature(StructLayout(op 2, sub 4, mem 3, addr, data)))
        Host commands. Back-pressure: one command at a time; a read holds the port until its
        answer has been taken; a start or reset holds it for one cycle, while it acts (it
        reaches the subsystems and the ring from a register, a cycle after it is taken).
    rsp : Out(stream.Signature(StructLayout(data, bad 1)))
        One beat per read command, in order; latency 3 cycles plus the subsystem's port wait.
    done : Out(1)
        Started, and every subsystem halted or stopped on an error with no flit in flight; a
        register, a cycle after the ``status`` register's done bit, low from the cycle after a
        start or reset command is taken.

    Raises
    ------
    TypeError, ValueError
        A parameter of the wrong type or out of range (:data:`CHIP_RTL_PARAMS`).
    """

    def __init__(self, **params):
        self._p = CHIP_RTL_PARAMS.validate(**params)
        self._lay = chip_host_layouts(self._p)
        super().__init__({
            "cmd": In(stream.Signature(self._lay["cmd"])),
            "rsp": Out(stream.Signature(self._lay["rsp"])),
            "done": Out(1),
        })

    params = property(lambda self: dict(self._p), doc="Validated generation parameters.")
    layouts = property(lambda self: dict(self._lay), doc="Host command/response layouts.")

    def elaborate(self, platform):
        m = Module()
        p = self._p
        k = p["subsystems"]
        # The host's start and reset reach the subsystems and the ring from a register, a cycle
        # after the command is taken (issue 14: from the command handshake they were one
        # combinational path across the chip into every subsystem's reset and start logic,
        # 31 ns placed); the host port is busy while they act (`busy` below). One register
        # each: Yosys merges copies with the same input (a `keep` on the signal does not stop
        # it), so per-part copies would not be a reset tree in the netlist.
        reset_cmd = Signal()
        start_cmd = Signal()
        reset_q = Signal()
        start_q = Signal()
        m.d.sync += [reset_q.eq(reset_cmd), start_q.eq(start_cmd)]
        subs = []
        for i in range(k):
            sub = Subsystem(**p, index=i)
            m.submodules[f"sub{i}"] = ResetInserter(reset_q)(sub)
            m.d.comb += sub.start.eq(start_q)
            subs.append(sub)
        if k > 1:
            ring = Ring(nodes=k, width=p["flit_width"])
            m.submodules.ring = ResetInserter(reset_q)(ring)
            for i, sub in enumerate(subs):
                wiring.connect(m, sub.inject, ring.inject[i])
                wiring.connect(m, ring.eject[i], sub.eject)
            injects = [sub.inject.valid & sub.inject.ready for sub in subs]
            ejects = [sub.eject.valid & sub.eject.ready for sub in subs]
        else:
            sub = subs[0]
            m.d.comb += [sub.eject.valid.eq(sub.inject.valid),
                         sub.inject.ready.eq(sub.eject.ready),
                         sub.eject.payload.payload.eq(sub.inject.payload.payload)]
            injects, ejects = [Const(0)], [Const(0)]

        # ---- flits in flight, deadlock, done -------------------------------------------------
        # Flits in flight from the ring ports' handshakes of the cycle before, registered at
        # each port (issue 14: the count summed the handshakes themselves, one combinational
        # path from every node's ejection logic across the chip into the counter, 21.5 ns
        # placed). in_flight is the count up to the cycle before; adding the registered
        # handshakes gives the same count, in the same cycle, as counting them directly.
        fired_in = [Signal(name=f"inject_fired{i}") for i in range(len(injects))]
        fired_out = [Signal(name=f"eject_fired{i}") for i in range(len(ejects))]
        last_count = Signal(16)
        in_flight = Signal(16)
        n_in = sum(fired_in)
        n_out = sum(fired_out)
        m.d.comb += in_flight.eq(last_count + n_in - n_out)
        with m.If(reset_q):             # the flits of the cycle before are reset with the ring
            m.d.sync += [last_count.eq(0)] + [f.eq(0) for f in fired_in + fired_out]
        with m.Else():
            m.d.sync += [last_count.eq(in_flight)]
            m.d.sync += [f.eq(x) for f, x in zip(fired_in + fired_out, injects + ejects)]
        states = [sub.status.state for sub in subs]
        all_stopped = Signal()
        m.d.comb += all_stopped.eq(_all([(s == isa.HALTED) | (s == isa.ERROR) for s in states]))
        quiet = Signal()
        m.d.comb += quiet.eq(_all([(s != isa.RUNNING) | sub.blocked
                                   for s, sub in zip(states, subs)])
                             & _any([sub.blocked for sub in subs]) & (in_flight == 0))
        quiet_q = Signal()
        m.d.sync += quiet_q.eq(quiet & ~reset_q)
        for sub in subs:
            m.d.comb += sub.deadlock.eq(quiet & quiet_q)

        started = Signal()
        done = Signal()
        # (not in the cycle the start command acts: the subsystems still show the last run's
        # end then)
        m.d.comb += done.eq(started & ~start_q & all_stopped & (in_flight == 0))
        # the port from a register (a cycle after the status bit): a glitch-free level, and
        # low from the cycle after a start or reset command is taken
        done_q = Signal()
        m.d.sync += done_q.eq(done & ~start_cmd & ~reset_cmd)
        m.d.comb += self.done.eq(done_q)
        cregs = {name: Signal(32, name=f"chip_{name}") for name in CHIP_REG_NAMES[1:]}
        with m.If(started & ~done):
            m.d.sync += cregs["cycles"].eq(cregs["cycles"] + 1)
            m.d.sync += cregs["ring_flits"].eq(cregs["ring_flits"] + n_in)
            m.d.sync += cregs["ring_wait_cycles"].eq(cregs["ring_wait_cycles"]
                                                     + sum(sub.waiting for sub in subs))
            with m.If(in_flight != 0):
                m.d.sync += cregs["ring_busy_cycles"].eq(cregs["ring_busy_cycles"] + 1)
        with m.If(start_q):             # the cycle the subsystems take the start
            m.d.sync += [started.eq(1)] + [reg.eq(0) for reg in cregs.values()]

        # ---- host commands ---------------------------------------------------------------------
        cmd = self.cmd.payload
        any_error = _any([s == isa.ERROR for s in states])
        chip_status = Signal(32)
        m.d.comb += chip_status.eq(done | (started & ~done) << 1 | any_error << 2)
        rsp_valid = Signal()
        rsp_data = Signal(len(self.rsp.payload.data))
        rsp_bad = Signal()
        m.d.comb += [self.rsp.valid.eq(rsp_valid), self.rsp.payload.data.eq(rsp_data),
                     self.rsp.payload.bad.eq(rsp_bad)]
        with m.If(self.rsp.valid & self.rsp.ready):
            m.d.sync += rsp_valid.eq(0)
        sub_ok = Signal()
        m.d.comb += sub_ok.eq(cmd.sub < k)
        waiting_rsp = Signal()          # a read was handed to a subsystem; its answer is due
        wait_sub = Signal(range(max(k, 2)))
        is_chip_read = (cmd.op == HOST_OPS["read"]) & (cmd.mem == CHIP_MEM)
        for i, sub in enumerate(subs):
            m.d.comb += [sub.host.payload.write.eq(cmd.op == HOST_OPS["write"]),
                         sub.host.payload.mem.eq(cmd.mem), sub.host.payload.addr.eq(cmd.addr),
                         sub.host.payload.data.eq(cmd.data),
                         sub.rsp.ready.eq(waiting_rsp & (wait_sub == i) & ~rsp_valid)]
        to_sub = Signal()
        m.d.comb += to_sub.eq(((cmd.op == HOST_OPS["write"]) | (cmd.op == HOST_OPS["read"]))
                              & ~is_chip_read & sub_ok)
        sub_ready = Signal()
        with m.Switch(cmd.sub):
            for i, sub in enumerate(subs):
                with m.Case(i):
                    m.d.comb += [sub.host.valid.eq(self.cmd.valid & to_sub & ~waiting_rsp
                                                   & ~rsp_valid),
                                 sub_ready.eq(sub.host.ready)]
        busy = waiting_rsp | rsp_valid | reset_q | start_q
        with m.If(to_sub):
            m.d.comb += self.cmd.ready.eq(~busy & sub_ready)
        with m.Else():
            m.d.comb += self.cmd.ready.eq(~busy)
        fire = Signal()
        m.d.comb += fire.eq(self.cmd.valid & self.cmd.ready)
        with m.If(fire):
            with m.If(to_sub & (cmd.op == HOST_OPS["read"])):
                m.d.sync += [waiting_rsp.eq(1), wait_sub.eq(cmd.sub)]
            with m.Elif(is_chip_read):
                m.d.sync += [rsp_valid.eq(1), rsp_bad.eq(cmd.addr >= len(CHIP_REG_NAMES)),
                             rsp_data.eq(0)]
                with m.Switch(cmd.addr):
                    for i, name in enumerate(CHIP_REG_NAMES):
                        with m.Case(i):
                            m.d.sync += rsp_data.eq(chip_status if name == "status"
                                                    else cregs[name])
            with m.Elif(cmd.op == HOST_OPS["read"]):       # unknown subsystem
                m.d.sync += [rsp_valid.eq(1), rsp_bad.eq(1), rsp_data.eq(0)]
            with m.Elif(cmd.op == HOST_OPS["start"]):
                with m.If(~(started & ~done)):
                    m.d.comb += start_cmd.eq(1)
            with m.Elif(cmd.op == HOST_OPS["reset"]):
                m.d.comb += reset_cmd.eq(1)
                m.d.sync += started.eq(0)
        with m.Switch(wait_sub):
            for i, sub in enumerate(subs):
                with m.Case(i):
                    with m.If(waiting_rsp & sub.rsp.valid & ~rsp_valid):
                        m.d.sync += [waiting_rsp.eq(0), rsp_valid.eq(1),
                                     rsp_data.eq(sub.rsp.payload.data),
                                     rsp_bad.eq(sub.rsp.payload.bad)]
        return m


def _all(items):
    out = Const(1)
    for item in items:
        out = out & item
    return out


def _any(items):
    out = Const(0)
    for item in items:
        out = out | item
    return out
