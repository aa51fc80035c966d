"""Activation engine: integer GELU, exp, log2, reciprocal, softmax and LayerNorm on int8 vectors.

The golden model (every numeric rule) is :mod:`golden.act`; the design note is
``docs/act_engine.md``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from sparsehw.golden import act as golden
from sparsehw.params import Param, ParamSpec, Rule, pow2_in


__all__ = ["ActEngine", "ACT_PARAMS", "act_layouts", "OUT_DEPTH", "PIPE_DEPTH", "SUM_STAGE",
           "ROW_SCALAR_CYCLES", "ALL_OPS"]


#: Output beats the output FIFO holds (credits: a beat is only started when a slot is free;
#: at least the credit loop's round trip, PIPE_DEPTH + 3 cycles, so a ready consumer sees one
#: beat per cycle).
OUT_DEPTH = 32
#: Register stages from the beat register (stage 0) to the output FIFO's write port
#: (golden.act.PIPE_DEPTH, checked against the built stages): the deepest are softmax's (x, x - max, the product with log2 e, the split, three pow2 stages, the rounding
#: shift to E, E * the row's reciprocal, rounding, saturation) and recip's (x, |x|, mantissa,
#: the 7-stage Newton core, rounding, shift, sign and saturation).
PIPE_DEPTH = golden.PIPE_DEPTH
#: Stage at which softmax's sum pass has its exponentials ``E_i`` (added to the row sum there).
SUM_STAGE = golden.SUM_STAGE
#: Cycles of the SCALAR state per row: the free-running scalar pipeline (products, n**2 *
#: variance or the sum, bit length, mantissa: 4 stages; then the Newton core, 7 stages for the
#: reciprocal, 10 for the inverse square root) after its inputs are final, plus the latch cycle.
#: Softmax's sum is final when SCALAR starts and enters at stage 2 (one stage fewer);
#: layernorm's statistics settle two cycles after the load pass's last beat, i.e. in SCALAR's
#: third cycle.
ROW_SCALAR_CYCLES = dict(golden.SCALAR_CYCLES)
assert ROW_SCALAR_CYCLES == {"softmax": -1 + 4 + (1 + 2 * golden.NEWTON_STEPS) + 1,
                             "layernorm": 2 + 4 + (1 + 3 * golden.NEWTON_STEPS) + 1}
ALL_OPS = ",".join(golden.OPS)


def _ops_ok(value):
    names = [v.strip() for v in value.split(",")]
    return (len(names) > 0 and all(n in golden.OPS for n in names)
            and len(set(names)) == len(names))


ACT_PARAMS = ParamSpec(
    Param("lanes", 4, pow2_in(1, 16), doc="elements per cycle"),
    Param("max_row", 256, lambda v: pow2_in(2 * v["lanes"], 4096),
          doc="longest softmax/layernorm row (row buffer)",
          allowed="a power of two in 2*lanes..4096"),
    Param("ops", ALL_OPS,
          Rule(f"a comma-separated subset of {ALL_OPS}", _ops_ok, (str,)),
          doc="operations built (the others are rejected like unknown ones)"),
)


def act_layouts(*, lanes, max_row):
    """The payload layouts by port name (``cmd``, ``i``, ``p``, ``o``), no validation."""
    return {
        "cmd": data.StructLayout({"op": unsigned(3), "n": unsigned(16), "fin": unsigned(3),
                                  "fout": unsigned(4)}),
        "i": data.StructLayout({"x": data.ArrayLayout(signed(8), lanes)}),
        "p": data.StructLayout({"gamma": data.ArrayLayout(signed(16), lanes),
                                "beta": data.ArrayLayout(signed(16), lanes)}),
        "o": data.StructLayout({"y": data.ArrayLayout(signed(16), lanes),
                                "domain": unsigned(lanes), "error": unsigned(1),
                                "last": unsigned(1)}),
    }


# -- arithmetic helpers (each mirrors a helper of golden.act) ------------------------------------

def _rnd(v, s):
    """``v + 2**(s-1)`` (``v`` when ``s == 0``): the first half of a rounding right shift."""
    return v + ((Const(1, 1) << s) >> 1)


def _sat16(v):
    return Mux(v > 32767, 32767, Mux(v < -32768, -32768, v))


def _bitlen(m, v, name):
    """Bit length of the unsigned value ``v`` (0 for 0), a priority encoder."""
    length = Signal(range(len(v) + 1), name=name)
    for b in range(len(v)):
        with m.If(v[b]):
            m.d.comb += length.eq(b + 1)
    return length


def _bitlen_tree(v):
    """Bit length of the unsigned value ``v`` as a balanced tree of multiplexers (log depth)."""
    if len(v) == 1:
        return v[0]
    half = len(v) // 2
    lo, hi = v[:half], v[half:]
    return Mux(hi.any(), _bitlen_tree(hi) + half, _bitlen_tree(lo))


def _sum_tree(values):
    """Balanced adder tree (log depth) of a list of values."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def _recip_pipe(reg, delay, mant, name):
    """``golden.recip_core`` of the 16-bit ``mant`` as a pipeline: ``(y, RECIP_STAGES)``, ``y``
    an 18-bit Q16 value registered ``RECIP_STAGES`` cycles after ``mant``; one multiply per stage
    (the seed; per Newton step ``u = 2**17 - (M*y >> 15)``, then ``y = y*u >> 16``)."""
    a, b = golden.RECIP_SEED
    y = reg(a - ((b * mant) >> 15), f"{name}_y0", unsigned(18))
    mm = reg(mant, f"{name}_m0")
    for step in range(golden.NEWTON_STEPS):
        u = reg((1 << 17) - ((mm * y) >> 15)[:18], f"{name}_u{step}")
        y = reg(y, f"{name}_yd{step}")
        mm = reg(mm, f"{name}_m{step}a")
        y = reg((y * u) >> 16, f"{name}_y{step + 1}", unsigned(18))
        mm = reg(mm, f"{name}_m{step}b")
    return y, 1 + 2 * golden.NEWTON_STEPS


def _isqrt_pipe(reg, delay, mant, name):
    """``golden.isqrt_core`` of the 16-bit ``mant`` as a pipeline: ``(y, ISQRT_STAGES)``; one
    multiply per stage (the seed; per Newton step ``S = y*y >> 16``, ``T' = 3*2**16 - (M*S >> 14)``,
    ``y = y*T' >> 17``)."""
    (a1, b1), (a2, b2) = golden.ISQRT_SEED
    y = reg(Mux(mant[15], a2 - ((b2 * mant) >> 16), a1 - ((b1 * mant) >> 16)), f"{name}_y0",
            unsigned(18))
    mm = reg(mant, f"{name}_m0")
    for step in range(golden.NEWTON_STEPS):
        s = reg((y * y) >> 16, f"{name}_s{step}", unsigned(20))
        y1, m1 = reg(y, f"{name}_ya{step}"), reg(mm, f"{name}_ma{step}")
        t = reg(3 * 65536 - ((m1 * s) >> 14)[:20], f"{name}_t{step}")
        y2, mm = reg(y1, f"{name}_yb{step}"), reg(m1, f"{name}_mb{step}")
        y = reg((y2 * t) >> 17, f"{name}_y{step + 1}", unsigned(18))
        mm = reg(mm, f"{name}_mc{step}")
    return y, 1 + 3 * golden.NEWTON_STEPS


class ActEngine(wiring.Component):
    """Vector activation engine: ``lanes`` int8 elements in, ``lanes`` int16 results out per cycle.

    One command (``cmd``) selects an operation of :mod:`golden.act` and a count ``n``;
    element-wise operations (gelu, exp, log2, recip) stream ``ceil(n / lanes)`` beats through a
    pipeline; row-wise operations (softmax, layernorm) take a row of ``n <= max_row`` elements
    into a row buffer (pass 1: running max or sums as it arrives), then read it back once
    (layernorm) or twice (softmax: the sum of exponentials, then the outputs). The results are
    bit-exact with :func:`golden.act.run`.

    Parameters
    ----------
    lanes : int
        Elements per beat (and per cycle), a power of two in 1..16. Default 4.
    max_row : int
        Longest softmax/layernorm row, a power of two in ``2*lanes``..4096. Default 256.
    ops : str
        Comma-separated operations to build, a subset of ``gelu,exp,log2,recip,softmax,layernorm``
        (default: all). A command for an operation not built is rejected.

    Attributes
    ----------
    cmd : In(stream.Signature(StructLayout(op: unsigned(3), n: unsigned(16), fin: unsigned(3), fout: unsigned(4))))
        One beat per command: ``op`` (:data:`golden.act.OP_CODES`: 0 gelu, 1 exp, 2 log2,
        3 recip, 4 softmax, 5 layernorm), ``n`` elements, input fraction bits ``fin``, output
        fraction bits ``fout``. Accepted only when the previous command's beats have all left
        the pipeline (``ready`` low otherwise). Rejected, with one output beat ``error = 1,
        last = 1, y = 0`` and nothing else consumed, when ``op`` is 6, 7 or not built, ``n == 0``,
        or ``n > max_row`` for softmax/layernorm.
    i : In(stream.Signature(StructLayout(x: ArrayLayout(signed(8), lanes))))
        ``ceil(n / lanes)`` beats per command; element ``j`` of beat ``b`` is element
        ``b * lanes + j`` (lanes past ``n`` in the last beat are ignored). Element-wise: ready
        while an output slot is free (one beat per cycle at full rate). Row-wise: ready for the
        whole row at one beat per cycle, then low during the read-back passes.
    p : In(stream.Signature(StructLayout(gamma: ArrayLayout(signed(16), lanes), beta: ArrayLayout(signed(16), lanes))))
        LayerNorm only: ``ceil(n / lanes)`` beats per command, element-aligned with ``i``,
        ``gamma`` in Q4.12, ``beta`` in the output format. Consumed in the output pass, one
        beat per output beat; never ready for other operations.
    o : Out(stream.Signature(StructLayout(y: ArrayLayout(signed(16), lanes), domain: unsigned(lanes), error: unsigned(1), last: unsigned(1))))
        ``ceil(n / lanes)`` beats per command (``last`` on the final one), or one error beat.
        ``y[j]`` is element ``b * lanes + j`` (0 past ``n``); ``domain`` bit ``j`` marks log2 of
        ``x <= 0`` or recip of 0 (``y`` is then -32768 or 32767). Latency: ``PIPE_DEPTH + 3``
        (16, measured by ``sparsehw perf``; 8 before issue #14) cycles from an input beat
        (element-wise) or a read-back read to the output beat (``PIPE_DEPTH`` = :data:`golden.act.PIPE_DEPTH` = 13 free-running register stages, one
        multiply or one carry chain each; docs/act_engine.md "Pipeline"). A row-wise command
        adds, after its load pass, softmax's sum pass and the scalar step
        (:data:`golden.act.SCALAR_CYCLES`: 11 cycles softmax, 17 layernorm).
        Back-pressure: an ``OUT_DEPTH``-beat (32) FIFO; beats are only started when a slot is
        free, so ``o.ready`` low never stalls the pipeline; it stops ``i`` (element-wise) or
        the output pass.

    Raises
    ------
    TypeError
        A parameter of the wrong type.
    ValueError
        A parameter outside its range.
    """

    def __init__(self, *, lanes=4, max_row=256, ops=ALL_OPS):
        values = ACT_PARAMS.validate(lanes=lanes, max_row=max_row, ops=ops)
        self._lanes = values["lanes"]
        self._max_row = values["max_row"]
        self._ops = tuple(op for op in golden.OPS
                          if op in [v.strip() for v in values["ops"].split(",")])
        self._layouts = act_layouts(lanes=self._lanes, max_row=self._max_row)
        super().__init__({
            "cmd": In(stream.Signature(self._layouts["cmd"])),
            "i": In(stream.Signature(self._layouts["i"])),
            "p": In(stream.Signature(self._layouts["p"])),
            "o": Out(stream.Signature(self._layouts["o"])),
        })

    lanes = property(lambda self: self._lanes, doc="Elements per beat.")
    max_row = property(lambda self: self._max_row, doc="Longest row of a row-wise operation.")
    ops = property(lambda self: self._ops, doc="Operations built, in op-code order.")
    layouts = property(lambda self: dict(self._layouts), doc="Payload layouts by port name.")

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        log_l = exact_log2(L)
        ops = self._ops
        code = golden.OP_CODES
        has = {op: op in ops for op in golden.OPS}
        rows = has["softmax"] or has["layernorm"]
        need_exp = has["exp"] or has["softmax"]
        row_bits = exact_log2(self._max_row)
        beat_bits = 16 - log_l + 1

        def reg(value, name, shape=None):
            """``value`` registered (free-running: every stage advances every cycle)."""
            s = Signal(shape if shape is not None else value.shape(), name=name)
            m.d.sync += s.eq(value)
            return s

        def delay(value, cycles, name):
            for t in range(cycles):
                value = reg(value, f"{name}_d{t}")
            return value

        # ---- command registers -----------------------------------------------------------------
        op = Signal(3)
        nn = Signal(16)
        fin = Signal(3)
        fout = Signal(4)
        beats = Signal(beat_bits)
        cnt = Signal(beat_bits)
        mx = Signal(signed(8))                       # softmax: row max
        sx = Signal(signed(row_bits + 9))            # layernorm: sum of x
        sxx = Signal(row_bits + 15)                  # layernorm: sum of x*x
        s_sum = Signal(17 + row_bits + 1)            # softmax: sum of E
        y_row = Signal(18)                           # recip (softmax) or isqrt (layernorm)
        sh_row = Signal(6)                           # output shift of the row-wise op
        reject = Signal()

        is_op = {name: op == c for name, c in code.items()}

        # ---- credits ---------------------------------------------------------------------------
        inflight = Signal(range(OUT_DEPTH + 1))
        credit = Signal()
        m.d.comb += credit.eq(inflight < OUT_DEPTH)

        # ---- row buffer ------------------------------------------------------------------------
        if rows:
            m.submodules.rowbuf = rowbuf = Memory(shape=unsigned(8 * L),
                                                  depth=self._max_row // L, init=[])
            wport = rowbuf.write_port()
            rport = rowbuf.read_port()

        # ---- beat register (stage 0) -----------------------------------------------------------
        s0_valid = Signal()
        s0_out = Signal()            # an output beat (else a softmax sum beat)
        s0_last = Signal()
        s0_mask = Signal(L)
        s0_mem = Signal()            # x comes from the row buffer's read port
        s0_xreg = Signal(8 * L)
        s0_gamma = Signal(16 * L)
        s0_beta = Signal(16 * L)
        issue = Signal()
        issue_out = Signal()
        issue_mem = Signal()
        issue_last = Signal()
        issue_mask = Signal(L)
        base = Signal(16 + 1)
        m.d.comb += base.eq(cnt << log_l)
        m.d.comb += issue_mask.eq(Cat(base + j < nn for j in range(L)))
        m.d.comb += issue_last.eq(cnt == beats - 1)
        m.d.sync += [s0_valid.eq(issue), s0_out.eq(issue_out), s0_last.eq(issue_last),
                     s0_mask.eq(issue_mask), s0_mem.eq(issue_mem)]
        s0_x_bits = Signal(8 * L)
        m.d.comb += s0_x_bits.eq(Mux(s0_mem, rport.data, s0_xreg) if rows else s0_xreg)
        x1_bits = reg(s0_x_bits, "x1")                # stage 1: the beat's elements

        # ---- control ---------------------------------------------------------------------------
        c = self.cmd.payload
        c_is_row = (c.op == code["softmax"]) | (c.op == code["layernorm"])
        c_built = Cat(c.op == code[name] for name in ops).any()
        c_ok = c_built & (c.n != 0) & (~c_is_row | (c.n <= self._max_row))
        pipe_busy = Signal()
        scal = Signal(range(max(ROW_SCALAR_CYCLES.values()) + 1))
        grant_reject = Signal()
        sum_done = Signal()          # softmax: the sum pass's last E has been added to s_sum
        load_fire = Signal()         # a row beat is taken (LOAD)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(~pipe_busy & ~reject)
                with m.If(self.cmd.valid & self.cmd.ready):
                    m.d.sync += [op.eq(c.op), nn.eq(c.n), fin.eq(c.fin), fout.eq(c.fout),
                                 beats.eq((c.n + (L - 1)) >> log_l), cnt.eq(0),
                                 mx.eq(-128), sx.eq(0), sxx.eq(0), s_sum.eq(0)]
                    with m.If(~c_ok):
                        m.d.sync += reject.eq(1)
                    if rows:
                        with m.Elif(c_is_row):
                            m.next = "LOAD"
                    with m.Else():
                        m.next = "STREAM"
            with m.State("STREAM"):
                m.d.comb += [self.i.ready.eq(credit), issue.eq(self.i.valid & credit),
                             issue_out.eq(1)]
                with m.If(issue):
                    m.d.sync += [s0_xreg.eq(self.i.payload.x.as_value()), cnt.eq(cnt + 1)]
                    with m.If(issue_last):
                        m.next = "IDLE"
            if rows:
                with m.State("LOAD"):
                    fire = self.i.valid
                    m.d.comb += [self.i.ready.eq(1), wport.addr.eq(cnt),
                                 wport.data.eq(self.i.payload.x.as_value()), wport.en.eq(fire),
                                 load_fire.eq(fire)]
                    with m.If(fire):
                        m.d.sync += cnt.eq(cnt + 1)
                        with m.If(issue_last):
                            m.d.sync += [cnt.eq(0), scal.eq(0)]
                            with m.If(is_op["softmax"]):
                                m.next = "SUM"
                            with m.Else():
                                m.next = "SCALAR"
                with m.State("SUM"):
                    m.d.comb += [issue.eq(1), issue_mem.eq(1), rport.addr.eq(cnt)]
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(issue_last):
                        m.d.sync += cnt.eq(0)
                        m.next = "DRAIN"
                with m.State("DRAIN"):
                    with m.If(sum_done):
                        m.d.sync += scal.eq(0)
                        m.next = "SCALAR"
                with m.State("SCALAR"):
                    m.d.sync += scal.eq(scal + 1)
                    with m.If(scal == Mux(is_op["softmax"], ROW_SCALAR_CYCLES["softmax"] - 1,
                                          ROW_SCALAR_CYCLES["layernorm"] - 1)):
                        m.next = "OUT"
                with m.State("OUT"):
                    p_ok = ~is_op["layernorm"] | self.p.valid
                    go = credit & p_ok
                    m.d.comb += [issue.eq(go), issue_out.eq(1), issue_mem.eq(1),
                                 rport.addr.eq(cnt), self.p.ready.eq(go & is_op["layernorm"])]
                    with m.If(go):
                        m.d.sync += [cnt.eq(cnt + 1), s0_gamma.eq(self.p.payload.gamma.as_value()),
                                     s0_beta.eq(self.p.payload.beta.as_value())]
                        with m.If(issue_last):
                            m.next = "IDLE"

        # ---- row statistics of the load pass (two stages after the beat is taken) -------------
        if rows:
            # stage A: the beat and its mask registered; stage B: the beat's max / sum / sum of
            # squares (trees); stage C: accumulated. Final two cycles after the last beat.
            la_v = reg(load_fire, "ld_v")
            la_x = reg(self.i.payload.x.as_value(), "ld_x")
            la_mask = reg(issue_mask, "ld_mask")
            xs = [la_x.word_select(j, 8).as_signed() for j in range(L)]
            xm = [Mux(la_mask[j], xs[j], -128) for j in range(L)]
            while len(xm) > 1:
                xm = [Mux(xm[i] > xm[i + 1], xm[i], xm[i + 1]) for i in range(0, len(xm), 2)]
            lb_v = reg(la_v, "ld_v2")
            lb_max = reg(xm[0], "ld_max", signed(8))
            lb_sx = reg(_sum_tree(Mux(la_mask[j], xs[j], 0) for j in range(L)), "ld_sx")
            lb_sxx = reg(_sum_tree(Mux(la_mask[j], xs[j] * xs[j], 0) for j in range(L)),
                         "ld_sxx")
            with m.If(lb_v):
                m.d.sync += [mx.eq(Mux(lb_max > mx, lb_max, mx)), sx.eq(sx + lb_sx),
                             sxx.eq(sxx + lb_sxx)]

        # ---- per-row scalars: a free-running pipeline on the (then constant) statistics -------
        if rows:
            v_bits = row_bits * 2 + 17
            # stage 1: the products of n**2 * variance
            a_p = reg(nn * sxx, "sc_nsxx")
            b_p = reg(sx * sx, "sc_sxsx")
            # stage 2: n**2 * variance (layernorm, at least 1) or the sum (softmax)
            var = Signal(signed(v_bits + 2))
            m.d.comb += var.eq(a_p - b_p)
            v_reg = reg(Mux(is_op["softmax"], s_sum, Mux(var < 1, 1, var)), "sc_v",
                        unsigned(v_bits))
            # stage 3: bit length and exponent
            len_reg = reg(_bitlen_tree(v_reg), "sc_len", range(v_bits + 1))
            k = Signal(signed(6))
            m.d.comb += k.eq((len_reg - 15) >> 1)
            v3 = reg(v_reg, "sc_v3")
            # stage 4: the 16-bit mantissa
            two_k = Signal(signed(7))
            m.d.comb += two_k.eq(k * 2)
            mant = reg(Mux(is_op["softmax"], v3 >> (len_reg - 16).as_unsigned(),
                           Mux(k >= 0, v3 >> two_k.as_unsigned(), v3 << (-two_k).as_unsigned())),
                       "sc_mant", unsigned(16))
            len4 = reg(len_reg, "sc_len4")
            k4 = reg(k, "sc_k4")
            # stages 5..: the Newton core, then the row's scalar and output shift are latched
            last_scal = Signal()
            m.d.comb += last_scal.eq(scal == Mux(is_op["softmax"],
                                                 ROW_SCALAR_CYCLES["softmax"] - 1,
                                                 ROW_SCALAR_CYCLES["layernorm"] - 1))
            if has["softmax"]:
                yr_row, _ = _recip_pipe(reg, delay, mant, "row_recip")
                with m.If(last_scal & is_op["softmax"]):
                    m.d.sync += [y_row.eq(yr_row), sh_row.eq(15 + len4 - fout)]
            if has["layernorm"]:
                yi_row, _ = _isqrt_pipe(reg, delay, mant, "row_isqrt")
                with m.If(last_scal & is_op["layernorm"]):
                    m.d.sync += [y_row.eq(yi_row), sh_row.eq(35 + k4 - fout)]

        # ---- per-lane pipeline -----------------------------------------------------------------
        fin_s = Signal(signed(5))
        fout_s = Signal(signed(6))
        m.d.comb += [fin_s.eq(fin), fout_s.eq(fout)]
        sh_16_fout = Signal(5)
        m.d.comb += sh_16_fout.eq(16 - fout)

        if has["gelu"]:
            gelu_words = []
            for j in range(golden.GELU_SEGMENTS):
                g0 = golden.GELU_TABLE[j]
                dg = golden.GELU_TABLE[j + 1] - g0
                gelu_words.append(g0 | ((dg & 0xFFFF) << 16))
        if has["log2"]:
            log2_words = list(golden.LOG2_TABLE)

        deepest = [0]

        def finish(y, stage, name):
            """``y`` (a stage-``stage`` register) delayed to stage PIPE_DEPTH."""
            assert stage <= PIPE_DEPTH, (name, stage)
            deepest[0] = max(deepest[0], stage)
            return delay(y, PIPE_DEPTH - stage, name)

        ys, doms, es = [], [], []
        for j in range(L):
            x = x1_bits.word_select(j, 8).as_signed()          # stage 1
            results = {}            # op -> y at stage PIPE_DEPTH
            dom = Const(0, 1)

            if has["gelu"]:
                a = Signal(8, name=f"g_abs{j}")
                m.d.comb += a.eq(Mux(x < 0, -x, x))
                sh7 = Signal(3, name=f"g_sh{j}")
                m.d.comb += sh7.eq(7 - fin)
                sh16 = Signal(5, name=f"g_sh16_{j}")
                m.d.comb += sh16.eq(16 - fin)
                relu = Mux(x < 0, 0, x[:7])
                tq = reg(a << sh7, f"g_tq{j}", unsigned(15))                     # 2
                rs = reg(relu << sh16, f"g_rs{j}", unsigned(24))
                seg = tq >> 3
                rom = Memory(shape=unsigned(32), depth=golden.GELU_SEGMENTS, init=gelu_words)
                m.submodules[f"gelu_rom{j}"] = rom
                rd = rom.read_port(domain="comb")
                inside = seg < golden.GELU_SEGMENTS
                m.d.comb += rd.addr.eq(Mux(inside, seg, 0))
                g0 = reg(rd.data[:16], f"g_g0{j}")                               # 3
                dg = reg(rd.data[16:].as_signed(), f"g_dg{j}")
                fr = reg(tq[:3], f"g_fr{j}")
                ins = reg(inside, f"g_in{j}")
                rs3 = reg(rs, f"g_rs3{j}")
                g = reg(Mux(ins, g0 + ((dg * fr) >> 3), 0), f"g_g{j}", signed(18))  # 4
                rs4 = reg(rs3, f"g_rs4{j}")
                w = reg(rs4 - g, f"g_w{j}", signed(25))                          # 5
                v = reg(_rnd(w, sh_16_fout), f"g_v{j}")                          # 6
                q = reg(v >> sh_16_fout, f"g_q{j}", signed(25))                  # 7
                y = reg(_sat16(q), f"g_y{j}", signed(16))                        # 8
                results["gelu"] = finish(y, 8, f"g_y{j}")

            if need_exp:
                d = reg(Mux(is_op["softmax"], x - mx, x) if has["softmax"] else x,
                        f"e_d{j}", signed(9))                                    # 2
                z = reg(d * golden.LOG2E_Q20, f"e_z{j}", signed(31))             # 3
                n_e = reg(z >> (fin + 20), f"e_n{j}", signed(11))                # 4
                f_e = reg((z >> (fin + 4))[:16], f"e_f{j}", unsigned(16))
                c1, c2, c3 = golden.EXP_C
                t1 = reg((c3 * f_e) >> 16, f"e_t1{j}")                          # 5
                f5 = reg(f_e, f"e_f5{j}")
                t2 = reg(((c2 + t1) * f5) >> 16, f"e_t2{j}")                    # 6
                f6 = reg(f5, f"e_f6{j}")
                t3 = reg(((c1 + t2) * f6) >> 16, f"e_t3{j}")                    # 7
                p_e = Signal(17, name=f"e_p{j}")                                 # 7 (comb)
                m.d.comb += p_e.eq(65536 + t3)
                if has["exp"]:
                    s = Signal(signed(12), name=f"x_s{j}")
                    m.d.comb += s.eq(16 - fout_s - n_e)
                    s5 = reg(s, f"x_s5{j}")                                      # 5
                    s7 = delay(s5, 2, f"x_s7{j}")                                # 7
                    le0, ge18 = reg(s7 <= 0, f"x_le0{j}"), reg(s7 >= 18, f"x_ge18{j}")
                    sh = s7[:5]
                    v = reg(_rnd(p_e, sh), f"x_v{j}")                            # 8
                    sh8 = reg(sh, f"x_sh8{j}")
                    q = reg(v >> sh8, f"x_q{j}", unsigned(18))                   # 9
                    le0, ge18 = reg(le0, f"x_le0b{j}"), reg(ge18, f"x_ge18b{j}")
                    y = reg(Mux(le0, 32767, Mux(ge18, 0, _sat16(q))), f"x_y{j}",
                            signed(16))                                          # 10
                    results["exp"] = finish(y, 10, f"x_y{j}")
                if has["softmax"]:
                    neg = Signal(signed(12), name=f"s_neg{j}")
                    m.d.comb += neg.eq(-n_e)
                    sh5 = reg(Mux(neg >= 18, 18, neg[:5]), f"s_sh5{j}", unsigned(5))   # 5
                    sh7 = delay(sh5, 2, f"s_sh7{j}")                             # 7
                    v = reg(_rnd(p_e, sh7), f"s_v{j}")                           # 8
                    sh8 = reg(sh7, f"s_sh8{j}")
                    e = reg(v >> sh8, f"s_e{j}", unsigned(17))                   # 9 = SUM_STAGE
                    prod = reg(e * y_row, f"s_prod{j}")                          # 10
                    v2 = reg(_rnd(prod, sh_row), f"s_v2{j}")                     # 11
                    q2 = reg(v2 >> sh_row, f"s_q2{j}", unsigned(len(prod)))      # 12
                    y = reg(Mux(q2 > 32767, 32767, q2), f"s_y{j}", signed(16))   # 13
                    results["softmax"] = finish(y, 13, f"s_y{j}")
                    es.append(e)

            if has["log2"]:
                xu = x[:7]
                pos = reg(x > 0, f"l_pos{j}")                                    # 2
                e2 = _bitlen(m, xu, f"l_len{j}")
                e_l = reg(e2 - 1, f"l_e{j}", unsigned(3))
                xu2 = reg(xu, f"l_xu{j}")
                sh6 = Signal(3, name=f"l_sh{j}")
                m.d.comb += sh6.eq(6 - e_l)
                idx = (xu2 << sh6)[:6]
                rom = Memory(shape=unsigned(16), depth=64, init=log2_words)
                m.submodules[f"log2_rom{j}"] = rom
                rd = rom.read_port(domain="comb")
                m.d.comb += rd.addr.eq(idx)
                t = reg(rd.data, f"l_t{j}")                                      # 3
                ee = Signal(signed(5), name=f"l_ee{j}")
                m.d.comb += ee.eq(reg(e_l, f"l_e3{j}"))
                pos3 = reg(pos, f"l_pos3{j}")
                v = reg(((ee - fin_s) << 16) + t, f"l_v{j}", signed(24))         # 4
                v5 = reg(_rnd(v, sh_16_fout), f"l_v5{j}")                        # 5
                q = reg(v5 >> sh_16_fout, f"l_q{j}", signed(24))                 # 6
                pos6 = delay(pos3, 3, f"l_pos6{j}")
                y = reg(Mux(pos6, _sat16(q), -32768), f"l_y{j}", signed(16))     # 7
                results["log2"] = finish(y, 7, f"l_y{j}")
                dom = dom | finish(~pos & is_op["log2"], 2, f"l_dom{j}")

            if has["recip"]:
                a = reg(Mux(x < 0, -x, x), f"r_abs{j}", unsigned(8))             # 2
                negx = reg(x < 0, f"r_neg{j}")
                zero = reg(x == 0, f"r_zero{j}")
                ln = _bitlen(m, a, f"r_len{j}")
                shm = Signal(4, name=f"r_shm{j}")
                m.d.comb += shm.eq(16 - ln)
                mant_r = reg((a << shm)[:16], f"r_m{j}", unsigned(16))           # 3
                s = Signal(signed(8), name=f"r_s{j}")
                m.d.comb += s.eq(15 + ln - fin_s - fout_s)
                s_r = reg(s, f"r_s1_{j}")
                yr, depth = _recip_pipe(reg, delay, mant_r, f"r_core{j}")        # 3 + depth
                st = 3 + depth
                s_r2 = delay(s_r, depth, f"r_s2_{j}")
                neg2 = delay(negx, depth + 2, f"r_neg2_{j}")
                zero2 = delay(zero, depth + 2, f"r_zero2_{j}")
                left = Signal(3, name=f"r_left{j}")
                m.d.comb += left.eq(-s_r2)
                sl = reg(yr << left, f"r_sl{j}", unsigned(26))                   # st + 1
                vr = reg(_rnd(yr, s_r2[:5]), f"r_v{j}")
                ge18, lt0 = reg(s_r2 >= 18, f"r_ge18{j}"), reg(s_r2 < 0, f"r_lt0{j}")
                s5 = reg(s_r2[:5], f"r_s5{j}")
                r = reg(Mux(ge18, 0, Mux(lt0, sl, vr >> s5)), f"r_r{j}", unsigned(26))  # st + 2
                neg3, zero3 = reg(neg2, f"r_neg3{j}"), reg(zero2, f"r_zero3{j}")
                y = reg(Mux(zero3, 32767, _sat16(Mux(neg3, -r, r))), f"r_yo{j}",
                        signed(16))                                              # st + 3
                results["recip"] = finish(y, st + 3, f"r_yo{j}")
                dom = dom | finish(zero & is_op["recip"], 2, f"r_dom{j}")

            if has["layernorm"]:
                nx = reg(nn * x, f"n_nx{j}")                                     # 2
                dd = reg(nx - sx, f"n_d{j}", signed(row_bits + 11))              # 3
                p1 = reg(dd * y_row, f"n_p1_{j}", signed(row_bits + 11 + 18))    # 4
                gam = delay(s0_gamma.word_select(j, 16).as_signed(), 4, f"n_gam{j}")
                bet = delay(s0_beta.word_select(j, 16).as_signed(), 8, f"n_bet{j}")
                pl = reg(p1[:18] * gam, f"n_pl{j}")                              # 5
                ph = reg(p1[18:].as_signed() * gam, f"n_ph{j}")
                p2 = reg((ph << 18) + pl, f"n_p2_{j}", signed(row_bits + 11 + 18 + 16))  # 6
                v = reg(_rnd(p2, sh_row), f"n_v{j}")                             # 7
                q = reg(v >> sh_row, f"n_q{j}", signed(len(p2)))                 # 8
                w = reg(q + bet, f"n_w{j}")                                      # 9
                y = reg(_sat16(w), f"n_y{j}", signed(16))                        # 10
                results["layernorm"] = finish(y, 10, f"n_y{j}")

            y_sel = Const(0, signed(16))
            for name, value in results.items():
                y_sel = Mux(is_op[name], value, y_sel)
            ys.append(y_sel)
            doms.append(dom)

        # the deepest operation sets PIPE_DEPTH (golden.act's constant must follow the RTL)
        assert not (has["softmax"] or has["recip"]) or deepest[0] == PIPE_DEPTH, deepest

        # control bits along the pipeline
        v_end = delay(s0_valid, PIPE_DEPTH, "valid")
        out_end = delay(s0_out, PIPE_DEPTH, "out")
        last_end = delay(s0_last, PIPE_DEPTH, "last")
        mask_end = delay(s0_mask, PIPE_DEPTH, "mask")
        in_pipe = Signal(range(PIPE_DEPTH + 2))
        m.d.sync += in_pipe.eq(in_pipe + issue - v_end)
        m.d.comb += pipe_busy.eq(in_pipe != 0)

        # softmax sum of the exponentials, taken at SUM_STAGE (not at the end of the pipeline):
        # the beat's sum is registered, then added; sum_done marks the last beat's addition
        if has["softmax"]:
            sum_v = delay(s0_valid & ~s0_out, SUM_STAGE, "sumv")
            sum_last = delay(s0_last, SUM_STAGE, "suml")
            sum_mask = delay(s0_mask, SUM_STAGE, "summ")
            part = reg(_sum_tree(Mux(sum_mask[j], es[j], 0) for j in range(L)), "sum_part")
            part_v = reg(sum_v, "sum_part_v")
            part_last = reg(sum_v & sum_last, "sum_part_last")
            with m.If(part_v):
                m.d.sync += s_sum.eq(s_sum + part)
            m.d.comb += sum_done.eq(part_last)

        # ---- output FIFO -----------------------------------------------------------------------
        out_layout = self._layouts["o"]
        beat = Signal(out_layout)
        m.d.comb += [beat.last.eq(last_end)]
        for j in range(L):
            m.d.comb += [beat.y[j].eq(Mux(mask_end[j], ys[j], 0)),
                         beat.domain[j].eq(mask_end[j] & doms[j])]
        err_beat = Signal(out_layout)
        m.d.comb += [err_beat.error.eq(1), err_beat.last.eq(1)]
        write_out = Signal()
        m.d.comb += write_out.eq(v_end & out_end)
        m.d.comb += grant_reject.eq(reject & credit & ~write_out)
        with m.If(grant_reject):
            m.d.sync += reject.eq(0)
        m.submodules.out_fifo = out_fifo = SyncFIFOBuffered(width=out_layout.size,
                                                            depth=OUT_DEPTH)
        m.d.comb += [
            out_fifo.w_en.eq(write_out | grant_reject),
            out_fifo.w_data.eq(Mux(write_out, beat.as_value(), err_beat.as_value())),
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
        ]

        grant = (issue & issue_out) | grant_reject
        done = self.o.valid & self.o.ready
        with m.If(grant & ~done):
            m.d.sync += inflight.eq(inflight + 1)
        with m.Elif(done & ~grant):
            m.d.sync += inflight.eq(inflight - 1)
        return m
