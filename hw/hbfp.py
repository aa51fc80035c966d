"""HBFP blocks: ``bfp_convert`` (FP32 block -> HBFP) and ``hbfp_dot`` (block dot product with an
FP32 accumulator, fixed or run-time mixed mantissa width).

Numeric rules are those of :mod:`golden.hbfp`; the FP32 rounding and addition logic comes from
:mod:`hw.fp32`.
"""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sparsehw.hw.arith import delay, tree_sum
from sparsehw.hw.fp32 import (ADD_CUTS, NEG_ZERO, QNAN, ROUND_CUTS, Pipeline, add_cuts,
                               fp_add, round_pack)
from sparsehw.golden.hbfp import MIN_EXP, exponent_table
from sparsehw.params import Param, ParamSpec, Rule, boolean, int_in, pow2_in


__all__ = ["BfpConvert", "HbfpDot", "dot_latency", "BFP_CONVERT_PARAMS", "HBFP_DOT_PARAMS",
           "MODES", "TREE_CUTS", "bfp_out_layout", "dot_in_layout", "DOT_OUT_LAYOUT"]


#: Run-time mode code of the mixed-mantissa ``hbfp_dot`` -> mantissa bits (HBFP4, HBFP6, HBFP8).
MODES = {0: 3, 1: 5, 2: 7}
#: Reserved exponent of an invalid block (NaN/Inf inside, or maximum above 2**127).
INVALID_EXP = 128


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
    Param("add_stages", 5, int_in(0, len(ADD_CUTS)),
          doc="pipeline registers in the FP32 accumulation adder (default 5: the least for "
              "125 MHz on ECP5); the dot product then keeps "
              "add_stages + 1 interleaved partial sums (0: one sequential accumulator, "
              "a single-cycle adder in the loop)"),
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
    exponent bump at small powers of two come out of the same rule. There is no adder for
    ``max + 1e-8``: the exponent is ``base[B] + (f >= thr[B])`` on the maximum's biased
    exponent ``B`` and fraction ``f`` (:func:`golden.hbfp.exponent_table`, proven equal to the
    addition for every finite maximum).

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
        Latency :attr:`latency` cycles (``6 + max(log2(block_size), 1)``: 9 at
        ``block_size=8``), one block per cycle; back-pressure stalls the whole pipeline.

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
        """Cycles from an accepted block to its result: input register, a register after
        every level of the maximum tree (the last one is the maximum's register; one for a
        single lane), the threshold comparisons, the exponent, the lanes' alignment, their
        rounding increment, the output register."""
        tree = (self._block_size - 1).bit_length()
        return 7 + max(tree - 1, 0)

    def _check_latency(self, inserted):
        assert inserted + 2 == self.latency, (inserted, self.latency)

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
        # NaN/Inf detection; a pipeline register after every level of the maximum tree.
        # The lanes travel compacted: sign, 127 - biased exponent, the mantissa bits from the
        # lowest guard position up (the window w: mant[22-mb:24], hidden bit on top), whether
        # any bit below it is set, and the trailing zeros of w.
        mags = []
        nonfinite = []
        lane_layout = data.StructLayout({"s": 1, "w": mb + 2, "lo": 1, "tz": range(mb + 3)})
        nbs = []
        lane_bits = lane_layout.size
        packed = []                     # plain bits: registered as one vector per stage
        for k in range(block_size):
            lane = x1[k]
            fin = lane[23:31] != 255
            nonfinite.append(~fin)
            mags.append(lane[:31])       # a NaN/Inf may win: the block is invalid anyway
            # A subnormal or zero lane (biased exponent 0) is shifted out whole: its d is
            # exp + 127 >= 101, clamped to mb + 2 (kept bits and guard 0), so its
            # hidden bit may be taken as 1 and its exponent as 0 instead of 1.
            w = Cat(lane[22 - mb:23], Const(1, 1))
            tz = Const(mb + 1, range(mb + 3))
            for i in reversed(range(mb + 1)):
                tz = Mux(w[i], i, tz)
            nb = Signal(signed(9), name=f"nb{k}")              # 127 - biased
            m.d.comb += nb.eq(127 - lane[23:31])
            tzs = Signal(range(mb + 3), name=f"tz{k}")      # trailing zeros of w
            m.d.comb += tzs.eq(tz)
            packed.append(Cat(lane[31], w, lane[:22 - mb] != 0, tzs))
            nbs.append(nb)
        # Each rider is dropped after its last use (no dead register bits).
        riders = {"v": v1, "c": Cat(*packed), "nb": Cat(*nbs), "nf": Cat(*nonfinite).any()}

        def lane_fields(k):
            return data.View(lane_layout, pipe.riders["c"][k * lane_bits:(k + 1) * lane_bits])
        pipe = Pipeline(m, adv, [f"max{lvl}" for lvl in range(1, 6)], "cvt", riders=riders)
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
            if len(mags) > 1:
                regs = pipe.cut(f"max{level}", **{f"m{j}": x for j, x in enumerate(mags)})
                mags = [regs[f"m{j}"] for j in range(len(mags))]

        # Register the maximum; then the shared exponent without an adder (golden.hbfp's rule
        # as comparisons, golden.hbfp.exponent_table): with B, f the maximum's biased exponent
        # and fraction, e = base[B] + (f >= thr[B]). Only B = 96..127 has a threshold other
        # than "never" (B <= 98, 123, 124), "always" (100) or f != 0 (B >= 125); the fraction is
        # compared with each of those constants in parallel (no table of thresholds: Yosys
        # would make a ROM of it, and a block RAM's output is slow) and registered with base,
        # base + 1 and B's range; the next stage selects one comparison by B's low 5 bits.
        pipe.cuts = pipe.cuts | {"amax", "thr", "exp", "shift", "lane"}
        amax = pipe.cut("amax", amax=mags[0])["amax"]
        base_tab, thr_tab = exponent_table()
        b_max, f_max = amax[23:31], amax[0:23]
        assert all(base_tab[b] == (b - 127 if b >= 125 else max(b - 126, MIN_EXP))
                   for b in range(255))
        assert all(thr_tab[b] == 1 for b in range(125, 255))
        assert all(thr_tab[b] == 1 << 23 for b in range(96))
        base = Signal(signed(9))
        m.d.comb += base.eq(Mux(b_max >= 125, b_max - 127, Mux(b_max >= 100, b_max - 126,
                                                                 MIN_EXP)))
        cmps = [f_max >= thr_tab[b] if 0 < thr_tab[b] < 1 << 23 else Const(thr_tab[b] == 0)
                for b in range(96, 128)]
        v = pipe.cut("thr", base=base, base1=base + 1, cmp=Cat(*cmps), lo=b_max[:5],
                     hi=b_max[7], mid=b_max[5:7] == 0b11, fnz=f_max != 0,
                     big=(b_max == 254) & (f_max != 0))
        bump = Mux(v["hi"], v["fnz"], v["mid"] & v["cmp"].bit_select(v["lo"], 1))
        exp = Signal(signed(10))
        m.d.comb += exp.eq(Mux(bump, v["base1"], v["base"]))
        invalid = Signal()
        m.d.comb += invalid.eq(pipe.riders.pop("nf") | v["big"])
        v = pipe.cut("exp", exp=exp, invalid=invalid)
        exp, invalid = v["exp"], v["invalid"]

        # Per lane: the alignment shift sh = exp - mb - bexp + 150 is at least 23 - mb (the
        # maximum lane has bexp <= exp + 127), so the lane keeps mant >> (23 - mb + d) with
        # d = exp - bexp + 127 >= 0, clamped to mb + 2 (from there on nothing is kept and the
        # guard bit is 0); d is registered with the lane. (In an invalid block d is meaningless
        # and the mantissas are forced to 0.)
        nb_all = pipe.riders.pop("nb")
        lanes = {}
        for k in range(block_size):
            dd = Signal(signed(11), name=f"dd{k}")
            m.d.comb += dd.eq(exp + nb_all[9 * k:9 * (k + 1)].as_signed())
            d = Signal(range(mb + 3), name=f"d{k}")
            m.d.comb += d.eq(Mux(dd > mb + 2, mb + 2, dd))
            lanes[f"d{k}"] = d
        v = pipe.cut("shift", invalid=invalid, exp=exp, **lanes)       # (nb dropped above)
        exp, invalid = v["exp"], v["invalid"]

        # Then the kept bits w >> (d + 1), the guard w[d], the sticky bit (a bit below the
        # window, or the window's trailing zeros fewer than d) and the rounding increment.
        lanes = {}
        for k in range(block_size):
            c, d = lane_fields(k), v[f"d{k}"]
            w = c.w
            kept = Signal(mb + 1, name=f"kept{k}")
            guard = Signal(name=f"guard{k}")
            sticky = Signal(name=f"sticky{k}")
            m.d.comb += [kept.eq(w >> (d + 1)),
                         guard.eq((w >> d)[0]),
                         sticky.eq(c.lo | (c.tz < d))]
            lanes[f"k{k}"] = kept
            lanes[f"r{k}"] = guard & (sticky | kept[0])
            lanes[f"s{k}"] = c.s
        pipe.riders = {"v": pipe.riders["v"]}
        v = pipe.cut("lane", invalid=invalid, exp=exp, **lanes)
        out = Signal(self.out_layout)
        limit = (1 << mb) - 1
        for k in range(block_size):
            # q = kept + r saturates at 2**mb - 1 (kept >= 2**mb, or 2**mb - 1 rounding up);
            # otherwise the signed result is one addition: (kept ^ S) + (r ^ s), S the sign
            # spread over the word (-(kept + r) = ~kept + ~r as one bit).
            kept, r, sign = v[f"k{k}"], v[f"r{k}"], v[f"s{k}"]
            sat = Signal(name=f"sat{k}")
            m.d.comb += sat.eq(kept[mb] | ((kept[:mb] == limit) & r))
            signed_q = Signal(signed(mb + 1), name=f"sq{k}")
            m.d.comb += signed_q.eq((kept ^ sign.replicate(mb + 1)) + (r ^ sign))
            m.d.comb += out.mant[k].eq(Mux(v["invalid"], 0,
                                           Mux(sat, Mux(sign, -limit, limit), signed_q)))
        m.d.comb += [out.exp.eq(Mux(v["invalid"], INVALID_EXP, v["exp"])),
                     out.invalid.eq(v["invalid"])]
        self._check_latency(pipe.latency)

        with m.If(adv):
            m.d.sync += [self.o.valid.eq(pipe.riders["v"]), self.o.payload.eq(out)]
        return m


def dot_latency(add_stages):
    """:attr:`HbfpDot.latency` for ``add_stages`` (it depends on nothing else)."""
    levels = add_stages.bit_length()                     # ceil(log2(add_stages + 1))
    return 8 + len(ROUND_CUTS) + add_stages + levels * len(TREE_CUTS) + max(levels - 1, 0)


#: Cut points of the combining tree's adders: all of the adder's (the tree is outside the
#: accumulation loop, so its registers cost latency only, not a partial sum).
TREE_CUTS = ADD_CUTS


class HbfpDot(wiring.Component):
    """HBFP block dot product with an FP32 accumulator, one block pair per cycle.

    Each beat carries one block of each operand. The exact integer sum ``S`` of the ``block_size``
    mantissa products is scaled by ``2**(ea + eb - 2m)`` and rounded to float32 (nearest even);
    block results are accumulated in float32 (RNE) in ``P = add_stages + 1`` interleaved partial
    sums: block ``k`` of a dot product into partial ``k mod P`` (each starting at ``-0.0``, the
    exact identity), by an FP32 adder with ``add_stages`` pipeline registers, whose sum is back
    exactly when the partial's next block arrives; so the unit takes a new block pair every
    cycle. A beat with ``last`` closes the dot product: its partials are combined by a pairwise
    tree (``(p0 + p1), (p2 + p3), ...`` level by level, an odd last one carried up) of
    ``add_stages`` adders, each with a register at every cut of :data:`TREE_CUTS` (6), while the
    next dot product streams in. This is exactly
    :func:`golden.hbfp.dot` with ``partials = add_stages + 1``.

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
    add_stages : int
        Pipeline registers in the FP32 accumulation adder, 0..6 (default 5: at 4 the loop's
        alignment and addition share a stage of 9.2-9.8 ns on ECP5; the measured Fmax is in
        ``docs/hbfp.md``): ``add_stages + 1`` partial sums and ``add_stages`` combining
        adders (those are pipelined at every cut whatever ``add_stages`` is). 0 is one
        sequential accumulator (a single-cycle adder in the loop, no tree): the smallest unit,
        the slowest clock.

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
        outside -26..128); ``value`` is then NaN too. Latency :attr:`latency` cycles from the
        ``last`` beat (36 at ``add_stages=5``, 11 at 0); one block pair per cycle for any number
        of blocks per dot product; back-pressure stalls the whole pipeline.

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
        self._add_stages = values["add_stages"]
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
    def add_stages(self):
        return self._add_stages

    @property
    def partials(self):
        """Interleaved partial sums of the accumulation: ``add_stages + 1``."""
        return self._add_stages + 1

    @property
    def latency(self):
        """Cycles from the ``last`` beat to its result: products, the block sum's first level
        and the rest of it, its magnitude, rounding (plus its pipeline registers), the
        accumulation adder, a register before the combining tree, the tree's input registers
        (loaded with the finished partial sums from their registers), the tree (each of its
        ``ceil(log2(partials))`` levels an adder of ``len(TREE_CUTS)`` registers, a register
        between levels), the output register."""
        return dot_latency(self._add_stages)

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

        # Stage 2: the exact block sum, its adder tree's first level registered on the way
        # (the products' registers sit in the DSPs, whose outputs are far from the fabric's
        # adders).
        spipe = Pipeline(m, adv, ("pair", "sum"), "bsum",
                         riders={"v": v1, "last": last1, "inv": inv1, "err": err1, "exp": e1})
        pairs = spipe.cut("pair", **{f"q{j}": prods[2 * j] + prods[2 * j + 1]
                                     if 2 * j + 1 < block_size else prods[2 * j]
                                     for j in range((block_size + 1) // 2)})
        bsum = Signal(signed(self.sum_bits))
        m.d.comb += bsum.eq(tree_sum(pairs[f"q{j}"] for j in range(len(pairs))))
        s2 = spipe.cut("sum", s=bsum)["s"]
        v2, last2, inv2, err2, e2 = (spipe.riders[k] for k in ("v", "last", "inv", "err", "exp"))

        # Stage 3: the block sum's magnitude, registered (its negation is a carry chain, which
        # the leading-one search must not follow in the same cycle); then the block result
        # rounded to float32 (pipelined rounding), registered.
        mag = Signal(self.sum_bits)
        m.d.comb += mag.eq(Mux(s2 < 0, -s2, s2))
        rpipe = Pipeline(m, adv, ("abs",) + ROUND_CUTS, "blk",
                         riders={"v": v2, "last": last2, "inv": inv2, "err": err2})
        v = rpipe.cut("abs", sign=s2 < 0, mag=mag, exp=e2)
        # No subnormal path (here and in every adder below): a block result is mag * 2**e2 with
        # e2 = ea + eb - 2m >= -26 - 26 - 32 = -84 on well-formed data, so it is 0 or at least
        # 2**-84; it is a multiple of 2**-84 however it rounds, and so is every sum of such
        # values (partial or tree sum): no operand or result of the accumulation is subnormal.
        # (Malformed exponents raise `error`, whose result is NaN whatever the datapath gives.)
        # No zero sign either (here and in every adder below): a block result is zero only
        # for S = 0, which is +0; so a partial sum, -0 + r, then r + r', is never -0 (a zero
        # sum of two operands that are not both -0 is +0). Only an unused partial is -0 in the
        # tree, and the sum of two of them meets, at the next level, the sum of p0 and its
        # right neighbour, which is never -0: the sign of a zero sum never reaches the result.
        r = round_pack(m, v["sign"], v["mag"], v["exp"], "blk", rpipe, zero_sign=0,
                       subnormals=False)
        v3, last3, inv3, err3 = Signal(), Signal(), Signal(), Signal()
        r3 = Signal(32)
        with m.If(adv):
            m.d.sync += [v3.eq(rpipe.riders["v"]), last3.eq(rpipe.riders["last"]),
                         inv3.eq(rpipe.riders["inv"]), err3.eq(rpipe.riders["err"]), r3.eq(r)]

        # Stage 4: P = add_stages + 1 interleaved FP32 partial sums. Block k of a dot product
        # goes to partial k mod P; the adder has add_stages pipeline registers and the partial
        # register closes the loop, so partial j is ready again exactly P cycles later.
        n_part = self.partials
        cuts = add_cuts(self._add_stages)
        accs = [Signal(32, name=f"part{j}") for j in range(n_part)]
        # The partial of the next block, one-hot (a rotating bit): the operand mux and the
        # write enables need no decoder in the accumulation loop.
        slot = Signal(n_part, init=1)
        filled = Signal(range(n_part + 1))               # blocks so far in this dot, up to P
        dot_inv, dot_err = Signal(), Signal()
        first_block = filled == 0
        inv_next, err_next = Signal(), Signal()
        m.d.comb += [inv_next.eq(inv3 | (dot_inv & ~first_block)),
                     err_next.eq(err3 | (dot_err & ~first_block))]
        # The partials this block leaves in use (partial j: j < min(filled + 1, P)), as a mask,
        # so that the tree's operand select needs no comparison.
        used = Signal(n_part)
        m.d.comb += used.eq(Cat(Const(1, 1), *[(filled == n_part) | (filled >= j)
                                               for j in range(1, n_part)]))
        # The adder's operand, partial `slot` (-0.0, the exact identity, for the first block of
        # a partial: x + -0 = x for every x), is a register loaded a cycle ahead with what
        # partial `slot` holds after this clock edge: the sum the adder writes into it at this
        # edge (the partial's previous block entered the adder P cycles before the next one at
        # the earliest, so its sum leaves it at the edge before that block enters, or earlier),
        # else the partial register. The loop (operand register, the adder's add_stages
        # registers) keeps P registers and no partial select: a 2:1 choice after the adder.
        slot_n = Signal(n_part)
        filled_n = Signal(range(n_part + 1))
        # (Multiplexers, not an If chain: Icarus never evaluates a combinational process whose
        # inputs do not change after time 0, and slot_n's would be one: X after reset.)
        m.d.comb += [slot_n.eq(Mux(v3, Mux(last3, 1, slot.rotate_left(1)), slot)),
                     filled_n.eq(Mux(v3, Mux(last3, 0, Mux(filled == n_part, n_part,
                                                          filled + 1)), filled))]
        operand = Signal(32, init=NEG_ZERO)
        apipe = Pipeline(m, adv, cuts, "acc",
                         riders={"wr": v3, "slot": slot, "end": v3 & last3, "used": used,
                                 "inv": inv_next, "err": err_next})
        total = fp_add(m, operand, r3, "acc", apipe, subnormals=False, neg_zero=False)
        ride = apipe.riders
        stored = Signal(32)                          # partial slot_n's register, AND-OR mux
        m.d.comb += stored.eq(functools.reduce(
            operator.or_, [Mux(slot_n[j], accs[j], 0) for j in range(n_part)]))
        full_n = Signal()
        bypass = Signal()
        m.d.comb += [full_n.eq(filled_n == n_part),
                     bypass.eq(full_n & ride["wr"] & (ride["slot"] & slot_n).any())]
        with m.If(adv):
            m.d.sync += [slot.eq(slot_n), filled.eq(filled_n),
                         operand.eq(Mux(bypass, total, Mux(full_n, stored, NEG_ZERO)))]
            with m.If(v3):
                m.d.sync += [dot_inv.eq(inv_next & ~last3), dot_err.eq(err_next & ~last3)]
        for j in range(n_part):
            with m.If(adv & ride["wr"] & ride["slot"][j]):
                m.d.sync += accs[j].eq(total)

        # One cycle after the last block's sum left the adder, every partial of the dot product
        # is final and written (the next dot product's first sum is written a cycle later at the
        # earliest): the tree's input registers take them from the partial registers then;
        # unused partials read as -0.0.
        fp = Pipeline(m, adv, ("fin", "part"), "fin",
                      riders={"end": ride["end"], "used": ride["used"], "inv": ride["inv"],
                              "err": ride["err"]})
        fp.cut("fin")
        used_fin = fp.riders.pop("used")
        regs = fp.cut("part", **{f"p{j}": Mux(used_fin[j], accs[j], NEG_ZERO)
                                 for j in range(n_part)})
        flags = fp.riders
        parts = [regs[f"p{j}"] for j in range(n_part)]

        # Stage 5: the partials combined by a pairwise tree ((p0+p1)+(p2+p3))..., an odd last
        # one carried up unchanged; each level is the same pipelined adder plus a register.
        level = 0
        while len(parts) > 1:
            nxt = []
            for j in range(0, len(parts), 2):
                cp = Pipeline(m, adv, TREE_CUTS, f"cmb{level}_{j}",
                              riders=flags if j == 0 else {})
                if j + 1 < len(parts):
                    nxt.append(fp_add(m, parts[j], parts[j + 1], f"cmb{level}_{j}", cp,
                                      subnormals=False, neg_zero=False))
                else:
                    nxt.append(delay(m, parts[j], len(TREE_CUTS), f"cmb{level}_{j}", adv))
                if j == 0:
                    flags = cp.riders
            parts, level = nxt, level + 1
            if len(parts) > 1:
                lp = Pipeline(m, adv, ("lvl",), f"lvl{level}", riders=flags)
                regs = lp.cut("lvl", **{f"x{j}": x for j, x in enumerate(parts)})
                parts = [regs[f"x{j}"] for j in range(len(parts))]
                flags = lp.riders

        with m.If(adv):
            m.d.sync += self.o.valid.eq(flags["end"])
            with m.If(flags["end"]):
                m.d.sync += [
                    self.o.payload.value.eq(Mux(flags["inv"] | flags["err"], QNAN, parts[0])),
                    self.o.payload.invalid.eq(flags["inv"]),
                    self.o.payload.error.eq(flags["err"]),
                ]
        return m
