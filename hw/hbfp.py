"""HBFP blocks: ``bfp_convert`` (FP32 block -> HBFP) and ``hbfp_dot`` (block dot product with an
FP32 accumulator, fixed or run-time mixed mantissa width).

Numeric rules are those of :mod:`golden.hbfp`; the FP32 rounding and addition logic comes from
:mod:`hw.fp32`.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sparsehw.hw.arith import tree_sum
from sparsehw.hw.fp32 import QNAN, fp_add, round_pack
from sparsehw.params import Param, ParamSpec, Rule, boolean, int_in, pow2_in


__all__ = ["BfpConvert", "HbfpDot", "BFP_CONVERT_PARAMS", "HBFP_DOT_PARAMS", "MODES",
           "bfp_out_layout", "dot_in_layout", "DOT_OUT_LAYOUT"]


#: Run-time mode code of the mixed-mantissa ``hbfp_dot`` -> mantissa bits (HBFP4, HBFP6, HBFP8).
MODES = {0: 3, 1: 5, 2: 7}
#: Reserved exponent of an invalid block (NaN/Inf inside, or maximum above 2**127).
INVALID_EXP = 128
_EPS_BITS = 0x322BCC77          # float32(1e-8)


_BLOCK_SIZE = Param("block_size", 8, pow2_in(1, 64), doc="lanes: elements per block")
_MIXED_MANT_BITS = Rule("7 with mixed=1 (HBFP4/6/8 share an 8-bit datapath)", lambda v: v == 7)

#: Generation parameters of :class:`BfpConvert` (block ``bfp_convert``).
BFP_CONVERT_PARAMS = ParamSpec(
    _BLOCK_SIZE,
    Param("mant_bits", 7, int_in(2, 16), doc="mantissa magnitude bits; HBFP8: 7, HBFP6: 5, "
          "HBFP4: 3"),
)

#: Generation parameters of :class:`HbfpDot` (block ``hbfp_dot``).
HBFP_DOT_PARAMS = ParamSpec(
    _BLOCK_SIZE,
    Param("mixed", False, boolean(), doc="run-time mode HBFP4/6/8 per beat (Accuracy Boosters)"),
    Param("mant_bits", 7, lambda v: _MIXED_MANT_BITS if v["mixed"] else int_in(2, 16),
          allowed="an integer in 2..16; 7 with mixed=1", doc="mantissa magnitude bits"),
)


def bfp_out_layout(block_size, mant_bits):
    """Payload layout of :class:`BfpConvert`'s output stream."""
    return data.StructLayout({"mant": data.ArrayLayout(signed(mant_bits + 1), block_size),
                              "exp": signed(9), "invalid": 1})


def dot_in_layout(block_size, mant_bits, mixed=False):
    """Payload layout of :class:`HbfpDot`'s input stream."""
    mant = data.ArrayLayout(signed(mant_bits + 1), block_size)
    fields = {"a": mant, "b": mant, "ea": signed(9), "eb": signed(9), "last": 1}
    if mixed:
        fields["mode"] = 2
    return data.StructLayout(fields)


#: Payload layout of :class:`HbfpDot`'s output stream.
DOT_OUT_LAYOUT = data.StructLayout({"value": 32, "invalid": 1, "error": 1})


class BfpConvert(wiring.Component):
    """Convert a block of FP32 values to HBFP (shared exponent, sign-magnitude mantissas).

    Bit-exact with :func:`golden.hbfp.quantize` for every input bit pattern: the shared exponent
    is ``ceil(log2(float32(max|x| + 1e-8)))`` (one float32 RNE addition, then exact), mantissas
    ``clamp(round_half_even(x * 2**(m-e)), +-(2**m - 1))``; subnormals, zeros, saturation and the
    exponent bump at small powers of two come out of the same rule.

    Parameters
    ----------
    block_size : int
        Lanes (elements per block), a power of two in 1..64.
    mant_bits : int
        Mantissa magnitude bits ``m``, 2..16 (HBFP8 is 7).

    Attributes
    ----------
    i : In(stream.Signature(ArrayLayout(32, block_size)))
        One block of float32 bit patterns per beat. ``i.ready = ~o.valid | o.ready``.
    o : Out(stream.Signature(StructLayout(...)))
        ``mant``: ``block_size`` x ``signed(mant_bits + 1)``; ``exp``: ``signed(9)``, the shared
        exponent in -26..127, or 128 for an invalid block; ``invalid``: 1 when the block held a
        NaN or an infinity or its maximum exceeds 2**127 (then all mantissas are 0).
        Latency 2 cycles, one block per cycle; back-pressure stalls the whole pipeline.

    Raises
    ------
    TypeError
        A parameter of the wrong type, or an unknown one.
    ValueError
        A parameter out of range (``block_size must be a power of two in 1..64, not 3``); the
        defaults and ranges are :data:`BFP_CONVERT_PARAMS`.
    """

    def __init__(self, **params):
        values = BFP_CONVERT_PARAMS.validate(**params)
        self._block_size, self._mant_bits = values["block_size"], values["mant_bits"]
        super().__init__({"i": In(stream.Signature(data.ArrayLayout(32, self._block_size))),
                          "o": Out(stream.Signature(self.out_layout))})

    @property
    def block_size(self):
        return self._block_size

    @property
    def mant_bits(self):
        return self._mant_bits

    @property
    def latency(self):
        return 2

    @property
    def out_layout(self):
        return bfp_out_layout(self._block_size, self._mant_bits)

    def elaborate(self, platform):
        m = Module()
        block_size, mb = self._block_size, self._mant_bits
        adv = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]

        # Stage 1: register the block.
        v1 = Signal()
        x1 = Signal(data.ArrayLayout(32, block_size))
        with m.If(adv):
            m.d.sync += [v1.eq(self.i.valid), x1.eq(self.i.payload)]

        # Maximum magnitude (as unsigned bit patterns, order-preserving for non-negative floats),
        # NaN/Inf detection.
        mags = []
        nonfinite = []
        for k in range(block_size):
            lane = x1[k]
            fin = lane[23:31] != 255
            nonfinite.append(~fin)
            mag = Signal(31, name=f"mag{k}")
            m.d.comb += mag.eq(Mux(fin, lane[:31], 0))
            mags.append(mag)
        level = 0
        while len(mags) > 1:
            nxt = []
            for j in range(0, len(mags), 2):
                if j + 1 == len(mags):
                    nxt.append(mags[j])
                    continue
                mx = Signal(31, name=f"max{level}_{j // 2}")
                m.d.comb += mx.eq(Mux(mags[j] >= mags[j + 1], mags[j], mags[j + 1]))
                nxt.append(mx)
            mags, level = nxt, level + 1

        # Stage 2: register the block, its maximum and flags.
        v2 = Signal()
        x2 = Signal(data.ArrayLayout(32, block_size))
        amax2 = Signal(31)
        nf2 = Signal()
        with m.If(adv):
            m.d.sync += [v2.eq(v1), x2.eq(x1), amax2.eq(mags[0]),
                         nf2.eq(Cat(*nonfinite).any())]

        s = fp_add(m, Cat(amax2, Const(0, 1)), Const(_EPS_BITS, 32), "eps")
        exp = Signal(signed(10))
        m.d.comb += exp.eq(s[23:31] - 127 + (s[0:23] != 0))
        invalid = Signal()
        m.d.comb += invalid.eq(nf2 | (exp >= INVALID_EXP))

        out = Signal(self.out_layout)
        limit = (1 << mb) - 1
        for k in range(block_size):
            lane = x2[k]
            biased = lane[23:31]
            mant = Cat(lane[0:23], biased != 0)
            bexp = Mux(biased == 0, 1, biased)
            shift = Signal(signed(11), name=f"sh{k}")
            m.d.comb += shift.eq(exp - mb - bexp + 150)      # >= 23 - m > 0 (see golden)
            sh = Signal(range(27), name=f"shc{k}")
            m.d.comb += sh.eq(Mux(shift > 26, 26, Mux(shift < 1, 1, shift)))
            below = Signal(range(27), name=f"shb{k}")
            m.d.comb += below.eq(sh - 1)
            kept = Signal(24, name=f"kept{k}")
            guard = Signal(name=f"guard{k}")
            sticky = Signal(name=f"sticky{k}")
            m.d.comb += [
                kept.eq(mant >> sh),
                guard.eq((mant >> below)[0]),
                sticky.eq((mant & ((Const(1, 27) << below) - 1)[:24]) != 0),
            ]
            q = Signal(range(1 << 24), name=f"q{k}")
            m.d.comb += q.eq(kept + (guard & (sticky | kept[0])))
            qc = Signal(mb, name=f"qc{k}")
            m.d.comb += qc.eq(Mux(q > limit, limit, q))
            m.d.comb += out.mant[k].eq(Mux(invalid, 0, Mux(lane[31], -qc, qc)))
        m.d.comb += [out.exp.eq(Mux(invalid, INVALID_EXP, exp)), out.invalid.eq(invalid)]

        with m.If(adv):
            m.d.sync += [self.o.valid.eq(v2), self.o.payload.eq(out)]
        return m


class HbfpDot(wiring.Component):
    """HBFP block dot product with an FP32 accumulator, one block pair per cycle.

    Each beat carries one block of each operand. The exact integer sum ``S`` of the ``block_size``
    mantissa products is scaled by ``2**(ea + eb - 2m)`` and rounded to float32 (nearest even);
    block results are accumulated sequentially in float32 (``acc = r_1``, then
    ``acc = fp32(acc + r_k)``, RNE) by a single-cycle FP32 adder in the accumulator loop, so the
    unit takes a new block pair every cycle. A beat with ``last`` closes the dot product and
    produces one result. This is exactly :func:`golden.hbfp.dot`.

    Parameters
    ----------
    block_size : int
        Lanes (elements per block), a power of two in 1..64.
    mant_bits : int
        Mantissa magnitude bits ``m``, 2..16. With ``mixed``, must be 7.
    mixed : bool
        Mixed-mantissa unit (Accuracy Boosters): each beat has a ``mode`` (0: HBFP4 m=3,
        1: HBFP6 m=5, 2: HBFP8 m=7) that sets the scaling and the legal mantissa range of that
        block pair; the 8-bit datapath is shared by the three modes.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout(...)))
        ``a``, ``b``: ``block_size`` x ``signed(m + 1)`` mantissas; ``ea``, ``eb``: ``signed(9)``
        exponents (128 marks an invalid block, as :class:`BfpConvert` emits it); ``last``: 1 on
        the last block pair of a dot product; ``mode``: 2 bits (only with ``mixed``).
        ``i.ready = ~o.valid | o.ready``.
    o : Out(stream.Signature(StructLayout({"value": 32, "invalid": 1, "error": 1})))
        One float32 result per dot product. ``invalid``: a block of the dot product was invalid
        (``value`` is the quiet NaN ``0x7FC00000``). ``error``: malformed run-time data in the dot
        product (a mantissa outside ``+-(2**m - 1)`` for its mode, ``mode == 3``, or an exponent
        outside -26..128); ``value`` is then NaN too. Latency 4 cycles from the ``last`` beat;
        back-pressure stalls the whole pipeline.

    Raises
    ------
    TypeError
        A parameter of the wrong type, or an unknown one.
    ValueError
        A parameter out of range, or ``mant_bits`` other than 7 with ``mixed``; the defaults and
        ranges are :data:`HBFP_DOT_PARAMS`.
    """

    def __init__(self, **params):
        values = HBFP_DOT_PARAMS.validate(**params)
        self._block_size, self._mant_bits = values["block_size"], values["mant_bits"]
        self._mixed = bool(values["mixed"])
        super().__init__({"i": In(stream.Signature(self.in_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    @property
    def block_size(self):
        return self._block_size

    @property
    def mant_bits(self):
        return self._mant_bits

    @property
    def mixed(self):
        return self._mixed

    @property
    def latency(self):
        return 4

    @property
    def in_layout(self):
        return dot_in_layout(self._block_size, self._mant_bits, self._mixed)

    @property
    def out_layout(self):
        return DOT_OUT_LAYOUT

    @property
    def sum_bits(self):
        """Width of the exact block sum: ``2m + 2 + ceil(log2 block_size)`` (signed)."""
        return 2 * self._mant_bits + 2 + (self._block_size - 1).bit_length()

    def elaborate(self, platform):
        m = Module()
        block_size, mb = self._block_size, self._mant_bits
        p = self.i.payload
        adv = Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]

        # Per-beat scaling and range checks.
        if self._mixed:
            mode = p.mode
            two_m = Mux(mode == 0, 6, Mux(mode == 1, 10, 14))
            limit = Mux(mode == 0, 7, Mux(mode == 1, 31, 127))
            bad_mode = mode == 3
        else:
            two_m, limit, bad_mode = 2 * mb, (1 << mb) - 1, Const(0)
        bad_mant = []
        for k in range(block_size):
            for q in (p.a[k], p.b[k]):
                bad_mant.append((q > limit) | (q < -limit))
        bad_exp = Cat(*[(e > INVALID_EXP) | (e < -26) for e in (p.ea, p.eb)]).any()

        # Stage 1: products, exponent, flags.
        v1, last1, inv1, err1 = Signal(), Signal(), Signal(), Signal()
        e1 = Signal(signed(12))
        prods = [Signal(signed(2 * mb + 2), name=f"prod{k}") for k in range(block_size)]
        with m.If(adv):
            m.d.sync += [
                v1.eq(self.i.valid), last1.eq(p.last),
                inv1.eq((p.ea == INVALID_EXP) | (p.eb == INVALID_EXP)),
                err1.eq(Cat(*bad_mant).any() | bad_exp | bad_mode),
                e1.eq(p.ea + p.eb - two_m),
            ]
            m.d.sync += [prods[k].eq(p.a[k] * p.b[k]) for k in range(block_size)]

        # Stage 2: exact block sum.
        v2, last2, inv2, err2 = Signal(), Signal(), Signal(), Signal()
        e2 = Signal(signed(12))
        s2 = Signal(signed(self.sum_bits))
        with m.If(adv):
            m.d.sync += [v2.eq(v1), last2.eq(last1), inv2.eq(inv1), err2.eq(err1), e2.eq(e1),
                         s2.eq(tree_sum(prods))]

        # Stage 3: round the block result to float32.
        mag = Signal(self.sum_bits)
        m.d.comb += mag.eq(Mux(s2 < 0, -s2, s2))
        r = round_pack(m, s2 < 0, mag, e2, "blk")
        v3, last3, inv3, err3 = Signal(), Signal(), Signal(), Signal()
        r3 = Signal(32)
        with m.If(adv):
            m.d.sync += [v3.eq(v2), last3.eq(last2), inv3.eq(inv2), err3.eq(err2), r3.eq(r)]

        # Stage 4: sequential FP32 accumulation (single-cycle adder in the loop).
        acc = Signal(32)
        first = Signal(init=1)
        acc_inv, acc_err = Signal(), Signal()
        total = fp_add(m, acc, r3, "acc")
        acc_next = Signal(32)
        inv_next, err_next = Signal(), Signal()
        m.d.comb += [
            acc_next.eq(Mux(first, r3, total)),
            inv_next.eq(inv3 | (acc_inv & ~first)),
            err_next.eq(err3 | (acc_err & ~first)),
        ]
        with m.If(adv):
            m.d.sync += self.o.valid.eq(v3 & last3)
            with m.If(v3):
                m.d.sync += [acc.eq(acc_next), acc_inv.eq(inv_next), acc_err.eq(err_next),
                             first.eq(last3)]
                with m.If(last3):
                    m.d.sync += [
                        self.o.payload.value.eq(Mux(inv_next | err_next, QNAN, acc_next)),
                        self.o.payload.invalid.eq(inv_next),
                        self.o.payload.error.eq(err_next),
                    ]
        return m
