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


#: Output beats the output FIFO holds (credits: a beat is only started when a slot is free,
#: counted a cycle late, so one slot is kept spare; at least the credit loop's round trip,
#: PIPE_DEPTH + 4 cycles, plus that slot, so a ready consumer sees one beat per cycle).
OUT_DEPTH = 32
#: Register stages from the beat register (stage 0) to the output FIFO's write port
#: (golden.act.PIPE_DEPTH, checked against the built stages): every op's result joins one
#: output register chain at its own stage; the deepest is softmax's (x, (x - max) << (7 -
#: fin), the two products with log2 e, their sum (n and f), five pow2 stages, the rounding,
#: the shift to E, E * the row's reciprocal, rounding, the shift by a multiple of 8, the rest of
#: the shift with the saturation): 15 since each multiply has a stage of its own (13 before).
#: (recip was as deep with three 3-stage Newton steps per lane; its core is a table of |x|
#: since s31, its result at stage 9.)
PIPE_DEPTH = golden.PIPE_DEPTH
#: Low bits of layernorm's output product ``D * Y * gamma`` that never reach a result: its
#: output shift is at least 13.
ROW_DROP = 12
#: The same for softmax's ``E * Y_row``: its output shift is at least 17 (the row sum is at
#: least 2**16).
SOFTMAX_DROP = 16
#: Stage at which softmax's sum pass has its exponentials ``E_i`` (added to the row sum there).
SUM_STAGE = golden.SUM_STAGE
#: Cycles of the SCALAR state per row: the free-running scalar pipeline after its inputs are
#: final, plus the latch cycle. Layernorm: its statistics settle two cycles after the load
#: pass's last beat (which marks the buffer ready), i.e. in SCALAR's second cycle when the row
#: side starts the row at once; then n**2 * variance (4 stages: the statistics registered,
#: the products, two carry chains), the value, its bit length, the shift amounts (tables of
#: the bit length) and the mantissa (4 stages), the
#: inverse square root (ISQRT_STAGES). Softmax: its sum is final when SCALAR starts and enters
#: at the value; then the reciprocal's seed (2 stages) and Newton steps (RECIP_STEP_STAGES).
ROW_SCALAR_CYCLES = dict(golden.SCALAR_CYCLES)
ALL_OPS = ",".join(golden.OPS)
#: Stages of the Newton steps of a reciprocal (per step: the product M*y, the subtraction from
#: 2**17, the product y*u) and of an inverse square root (its seed's product and subtraction,
#: then per step: y*y, M*S, the subtraction from 3*2**16, y*T').
RECIP_STEP_STAGES = 3 * golden.NEWTON_STEPS
ISQRT_STAGES = 2 + 4 * golden.NEWTON_STEPS
assert ROW_SCALAR_CYCLES == {"softmax": 4 + 2 + RECIP_STEP_STAGES + 1,
                             "layernorm": 1 + 4 + 4 + ISQRT_STAGES + 1}


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

def _rnd_half(v, s1):
    """``(v + 2**s1) >> 1``: ``v`` rounded for a right shift by ``s1 + 1 >= 1``, without the
    sum's bit 0, which no shift by at least 1 reads: ``(v + 2**(s-1)) >> s ==
    _rnd_half(v, s - 1) >> (s - 1)`` exactly (floor division in two steps)."""
    return (v + (Const(1, 1) << s1)) >> 1


def _sat16(v, low=True):
    """``v`` saturated to int16: ``v > 32767`` and ``v < -32768`` as tests of its bits above
    bit 14 (all equal to the sign bit when ``v`` fits), no comparator carry chain. ``low=False``
    leaves out the ``v < -32768`` test where no input reaches it."""
    shape = v.shape()
    width = shape.width
    if width <= 15 or (shape.signed and width <= 16):
        return v
    if shape.signed:
        sign, high = v[width - 1], v[15:width]
        over, under = ~sign & high.any(), sign & ~high.all()
        if not low:
            return Mux(over, 32767, v)
    else:
        over, under = v[15:].any(), Const(0, 1)
    return Mux(over, 32767, Mux(under, -32768, v))


def _bitlen_at(v, offset=0, sign=1, nonzero=False):
    """``offset + sign * bitlen(v)`` of the unsigned value ``v`` (``bitlen(0) == 0``) as a
    balanced tree of multiplexers between constants (log depth, no adder: the offset is folded
    into the leaves). ``nonzero``: ``v`` is never 0 where the result is read, so no leaf for
    0 is built (the subtree of a nonzero upper half is built so at every level)."""
    if len(v) == 1:
        return Const(offset + sign) if nonzero else Mux(v[0], offset + sign, offset)
    half = len(v) // 2
    lo, hi = v[:half], v[half:]
    return Mux(hi.any(), _bitlen_at(hi, offset + sign * half, sign, True),
               _bitlen_at(lo, offset, sign, nonzero))


def _sum_tree(values):
    """Balanced adder tree (log depth) of a list of values."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def _recip_pipe(reg, y, mant, name):
    """The Newton steps of ``golden.recip_core`` on the 16-bit ``M = 2**15 + mant`` as a
    pipeline, from the seed ``y`` (registered with ``mant``): ``(y, RECIP_STEP_STAGES)``, ``y``
    a 16-bit Q16 value registered ``RECIP_STEP_STAGES`` cycles after ``mant``. Per Newton step
    ``w = M*y >> 15``, ``u = 2**17 - w``, ``y = y*u >> 16``: each multiply alone in its stage
    (register -> DSP -> register: the product's register can move into the DSP) and the
    subtraction in a stage of its own. Widths are the exact ranges over every ``M`` (``y`` <
    2**16, ``u`` < 2**17: tests/test_act_golden.py), so each product fits one 18x18
    multiplier. ``M``'s top bit (bit 15) is 1 (a normalized mantissa): ``mant`` holds only
    the 15 bits below it, and the multiplier takes it as a constant."""
    mm = mant
    for step in range(golden.NEWTON_STEPS):
        w = reg(((Cat(mm, Const(1, 1)) * y) >> 15)[:17], f"{name}_w{step}", unsigned(17))
        y, mm = reg(y, f"{name}_yd{step}"), reg(mm, f"{name}_m{step}a")
        u = reg((1 << 17) - w, f"{name}_u{step}", unsigned(17))
        y, mm = reg(y, f"{name}_ye{step}"), reg(mm, f"{name}_m{step}b")
        y = reg((y * u) >> 16, f"{name}_y{step + 1}", unsigned(16))
        mm = reg(mm, f"{name}_m{step}c")
    return y, RECIP_STEP_STAGES


def _recip_seed(reg, mant, name):
    """``golden.recip_core``'s seed ``a - (b*M >> 15)`` of the 16-bit ``mant`` in two stages
    (the product, then the subtraction): ``(y0, mant[:15])`` both registered two cycles
    after ``mant``, whose top bit is 1 (a normalized mantissa: the core takes it as a
    constant, ``_recip_pipe``)."""
    a, b = golden.RECIP_SEED
    bm = reg(((b * mant) >> 15)[:16], f"{name}_bm", unsigned(16))
    mm = reg(mant[:15], f"{name}_ms")
    y0 = reg(a - bm, f"{name}_y0", unsigned(16))
    return y0, reg(mm, f"{name}_m0")


def _isqrt_pipe(reg, mant, name, high):
    """``golden.isqrt_core`` of the 16-bit ``mant`` as a pipeline: ``(y, ISQRT_STAGES)``; each
    multiply alone in its stage, each subtraction in a stage of its own (the seed: the
    product, then ``a - ...``; per Newton step ``S = y*y >> 16``, ``P = M*S >> 14``, ``T' =
    3*2**16 - P``, ``y = y*T' >> 17``). Widths are the exact ranges over every ``M`` (``y``,
    ``S`` < 2**16, ``T'`` < 2**18: tests/test_act_golden.py). ``high`` is ``mant[15]`` one
    cycle ahead (the value ``mant`` registers): the seed's segment constants are registered
    with ``mant``."""
    (a1, b1), (a2, b2) = golden.ISQRT_SEED
    # only the segment is registered, as the bit and its complement: the constants' bits
    # that are equal in both segments are constants, not register bits (a register would
    # differ from them only in its initial value, which no output reads)
    hi, hi_n = reg(high, f"{name}_hi"), reg(~high, f"{name}_hin")

    def segment_const(sel, sel_n, c1, c2):
        """``c2`` if the segment bit ``sel`` is set, else ``c1``, from ``sel`` and ``~sel``."""
        return Cat(Const((c1 >> i) & 1, 1) if (c1 >> i) & 1 == (c2 >> i) & 1
                   else (sel if (c2 >> i) & 1 else sel_n) for i in range(17))

    bm = reg(((segment_const(hi, hi_n, b1, b2) * mant) >> 16)[:17], f"{name}_bm", unsigned(17))
    sa, sa_n = reg(hi, f"{name}_sa"), reg(hi_n, f"{name}_san")
    ms = reg(mant, f"{name}_ms")
    y = reg(segment_const(sa, sa_n, a1, a2) - bm, f"{name}_y0", unsigned(16))
    mm = reg(ms, f"{name}_m0")
    for step in range(golden.NEWTON_STEPS):
        s = reg((y * y) >> 16, f"{name}_s{step}", unsigned(16))
        y1, m1 = reg(y, f"{name}_ya{step}"), reg(mm, f"{name}_ma{step}")
        p = reg(((m1 * s) >> 14)[:18], f"{name}_p{step}", unsigned(18))
        y1, m1 = reg(y1, f"{name}_yp{step}"), reg(m1, f"{name}_mp{step}")
        t = reg(3 * 65536 - p, f"{name}_t{step}", unsigned(18))
        y2, mm = reg(y1, f"{name}_yb{step}"), reg(m1, f"{name}_mb{step}")
        y = reg((y2 * t) >> 17, f"{name}_y{step + 1}", unsigned(16))
        mm = reg(mm, f"{name}_mc{step}")
    return y, ISQRT_STAGES


class ActEngine(wiring.Component):
    """Vector activation engine: ``lanes`` int8 elements in, ``lanes`` int16 results out per cycle.

    One command (``cmd``) selects an operation of :mod:`golden.act` and a count ``n``;
    element-wise operations (gelu, exp, log2, recip) stream ``ceil(n / lanes)`` beats through a
    pipeline; row-wise operations (softmax, layernorm) take a row of ``n <= max_row`` elements
    into one of two row buffers (pass 1: running max or sums as it arrives), then read it back
    once (layernorm) or twice (softmax: the sum of exponentials, then the outputs); the next row
    loads into the other buffer meanwhile. Each beat carries its command's op and formats down
    the pipeline, so a command's beats follow the previous command's without a drain. The
    results are bit-exact with :func:`golden.act.run`.

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
        fraction bits ``fout``. Accepted once the previous command's inputs are all taken and
        a row buffer is free for it (two rows may wait or be read back at once; ``ready`` low
        otherwise). Rejected, with one output beat ``error = 1, last = 1, y = 0`` (after every
        earlier command's outputs) and nothing else consumed, when ``op`` is 6, 7 or not built,
        ``n == 0``, or ``n > max_row`` for softmax/layernorm.
    i : In(stream.Signature(StructLayout(x: ArrayLayout(signed(8), lanes))))
        ``ceil(n / lanes)`` beats per command; element ``j`` of beat ``b`` is element
        ``b * lanes + j`` (lanes past ``n`` in the last beat are ignored). Element-wise: ready
        while an output slot is free and no row waits or is read back (one beat per cycle at
        full rate). Row-wise: ready for the whole row at one beat per cycle, also while the
        previous row is read back.
    p : In(stream.Signature(StructLayout(gamma: ArrayLayout(signed(16), lanes), beta: ArrayLayout(signed(16), lanes))))
        LayerNorm only: ``ceil(n / lanes)`` beats per command, element-aligned with ``i``,
        ``gamma`` in Q4.12, ``beta`` in the output format. Consumed in the output pass, one
        beat per output beat; never ready for other operations.
    o : Out(stream.Signature(StructLayout(y: ArrayLayout(signed(16), lanes), domain: unsigned(lanes), error: unsigned(1), last: unsigned(1))))
        ``ceil(n / lanes)`` beats per command (``last`` on the final one), or one error beat.
        ``y[j]`` is element ``b * lanes + j`` (0 past ``n``); ``domain`` bit ``j`` marks log2 of
        ``x <= 0`` or recip of 0 (``y`` is then -32768 or 32767). Latency: ``PIPE_DEPTH + 3``
        (18, measured by ``sparsehw perf``; 16 before each multiply had a stage of its own, 8
        before issue #14) cycles from an input beat (element-wise) or a read-back read to the
        output beat (``PIPE_DEPTH`` = :data:`golden.act.PIPE_DEPTH` = 15 free-running register
        stages, one multiply alone or one carry chain each; docs/act_engine.md "Pipeline"). A
        row-wise command adds, after its
        load pass (the row side starts it the cycle after its last beat, or once the previous
        row's output pass has been issued), softmax's sum pass and the scalar step
        (:data:`golden.act.SCALAR_CYCLES`: 16 cycles softmax, 24 layernorm).
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
        # a row's last beat index, ceil(n / lanes) - 1 for n <= max_row, is below
        # max_row / lanes (the beat counter's increment past it is never read: SUM clears
        # it, WAIT clears it after OUT)
        row_beat_bits = row_bits - log_l
        # the row scalar's exact range: layernorm's n**2 * variance is at most
        # (max_row / 2 * 255)**2 (half the row at -128, half at 127), softmax's sum at most
        # max_row * 2**16; the bit lengths read are those of these values
        v_max_ln = (self._max_row // 2 * 255) ** 2
        lens_ln = ([n for n in range(2, 17, 2)] + list(range(17, v_max_ln.bit_length() + 1))
                   if has["layernorm"] else [])                # v >= 1; below 17 in pairs
        lens_sm = list(range(17, 18 + row_bits)) if has["softmax"] else []

        def k_of(n):
            return (n - 15) >> 1                               # k = (len - 15) >> 1

        def reg(value, name, shape=None, control=False):
            """``value`` registered (free-running: every stage advances every cycle). Data
            registers have no reset: a beat's data is only read with its valid bit, which is
            reset (``control``: a valid bit), so their value after a reset is never read."""
            s = Signal(shape if shape is not None else value.shape(), name=name,
                       reset_less=not control)
            m.d.sync += s.eq(value)
            return s

        def delay(value, cycles, name, control=False):
            for t in range(cycles):
                value = reg(value, f"{name}_d{t}", control=control)
            return value

        def hand_over(sel, flags):
            """Flip a double buffer's select and raise ``flags`` of the buffer it named (the
            load side hands a row to the row side; the row side hands the buffer back)."""
            m.d.sync += sel.eq(~sel)
            for b in range(2):
                with m.If(sel == b):
                    m.d.sync += flags[b].eq(1)

        # ---- command fields travel with each beat (tags) ---------------------------------------
        # A beat carries its command's op, fin and fout down the pipeline, so the next command's
        # beats enter while the previous command's drain (no drain between commands).
        tag_layout = data.StructLayout({"op": unsigned(3), "fin": unsigned(3), "fout": unsigned(4)})
        issue_tag = Signal(tag_layout)
        s0_tag = Signal(tag_layout, name="tag0", reset_less=True)
        m.d.sync += s0_tag.eq(issue_tag)
        carried = {field: [s0_tag[field]] for field in ("op", "fin", "fout")}

        def tag_at(field, stage):
            """The beat's ``field`` at ``stage`` (each field carried only as deep as it is used)."""
            chain = carried[field]
            while len(chain) <= stage:
                chain.append(reg(chain[-1], f"{field}{len(chain)}"))
            return chain[stage]

        def op_at(stage, name):
            """The beat at ``stage`` belongs to a command of ``name``."""
            return tag_at("op", stage) == code[name]

        signed_tags = {}

        def signed_tag(field, stage, shape, offset=0, name=None):
            """``offset - field`` (or the field itself) at ``stage`` as one shared signed signal;
            ``offset - field`` is registered from the stage before (no subtraction in front of
            the shifter that reads it)."""
            key = (field, stage, offset)
            if key not in signed_tags:
                name = name or f"{field}_at{stage}"
                if offset:
                    s = reg(offset - tag_at(field, stage - 1), name, shape)
                else:
                    s = Signal(shape, name=name)
                    m.d.comb += s.eq(tag_at(field, stage))
                signed_tags[key] = s
            return signed_tags[key]

        def fin_at(stage):
            return signed_tag("fin", stage, signed(5))

        def fout_at(stage):
            return signed_tag("fout", stage, signed(6))

        # ---- front: the command being received (element-wise stream or a row's load pass) -----
        # (loaded in every IDLE cycle, read only after it: no reset)
        f_lastb = Signal(beat_bits, reset_less=True)  # the index of the command's last beat
        # Lane masks carry lanes 1..L-1 only: lane 0 is in every beat (the last beat's lanes
        # are those below n % lanes, or all; n >= 1), so its bit would always be 1.
        f_lmask = Signal(L - 1, reset_less=True)      # the lanes of its last beat (1..L-1)
        # f_cnt == f_lastb (kept with f_cnt, not compared after it)
        f_last = Signal(reset_less=True)
        # the lanes of the beat f_cnt counts: f_lmask if f_last, else all (kept with f_last,
        # not selected after it)
        f_mask = Signal(L - 1, reset_less=True)
        f_cnt = Signal(beat_bits, reset_less=True)
        f_tag = Signal(tag_layout, reset_less=True)
        reject = Signal()

        # ---- credits ---------------------------------------------------------------------------
        # The counter counts grants a cycle late (registered: the issue decision is not in
        # front of its adder), so up to one more beat than it counts holds a slot; a grant
        # needs a slot beside that one, inflight < OUT_DEPTH - 1, and that test is itself
        # registered (from the counter's next value).
        inflight = Signal(range(OUT_DEPTH + 1))
        credit = Signal(init=1)

        # ---- row buffers (two: a row loads while the previous one is read back) ---------------
        # Per buffer: the row's command and its load-pass statistics (ctx), ``free`` (no row in
        # it: a row command may load it), ``ready`` (loaded, statistics final: the row side may
        # start it). The front loads buffer ``wsel``, the row side reads buffer ``rsel``.
        ctx_layout = data.StructLayout({
            "op": unsigned(3), "fin": unsigned(3), "fout": unsigned(4),
            "n": unsigned(row_bits + 1), "lastb": unsigned(row_beat_bits),
            "lmask": unsigned(L - 1),              # the lanes 1..L-1 of the row's last beat
            "sm": unsigned(1), "ln": unsigned(1),  # op is softmax / layernorm
            "mx": signed(8),                       # softmax: row max
            "sx": signed(row_bits + 9),            # layernorm: sum of x
            "sxx": unsigned(row_bits + 15)})       # layernorm: sum of x*x
        if rows:
            # up to max_row = 256 (16 * max_row = 4 Kbit) the row buffers are LUT RAM: a
            # block RAM's clock-to-output (6.1 ns in nextpnr's ECP5 model, no output register
            # in Yosys's mapping) and the route from it took most of a cycle
            m.submodules.rowbuf = rowbuf = Memory(
                shape=unsigned(8 * L), depth=2 * (self._max_row // L), init=[],
                attrs={"ram_style": "distributed"} if self._max_row <= 256 else None)
            wport = rowbuf.write_port()
            rport = rowbuf.read_port()
            # (written when a row command is accepted, read only for that row: no reset)
            ctx = [Signal(ctx_layout, name=f"ctx{b}", reset_less=True) for b in range(2)]
            free = [Signal(init=1, name=f"free{b}") for b in range(2)]
            ready = [Signal(name=f"ready{b}") for b in range(2)]
            wsel = Signal()
            rsel = Signal()
            cur = Signal(ctx_layout)               # the row side's row
            m.d.comb += cur.eq(Mux(rsel, ctx[1].as_value(), ctx[0].as_value()))
            # the fields of the row side's row set with its command, registered in WAIT (the
            # statistics are still read through cur: they settle after the row starts)
            fixed = ("op", "fin", "fout", "n", "lastb", "lmask", "sm", "ln")
            rowc = Signal(data.StructLayout({f: ctx_layout.members[f] for f in fixed}),
                          name="rowc", reset_less=True)
            b_cnt = Signal(row_beat_bits)
            # softmax: sum of E (each E <= 2**16, so the sum <= 2**(16 + row_bits))
            s_sum = Signal(17 + row_bits)
            # The row scalars are written by the row's scalar step before its output pass
            # reads them (reset-less: their value before that is never read).
            y_row = Signal(16, reset_less=True)    # recip (softmax) or isqrt (layernorm)
            # The row-wise outputs are (P + 2**(sh-1)) >> sh with sh >= 13 (layernorm:
            # 35 + k - fout, k >= -7) or sh >= 17 (softmax: 15 + bitlen(S) - fout, S >=
            # 2**16), equal to ((P >> d) + 2**(sh-1-d)) >> (sh - d) for the drop d =
            # ROW_DROP = 12 (layernorm) or SOFTMAX_DROP = 16 (softmax): the products drop
            # their low d bits (never read); the sum's bit 0 is below any shift (sh - d >=
            # 1), so it is dropped too (_rnd_half): sh_row holds sh - d - 1 (>= 0) and rnd_row
            # its rounding constant 2**sh_row, latched with it. sh - d - 1 is at most
            # 15 + row_bits (softmax, S <= 2**(16 + row_bits)) or 22 + the largest k
            # (layernorm, fout 0).
            sh_max = max([len_ - 2 for len_ in lens_sm] +
                         [22 + k_of(len_) for len_ in lens_ln])
            sh_row = Signal(range(sh_max + 1), reset_less=True)
            rnd_row = Signal(sh_max + 1, reset_less=True)
            # layernorm: the row's n and sum of x
            ln_n = Signal(row_bits + 1, reset_less=True)
            ln_sx = Signal(signed(row_bits + 9), reset_less=True)
            all_free = free[0] & free[1]
            w_free = Mux(wsel, free[1], free[0])
        else:
            all_free = Const(1, 1)
            w_free = Const(1, 1)

        # ---- beat register (stage 0) -----------------------------------------------------------
        s0_valid = Signal()
        # the beat's data (read only with s0_valid and its delays: no reset)
        s0_out = Signal(reset_less=True)   # an output beat (else a softmax sum beat)
        s0_last = Signal(reset_less=True)
        s0_mask = Signal(L - 1, reset_less=True)      # lanes 1..L-1 (lane 0: always)
        s0_mem = Signal(reset_less=True)   # x comes from the row buffer's read port
        s0_xreg = Signal(8 * L, reset_less=True)
        s0_rb = Signal(reset_less=True)    # the row buffer of a row-side beat
        s0_gamma = Signal(16 * L, reset_less=True)
        s0_beta = Signal(16 * L, reset_less=True)
        issue = Signal()
        issue_out = Signal()
        issue_mem = Signal()
        issue_last = Signal()
        issue_mask = Signal(L - 1)
        m.d.sync += [s0_valid.eq(issue), s0_out.eq(issue_out), s0_last.eq(issue_last),
                     s0_mask.eq(issue_mask), s0_mem.eq(issue_mem)]
        s0_x_bits = Signal(8 * L)
        m.d.comb += s0_x_bits.eq(Mux(s0_mem, rport.data, s0_xreg) if rows else s0_xreg)
        x1_bits = reg(s0_x_bits, "x1")                # stage 1: the beat's elements
        if rows:
            m.d.sync += s0_rb.eq(rsel)
            # softmax's row max at stage 1, read from the beat's own buffer at stage 0 (the row
            # side moves on to the next buffer while the last beats drain; a new row's
            # statistics reset that buffer no earlier than the cycle after)
            # (0 for the other ops: exp's d = x - mx1 is then x)
            mx1 = reg(Mux(op_at(0, "softmax"), Mux(s0_rb, ctx[1].mx, ctx[0].mx), 0), "mx1")

        def last_mask(n):
            """Lanes 1..L-1 of the last of ``ceil(n / lanes)`` beats (``n >= 1``): every lane
            when ``lanes`` divides ``n``, else lanes below ``n % lanes`` (earlier beats are
            full). Lane 0 is in every beat: not carried."""
            rem = n[:log_l]
            return Cat((rem == 0) | (rem > j) if j < L - 1 else rem == 0 for j in range(1, L))

        def if_lane(mask, j, value, other):
            """``value`` if lane ``j`` is in ``mask`` (lanes 1..L-1), else ``other``; lane 0 is
            in every beat (no select built)."""
            return value if j == 0 else Mux(mask[j - 1], value, other)

        def last_beat(n):
            return ((n + (L - 1)) >> log_l) - 1

        def mask_if(is_last, lmask):
            return Mux(is_last, lmask, (1 << (L - 1)) - 1)

        # ---- front: commands, element-wise streams and load passes ----------------------------
        c = self.cmd.payload
        c_is_row = (c.op == code["softmax"]) | (c.op == code["layernorm"])
        c_built = Cat(c.op == code[name] for name in ops).any()
        c_ok = c_built & (c.n != 0) & (~c_is_row | (c.n <= self._max_row))
        pipe_empty = Signal()
        grant_reject = Signal()
        load_fire = Signal()         # a row beat is taken (LOAD)

        # The FSMs hold only registers; every comb output is one expression of their states
        # (a comb process inside an FSM state that never changes is not evaluated at time 0 by
        # some simulators).
        stream_go = Signal()
        with m.FSM(name="front") as front:
            with m.State("IDLE"):
                # the command fields are loaded every IDLE cycle, not only when a command is
                # accepted: none of them is read before the cycle after the accepting one (the
                # last IDLE cycle), and a value held in IDLE would be logic no output can see
                m.d.sync += [f_tag.op.eq(c.op), f_tag.fin.eq(c.fin), f_tag.fout.eq(c.fout),
                             f_lastb.eq(last_beat(c.n)), f_lmask.eq(last_mask(c.n)),
                             f_cnt.eq(0), f_last.eq(last_beat(c.n) == 0),
                             f_mask.eq(mask_if(last_beat(c.n) == 0, last_mask(c.n)))]
                with m.If(self.cmd.valid & self.cmd.ready):
                    with m.If(~c_ok):
                        m.d.sync += reject.eq(1)
                    if rows:
                        with m.Elif(c_is_row):
                            for b in range(2):
                                with m.If(wsel == b):
                                    m.d.sync += [
                                        ctx[b].op.eq(c.op), ctx[b].fin.eq(c.fin),
                                        ctx[b].fout.eq(c.fout), ctx[b].n.eq(c.n),
                                        ctx[b].lastb.eq(last_beat(c.n)),
                                        ctx[b].lmask.eq(last_mask(c.n)),
                                        ctx[b].sm.eq(c.op == code["softmax"]),
                                        ctx[b].ln.eq(c.op == code["layernorm"]),
                                        ctx[b].mx.eq(-128), ctx[b].sx.eq(0), ctx[b].sxx.eq(0),
                                        free[b].eq(0)]
                            m.next = "LOAD"
                    with m.Else():
                        m.next = "STREAM"
            with m.State("STREAM"):
                with m.If(stream_go):
                    m.d.sync += [s0_xreg.eq(self.i.payload.x.as_value()), f_cnt.eq(f_cnt + 1),
                                 f_last.eq(f_cnt + 1 == f_lastb),
                                 f_mask.eq(mask_if(f_cnt + 1 == f_lastb, f_lmask))]
                    with m.If(f_last):
                        m.next = "IDLE"
            if rows:
                with m.State("LOAD"):
                    with m.If(load_fire):
                        m.d.sync += [f_cnt.eq(f_cnt + 1), f_last.eq(f_cnt + 1 == f_lastb),
                                     f_mask.eq(mask_if(f_cnt + 1 == f_lastb, f_lmask))]
                        with m.If(f_last):
                            # the row side may start the row now: its statistics are final
                            # two cycles later, before the first use (stage 1 of the sum
                            # pass, or the scalar step's second cycle)
                            hand_over(wsel, ready)
                            m.next = "IDLE"
        f_stream = front.ongoing("STREAM")
        # A command waits for the buffer it might load (rows take turns in the two).
        m.d.comb += self.cmd.ready.eq(front.ongoing("IDLE") & ~reject & w_free)
        # Element-wise beats enter the pipeline behind any row's output pass: only once no row
        # is waiting or being read back (outputs stay in command order).
        m.d.comb += stream_go.eq(f_stream & self.i.valid & credit & all_free)
        if rows:
            f_load = front.ongoing("LOAD")
            addr_bits = row_bits - log_l
            m.d.comb += [load_fire.eq(f_load & self.i.valid),
                         self.i.ready.eq(Mux(f_stream, credit & all_free, f_load)),
                         wport.addr.eq(Cat(f_cnt[:addr_bits], wsel)),
                         wport.data.eq(self.i.payload.x.as_value()), wport.en.eq(load_fire)]
        else:
            m.d.comb += self.i.ready.eq(f_stream & credit)

        # ---- row statistics of the load pass (two stages after the beat is taken) -------------
        if rows:
            # stage A: the beat, its mask and buffer registered; stage B: the beat's max / sum /
            # sum of squares (trees); then accumulated into the buffer's ctx. Final (and the
            # buffer ready) two cycles after the last beat.
            la_v = reg(load_fire, "ld_v", control=True)
            la_b = reg(wsel, "ld_b")
            la_x = reg(self.i.payload.x.as_value(), "ld_x")
            la_mask = reg(f_mask, "ld_mask")
            la_sq = [reg(self.i.payload.x[j] * self.i.payload.x[j], f"ld_sq{j}", unsigned(15))
                     for j in range(L)]
            xs = [la_x.word_select(j, 8).as_signed() for j in range(L)]

            def max_level(values):
                return [Mux(values[i] > values[i + 1], values[i], values[i + 1])
                        for i in range(0, len(values), 2)]

            xm = [if_lane(f_mask, j, self.i.payload.x[j], -128) for j in range(L)]
            if L > 1:       # the first level with the beat
                xm = [reg(v, f"ld_max2_{i}", signed(8)) for i, v in enumerate(max_level(xm))]
            else:
                xm = [reg(xm[0], "ld_max2_0", signed(8))]
            while len(xm) > 1:
                xm = max_level(xm)
            lb_v = reg(la_v, "ld_v2", control=True)
            lb_b = reg(la_b, "ld_b2")
            lb_max = reg(xm[0], "ld_max", signed(8))
            lb_sx = reg(_sum_tree(if_lane(la_mask, j, xs[j], 0) for j in range(L)), "ld_sx")
            lb_sxx = reg(_sum_tree(if_lane(la_mask, j, la_sq[j], 0) for j in range(L)), "ld_sxx")
            for b in range(2):
                with m.If(lb_v & (lb_b == b)):
                    m.d.sync += [ctx[b].mx.eq(Mux(lb_max > ctx[b].mx, lb_max, ctx[b].mx)),
                                 ctx[b].sx.eq(ctx[b].sx + lb_sx),
                                 ctx[b].sxx.eq(ctx[b].sxx + lb_sxx)]

        # ---- row side: sum pass (softmax), scalar step, output pass ---------------------------
        if rows:
            # counts 0 .. cycles - 1 in SCALAR; the last step's increment wraps or leaves it
            # past both compare values, and WAIT clears it: no bit beyond the count is built
            scal = Signal(range(max(ROW_SCALAR_CYCLES.values())))
            sum_done = Signal()          # softmax: the sum pass's last E has been added to s_sum
            last_scal = Signal()
            cur_sm = rowc.sm
            m.d.comb += last_scal.eq(scal == Mux(cur_sm, ROW_SCALAR_CYCLES["softmax"] - 1,
                                                 ROW_SCALAR_CYCLES["layernorm"] - 1))
            b_last = b_cnt == rowc.lastb
            is_ln = rowc.ln
            out_go = Signal()
            with m.FSM(name="row") as row:
                with m.State("WAIT"):
                    # cleared in every WAIT cycle, not only when a row starts: a value held
                    # in WAIT would be logic no output can see (none of them is read there)
                    m.d.sync += [b_cnt.eq(0), s_sum.eq(0), scal.eq(0)]
                    m.d.sync += [rowc[f].eq(cur[f]) for f in fixed]
                    with m.If(Mux(rsel, ready[1], ready[0])):
                        for b in range(2):
                            with m.If(rsel == b):
                                m.d.sync += ready[b].eq(0)
                        with m.If(cur.sm):
                            m.next = "SUM"
                        with m.Else():
                            m.next = "SCALAR"
                with m.State("SUM"):
                    m.d.sync += b_cnt.eq(b_cnt + 1)
                    with m.If(b_last):
                        m.d.sync += b_cnt.eq(0)
                        m.next = "DRAIN"
                with m.State("DRAIN"):
                    with m.If(sum_done):
                        m.next = "SCALAR"
                with m.State("SCALAR"):
                    m.d.sync += scal.eq(scal + 1)
                    with m.If(last_scal):
                        m.d.sync += [ln_n.eq(rowc.n), ln_sx.eq(cur.sx)]
                        m.next = "OUT"
                with m.State("OUT"):
                    with m.If(out_go):
                        m.d.sync += [b_cnt.eq(b_cnt + 1),
                                     s0_gamma.eq(self.p.payload.gamma.as_value()),
                                     s0_beta.eq(self.p.payload.beta.as_value())]
                        with m.If(b_last):
                            hand_over(rsel, free)
                            m.next = "WAIT"
            r_sum, r_out = row.ongoing("SUM"), row.ongoing("OUT")
            row_side = r_sum | r_out     # the row side owns the issue slot (else the front)
            m.d.comb += [
                out_go.eq(r_out & credit & (~is_ln | self.p.valid)),
                self.p.ready.eq(out_go & is_ln),
                issue.eq(stream_go | r_sum | out_go),
                issue_out.eq(~r_sum),
                issue_mem.eq(row_side),
                issue_tag.eq(Mux(row_side, Cat(rowc.op, rowc.fin, rowc.fout), f_tag.as_value())),
                issue_last.eq(Mux(row_side, b_last, f_last)),
                issue_mask.eq(Mux(row_side, mask_if(b_last, rowc.lmask), f_mask)),
                rport.addr.eq(Cat(b_cnt[:addr_bits], rsel)),
            ]
        else:
            m.d.comb += [issue.eq(stream_go), issue_out.eq(1), issue_tag.eq(f_tag),
                         issue_last.eq(f_last), issue_mask.eq(f_mask)]

        # ---- per-row scalars: a free-running pipeline on the (then constant) statistics -------
        if rows:
            v_bits = max(lens_ln + lens_sm)
            # layernorm's n**2 * variance = n * sxx - sx**2 in four stages (its statistics
            # are final in SCALAR's second cycle), each multiply alone in its stage:
            # stage 1: the row's statistics registered (the buffer select's multiplexer is not
            # in front of the multipliers)
            st_n = reg(rowc.n, "sc_n")
            st_sxx = reg(cur.sxx, "sc_sxx")
            st_sx = reg(cur.sx, "sc_sx")
            # stage 2: the products; n * sxx in two parts (sxx has row_bits + 15 bits, more
            # than one multiplier's 18)
            # (n * sxx - sx**2 is at least 0 and below 2**v_bits: it is computed modulo
            # 2**v_bits, so every product keeps only the bits below that)
            a_lo = reg((st_n * st_sxx[:17])[:v_bits], "sc_nsxx_lo")
            a_hi = reg((st_n * st_sxx[17:])[:v_bits - 17], "sc_nsxx_hi")
            b_p = reg((st_sx * st_sx)[:v_bits], "sc_sxsx")
            # stages 3 and 4: n * sxx - sx**2, one carry chain each
            var1 = reg(a_lo - b_p, "sc_var1", unsigned(v_bits))
            a_hi4 = reg(a_hi, "sc_nsxx_hi4")
            var = reg(var1 + (a_hi4 << 17), "sc_var", unsigned(v_bits))
            # the row's op travels along the stages (its statistics are constant meanwhile)
            sm1 = delay(cur_sm, 4, "sc_sm1")
            # stage 5: n**2 * variance (layernorm, at least 1) or the sum (softmax: final when
            # SCALAR starts, it enters here)
            v_reg = reg(Mux(sm1, s_sum, Mux(var == 0, 1, var)), "sc_v", unsigned(v_bits))
            sm2 = reg(sm1, "sc_sm2")
            # stage 6: the bit length; stage 7: the exponent and the mantissa's shift amounts
            # (tables of the registered bit length: no adder after the tree)
            # Below 17 the bit length is needed only up to its pair (2i-1 and 2i): layernorm
            # reads k = (len - 15) >> 1, the same for both, and softmax's sum is at least
            # 2**16 (len >= 17). So bits 0..15 are taken in pairs (length 2i for the pair
            # holding bit 2i-1 or 2i-2): the tree does not tell 2i-1 from 2i.
            len_c = Signal(range(v_bits + 1), name="sc_len_c")
            pairs = Signal(8, name="sc_pairs")
            m.d.comb += pairs.eq(Cat(v_reg[2 * i] | v_reg[2 * i + 1] for i in range(8)))
            # (V >= 1: a pair is nonzero when V < 2**16)
            m.d.comb += len_c.eq(Mux(v_reg[16:].any(), _bitlen_at(v_reg[16:], 16, nonzero=True),
                                     _bitlen_at(pairs, 0, 2, nonzero=True)))
            len_reg = reg(len_c, "sc_len")

            def table(entries):
                """The value of ``entries[len]`` for the bit lengths ``len`` that are read (a
                dict): one select per distinct value, the most frequent one the default (no
                entry for a length that is not read)."""
                groups = {}
                for n, value in sorted(entries.items()):
                    groups.setdefault(value, []).append(n)
                order = sorted(groups, key=lambda value: (len(groups[value]), value))
                lo, hi = min(order), max(order)
                shape = (signed(max(lo.bit_length(), hi.bit_length()) + 1) if lo < 0
                         else unsigned(max(hi.bit_length(), 1)))
                value = Const(order[-1], shape)
                for v in order[:-1]:
                    value = Mux(Cat(len_reg == n for n in groups[v]).any(), v, value)
                return value

            sm2 = reg(sm2, "sc_sm3")
            # the right shift: len - 16 (softmax), 2k for k >= 0 (layernorm)
            sh_right = Mux(sm2, table({n: n - 16 for n in lens_sm}) if lens_sm else 0,
                           table({n: 2 * k_of(n) for n in lens_ln if k_of(n) >= 0})
                           if lens_ln else 0)
            sh_right = reg(sh_right, "sc_shr")
            # -2k for k < 0, the only case that reads it: the bit length is then even,
            # 2..14 (a pair's length, v >= 1), and -2k = 16 - len = 2 * ~len[1:4] + 2
            sh_left = reg(~len_reg[1:4], "sc_shl", unsigned(3))
            left = reg(~sm2 & table({n: int(k_of(n) < 0) for n in lens_ln})
                       if lens_ln else Const(0, 1), "sc_left")
            k3 = reg(table({n: k_of(n) for n in lens_ln}) if lens_ln else Const(0, 1), "sc_k3")
            v3 = delay(v_reg, 2, "sc_v3")
            # stage 8: the 16-bit mantissa (and the inverse square root's seed segment)
            mant_c = Signal(16, name="sc_mant_c")
            m.d.comb += mant_c.eq(Mux(left, (v3 << 2) << Cat(Const(0, 1), sh_left),
                                      v3 >> sh_right))
            mant = reg(mant_c, "sc_mant")
            len4 = reg(len_reg, "sc_len4")
            k4 = reg(k3, "sc_k4")
            # the output shift sh - d - 1 (softmax 15 + len - fout, layernorm 35 + k - fout;
            # the drop d, see sh_row) and its rounding constant, each registered in a stage
            # of its own beside the Newton core (free-running like it: final long before the
            # latch, which copies them)
            sh_sm = 15 + len4 - rowc.fout - (SOFTMAX_DROP + 1)
            sh_ln = 35 + k4 - rowc.fout - (ROW_DROP + 1)
            sh_pre = reg(sh_sm if not has["layernorm"] else
                         sh_ln if not has["softmax"] else Mux(cur_sm, sh_sm, sh_ln),
                         "sc_sh", range(sh_max + 1))
            rnd_pre = reg(Const(1, 1) << sh_pre, "sc_rnd", unsigned(sh_max + 1))
            with m.If(last_scal):
                m.d.sync += [sh_row.eq(sh_pre), rnd_row.eq(rnd_pre)]
            # stages 9..: the Newton core, then the row's scalar and output shift are latched
            if has["softmax"]:
                y0_row, m0_row = _recip_seed(reg, mant, "row_recip")
                yr_row, _ = _recip_pipe(reg, y0_row, m0_row, "row_recip")
                with m.If(last_scal & cur_sm):
                    m.d.sync += y_row.eq(yr_row)
            if has["layernorm"]:
                yi_row, _ = _isqrt_pipe(reg, mant, "row_isqrt", mant_c[15])
                with m.If(last_scal & ~cur_sm):
                    m.d.sync += y_row.eq(yi_row)

        # ---- per-lane pipeline -----------------------------------------------------------------
        # fin/fout/op are read from the beat's tag at the stage that uses them.
        def sh_15_fout(stage):
            """``15 - fout`` (0..15): an output shift ``16 - fout`` less the bit
            ``_rnd_half`` drops."""
            return signed_tag("fout", stage, 4, 15, f"sh15fout_at{stage}")

        if has["gelu"]:
            gelu_words = []
            for j in range(golden.GELU_SEGMENTS):
                g0 = golden.GELU_TABLE[j]
                dg = golden.GELU_TABLE[j + 1] - g0
                gelu_words.append(g0 | ((dg & 0xFFFF) << 16))
            # (no flag for |x| past the table: see g_addr)
            assert golden.GELU_TABLE[0] == 0 and 128 << 2 < 8 * golden.GELU_SEGMENTS
        if has["log2"]:
            log2_words = list(golden.LOG2_TABLE)
        if has["recip"]:
            # the reciprocal core's output of each |x| (golden.recip_core of the mantissa
            # |x| << (16 - bitlen)), read by |x| mod 128: word 0 is 128's
            recip_words = [golden.recip_core(ax << (16 - ax.bit_length()))
                           for ax in [128] + list(range(1, 128))]

        ys, doms, es = [], [], []
        depth_of = {}               # op -> stage of its result register
        for j in range(L):
            x = x1_bits.word_select(j, 8).as_signed()          # stage 1
            results = {}            # op -> (y, stage of y)
            dom = Const(0, 1)       # stage 2

            if has["gelu"]:
                a = Signal(8, name=f"g_abs{j}")
                m.d.comb += a.eq(Mux(x < 0, -x, x))
                # |x| and relu registered before their shifts (the negation and a shifter
                # in one stage were a long path)
                a2 = reg(a, f"g_abs2{j}")                                        # 2
                relu = reg(Mux(x < 0, 0, x[:7]), f"g_relu{j}", unsigned(7))
                sh7 = signed_tag("fin", 2, 3, 7, "g_sh7")
                tq = reg(a2 << sh7, f"g_tq{j}", unsigned(15))                    # 3
                # golden's relu << (16 - fin) is rs << 9: the shift is at least 9 (fin <= 7),
                # so its low 9 bits are always 0 and are not carried (rs < 127 * 2**7)
                rs = reg(relu << sh7, f"g_rs{j}", unsigned(14))
                seg = tq >> 3
                inside = seg < golden.GELU_SEGMENTS
                # (|x| past the table, tq >= 8 * GELU_SEGMENTS = 640, needs a shift 7 - fin
                # of at least 3, as |x| <= 128: its fraction tq[:3] is then 0, and word 0 is
                # g(0) = 0, so address 0 gives g = 0 with no flag carried to stage 8)
                addr = reg(Mux(inside, seg, 0), f"g_addr{j}", unsigned(7))       # 4
                fr = reg(tq[:3], f"g_fr{j}")
                # the table in LUTs (a block RAM's clock-to-output is most of a cycle), read
                # from the registered address
                rom = Memory(shape=unsigned(32), depth=golden.GELU_SEGMENTS, init=gelu_words,
                             attrs={"rom_style": "logic"})
                m.submodules[f"gelu_rom{j}"] = rom
                rd = rom.read_port(domain="comb")
                m.d.comb += rd.addr.eq(addr)
                g0 = reg(rd.data[:16], f"g_g0{j}")                               # 5 (ROM)
                dg = reg(rd.data[16:].as_signed(), f"g_dg{j}")
                fr = reg(fr, f"g_frb{j}")
                # the table's output is registered in the fabric, then once more in front
                # of the multiply (that register moves into the DSP: the table's logic
                # stays at its own register, not routed to the DSP's site)
                dg, fr = reg(dg, f"g_dg5{j}"), reg(fr, f"g_frc{j}")               # 6
                g0 = delay(g0, 2, f"g_g0c{j}")                                   # 7
                pr = reg(dg * fr, f"g_pr{j}")
                rs6 = delay(rs, 4, f"g_rs6{j}")
                g = reg(g0 + (pr >> 3), f"g_g{j}", signed(18))                   # 8
                rs7 = reg(rs6, f"g_rs7{j}")
                w = reg((rs7 << 9) - g, f"g_w{j}", signed(25))                   # 9
                v = reg(_rnd_half(w, sh_15_fout(9)), f"g_v{j}", signed(25))      # 10
                q = reg(v >> sh_15_fout(10), f"g_q{j}", signed(25))              # 11
                # GELU's result is at least -5569 (w >= -11139, the table's largest g, at
                # x < 0; shift 16 - fout >= 1): only the upper saturation can act
                y = reg(_sat16(q, low=False), f"g_y{j}", signed(16))             # 12
                results["gelu"] = (y, 12)

            if need_exp:
                # d = x - max (softmax; mx1 is 0 for the other ops) shifted left by 7 - fin:
                # z = (d << (7 - fin)) * log2(e) in Q20 is z_d << (7 - fin) for z_d = d *
                # log2(e), so golden's z_d >> (fin + 20) and z_d >> (fin + 4) are the fixed
                # slices z >> 27 and z >> 11 (the variable shift moves before the multiply)
                sh_e = signed_tag("fin", 1, 3, 7, "e_sh")
                d = reg((x - mx1) << sh_e if has["softmax"] else x << sh_e,
                        f"e_d{j}", signed(16))                                   # 2
                # exact ranges over d in -255..255 (a softmax beat's lanes past n may hold
                # stale bytes above the row max): |z| < 2**36, n in -368..367. The constant
                # has 21 bits: two products (each one multiplier), added in the next stage
                c_hi, c_lo = golden.LOG2E_Q20 >> 17, golden.LOG2E_Q20 & 0x1FFFF
                # (z_lo registered from its bit 11: no result reads its low 11 bits)
                z_lo = reg((d * c_lo)[11:], f"e_zlo{j}")                         # 3
                z_hi = reg(d * c_hi, f"e_zhi{j}")
                # bits 11..16 of z are z_lo's (z_hi starts at bit 17); 17.. are the sum
                z_mid = z_lo[:6]
                z_top = reg(z_lo[6:].as_signed() + z_hi, f"e_ztop{j}", signed(20))    # 4
                z_mid4 = reg(z_mid, f"e_zmid{j}")
                n_e = Signal(signed(10), name=f"e_n{j}")
                f_e = Signal(16, name=f"e_f{j}")
                m.d.comb += [n_e.eq(z_top[10:]), f_e.eq(Cat(z_mid4, z_top[:10]))]
                c1, c2, c3 = golden.EXP_C
                # Horner's rule with each constant added after the previous product, each
                # multiply and each addition in a stage of its own: t1 = c2 + f c3,
                # t2 = c1 + f t1
                m1 = reg((c3 * f_e) >> 16, f"e_m1{j}", unsigned(14))             # 5
                f5 = reg(f_e, f"e_f5{j}")
                t1 = reg(c2 + m1, f"e_t1{j}", unsigned(15))                      # 6
                f6 = reg(f5, f"e_f6{j}")
                m2 = reg((t1 * f6) >> 16, f"e_m2{j}", unsigned(15))              # 7
                f7 = reg(f6, f"e_f7{j}")
                t2 = reg(c1 + m2, f"e_t2{j}", unsigned(16))                      # 8
                f8 = reg(f7, f"e_f8{j}")
                t3 = reg((t2 * f8) >> 16, f"e_t3{j}", unsigned(16))              # 9
                p_e = Signal(17, name=f"e_p{j}")                                 # 9 (comb)
                m.d.comb += p_e.eq(65536 + t3)
                # -n, registered alone (one carry chain from z_top, whose register also
                # feeds the polynomial); the shift amounts are used only at stage 9, so they
                # are taken from it at stage 6 and delayed from there
                neg5 = reg(-n_e, f"e_neg5{j}", signed(10))                       # 5: -367..368
                if has["exp"]:
                    # t = s - 2 for golden's shift s = 16 - fout - n: -184..199. s <= 1
                    # saturates (s = 1: (P + 1) >> 1 >= 2**15, as P >= 2**16), s >= 18 gives
                    # 0; for s in 2..17 the rounding (P + 2**(s-1)) >> s is
                    # ((P >> 1) + 2**t) >> 1 >> t (P's bit 0 carries nothing into it, and
                    # the sum's bit 0 is below any shift)
                    sh14 = signed_tag("fout", 5, signed(5), 14, "sh14fout_at5")
                    t6 = reg(sh14 + neg5, f"x_t6{j}", signed(9))                # 6
                    # only the shift t[:4] and the two range flags travel on (t's other bits
                    # are read by no result)
                    sh = delay(t6[:4], 3, f"x_t9{j}")                            # 9
                    le1 = delay(t6 < 0, 5, f"x_le1{j}")                          # 11
                    ge16 = delay(t6 >= 16, 5, f"x_ge16{j}")
                    v = reg(_rnd_half(p_e[1:], sh), f"x_v{j}", unsigned(16))     # 10
                    sh10 = reg(sh, f"x_sh10{j}")
                    q = reg(v >> sh10, f"x_q{j}", unsigned(16))                  # 11
                    y = reg(Mux(le1, 32767, Mux(ge16, 0, _sat16(q))), f"x_y{j}",
                            signed(16))                                          # 12
                    results["exp"] = (y, 12)
                if has["softmax"]:
                    sh6 = reg(Mux(neg5 >= 18, 18, neg5[:5]), f"s_sh6{j}", unsigned(5))  # 6
                    sh9 = delay(sh6, 3, f"s_sh9{j}")                             # 9
                    # (P + 2**(sh-1)) >> sh: at sh = 18 it is 0 with or without the addend
                    # (P < 2**17), so the addend has bits for sh <= 17 only; P + 2**16 < 2**18
                    v = reg(p_e + ((Const(1, 1) << sh9) >> 1)[:17], f"s_v{j}",
                            unsigned(18))                                        # 10
                    sh10 = reg(sh9, f"s_sh10{j}")
                    e = reg(v >> sh10, f"s_e{j}", unsigned(17))                  # 11 = SUM_STAGE
                    # E * Y_row without its low SOFTMAX_DROP bits (sh_row: see rnd_row);
                    # E <= 2**16 and Y_row < 2**16, so E * Y_row < 2**32
                    prod = reg(((e * y_row) >> SOFTMAX_DROP)[:32 - SOFTMAX_DROP],
                               f"s_prod{j}")                                     # 12
                    # softmax's rnd_row < 2**(16 + row_bits); the rounded sum's exact width
                    v2_bits = ((1 << len(prod)) - 1 + (1 << (15 + row_bits))).bit_length() - 1
                    v2 = reg((prod + rnd_row[:16 + row_bits]) >> 1, f"s_v2{j}",
                             unsigned(v2_bits))                                  # 13
                    # (the bits the next shift by sh_row[:3] <= 7 can bring into the result)
                    c2 = reg((v2 >> Cat(Const(0, 3), sh_row[3:]))[:len(prod) + 7],
                             f"s_c2{j}")                                         # 14
                    q2 = (c2 >> sh_row[:3])[:len(prod)]
                    y = reg(Mux(q2 > 32767, 32767, q2), f"s_y{j}", signed(16))   # 15
                    results["softmax"] = (y, 15)
                    es.append(e)

            if has["log2"]:
                xu = x[:7]
                pos = reg(x > 0, f"l_pos{j}")                                    # 2
                # bitlen - 1 (x[:7] is 0 only for x = 0 and -128, whose output is -32768
                # whatever e is)
                e_l = reg(_bitlen_at(xu, -1, nonzero=True), f"l_e{j}", unsigned(3))
                xu2 = reg(xu, f"l_xu{j}")
                sh6 = Signal(3, name=f"l_sh{j}")
                m.d.comb += sh6.eq(6 - e_l)
                idx = reg((xu2 << sh6)[:6], f"l_idx{j}")                        # 3
                rom = Memory(shape=unsigned(16), depth=64, init=log2_words)
                m.submodules[f"log2_rom{j}"] = rom
                rd = rom.read_port(domain="comb")
                m.d.comb += rd.addr.eq(idx)
                t = reg(rd.data, f"l_t{j}")                                      # 4 (ROM)
                t = reg(t, f"l_tb{j}")                                           # 5 (ROM out)
                ee = Signal(signed(5), name=f"l_ee{j}")
                m.d.comb += ee.eq(delay(e_l, 3, f"l_e5{j}"))
                pos5 = delay(pos, 3, f"l_pos5{j}")
                v = reg(((ee - fin_at(5)) << 16) + t, f"l_v{j}", signed(24))     # 6
                v5 = reg(_rnd_half(v, sh_15_fout(6)), f"l_v5{j}", signed(24))    # 7
                q = reg(v5 >> sh_15_fout(7), f"l_q{j}", signed(24))              # 8
                pos8 = delay(pos5, 3, f"l_pos8{j}")
                y = reg(Mux(pos8, _sat16(q), -32768), f"l_y{j}", signed(16))     # 9
                results["log2"] = (y, 9)
                dom = dom | (~pos & op_at(2, "log2"))

            if has["recip"]:
                ax = Signal(8, name=f"r_ax{j}")
                m.d.comb += ax.eq(Mux(x < 0, -x, x))
                a = reg(ax, f"r_abs{j}")                                         # 2
                negx = reg(x < 0, f"r_neg{j}")
                zero = reg(x == 0, f"r_zero{j}")
                # (|x| = 0 gives 32767 by its own flag: no leaf for it)
                # its bit length from the registered |x| (not after the negation)
                ln = reg(_bitlen_at(a, nonzero=True), f"r_len{j}", range(9))      # 3
                # the core's y = recip_core(|x| << (16 - bitlen)) is a function of |x|
                # (1..128): a table (no Newton steps), read by |x| mod 128 (word 0 is
                # 128's; x = 0 gives 32767 by its own flag), its index carried to stage
                # 5 and the word registered at 6 (the result joins the output chain at 9,
                # with log2's)
                depth = 3
                idx = delay(a[:7], depth, f"r_idx{j}")                          # 5
                rom = Memory(shape=unsigned(16), depth=128, init=recip_words)
                m.submodules[f"recip_rom{j}"] = rom
                rd = rom.read_port(domain="comb")
                m.d.comb += rd.addr.eq(idx)
                yr = reg(rd.data, f"r_y{j}")                                     # 3 + depth
                # s = 15 + bitlen - fin - fout is in -6..23: signed 6 bits
                s = Signal(signed(6), name=f"r_s{j}")
                m.d.comb += s.eq(15 + ln - fin_at(3) - fout_at(3))
                s_r = reg(s, f"r_s1_{j}")                                        # 4
                st = 3 + depth
                s_r2 = delay(s_r, depth - 1, f"r_s2_{j}")
                neg2 = delay(negx, depth + 2, f"r_neg2_{j}")
                zero2 = delay(zero, depth + 2, f"r_zero2_{j}")
                # s < 0 (x != 0; x == 0 gives 32767 below): r = y << -s with y >= 33026 (the
                # core's output over every int8 mantissa), so r >= 2**16 and the output
                # saturates whatever y is: only the flag is carried, not y << -s
                # no s >= 18 case (golden's r = 0): s <= 23 and y < 2**16, so for s >= 17
                # (y + 2**(s-1)) >> s is 0 with or without the addend: the addend has bits
                # for s <= 16 only, y + 2**15 < 2**17, and the shift of that by s >= 17 is 0
                vr = reg(yr + ((Const(1, 1) << s_r2[:5]) >> 1)[:16], f"r_v{j}", unsigned(17))
                lt0 = reg(s_r2 < 0, f"r_lt0{j}")                                 # st + 1
                s5 = reg(s_r2[:5], f"r_s5{j}")
                # s >= 0: r = (y + 2**(s-1)) >> s < 2**16 (y for s = 0, at most 2**15 else)
                r = reg(vr >> s5, f"r_r{j}", unsigned(16))                       # st + 2
                sat = reg(lt0, f"r_sat{j}")
                neg3, zero3 = reg(neg2, f"r_neg3{j}"), reg(zero2, f"r_zero3{j}")
                # sat16(-r) is -32768 for r >= 2**15, else -r[:15]; sat16(r) is 32767 then
                big = sat | r[15]
                r15 = r[:15]
                y = reg(Mux(zero3, 32767, Mux(neg3, Mux(big, -32768, -r15), Mux(big, 32767, r15))),
                        f"r_yo{j}", signed(16))                                  # st + 3
                results["recip"] = (y, st + 3)
                dom = dom | (zero & op_at(2, "recip"))

            if has["layernorm"]:
                nx = reg(ln_n * x, f"n_nx{j}")                                   # 2
                # |n x - sx| <= 255 n < 2**(row_bits + 8) (x and the row's elements are
                # int8): the exact width, so dd * Y_row fits one 18x18 multiplier up to
                # max_row = 512
                dd = reg(nx - ln_sx, f"n_d{j}", signed(row_bits + 9))            # 3
                p1 = reg(dd * y_row, f"n_p1_{j}", signed(row_bits + 9 + 16))     # 4
                gam = delay(s0_gamma.word_select(j, 16).as_signed(), 4, f"n_gam{j}")
                bet = delay(s0_beta.word_select(j, 16).as_signed(), 9, f"n_bet{j}")
                # the product without its low ROW_DROP bits (sh_row: see rnd_row):
                # (ph * 2**17 + pl) >> 12 == ph * 2**5 + (pl >> 12); p1's low 17 bits (an
                # 18-bit signed operand) and its high part each fit one multiplier
                pl = reg((p1[:17] * gam) >> ROW_DROP, f"n_pl{j}")                # 5
                ph = reg(p1[17:].as_signed() * gam, f"n_ph{j}")
                p2 = reg((ph << (17 - ROW_DROP)) + pl, f"n_p2_{j}",
                         signed(row_bits + 11 + 18 + 16 - ROW_DROP))             # 6
                v = reg((p2 + rnd_row) >> 1, f"n_v{j}")                          # 7
                c = reg(v >> Cat(Const(0, 3), sh_row[3:]), f"n_c{j}")           # 8
                q = reg(c >> sh_row[:3], f"n_q{j}", signed(len(p2)))             # 9
                w = reg(q + bet, f"n_w{j}")                                      # 10
                y = reg(_sat16(w), f"n_y{j}", signed(16))                        # 11
                results["layernorm"] = (y, 11)

            ys.append(self._merge_results(m, reg, results, op_at, j))
            doms.append(delay(dom, PIPE_DEPTH - 2, f"dom{j}"))
            depth_of.update({name: stage for name, (_, stage) in results.items()})

        # the deepest operation sets PIPE_DEPTH (golden.act's constant must follow the RTL)
        assert max(depth_of.values()) <= PIPE_DEPTH, depth_of
        assert not has["softmax"] or max(depth_of.values()) == PIPE_DEPTH

        # control bits along the pipeline
        # (at the last stage the FIFO write and its lanes are registered as decided, not
        # decoded from valid, out and mask there: each drives a lane's 17 data bits)
        v_pre = delay(s0_valid, PIPE_DEPTH - 1, "valid", control=True)
        out_pre = delay(s0_out, PIPE_DEPTH - 1, "out")
        mask_pre = delay(s0_mask, PIPE_DEPTH - 1, "mask")
        v_end = reg(v_pre, f"valid_d{PIPE_DEPTH - 1}", control=True)
        last_end = delay(s0_last, PIPE_DEPTH, "last")
        write_out = reg(v_pre & out_pre, "write_out", control=True)
        lane_out = [write_out] + [reg(v_pre & out_pre & mask_pre[j - 1], f"lane_out{j}",
                                      control=True) for j in range(1, L)]
        in_pipe = Signal(range(PIPE_DEPTH + 2))
        # (beats past stage 0: counted from the beat register, not from the issue decision)
        m.d.sync += in_pipe.eq(in_pipe + s0_valid - v_end)
        m.d.comb += pipe_empty.eq((in_pipe == 0) & ~s0_valid)

        # softmax sum of the exponentials, taken at SUM_STAGE (not at the end of the pipeline):
        # the beat's sum is registered, then added; sum_done marks the last beat's addition
        if has["softmax"]:
            sum_v = delay(s0_valid & ~s0_out, SUM_STAGE, "sumv", control=True)
            sum_last = delay(s0_last, SUM_STAGE, "suml")
            sum_mask = delay(s0_mask, SUM_STAGE, "summ")
            part = reg(_sum_tree(if_lane(sum_mask, j, es[j], 0) for j in range(L)), "sum_part")
            part_v = reg(sum_v, "sum_part_v", control=True)
            part_last = reg(sum_v & sum_last, "sum_part_last", control=True)
            with m.If(part_v):
                m.d.sync += s_sum.eq(s_sum + part)
            m.d.comb += sum_done.eq(part_last)

        # ---- output FIFO -----------------------------------------------------------------------
        out_layout = self._layouts["o"]
        # the beat written: an output beat's lanes (0 past n), or else the error beat (y and
        # domain 0, error and last 1)
        beat = Signal(out_layout)
        m.d.comb += [beat.last.eq(last_end | ~write_out), beat.error.eq(~write_out)]
        for j in range(L):
            m.d.comb += [beat.y[j].eq(Mux(lane_out[j], ys[j], 0)),
                         beat.domain[j].eq(lane_out[j] & doms[j])]
        # a rejected command's error beat follows every earlier command's outputs; it is
        # written the cycle after the grant (no beat can reach the FIFO then: the pipeline
        # was empty)
        m.d.comb += grant_reject.eq(reject & credit & ~write_out & pipe_empty & all_free)
        write_err = reg(grant_reject, "write_err", control=True)
        with m.If(grant_reject):
            m.d.sync += reject.eq(0)
        m.submodules.out_fifo = out_fifo = SyncFIFOBuffered(width=out_layout.size,
                                                            depth=OUT_DEPTH)
        m.d.comb += [
            out_fifo.w_en.eq(write_out | write_err),
            out_fifo.w_data.eq(beat.as_value()),
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
        ]

        grant = Signal()                  # the last cycle's grant (an output slot taken)
        m.d.sync += grant.eq((issue & issue_out) | grant_reject)
        done = self.o.valid & self.o.ready
        inflight_next = Signal(range(OUT_DEPTH + 1))
        m.d.comb += inflight_next.eq(Mux(grant & ~done, inflight + 1,
                                         Mux(done & ~grant, inflight - 1, inflight)))
        m.d.sync += [inflight.eq(inflight_next), credit.eq(inflight_next < OUT_DEPTH - 1)]
        return m

    @staticmethod
    def _merge_results(m, reg, results, op_at, lane):
        """One lane's output at stage PIPE_DEPTH: each op's result joins a single chain of
        registers at its own stage (selected by the beat's op), instead of one delay line per op
        to the last stage."""
        chain = Const(0, signed(16))
        first = min((stage for _, stage in results.values()), default=PIPE_DEPTH)
        for stage in range(first, PIPE_DEPTH + 1):
            if stage > first:
                chain = reg(chain, f"y_chain{lane}_{stage}", signed(16))
            for name, (y, at) in results.items():
                if at == stage:
                    chain = Mux(op_at(stage, name), y, chain)
        return chain
