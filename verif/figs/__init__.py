"""Shared cocotb machinery of the FiGS, broadcast, fan-out and fixed 2:4 N:M testbenches.

:func:`run_gemm` maps an N:M GEMM onto any of the engines (with :mod:`golden.figs`), streams weights and
activations with random stalls (and, optionally, an activation bandwidth budget), collects the
partial sums and checks the K-tile sums against :func:`golden.nm.gemm_int8` on the decompressed
weights.
"""

from collections import deque

import numpy as np
from amaranth.utils import exact_log2

from sparsehw.golden import figs as gf
from sparsehw.golden import nm
from sparsehw.golden.figs import MASK_KINDS
from sparsehw.hw.figs import (FIGS_PARAMS, NM_BROADCAST_PARAMS, NM_FANOUT_PARAMS,
                              NM_FIXED24_PARAMS, array_layouts)
from sparsehw.params import check, one_of
from sparsehw.verif import common
from sparsehw.verif.stream import StreamSink, StreamSource, pack


__all__ = ["SPECS", "PORTS", "dut_params", "lanes_of", "layouts_of", "make_weights", "run_gemm",
           "BudgetSource", "MASK_KINDS", "pack_instance", "unpack_psums"]


#: The generation parameter spec of each engine.
SPECS = {"figs": FIGS_PARAMS, "nm_broadcast": NM_BROADCAST_PARAMS,
         "nm_fanout": NM_FANOUT_PARAMS, "nm_fixed24": NM_FIXED24_PARAMS}
#: Stream ports of both engines: the design's inputs and its output (for ``stream.start``).
PORTS = {"sources": ("w", "i"), "sinks": ("o",)}


def dut_params(engine):
    """The generation parameters of the simulated DUT: the engine's defaults, overridden by
    the parameters the runner passed in (:func:`verif.common.params`)."""
    return common.params(SPECS[engine])


def lanes_of(engine, params):
    """Activations per PE row per instance on the port: ``ratio`` (FiGS, fan-out), 2 (fixed
    2:4) or ``max_m`` (broadcast)."""
    return {"figs": params.get("ratio"), "nm_fanout": params.get("ratio"),
            "nm_fixed24": 2}.get(engine, params.get("max_m"))


def layouts_of(engine, params):
    """The stream payload layouts of the engine with these (validated) parameters."""
    return array_layouts(rows=params["rows"], cols=params["cols"], beta=params["beta"],
                         width=params["width"], lanes=lanes_of(engine, params),
                         max_m=4 if engine == "nm_fixed24" else params["max_m"])


def make_weights(kind, o, k, n, m, rng):
    """Random int8 weights (O x K) whose N:M compression has the mask ``kind``.

    ``random``: uniform int8, :func:`golden.nm.compress` picks the mask (random positions);
    ``fine``: one kept element per sub-block of M/N (:func:`golden.figs.fine_mask`);
    ``nested``: FiGS nested mask 1:4 in 2:8 in 4:16 in 8:32 (:func:`golden.nm.nested_mask`), valid
    for every pattern with M/N <= 4; ``low``/``high``: the N kept elements at the start/end of
    every group; ``alternating``: kept at even positions (every other one), then the rest at the
    odd positions from the end when N > M/2.
    Kept elements are nonzero, so the mask is exactly the pattern.
    """
    check("mask", kind, one_of(*MASK_KINDS))
    w = rng.integers(-128, 128, size=(o, k))
    nonzero = np.where(w == 0, 1, w)
    if kind == "random":
        return w
    if kind == "fine":
        keep = gf.fine_mask((o, k), n, m, rng)
    elif kind == "nested":
        keep = nm.nested_mask(w)
    else:
        group = np.zeros(m, dtype=bool)
        if kind == "low":
            group[:n] = True
        elif kind == "high":
            group[m - n:] = True
        elif kind == "alternating":
            order = list(range(0, m, 2)) + list(range(m - 1, 0, -2))
            group[order[:n]] = True
        keep = np.tile(group, (o, k // m))
    return np.where(keep, nonzero, 0)


def pack_instance(layout, inst, last, width):
    """Fast :func:`verif.stream.pack` of an activation payload (``x`` is the first field)."""
    flat = [v for row in inst for v in row]
    mask = (1 << width) - 1
    if width == 8:
        bits = int.from_bytes(bytes(v & 0xFF for v in flat), "little")
    else:
        bits = 0
        for i, v in enumerate(flat):
            bits |= (v & mask) << (i * width)
    return bits | (int(last) << layout["last"].offset)


def unpack_psums(layout, bits, count):
    """Partial sums (list of int) and ``last`` of an output payload."""
    raw = int(bits).to_bytes((layout.size + 7) // 8, "little")
    sums = np.frombuffer(raw[:count * 4], dtype="<i4").astype(np.int64).tolist()
    return sums, (int(bits) >> layout["last"].offset) & 1


class BudgetSource(StreamSource):
    """:class:`StreamSource` that delivers at most ``budget`` payload bits per cycle on average.

    A token bucket: ``budget`` credits arrive every cycle (capped at one item's cost or one
    cycle's budget, whichever is larger, so no bursts build up); an item of cost ``c`` may be
    offered only when the bucket holds ``c``. ``budget=0`` means unlimited. Random stalls
    (``stall``) come on top.
    """

    def __init__(self, dut, prefix, clk=None, *, rng=None, stall=0.0, budget=0):
        self.budget = budget
        self.credit = 0.0
        self.costs = deque()
        self.bits_sent = 0
        super().__init__(dut, prefix, clk, rng=rng, stall=stall)

    def send_items(self, items):
        """Queue ``(payload, cost_bits)`` pairs."""
        for payload, cost in items:
            self._queue.append(payload)
            self.costs.append(cost)

    def _tick(self):
        if self.budget:
            cap = max(self.budget, self.costs[0] if self.costs else 0)
            self.credit = min(self.credit + self.budget, cap)

    def _may_offer(self):
        return not self.budget or (self.costs and self.credit >= self.costs[0])

    def _on_offer(self):
        if self.budget:
            self.credit -= self.costs[0]

    def _on_transfer(self):
        self.bits_sent += self.costs.popleft()


def _bad_index(engine, params, entries, m):
    """``entries`` (one weight row, list of (value, index)) with its last entry made malformed:
    index ``m`` (>= M) for the engines with an index range check, for the fixed 2:4 engine (a
    slot-1 row) the index of slot 0's entry, i.e. not ascending."""
    entries = list(entries)
    value, _ = entries[-1]
    entries[-1] = (value or 1, m)
    return entries


async def run_gemm(dut, engine, params, w, x, n, m, *, rngs, stall=0.0, budget=0,
                   check=True, permute=True, corrupt=None):
    """Run ``w @ x`` (int8 O x K times K x B) as N:M on the DUT; return a figures dict.

    Parameters
    ----------
    rngs : tuple of 3 random.Random
        Stall generators of the weight source, activation source and output sink.
    stall : float or tuple of 3 float
        Stall probability of every stream, or of (weights, activations, output).
    check : bool
        Compare with the golden GEMM (assert).
    permute : bool, "reverse" or callable
        FiGS: reorder slots with :func:`golden.figs.assign_slots` (the FiGS compiler step).
        Not for the fixed 2:4 engine (its slots must ascend): ``"reverse"``: the slots of every
        group in descending index order; a callable ``f(values, indices) -> (values,
        indices)`` reorders the compressed weights itself (slots stay within their group). Any
        slot order is a legal stream for the range-checked engines (FiGS: far rotations).
    corrupt : (int, int) or None
        ``(tile, row)``: make the last entry of that weight row malformed (index ``M``; fixed
        2:4: on an odd row, the index of the row above, so the pair does not ascend). Use
        with ``check=False``: the results of that tile are undefined.

    Returns
    -------
    dict
        ``cycles`` (first cycle after start to the last output transfer, inclusive),
        ``instances``, ``act_bits`` (activation bits delivered), ``act_values`` (nonzero
        activation values in the delivered payloads, counted from the payloads themselves),
        ``required_alpha`` (the largest
        one-step displacement; larger ones go through the swap exchange), ``phases`` (exchange
        phases per tile, :func:`golden.figs.gemm_schedule`; 1 for broadcast), ``got``,
        ``expected``, ``entries`` (the set of ``(row, entry, index)`` of the nonzero weights
        loaded with a legal index, for coverage), ``ends`` (the stream endpoints by port).
    """
    layouts = layouts_of(engine, params)
    lanes = lanes_of(engine, params)
    rows, cols, beta, width = params["rows"], params["cols"], params["beta"], params["width"]
    o_count, k_count = w.shape
    b_count = x.shape[1]
    values, indices = nm.compress(w, n, m)
    dense = nm.decompress(values, indices, n, m)
    alpha_needed = 0
    if engine == "nm_fixed24":
        return await _run_fixed24(dut, params, dense, x, rngs=rngs, stall=stall, budget=budget,
                                  check=check, corrupt=corrupt)
    if permute == "reverse":        # slots of each group in descending index order
        order = np.arange(values.shape[1]).reshape(-1, n)[:, ::-1].reshape(-1)
        values, indices = values[:, order], indices[:, order]
    elif callable(permute):
        values, indices = permute(values, indices)
    if engine == "figs":
        if permute is True:
            values, indices, alpha_needed = gf.assign_slots(values, indices, n, m)
        else:
            alpha_needed = gf.required_alpha(values, indices, n, m)
    k_tile, o_tile = gf.tile_shape(n, m, rows, cols, beta)
    phases = (gf.gemm_schedule(values, indices, n, m, k=k_count, o=o_count, rows=rows,
                               cols=cols, beta=beta, alpha=params["alpha"])
              if engine == "figs" else [1] * (-(-k_count // k_tile) * -(-o_count // o_tile)))
    k_tiles = -(-k_count // k_tile)
    o_tiles = -(-o_count // o_tile)
    tiles = [(ot, kt) for ot in range(o_tiles) for kt in range(k_tiles)]
    per_inst_bits = gf.input_bits_per_cycle(engine, n, m, rows=rows, width=width)

    w_items, i_items = [], []
    act_values = 0
    entries = set()
    for t, (ot, kt) in enumerate(tiles):
        for r, row in enumerate(gf.weight_rows(values, indices, n, m, rows=rows, cols=cols,
                                               beta=beta, o_tile=ot, k_tile=kt)):
            if corrupt == (t, r):
                row = _bad_index(engine, params, row, m)
            entries.update((r, e, i) for e, (v, i) in enumerate(row) if v and i < m)
            w_items.append(pack(layouts["w"], {
                "entries": [{"value": v, "index": i} for v, i in row],
                "n_log2": exact_log2(n), "m_log2": exact_log2(m)}))
        for b in range(b_count):
            inst = gf.instance(engine, x, n, m, rows=rows, lanes=lanes, k_tile=kt, b=b)
            act_values += sum(v != 0 for row in inst for v in row)
            i_items.append((pack_instance(layouts["i"], inst, b == b_count - 1, width),
                            per_inst_bits))

    return await _stream(dut, engine, params, w_items, i_items, tiles, b_count, o_count,
                         o_tile, dense, x, rngs=rngs, stall=stall, budget=budget, check=check,
                         per_inst_bits=per_inst_bits, phases=phases, act_values=act_values,
                         n=n, m=m, alpha_needed=alpha_needed, entries=entries)


async def _run_fixed24(dut, params, dense, x, *, rngs, stall, budget, check, corrupt):
    """The fixed 2:4 engine: ``dense`` compiled to 2:4 tiles of one or two passes
    (:func:`golden.figs.fixed24_passes`), each pass a weight tile over the same instances."""
    engine, n, m = "nm_fixed24", 2, 4
    layouts = layouts_of(engine, params)
    rows, cols, beta, width = params["rows"], params["cols"], params["beta"], params["width"]
    o_count, k_count = dense.shape
    b_count = x.shape[1]
    if k_count % 4:      # zero-pad K to whole 4-blocks
        pad = 4 - k_count % 4
        dense = np.pad(dense, ((0, 0), (0, pad)))
        x = np.pad(x, ((0, pad), (0, 0)))
    parts = gf.fixed24_passes(dense)
    passes = gf.fixed24_tile_passes(dense, rows=rows, cols=cols, beta=beta)
    compressed = [nm.compress(p, 2, 4) for p in parts]
    k_tile, o_tile = gf.tile_shape(2, 4, rows, cols, beta)
    k_tiles = -(-dense.shape[1] // k_tile)
    o_tiles = -(-o_count // o_tile)
    tiles = [(ot, kt) for ot in range(o_tiles) for kt in range(k_tiles)
             for _ in range(passes[ot * k_tiles + kt])]
    pass_of = []
    for ot in range(o_tiles):
        for kt in range(k_tiles):
            pass_of += list(range(passes[ot * k_tiles + kt]))
    per_inst_bits = gf.input_bits_per_cycle(engine, 2, 4, rows=rows, width=width)
    w_items, i_items = [], []
    act_values = 0
    entries = set()
    for t, ((ot, kt), p) in enumerate(zip(tiles, pass_of)):
        values, indices = compressed[p]
        for r, row in enumerate(gf.weight_rows(values, indices, 2, 4, rows=rows, cols=cols,
                                               beta=beta, o_tile=ot, k_tile=kt)):
            if corrupt == (t, r):       # slot 1 repeats slot 0's index: not ascending
                row = list(row)
                prev = gf.weight_rows(values, indices, 2, 4, rows=rows, cols=cols, beta=beta,
                                      o_tile=ot, k_tile=kt)[r - 1]
                row[-1] = (row[-1][0] or 1, prev[-1][1])
            else:
                entries.update((r, e, i) for e, (v, i) in enumerate(row) if v)
            w_items.append(pack(layouts["w"], {
                "entries": [{"value": v, "index": i} for v, i in row],
                "n_log2": 1, "m_log2": 2}))
        for b in range(b_count):
            inst = gf.instance(engine, x, 2, 4, rows=rows, lanes=2, k_tile=kt, b=b)
            act_values += sum(v != 0 for row in inst for v in row)
            i_items.append((pack_instance(layouts["i"], inst, b == b_count - 1, width),
                            per_inst_bits))
    return await _stream(dut, engine, params, w_items, i_items, tiles, b_count, o_count,
                         o_tile, dense, x, rngs=rngs, stall=stall, budget=budget, check=check,
                         per_inst_bits=per_inst_bits, phases=passes, act_values=act_values,
                         n=n, m=m, alpha_needed=0, entries=entries)


async def _stream(dut, engine, params, w_items, i_items, tiles, b_count, o_count, o_tile, dense,
                  x, *, rngs, stall, budget, check, per_inst_bits, phases, act_values, n, m,
                  alpha_needed, entries):
    """Stream the packed weights and instances, collect and (``check``) verify the sums."""
    from sparsehw.verif.stream import CycleCounter
    cols, beta = params["cols"], params["beta"]
    layouts = layouts_of(engine, params)
    counter = CycleCounter(dut).start()
    stalls = stall if isinstance(stall, tuple) else (stall,) * 3
    wsrc = StreamSource(dut, "w", rng=rngs[0], stall=stalls[0])
    isrc = BudgetSource(dut, "i", rng=rngs[1], stall=stalls[1], budget=budget)
    sink = StreamSink(dut, "o", rng=rngs[2], stall=stalls[2])
    start = counter.count
    wsrc.send_nowait(w_items)
    isrc.send_items(i_items)
    total = len(tiles) * b_count
    await sink.wait_for(total, timeout_cycles=200 + 40 * total * max(phases) * max(
        1, per_inst_bits // max(budget, 1) if budget else 1))
    cycles = counter.count - start
    wsrc.stop()
    isrc.stop()
    sink.stop()
    counter._task.cancel()
    dut.w__valid.value = 0
    dut.i__valid.value = 0

    got = np.zeros((o_count, b_count), dtype=np.int64)
    lasts = []
    pos = 0
    for ot, kt in tiles:
        for b in range(b_count):
            sums, last = unpack_psums(layouts["o"], sink.items[pos], cols * beta)
            lasts.append(last)
            pos += 1
            for e in range(o_tile):
                o = ot * o_tile + e
                if o < o_count:
                    got[o, b] += sums[e]
    expected = nm.gemm_int8(dense, x).astype(np.int64)
    if check:
        assert lasts == [int(b == b_count - 1) for _ in tiles for b in range(b_count)], \
            "last flags out of order"
        bad = np.argwhere(got != expected)
        assert bad.size == 0, (f"{engine} {n}:{m}: {len(bad)} wrong outputs, first at "
                               f"{bad[0].tolist()}: got {got[tuple(bad[0])]}, expected "
                               f"{expected[tuple(bad[0])]}")
    return {"cycles": cycles, "instances": total, "act_bits": isrc.bits_sent,
            "act_values": act_values, "required_alpha": alpha_needed, "got": got, "expected": expected,
            "tiles": len(tiles), "per_instance_bits": per_inst_bits, "phases": phases,
            "entries": entries, "ends": {"w": wsrc, "i": isrc, "o": sink}}
