"""Golden models of the FiGS swap-register array and its baselines (broadcast, fan-out, fixed 2:4).

The numbers themselves come from :mod:`golden.nm` (:func:`golden.nm.compress`,
:func:`golden.nm.gemm_int8`); this module models how the two engines *map* an N:M GEMM (which PE
row holds which compressed weight, which activations a row receives), the FiGS routing rule, and
the bandwidth and cycle formulas of ``docs/figs.md``.

Numeric rules
-------------
Products are exact (int8 x int8 -> int16); a tile's column sum over ``rows`` products is exact in
int32 (the generator rejects widths for which it would not fit). The array emits one int32
partial sum per output channel, tile and activation column; the GEMM result is the sum over K
tiles, exact (:func:`golden.nm.gemm_int8` checks it fits int32). No rounding, no saturation.

Routing rule (FiGS)
-------------------
With ``q = M/N``, slot ``s`` of a group (PE row ``r = group*N + s``) receives the group's
activations ``s*q .. s*q+q-1`` (its *sub-block*). A weight at group position ``index`` lives in
sub-block ``index // q``; its displacement is ``d = index // q - s``. A nonzero weight is routable
with ``alpha`` links iff ``|d| <= alpha``. Zero weights are never routed (their product is zero);
:func:`assign_slots` rewrites their index to ``s*q`` (displacement 0).

Swap exchange (FiGS)
--------------------
A nonzero weight with ``|d| > alpha`` is not lost: every instance is processed in one or more
*phases*. Phase 0 is the one-step route above. In a phase of *rotation* ``t`` (``1 <= t < N``)
the swap registers of every group are rotated cyclically before the instance enters the array:
slot ``s`` holds the sub-block of slot ``(s + t) mod N`` of its own group, and a MAC reads its own
swap register (link 0). A weight is routed by :func:`route`: ``(0, d)`` if ``|d| <= alpha``, else
``(d mod N, 0)``; it contributes in exactly one phase (products of the other phases are
dropped). The *schedule* of a weight tile (:func:`tile_schedule`) is the ascending list of the
rotations its nonzero weights need, always starting with 0; its length ``P`` is the number of
cycles every instance of the tile occupies the array input. ``P = 1`` whenever the tile routes
in one step; ``P <= N`` always, so every accepted N:M pattern is computed. The partial sums of
the ``P`` phases of an instance are added (exactly, int32) before the instance's result leaves.

Fan-out and fixed 2:4 (baselines)
---------------------------------
``nm_fanout`` receives the instance laid out as FiGS's (row ``r`` lane ``l``: group position
``(r % N)*M/N + l``); a MAC of row ``r`` with weight index ``i`` multiplies group position ``i``,
i.e. port row ``(r//N)*N + i // (M/N)`` lane ``i % (M/N)``: one phase, no routing rule.
``nm_fixed24`` is the fan-out engine at the one pattern 2:4. A model of any pattern is compiled by
:func:`fixed24_passes`: the dense weights are split into at most two 2:4 matrices (pass 0 keeps
the first two nonzeros of every aligned 4-block, in K order; pass 1 the rest, at most two); a
weight tile whose pass-1 part is all zero runs once, else twice over the same activations
(:func:`fixed24_tile_passes`). Every pass is a weight tile of its own (``2*rows`` K positions).
"""

import numpy as np

from sparsehw.golden import nm
from sparsehw.params import Param, ParamSpec, boolean, check, float_in, int_in, one_of, pow2_in


__all__ = ["ENGINES", "MASK_KINDS", "FIGS_WORKLOAD", "assign_slots", "displacements", "required_alpha", "routable_fraction",
           "route", "tile_schedule", "gemm_schedule", "exchange_deliveries",
           "tile_shape", "weight_rows", "instance", "array_model", "input_bits_per_cycle",
           "port_bits", "predicted_cycles", "predicted_utilization", "fine_mask",
           "fixed24_passes", "fixed24_tile_passes", "SUB_BLOCK_PORT", "MAC_STAGES",
           "pipeline_latency"]


ENGINES = ("figs", "nm_broadcast", "nm_fanout", "nm_fixed24")
#: Engines whose port carries each group's M activations once (``M/N`` per row).
SUB_BLOCK_PORT = ("figs", "nm_fanout", "nm_fixed24")
#: Weight masks of the perf workload and the testbenches (``verif.figs.make_weights``).
MASK_KINDS = ("random", "fine", "nested", "low", "high", "alternating")
#: Register stages of every engine's MAC pipeline between a PE column and its column sum
#: (hw/figs.py): the operand candidates (first select level) and the weight, their copies next
#: to the multiplier, the product, the sums of row pairs, the column sum. They add to the
#: latency, not to the cycles per instance (issue 14: timing).
MAC_STAGES = 5


def pipeline_latency(cols):
    """Cycles from an instance's input transfer to its output transfer (no stalls): one per PE
    column, one for the output register, plus :data:`MAC_STAGES`."""
    return cols + 1 + MAC_STAGES

#: The knobs of one ``sparsehw perf figs`` / ``nm_broadcast`` run (an N:M GEMM K x O x B).
FIGS_WORKLOAD = ParamSpec(
    Param("m", 8, pow2_in(1, 32), doc="group size"),
    Param("n", 2, lambda v: pow2_in(1, v["m"]), allowed="a power of two in 1..m",
          doc="kept per group"),
    Param("k", 512, int_in(1),
          doc="reduction length; a multiple of m, and of 32 for mask=nested"),
    Param("o", 64, int_in(1), doc="output channels"),
    Param("b", 32, int_in(1), doc="activation columns (batch)"),
    Param("budget", 0, int_in(0),
          doc="activation bits per cycle the testbench may deliver, 0 = unlimited"),
    Param("mask", "nested", one_of(*MASK_KINDS), doc="weight mask"),
    Param("stall", 0.0, float_in(0, 0.99), doc="random valid/ready stall probability"),
    Param("sweep", False, boolean(), doc="also run every supported ratio, unlimited and at the "
          "FiGS budget, recorded as by_ratio"),
    kind="workload knob",
)


def _check_engine(engine):
    return check("engine", engine, one_of(*ENGINES))


# -- slot assignment and routing ------------------------------------------------------------------

def _assign_group(vals, idxs, n, q):
    """Best slot order of one group: minimal largest |displacement| over the nonzero weights.

    Nonzero weights are intervals ``[sub - a, sub + a]`` of slots; for increasing ``a`` the
    earliest-deadline greedy (slots in order, take the pending weight whose interval ends first)
    finds a perfect assignment whenever one exists. Zero weights fill the free slots with index
    ``slot*q``.
    """
    items = [(int(i) // q, int(v), int(i)) for v, i in zip(vals, idxs) if v != 0]
    for a in range(n):
        order = sorted(items, key=lambda t: t[0] - a)
        slots = [None] * n
        pending = []
        pos = 0
        ok = True
        for s in range(n):
            while pos < len(order) and order[pos][0] - a <= s:
                pending.append(order[pos])
                pos += 1
            pending.sort(key=lambda t: t[0] + a)
            if pending and pending[0][0] + a < s:
                ok = False
                break
            if pending:
                slots[s] = pending.pop(0)
        if ok and not pending and pos == len(order):
            out_v = [slots[s][1] if slots[s] else 0 for s in range(n)]
            out_i = [slots[s][2] if slots[s] else s * q for s in range(n)]
            return out_v, out_i, a
    raise AssertionError("unreachable: alpha = n-1 always routes")


def assign_slots(values, indices, n, m):
    """Reorder the compressed weights of every group for the FiGS array.

    Parameters
    ----------
    values, indices : numpy.ndarray, shape (O, G*n)
        Output of :func:`golden.nm.compress` (any slot order).
    n, m : int
        The pattern.

    Returns
    -------
    values, indices : numpy.ndarray
        Same weights, slots permuted inside each group so that the largest displacement of a
        nonzero weight is minimal; zero weights get index ``slot*M/N``. The dense matrix
        (:func:`golden.nm.decompress` without the ascending-order check) is unchanged.
    alpha : int
        The largest ``|d|`` left: the smallest ``alpha`` that routes this matrix.
    """
    n, m = nm.check_nm(n, m)
    q = m // n
    values = np.asarray(values)
    indices = np.asarray(indices)
    out_v = values.copy()
    out_i = indices.astype(np.int64).copy()
    worst = 0
    for o in range(values.shape[0]):
        for g in range(values.shape[1] // n):
            sl = slice(g * n, (g + 1) * n)
            v, i, a = _assign_group(values[o, sl], indices[o, sl], n, q)
            out_v[o, sl] = v
            out_i[o, sl] = i
            worst = max(worst, a)
    return out_v, out_i, worst


def displacements(values, indices, n, m):
    """Displacement ``index // (M/N) - slot`` of every entry (0 for zero weights)."""
    n, m = nm.check_nm(n, m)
    q = m // n
    indices = np.asarray(indices).astype(np.int64)
    slot = np.arange(indices.shape[-1]) % n
    d = indices // q - slot
    return np.where(np.asarray(values) != 0, d, 0)


def required_alpha(values, indices, n, m):
    """Smallest ``alpha`` that routes these weights *in their given slot order*."""
    d = displacements(values, indices, n, m)
    return int(np.abs(d).max()) if d.size else 0


def fine_mask(shape, n, m, rng):
    """A random mask with exactly one kept element in every aligned sub-block of ``M/N``: a valid
    N:M mask (and the shape of the finest FiGS nested mask, 1:4 inside 2:8 inside ...), routable
    with ``alpha = 0``."""
    n, m = nm.check_nm(n, m)
    q = m // n
    rows, k = shape
    keep = np.zeros((rows, k // q, q), dtype=bool)
    choice = rng.integers(0, q, size=(rows, k // q))
    np.put_along_axis(keep, choice[..., None], True, axis=-1)
    return keep.reshape(rows, k)


def routable_fraction(n, m, alpha, *, groups=2000, seed=0):
    """Fraction of uniformly random N:M groups (all ``C(M, N)`` index sets equally likely, all
    weights nonzero) that route with ``alpha`` links after :func:`assign_slots`."""
    n, m = nm.check_nm(n, m)
    rng = np.random.default_rng(seed)
    q = m // n
    ok = 0
    for _ in range(groups):
        idx = np.sort(rng.choice(m, size=n, replace=False))
        _, _, a = _assign_group(np.ones(n, dtype=np.int64), idx, n, q)
        ok += a <= alpha
    return ok / groups


# -- mapping of a GEMM onto the array ----------------------------------------------------------

def tile_shape(n, m, rows, cols, beta):
    """``(k_tile, o_tile)``: K positions and output channels one weight tile covers (both
    engines): ``rows*M/N`` and ``cols*beta``."""
    return rows * m // n, cols * beta


def weight_rows(values, indices, n, m, *, rows, cols, beta, o_tile, k_tile):
    """The ``rows`` weight-stream rows of tile ``(o_tile, k_tile)``.

    Row ``r`` holds compressed slot ``(k_tile*rows/N + r//N)*N + r%N`` ... i.e. group
    ``k_tile*rows/N + r//N``, slot ``r % N`` ... of output channels ``o_tile*cols*beta + e``.
    Output channels (and K) beyond the matrix get zero weights with index ``(r % N) * M/N`` (the
    slot's own sub-block, so the indices of a group ascend, as 2:4 metadata must).

    Returns
    -------
    list of list of (value, index)
    """
    per_row = cols * beta
    result = []
    for r in range(rows):
        col = k_tile * rows + r          # compressed position: (k_tile*rows/N + r//N)*N + r%N
        row = []
        for e in range(per_row):
            o = o_tile * per_row + e
            if o < values.shape[0] and col < values.shape[1]:
                row.append((int(values[o, col]), int(indices[o, col])))
            else:
                row.append((0, (r % n) * (m // n)))
        result.append(row)
    return result


def instance(engine, x, n, m, *, rows, lanes, k_tile, b):
    """The activations of one input transfer: ``x[rows][lanes]`` for column ``b`` of ``x``.

    ``figs``, ``nm_fanout``: row ``r`` lane ``l < M/N`` is ``x[k0 + r*M/N + l]``;
    ``nm_broadcast``: row ``r`` lane ``l < M`` is ``x[k0 + (r//N)*M + l]``; ``k0 =
    k_tile*rows*M/N``; other lanes (and K beyond ``x``) are 0. ``nm_fixed24`` always runs 2:4
    tiles: ``n``, ``m`` are taken as 2, 4.
    """
    _check_engine(engine)
    if engine == "nm_fixed24":
        n, m = 2, 4
    q = m // n
    k0 = k_tile * rows * q
    col = x[:, b]
    out = []
    for r in range(rows):
        if engine in SUB_BLOCK_PORT:
            base, count = k0 + r * q, q
        else:
            base, count = k0 + (r // n) * m, m
        lane = [int(col[base + l]) if l < count and base + l < len(col) else 0
                for l in range(lanes)]
        out.append(lane)
    return out


def route(sub, slot, n, alpha):
    """``(rotation, link)`` of a nonzero weight of sub-block ``sub`` held in slot ``slot``.

    ``(0, sub - slot)`` when ``|sub - slot| <= alpha`` (the one-step route over the vertical
    links), else ``((sub - slot) mod n, 0)``: the weight is served in the exchange phase that
    rotates its group's swap registers by that many slots, from its own register.
    """
    d = int(sub) - int(slot)
    return (0, d) if abs(d) <= alpha else (d % n, 0)


def tile_schedule(wrows, n, m, alpha):
    """The exchange schedule of one FiGS weight tile: ascending rotations, starting with 0.

    Parameters
    ----------
    wrows : list of list of (value, index)
        The tile as :func:`weight_rows` returns it (row ``r`` is slot ``r % n``).
    n, m, alpha : int

    Returns
    -------
    list of int
        ``[0] + sorted({rotation of every nonzero weight} - {0})``; its length is the number of
        cycles each instance of the tile takes.
    """
    q = m // n
    rots = {0}
    for r, row in enumerate(wrows):
        for value, index in row:
            if value != 0:
                rots.add(route(index // q, r % n, n, alpha)[0])
    return sorted(rots)


def gemm_schedule(values, indices, n, m, *, k, o, rows, cols, beta, alpha):
    """Phases (schedule lengths) of every tile of a GEMM, in the order ``(o_tile, k_tile)``
    (the order :mod:`verif.figs` streams them), for :func:`predicted_cycles`."""
    k_tile, o_tile = tile_shape(n, m, rows, cols, beta)
    out = []
    for ot in range(-(-o // o_tile)):
        for kt in range(-(-k // k_tile)):
            wrows = weight_rows(values, indices, n, m, rows=rows, cols=cols, beta=beta,
                                o_tile=ot, k_tile=kt)
            out.append(len(tile_schedule(wrows, n, m, alpha)))
    return out


def exchange_deliveries(wrows, inst, n, m, alpha):
    """Simulate the FiGS exchange of one instance: which operand each MAC multiplies, when.

    A dataflow model of the swap registers, independent of :func:`route`'s derivation: for every
    phase of :func:`tile_schedule`, the registers of row ``r`` (slot ``s``, group ``g``) hold
    ``inst[g*n + (s + rotation) % n]``; a MAC whose weight's route has this rotation reads lane
    ``index % (m/n)`` of row ``r + link``.

    Returns
    -------
    list of (phase, row, entry, operand)
        One tuple per nonzero weight.
    """
    q = m // n
    out = []
    for phase, rot in enumerate(tile_schedule(wrows, n, m, alpha)):
        regs = [inst[(r // n) * n + (r % n + rot) % n] for r in range(len(inst))]
        for r, row in enumerate(wrows):
            for e, (value, index) in enumerate(row):
                if value == 0:
                    continue
                wrot, link = route(index // q, r % n, n, alpha)
                if wrot == rot:
                    out.append((phase, r, e, regs[r + link][index % q]))
    return out


def array_model(engine, wrows, inst, n, m, *, alpha=None):
    """What the array computes for one instance: the ``cols*beta`` partial sums (Python ints).

    A dataflow model independent of the RTL: broadcast, every MAC reads lane ``index`` of its
    own row; FiGS, every MAC gets its operand from the swap exchange
    (:func:`exchange_deliveries`; ``alpha=None`` means unlimited links, one phase) and the
    products of all phases are summed.
    """
    _check_engine(engine)
    sums = [0] * len(wrows[0])
    if engine == "figs":
        values = {(r, e): v for r, row in enumerate(wrows) for e, (v, _) in enumerate(row)}
        for _, r, e, operand in exchange_deliveries(wrows, inst, n, m,
                                                    n - 1 if alpha is None else alpha):
            sums[e] += values[r, e] * operand
        return sums
    if engine == "nm_broadcast":
        for r, row in enumerate(wrows):
            for e, (value, index) in enumerate(row):
                sums[e] += value * inst[r][index]
        return sums
    if engine == "nm_fixed24":
        n, m = 2, 4
    q = m // n
    for r, row in enumerate(wrows):      # fan-out: the group's block, read at the index
        for e, (value, index) in enumerate(row):
            sums[e] += value * inst[(r // n) * n + index // q][index % q]
    return sums


# -- bandwidth and cycles --------------------------------------------------------------------------

def input_bits_per_cycle(engine, n, m, *, rows, width=8):
    """Activation bits per cycle into the array at one instance per cycle (full utilization).

    ``figs``, ``nm_fanout``: ``rows * (M/N) * width``; ``nm_broadcast``: ``rows * M * width``;
    ``nm_fixed24``: ``rows * 2 * width`` whatever the pattern (it runs 2:4 tiles). Independent
    of ``cols``, ``beta`` and ``alpha``.
    """
    _check_engine(engine)
    n, m = nm.check_nm(n, m)
    if engine == "nm_fixed24":
        n, m = 2, 4
    per_row = m // n if engine in SUB_BLOCK_PORT else m
    return rows * per_row * width


def port_bits(engine, *, rows, width=8, ratio=4, max_m=32):
    """Width of the activation port in bits (what the wires must carry at the largest
    supported pattern)."""
    _check_engine(engine)
    lanes = {"figs": ratio, "nm_fanout": ratio, "nm_fixed24": 2}.get(engine, max_m)
    return rows * lanes * width


def predicted_utilization(engine, n, m, *, rows, width=8, budget=0):
    """MAC utilization in steady state: 1 when ``budget`` (bits/cycle, 0 = unlimited) covers
    :func:`input_bits_per_cycle`, else ``budget / input_bits_per_cycle``."""
    need = input_bits_per_cycle(engine, n, m, rows=rows, width=width)
    return 1.0 if budget == 0 or budget >= need else budget / need


def fixed24_passes(w):
    """Split dense weights (O x K, K a multiple of 4) into the 2:4 matrices the fixed engine runs.

    Returns
    -------
    list of numpy.ndarray
        One or two int64 arrays of the shape of ``w`` that sum to ``w``, each with at most two
        nonzeros in every aligned 4-block: the first keeps the first two nonzeros of each block
        (in K order), the second the others. The second is left out when it is all zero.
    """
    w = np.asarray(w).astype(np.int64)
    o, k = w.shape
    if k % 4:
        raise ValueError(f"K must be a multiple of 4, not {k}")
    blocks = w.reshape(o, k // 4, 4)
    rank = np.cumsum(blocks != 0, axis=-1)      # 1-based rank of each nonzero in its block
    first = np.where((blocks != 0) & (rank <= 2), blocks, 0).reshape(o, k)
    rest = w - first
    return [first, rest] if rest.any() else [first]


def fixed24_tile_passes(w, *, rows, cols, beta):
    """Passes (1 or 2) of every 2:4 weight tile of ``w``, in the order ``(o_tile, k_tile)``: 2
    when the tile's part of the second :func:`fixed24_passes` matrix has a nonzero."""
    parts = fixed24_passes(w)
    k_tile, o_tile = tile_shape(2, 4, rows, cols, beta)
    o, k = np.asarray(w).shape
    out = []
    for ot in range(-(-o // o_tile)):
        for kt in range(-(-k // k_tile)):
            second = len(parts) > 1 and parts[1][ot * o_tile:(ot + 1) * o_tile,
                                                 kt * k_tile:(kt + 1) * k_tile].any()
            out.append(2 if second else 1)
    return out


def predicted_cycles(engine, n, m, *, k, o, b, rows, cols, beta, width=8, budget=0,
                     phases=1):
    """Cycles of a K x O x B GEMM.

    Every tile costs ``B * max(P, 1/utilization)`` cycles, ``P`` its exchange phases (FiGS
    :func:`gemm_schedule`; 1 for broadcast and for tiles that route in one step), but at least
    ``rows + L + 1`` (``L`` = :func:`pipeline_latency` = ``cols + 1 + MAC_STAGES``): weight
    loads of later tiles are hidden by the double-buffered weights when a tile streams that long
    (a bank is released when its tile's last output leaves, ``L`` cycles after its last input,
    and reloading takes ``rows`` cycles). Plus the first tile's weight load (``rows`` cycles) and
    the pipeline latency ``L``.

    ``phases``: an int (every tile) or one int per tile in streaming order. ``nm_fixed24``: the
    tiles are 2:4 tiles whatever ``n``, ``m`` (``2*rows`` K positions) and ``phases`` are their
    passes (:func:`fixed24_tile_passes`); every pass is a tile of its own (``B`` instances, at
    least ``rows + L + 1`` cycles).
    """
    lat = pipeline_latency(cols)
    if engine == "nm_fixed24":
        k_tile, o_tile = tile_shape(2, 4, rows, cols, beta)
        tiles = -(-k // k_tile) * -(-o // o_tile)
        per = [phases] * tiles if isinstance(phases, int) else list(phases)
        if len(per) != tiles:
            raise ValueError(f"phases must have one entry per tile ({tiles}), not {len(per)}")
        util = predicted_utilization(engine, n, m, rows=rows, width=width, budget=budget)
        return sum(p * max(b / util, rows + lat + 1) for p in per) + rows + lat
    k_tile, o_tile = tile_shape(n, m, rows, cols, beta)
    tiles = -(-k // k_tile) * -(-o // o_tile)
    per = [phases] * tiles if isinstance(phases, int) else list(phases)
    if len(per) != tiles:
        raise ValueError(f"phases must have one entry per tile ({tiles}), not {len(per)}")
    util = predicted_utilization(engine, n, m, rows=rows, width=width, budget=budget)
    return sum(max(b * max(p, 1 / util), rows + lat + 1) for p in per) + rows + lat
