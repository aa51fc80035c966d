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


__all__ = ["ActEngine", "ACT_PARAMS", "act_layouts", "OUT_DEPTH", "PIPE_DEPTH", "ALL_OPS"]


#: Output beats the output FIFO holds (credits: a beat is only started when a slot is free).
OUT_DEPTH = 16
#: Register stages from the beat register to the output FIFO's write port.
PIPE_DEPTH = 5
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

def _rshift_round(v, s):
    """``(v + 2**(s-1)) >> s`` for an unsigned shift amount ``s`` (``v`` when ``s == 0``)."""
    rnd = (Const(1, 1) << s) >> 1
    return (v + rnd) >> s


def _sat16(v):
    return Mux(v > 32767, 32767, Mux(v < -32768, -32768, v))


def _bitlen(m, v, name):
    """Bit length of the unsigned value ``v`` (0 for 0), a priority encoder."""
    length = Signal(range(len(v) + 1), name=name)
    for b in range(len(v)):
        with m.If(v[b]):
            m.d.comb += length.eq(b + 1)
    return length


def _pow2_frac(f):
    c1, c2, c3 = golden.EXP_C
    t = (c3 * f) >> 16
    t = ((c2 + t) * f) >> 16
    t = ((c1 + t) * f) >> 16
    return 65536 + t


def _recip_core(m, mant, name):
    """``golden.recip_core`` on the 16-bit ``mant``: a Q16 Signal, combinational."""
    a, b = golden.RECIP_SEED
    y = Signal(18, name=f"{name}_y0")
    m.d.comb += y.eq(a - ((b * mant) >> 15))
    for step in range(golden.NEWTON_STEPS):
        t = Signal(18, name=f"{name}_t{step}")
        nxt = Signal(18, name=f"{name}_y{step + 1}")
        m.d.comb += [t.eq((mant * y) >> 15), nxt.eq((y * ((1 << 17) - t)) >> 16)]
        y = nxt
    return y


def _isqrt_core(m, mant, name):
    """``golden.isqrt_core`` on the 16-bit ``mant``: a Q16 Signal, combinational."""
    (a1, b1), (a2, b2) = golden.ISQRT_SEED
    y = Signal(18, name=f"{name}_y0")
    m.d.comb += y.eq(Mux(mant[15], a2 - ((b2 * mant) >> 16), a1 - ((b1 * mant) >> 16)))
    for step in range(golden.NEWTON_STEPS):
        s = Signal(20, name=f"{name}_s{step}")
        t = Signal(20, name=f"{name}_t{step}")
        nxt = Signal(18, name=f"{name}_y{step + 1}")
        m.d.comb += [s.eq((y * y) >> 16), t.eq((mant * s) >> 14),
                     nxt.eq((y * (3 * 65536 - t)) >> 17)]
        y = nxt
    return y


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
        ``x <= 0`` or recip of 0 (``y`` is then -32768 or 32767). Latency: ``PIPE_DEPTH + 2``
        cycles from an input beat (element-wise) or a read-back read to the output beat.
        Back-pressure: an ``OUT_DEPTH``-beat FIFO; beats are only started when a slot is free.

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

        # ---- control ---------------------------------------------------------------------------
        c = self.cmd.payload
        c_is_row = (c.op == code["softmax"]) | (c.op == code["layernorm"])
        c_built = Cat(c.op == code[name] for name in ops).any()
        c_ok = c_built & (c.n != 0) & (~c_is_row | (c.n <= self._max_row))
        pipe_busy = Signal()
        scal = Signal(2)
        grant_reject = Signal()

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
                                 wport.data.eq(self.i.payload.x.as_value()), wport.en.eq(fire)]
                    with m.If(fire):
                        xs = self.i.payload.x
                        new_mx = mx
                        for j in range(L):
                            new_mx = Mux(issue_mask[j] & (xs[j] > new_mx), xs[j], new_mx)
                        m.d.sync += [
                            mx.eq(new_mx), cnt.eq(cnt + 1),
                            sx.eq(sx + sum(Mux(issue_mask[j], xs[j], 0) for j in range(L))),
                            sxx.eq(sxx + sum(Mux(issue_mask[j], xs[j] * xs[j], 0)
                                             for j in range(L))),
                        ]
                        with m.If(issue_last):
                            m.d.sync += cnt.eq(0)
                            with m.If(is_op["softmax"]):
                                m.next = "SUM"
                            with m.Else():
                                m.d.sync += scal.eq(0)
                                m.next = "SCALAR"
                with m.State("SUM"):
                    m.d.comb += [issue.eq(1), issue_mem.eq(1), rport.addr.eq(cnt)]
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(issue_last):
                        m.d.sync += cnt.eq(0)
                        m.next = "DRAIN"
                with m.State("DRAIN"):
                    with m.If(~pipe_busy):
                        m.d.sync += scal.eq(0)
                        m.next = "SCALAR"
                with m.State("SCALAR"):
                    m.d.sync += scal.eq(scal + 1)
                    with m.If(scal == 2):
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

        # ---- per-row scalars (SCALAR state, three cycles) --------------------------------------
        if rows:
            v_reg = Signal(row_bits * 2 + 17)
            len_reg = Signal(range(len(v_reg) + 1))
            mant = Signal(16)
            k_reg = Signal(signed(6))
            # cycle 0: n**2 * variance (layernorm) or the sum (softmax)
            var = Signal(signed(len(v_reg) + 2))
            m.d.comb += var.eq(nn * sxx - sx * sx)
            with m.If(scal == 0):
                m.d.sync += v_reg.eq(Mux(is_op["softmax"], s_sum, Mux(var < 1, 1, var)))
            # cycle 1: bit length, mantissa, exponent
            length = _bitlen(m, v_reg, "v_len")
            k = Signal(signed(6))
            m.d.comb += k.eq((length - 15) >> 1)
            two_k = Signal(signed(7))
            m.d.comb += two_k.eq(k * 2)
            with m.If(scal == 1):
                m.d.sync += [len_reg.eq(length), k_reg.eq(k)]
                with m.If(is_op["softmax"]):
                    m.d.sync += mant.eq(v_reg >> (length - 16).as_unsigned())
                with m.Elif(k >= 0):
                    m.d.sync += mant.eq(v_reg >> two_k.as_unsigned())
                with m.Else():
                    m.d.sync += mant.eq(v_reg << (-two_k).as_unsigned())
            # cycle 2: reciprocal or inverse square root, output shift
            with m.If(scal == 2):
                if has["softmax"]:
                    with m.If(is_op["softmax"]):
                        m.d.sync += [y_row.eq(_recip_core(m, mant, "row_recip")),
                                     sh_row.eq(15 + len_reg - fout)]
                if has["layernorm"]:
                    with m.If(is_op["layernorm"]):
                        m.d.sync += [y_row.eq(_isqrt_core(m, mant, "row_isqrt")),
                                     sh_row.eq(35 + k_reg - fout)]

        # ---- per-lane pipeline -----------------------------------------------------------------
        def reg(value, name, shape=None):
            s = Signal(shape if shape is not None else value.shape(), name=name)
            m.d.sync += s.eq(value)
            return s

        def delay(value, cycles, name):
            for t in range(cycles):
                value = reg(value, f"{name}_d{t}")
            return value

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

        ys, doms, es = [], [], []
        for j in range(L):
            x = s0_x_bits.word_select(j, 8).as_signed()
            results = {}            # op -> y at stage PIPE_DEPTH
            dom = Const(0, 1)

            if has["gelu"]:
                a = Signal(8, name=f"g_abs{j}")
                m.d.comb += a.eq(Mux(x < 0, -x, x))
                sh7 = Signal(3, name=f"g_sh{j}")
                m.d.comb += sh7.eq(7 - fin)
                tq = Signal(15, name=f"g_tq{j}")
                m.d.comb += tq.eq(a << sh7)
                seg = tq >> 3
                rom = Memory(shape=unsigned(32), depth=golden.GELU_SEGMENTS, init=gelu_words)
                m.submodules[f"gelu_rom{j}"] = rom
                rd = rom.read_port(domain="comb")
                inside = seg < golden.GELU_SEGMENTS
                m.d.comb += rd.addr.eq(Mux(inside, seg, 0))
                g0 = rd.data[:16]
                dg = rd.data[16:].as_signed()
                g = Signal(signed(18), name=f"g_g{j}")
                m.d.comb += g.eq(Mux(inside, g0 + ((dg * tq[:3]) >> 3), 0))
                relu = Mux(x < 0, 0, x[:7])
                sh16 = Signal(5, name=f"g_sh16_{j}")
                m.d.comb += sh16.eq(16 - fin)
                w = reg((relu << sh16) - g, f"g_w{j}", signed(25))
                y = reg(_sat16(_rshift_round(w, sh_16_fout)), f"g_y{j}", signed(16))
                results["gelu"] = delay(y, PIPE_DEPTH - 2, f"g_y{j}")

            if need_exp:
                d = Signal(signed(9), name=f"e_d{j}")
                m.d.comb += d.eq(Mux(is_op["softmax"], x - mx, x) if has["softmax"] else x)
                z = Signal(signed(31), name=f"e_z{j}")
                m.d.comb += z.eq(d * golden.LOG2E_Q20)
                n_e = reg(z >> (fin + 20), f"e_n{j}", signed(11))
                f_e = reg((z >> (fin + 4))[:16], f"e_f{j}", unsigned(16))
                p_e = reg(_pow2_frac(f_e), f"e_p{j}", unsigned(17))
                n_e2 = reg(n_e, f"e_n2_{j}")
                if has["exp"]:
                    s = Signal(signed(12), name=f"x_s{j}")
                    m.d.comb += s.eq(16 - fout_s - n_e2)
                    y = Mux(s <= 0, 32767, Mux(s >= 18, 0,
                                                _sat16(_rshift_round(p_e, s[:5]))))
                    y = reg(y, f"x_y{j}", signed(16))
                    results["exp"] = delay(y, PIPE_DEPTH - 3, f"x_y{j}")
                if has["softmax"]:
                    neg = Signal(signed(12), name=f"s_neg{j}")
                    m.d.comb += neg.eq(-n_e2)
                    sh = Signal(5, name=f"s_sh{j}")
                    m.d.comb += sh.eq(Mux(neg >= 18, 18, neg[:5]))
                    e = reg(_rshift_round(p_e, sh), f"s_e{j}", unsigned(17))
                    prod = e * y_row
                    y = _rshift_round(prod, sh_row)
                    y = reg(Mux(y > 32767, 32767, y), f"s_y{j}", signed(16))
                    results["softmax"] = delay(y, PIPE_DEPTH - 4, f"s_y{j}")
                    es.append(delay(e, PIPE_DEPTH - 3, f"s_e{j}"))

            if has["log2"]:
                xu = x[:7]
                pos = x > 0
                e2 = _bitlen(m, xu, f"l_len{j}")
                e_l = Signal(3, name=f"l_e{j}")
                m.d.comb += e_l.eq(e2 - 1)
                sh6 = Signal(3, name=f"l_sh{j}")
                m.d.comb += sh6.eq(6 - e_l)
                idx = (xu << sh6)[:6]
                rom = Memory(shape=unsigned(16), depth=64, init=log2_words)
                m.submodules[f"log2_rom{j}"] = rom
                rd = rom.read_port(domain="comb")
                m.d.comb += rd.addr.eq(idx)
                ee = Signal(signed(5), name=f"l_ee{j}")
                m.d.comb += ee.eq(e_l)
                v = Signal(signed(24), name=f"l_v{j}")
                m.d.comb += v.eq(((ee - fin_s) << 16) + rd.data)
                y = Mux(pos, _sat16(_rshift_round(v, sh_16_fout)), -32768)
                y = reg(y, f"l_y{j}", signed(16))
                results["log2"] = delay(y, PIPE_DEPTH - 1, f"l_y{j}")
                dom = dom | delay(~pos & is_op["log2"], PIPE_DEPTH, f"l_dom{j}")

            if has["recip"]:
                a = Signal(8, name=f"r_abs{j}")
                m.d.comb += a.eq(Mux(x < 0, -x, x))
                ln = _bitlen(m, a, f"r_len{j}")
                shm = Signal(4, name=f"r_shm{j}")
                m.d.comb += shm.eq(16 - ln)
                mant_r = reg((a << shm)[:16], f"r_m{j}", unsigned(16))
                s = Signal(signed(8), name=f"r_s{j}")
                m.d.comb += s.eq(15 + ln - fin_s - fout_s)
                s_r = reg(s, f"r_s1_{j}")
                negx = reg(x < 0, f"r_neg{j}")
                zero = reg(x == 0, f"r_zero{j}")
                yr = reg(_recip_core(m, mant_r, f"r_core{j}"), f"r_y{j}", unsigned(18))
                s_r2, neg2, zero2 = (reg(s_r, f"r_s2_{j}"), reg(negx, f"r_neg2_{j}"),
                                     reg(zero, f"r_zero2_{j}"))
                left = Signal(3, name=f"r_left{j}")
                m.d.comb += left.eq(-s_r2)
                r = Signal(26, name=f"r_r{j}")
                m.d.comb += r.eq(Mux(s_r2 >= 18, 0,
                                     Mux(s_r2 < 0, yr << left, _rshift_round(yr, s_r2[:5]))))
                y = Mux(zero2, 32767, _sat16(Mux(neg2, -r, r)))
                y = reg(y, f"r_yo{j}", signed(16))
                results["recip"] = delay(y, PIPE_DEPTH - 3, f"r_yo{j}")
                dom = dom | delay(zero2 & is_op["recip"], PIPE_DEPTH - 2, f"r_dom{j}")

            if has["layernorm"]:
                dd = reg(nn * x - sx, f"n_d{j}", signed(row_bits + 11))
                p1 = reg(dd * y_row, f"n_p1_{j}", signed(row_bits + 11 + 18))
                gam = delay(s0_gamma.word_select(j, 16).as_signed(), 2, f"n_gam{j}")
                bet = delay(s0_beta.word_select(j, 16).as_signed(), 3, f"n_bet{j}")
                p2 = reg(p1 * gam, f"n_p2_{j}", signed(row_bits + 11 + 18 + 16))
                y = reg(_sat16(_rshift_round(p2, sh_row) + bet), f"n_y{j}", signed(16))
                results["layernorm"] = delay(y, PIPE_DEPTH - 4, f"n_y{j}")

            y_sel = Const(0, signed(16))
            for name, value in results.items():
                y_sel = Mux(is_op[name], value, y_sel)
            ys.append(y_sel)
            doms.append(dom)

        # control bits along the pipeline
        v_end = delay(s0_valid, PIPE_DEPTH, "valid")
        out_end = delay(s0_out, PIPE_DEPTH, "out")
        last_end = delay(s0_last, PIPE_DEPTH, "last")
        mask_end = delay(s0_mask, PIPE_DEPTH, "mask")
        in_pipe = Signal(range(PIPE_DEPTH + 2))
        m.d.sync += in_pipe.eq(in_pipe + issue - v_end)
        m.d.comb += pipe_busy.eq(in_pipe != 0)

        # softmax sum of the exponentials
        if has["softmax"]:
            with m.If(v_end & ~out_end):
                m.d.sync += s_sum.eq(s_sum + sum(Mux(mask_end[j], es[j], 0) for j in range(L)))

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
