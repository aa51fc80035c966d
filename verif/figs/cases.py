"""Test bodies of the regression ``tb_figs`` of the four engines (``figs``, ``nm_broadcast``,
``nm_fanout``, ``nm_fixed24``), and their functional coverage.

Coverage (``verif.coverage``, block = the engine, cumulative over the tests of one simulation,
reported after every test):

* ``nm``: every N:M pattern the engine supports at these parameters, run bit-exact: the
  issue's list (``SUPPORTED_RATIOS``) and every other pattern the engine accepts at run time
  (:func:`_accepted_patterns`: 2:2, 4:4, 8:8, 8:16, ... where the rules allow them);
* ``window``: ``m:r:j``: PE row ``r`` multiplied a nonzero weight of index ``j`` under M = ``m``,
  for every supported M and every ``j < M`` (fixed 2:4: ``j`` from ``s`` to ``s + 2``, ``s = r %
  2``, the indices an ascending pair allows); every position of every row's M-window,
  including M = 32's positions 16..31;
* ``malformed``: ``m:index``: an index ``2**b >= M`` (one bit set, every bit position the field
  has) flagged at M = ``m``; fixed 2:4: ``equal``/``lower`` (slot 1's index equal to / below
  slot 0's) in each weight bank; and ``recovered`` (the next GEMM bit-exact after a fault);
* ``config``: each rejected pattern kind (``n>m``, ``m>max_m``, ``n>rows`` (N not dividing the
  rows), ``q>ratio`` (M/N above the lanes), fixed: ``not2:4`` kinds);
* ``data``: corner operands (``w=-128``, ``w=127``, ``x=-128``, ``x=127``, ``x=0``, a
  ``(-128)*(-128)`` product) in a bit-exact GEMM;
* ``phases`` (FiGS: exchange phases of a tile, 1..N) / ``passes`` (fixed 2:4: 1 or 2);
* the handshake bins of ``w``, ``i`` and ``o``.
"""

import numpy as np
from amaranth.utils import exact_log2
from cocotb.triggers import RisingEdge

from sparsehw.golden import figs as gf
from sparsehw.golden import nm
from sparsehw.hw.figs import SUPPORTED_RATIOS
from sparsehw.verif import common
from sparsehw.verif.coverage import Coverage
from sparsehw.verif.figs import PORTS, dut_params, layouts_of, make_weights, run_gemm
from sparsehw.verif.stream import pack, restart, start


__all__ = ["gemm_cases", "nested_levels", "malformed_index", "bad_config", "exchange",
           "full_rate", "malformed_then_correct", "window_sweep", "short_tiles",
           "accepted_patterns", "held_output", "report", "ENGINES"]

ENGINES = ("figs", "nm_broadcast", "nm_fanout", "nm_fixed24")


def _max_m(engine, params):
    return 4 if engine == "nm_fixed24" else params["max_m"]


def _supported(engine, params, n, m):
    if engine == "nm_fixed24":      # every pattern, compiled to 2:4 tiles
        return True
    if params["rows"] % n or m > params["max_m"]:
        return False
    return engine not in ("figs", "nm_fanout") or m // n <= params["ratio"]


def _accepted_patterns(engine, params):
    """``[(n, m)]``: every pattern the engine accepts at run time (no ``fault.config``) that is
    not in ``SUPPORTED_RATIOS``: powers of two ``N <= M`` with ``M <= max_m``, ``N`` dividing
    the rows and (FiGS, fan-out) ``M/N <= ratio`` (the rules of ``fault.config``,
    ``hw/figs.py``), e.g. 2:2, 4:4, 8:8 and 8:16 at 8 rows and ratio 4. None for the fixed 2:4
    engine (2:4 only)."""
    if engine == "nm_fixed24":
        return []
    out = []
    m = 1
    while m <= params["max_m"]:
        n = 1
        while n <= m:
            if (n, m) not in SUPPORTED_RATIOS and _supported(engine, params, n, m):
                out.append((n, m))
            n *= 2
        m *= 2
    return out


def _min_n(engine, params, m):
    """The smallest N the engine supports with M = ``m`` (None: no pattern with this M)."""
    for n in (1, 2, 4, 8, 16, 32):
        if n <= m and (n, m) in SUPPORTED_RATIOS and _supported(engine, params, n, m):
            return n
    return None


def _window_ms(engine, params):
    """``[(m, smallest n)]``: the M of the run-time patterns (fixed 2:4: the hardware's 4)."""
    if engine == "nm_fixed24":
        return [(4, 2)]
    out = []
    m = 1
    while m <= params["max_m"]:
        n = _min_n(engine, params, m)
        if n is not None:
            out.append((m, n))
        m *= 2
    return out


_COVER = {}
DATA_BINS = ("w=-128", "w=127", "x=-128", "x=127", "x=0", "(-128)*(-128)")


def _coverage(engine, params):
    """``(coverage, samplers)`` of this simulation (one set per process)."""
    if _COVER:
        return _COVER["cov"], _COVER["points"]
    cov = Coverage(engine)
    if engine == "nm_fixed24":
        patterns = [(2, 4)]         # the hardware's only run-time pattern
    else:
        patterns = [nm_ for nm_ in SUPPORTED_RATIOS if _supported(engine, params, *nm_)]
        patterns += _accepted_patterns(engine, params)
    if engine == "nm_fixed24":      # slot s of a 2:4 group: index s..s+2 (ascending pairs)
        window = [(4, r, j) for r in range(params["rows"]) for j in range(r % 2, r % 2 + 3)]
    else:
        window = [(m, r, j) for m, _ in _window_ms(engine, params)
                  for r in range(params["rows"]) for j in range(m)]
    points = {
        "nm": cov.point("nm", patterns, labels=[f"{n}:{m}" for n, m in patterns]),
        "window": cov.point("window", window, labels=[f"{m}:{r}:{j}" for m, r, j in window]),
        "malformed": cov.point("malformed", _malformed_bins(engine, params)),
        "config": cov.point("config", [kind for kind, _ in _bad_configs(engine, params)]),
        "data": cov.point("data", DATA_BINS),
    }
    if engine == "figs":
        max_n = min(params["rows"] & -params["rows"], params["max_m"])
        points["phases"] = cov.point("phases", list(range(1, max_n + 1)))
    if engine == "nm_fixed24":
        points["passes"] = cov.point("passes", [1, 2])
    _COVER.update(cov=cov, points=points)
    return cov, points


def _index_bits(params):
    return max(1, (params["max_m"] - 1).bit_length())


def _malformed_bins(engine, params):
    if engine == "nm_fixed24":
        return ["equal0", "lower0", "equal1", "lower1", "recovered"]
    bins = []
    for m, _ in _window_ms(engine, params):
        for b in range(_index_bits(params)):
            if 1 << b >= m:
                bins.append(f"{m}:{1 << b}")
    return bins + ["recovered"]


def _bad_configs(engine, params):
    """``[(kind, (n_log2, m_log2))]``: patterns the engine must reject, one broken rule each
    where the rules allow it (fields are 3 bits wide)."""
    if engine == "nm_fixed24":     # anything but 2:4
        return [("not2:4 0:0", (0, 0)), ("not2:4 2:8", (1, 3)), ("not2:4 1:4", (0, 2)),
                ("not2:4 4:4", (2, 2)), ("not2:4 4:16", (2, 4))]
    rows, max_m = params["rows"], params["max_m"]
    mlog = exact_log2(max_m)
    out = [("n>m", (2, 1))]                                   # 4:2
    twos = exact_log2(rows & -rows)                            # N must divide rows
    if mlog + 1 <= 7:
        # M = 2*max_m, with M/N within the lanes as far as N may grow
        qlog = exact_log2(params["ratio"]) if "ratio" in params else mlog + 1
        out.append(("m>max_m", (min(twos, max(0, mlog + 1 - qlog)), mlog + 1)))
    if twos + 1 <= min(mlog, 7):
        out.append(("n>rows", (twos + 1, mlog)))
    if engine in ("figs", "nm_fanout") and exact_log2(params["ratio"]) < mlog:
        out.append(("q>ratio", (0, exact_log2(params["ratio"]) + 1)))
    return out


def _sample_gemm(dut, engine, params, fig, n, m, w, x):
    """Sample a bit-exact GEMM of pattern n:m on weights ``w`` (dense) and activations ``x``."""
    cov, sample = _coverage(engine, params)
    sample["nm"]((2, 4) if engine == "nm_fixed24" else (n, m))
    hw_m = 4 if engine == "nm_fixed24" else m
    for r, _, j in fig["entries"]:
        sample["window"]((hw_m, r, j))
    w = np.asarray(w) if engine == "nm_fixed24" else nm.decompress(*nm.compress(w, n, m), n, m)
    x = np.asarray(x)
    corner = {"w=-128": (w == -128).any(), "w=127": (w == 127).any(),
              "x=-128": (x == -128).any(), "x=127": (x == 127).any(), "x=0": (x == 0).any(),
              "(-128)*(-128)": ((w == -128).astype(np.int64) @ (x == -128).astype(np.int64)
                                ).any()}
    for name, hit in corner.items():
        if hit:
            sample["data"](name)
    if engine == "figs":
        for p in fig["phases"]:
            sample["phases"](p)
    if engine == "nm_fixed24":
        for p in fig["phases"]:
            sample["passes"](p)
    cov.ports(**fig["ends"])
    cov.summary()          # samples the ports' statistics before the endpoints are replaced


def report(dut, engine):
    """Log the coverage so far and merge it into the run record."""
    cov, _ = _coverage(engine, dut_params(engine))
    cov.report(dut._log)


async def _gemm(dut, engine, params, w, x, n, m, **kwargs):
    """:func:`run_gemm`, sampled for coverage when it was checked."""
    fig = await run_gemm(dut, engine, params, w, x, n, m, **kwargs)
    if kwargs.get("check", True):
        _sample_gemm(dut, engine, params, fig, n, m, w, x)
    return fig


def _rngs(salt):
    return common.rng(salt + 1), common.rng(salt + 2), common.rng(salt + 3)


def _fault(dut):
    return int(dut.fault.value)


async def gemm_cases(dut, engine, kinds, stall):
    """Every supported ratio with each mask kind in ``kinds``, bit-exact. FiGS: masks that need
    more than ``alpha`` links go through the swap exchange (recorded as ``exchanged``); at least
    one case must when the parameters allow it."""
    params = dut_params(engine)
    await start(dut, **PORTS)
    rng = np.random.default_rng(common.rng(0).randrange(1 << 30))
    exchanged = 0
    ran = 0
    for kind in kinds:
        for n, m in SUPPORTED_RATIOS:
            if not _supported(engine, params, n, m):
                continue
            k_tile, o_tile = gf.tile_shape(n, m, params["rows"], params["cols"], params["beta"])
            o, k, b = o_tile + 3, 2 * k_tile, 3
            if kind == "nested":                # nested masks are defined on groups of 32
                k = max(k, 32)
            w = make_weights(kind, o, k, n, m, rng)
            x = rng.integers(-128, 128, size=(k, b))
            if kind in ("low", "high"):     # corner values on the extreme patterns
                x[:, 0] = -128
                w = np.where(w != 0, -128, 0)
            fig = await _gemm(dut, engine, params, w, x, n, m, rngs=_rngs(ran * 10),
                                 stall=stall)
            assert _fault(dut) == 0, f"spurious fault {_fault(dut):#x} for {kind} {n}:{m}"
            ran += 1
            exchanged += max(fig["phases"]) > 1
            dut._log.info(f"{engine} {kind} {n}:{m} ok, phases {fig['phases']}")
    assert ran > 0
    if engine == "figs" and "low" in kinds and params["alpha"] < 2 and params["rows"] % 4 == 0 \
            and params["ratio"] >= 2 and params["max_m"] >= 8:
        assert exchanged, "no case used the swap exchange"
    common.record(gemms=ran, exchanged=exchanged)


async def nested_levels(dut, engine):
    """FiGS nested masks: each level (8:32, 4:16, 2:8, 1:4) at its own ratio, then the final 1:4
    weights run as 8:32, 4:16 and 2:8 (FiGS: with alpha 0)."""
    params = dut_params(engine)
    await start(dut, **PORTS)
    rng = np.random.default_rng(common.rng(5).randrange(1 << 30))
    k = 2 * params["rows"] * 4
    o, b = params["cols"] * params["beta"] + 1, 2
    w = rng.integers(-128, 128, size=(o, k))
    x = rng.integers(-128, 128, size=(k, b))
    levels = nm.nested_masks(w)
    cases = [(n, m, np.where(keep, w, 0)) for n, m, keep in levels]
    finest = cases[-1][2]
    cases += [(n, m, finest) for n, m in ((2, 8), (4, 16), (8, 32))]
    done = 0
    for n, m, wl in cases:
        if not _supported(engine, params, n, m):
            continue
        if engine == "figs":
            v, i = nm.compress(wl, n, m)
            _, _, need = gf.assign_slots(v, i, n, m)
            if wl is finest:
                assert need == 0, f"1:4 nested weights need alpha {need} as {n}:{m}"
        await _gemm(dut, engine, params, wl, x, n, m, rngs=_rngs(50 + done), stall=0.3)
        assert _fault(dut) == 0
        done += 1
    assert done > 0


async def _load_tile(dut, engine, params, entries_for_row, n_log2, m_log2):
    from sparsehw.verif.stream import StreamSource
    src = StreamSource(dut, "w")
    src.send_nowait(pack(layouts_of(engine, params)["w"], {"entries": entries_for_row(r), "n_log2": n_log2,
                                              "m_log2": m_log2})
                    for r in range(params["rows"]))
    await src.wait_idle(timeout_cycles=50 + 4 * params["rows"])
    await RisingEdge(dut.clk)
    src.stop()
    dut.w__valid.value = 0


async def malformed_index(dut, engine):
    """Every malformed-index kind is flagged (fault.index, nothing else), at every entry of the
    weight row; a legal tile is not flagged.

    Range-checked engines: for every supported M (with its smallest N) and every bit of the
    index field with ``2**b >= M``, one entry (each entry in turn) holds index ``2**b``, the
    others index 0; legal tiles hold ``M - 1`` (every bit below M set). Fixed 2:4: in each
    weight bank, each slot-1 row and each entry in turn holds an index equal to or below (in
    turn) its slot-0 index; legal tiles hold every ascending pair."""
    params = dut_params(engine)
    _, sample = _coverage(engine, params)
    await start(dut, **PORTS)
    rows = params["rows"]
    e_count = params["cols"] * params["beta"]
    if engine == "nm_fixed24":
        pairs = [(a, b) for a in range(4) for b in range(a + 1, 4)]
        legal = lambda r: [{"value": 5 + r, "index": pairs[(r // 2 + j) % 6][r % 2]}
                           for j in range(e_count)]
        for bank in (0, 1):
            for r in range(1, rows, 2):
                for j in range(e_count):
                    kind = "equal" if (r // 2 + j) % 2 else "lower"
                    # slot 0 at 2, slot 1 at 2 (equal) or 1 (lower)
                    bad = lambda rr, r=r, j=j, kind=kind: [
                        {"value": 3, "index": (2 if rr == r - 1 else (2 if kind == "equal"
                                                                        else 1))}
                        if (rr in (r - 1, r) and jj == j) else legal(rr)[jj]
                        for jj in range(e_count)]
                    await restart(dut, **PORTS)
                    if bank:
                        await _load_tile(dut, engine, params, legal, 1, 2)
                        assert _fault(dut) == 0, "legal tile flagged"
                    await _load_tile(dut, engine, params, bad, 1, 2)
                    assert dut.fault.value.to_unsigned() == 0b001, \
                        f"fault {_fault(dut):#05b} for {kind} at row {r} entry {j} bank {bank}"
                    sample["malformed"](f"{kind}{bank}")
        return
    count = 0
    for m, n in _window_ms(engine, params):
        nlog, mlog = exact_log2(n), exact_log2(m)
        await restart(dut, **PORTS)
        legal = lambda r: [{"value": 5, "index": m - 1} for _ in range(e_count)]
        await _load_tile(dut, engine, params, legal, nlog, mlog)
        assert _fault(dut) == 0, f"legal {n}:{m} tile flagged"
        for b in range(_index_bits(params)):
            if 1 << b < m:
                continue
            for j in range(e_count):
                row = (count * 3) % rows
                count += 1
                bad = lambda r, row=row, j=j: [
                    {"value": 5, "index": (1 << b) if (r == row and jj == j) else 0}
                    for jj in range(e_count)]
                await restart(dut, **PORTS)
                await _load_tile(dut, engine, params, bad, nlog, mlog)
                assert dut.fault.value.to_unsigned() == 0b001, \
                    f"fault {_fault(dut):#05b} for index {1 << b} at {n}:{m} entry {j}"
            sample["malformed"](f"{m}:{1 << b}")


async def bad_config(dut, engine):
    """Each rejected pattern kind is flagged (fault.config): N > M, M > max_m, N not dividing
    rows, M/N above the lanes (FiGS, fan-out); fixed 2:4: anything but 2:4."""
    params = dut_params(engine)
    _, sample = _coverage(engine, params)
    e = params["cols"] * params["beta"]
    # indices legal for the fixed 2:4 metadata (ascending pairs): only the pattern is wrong
    zero = lambda r: [{"value": 0, "index": 3 * (r % 2) if engine == "nm_fixed24" else 0}
                      for _ in range(e)]
    for i, (kind, (n_log2, m_log2)) in enumerate(_bad_configs(engine, params)):
        await (restart if i else start)(dut, **PORTS)
        await _load_tile(dut, engine, params, zero, n_log2, m_log2)
        assert dut.fault.value.to_unsigned() == 0b010, \
            f"{kind} ({n_log2}:{m_log2} log2): fault {_fault(dut):#05b}, expected config"
        sample["config"](kind)


def _window_masks(n, m):
    """The kept position sets of a group the window sweep cycles through: every ascending run
    of N (shifts 0..M-N), or for 2:4 every pair."""
    if (n, m) == (2, 4):
        return [(a, b) for a in range(4) for b in range(a + 1, 4)]
    return [tuple(range(d, d + n)) for d in range(m - n + 1)]


def _rotation(n, o_tile, sets, groups_per_tile):
    """Slot permutation of the window sweep: in output ``o``'s group ``G`` (tile ``t = G //
    groups_per_tile``), slot ``s`` takes the kept weight of ascending rank ``(s + rot) % n``,
    ``rot = (o % o_tile + o_tile * (t // sets)) % n``: over ``sets * ceil(n / o_tile)`` tiles
    every (shift, rotation) pair occurs in every row."""
    def permute(values, indices):
        o_count, width = values.shape
        groups = width // n
        o = np.arange(o_count)[:, None]
        t = np.arange(groups)[None, :] // groups_per_tile
        rot = (o % o_tile + o_tile * (t // sets)) % n                    # (O, groups)
        s = np.arange(n)
        order = (np.arange(groups)[None, :, None] * n +
                 (s[None, None, :] + rot[:, :, None]) % n).reshape(o_count, width)
        return (np.take_along_axis(values, order, axis=1),
                np.take_along_axis(indices, order, axis=1))
    return permute


async def window_sweep(dut, engine):
    """Every row multiplies every position of its M-window (coverpoint ``window``): for each
    supported M with its smallest N, K tiles whose groups keep a shifted set of positions
    (:func:`_window_masks`; group g, output e, tile t: set ``(t + e + g) % sets``), the slots
    of each group rotated (:func:`_rotation`; not for fixed 2:4, whose slots must ascend), so
    that every slot row holds every index; nonzero random weights, and two instances per tile,
    the second the bitwise complement of the first (every activation bit 0 and 1 in every
    lane). FiGS: rotated slots go through the exchange. Bit-exact under stalls."""
    params = dut_params(engine)
    rows, cols, beta = params["rows"], params["cols"], params["beta"]
    await start(dut, **PORTS)
    rng = np.random.default_rng(common.rng(41).randrange(1 << 30))
    for m, n in _window_ms(engine, params):
        sets = _window_masks(n, m)
        k_tile, o_tile = gf.tile_shape(n, m, rows, cols, beta)
        fixed = engine == "nm_fixed24"
        reps = 1 if fixed or n == 1 else -(-n // o_tile)
        tiles = len(sets) * reps
        keep = np.zeros((o_tile, tiles * k_tile), dtype=bool)
        for t in range(tiles):
            for g in range(k_tile // m):
                for e in range(o_tile):
                    for p in sets[(t + e + g) % len(sets)]:
                        keep[e, t * k_tile + g * m + p] = True
        w = rng.integers(-128, 128, size=keep.shape)
        w = np.where(keep, np.where(w == 0, -128, w), 0)
        x0 = rng.integers(-128, 128, size=(tiles * k_tile, 1))
        x = np.concatenate([x0, -x0 - 1], axis=1)       # ~x0: every bit both ways
        run_n, run_m = (2, 4) if fixed else (n, m)
        permute = False if fixed else _rotation(n, o_tile, len(sets), k_tile // m)
        await _gemm(dut, engine, params, w, x, run_n, run_m, rngs=_rngs(40 + m), stall=0.3,
                    permute=permute)
        assert _fault(dut) == 0, f"spurious fault {_fault(dut):#x} in the {n}:{m} sweep"
        dut._log.info(f"{engine} window sweep {n}:{m}: {tiles} tiles ok")
    if engine == "figs":
        await _exchange_phase_sweep(dut, params, rng)
    if engine in ("nm_broadcast", "nm_fanout"):
        await _mac_index_sweep(dut, engine, params, rng)


async def _mac_index_sweep(dut, engine, params, rng):
    """Broadcast and fan-out (each MAC selects its operand from its row's whole M-block): every
    MAC multiplies every position of the window at the largest M (with its smallest N). Tile
    ``t``: the MAC of row ``r`` (slot ``s = r % N``) and entry ``e`` holds index ``(t + e + s*M/N)
    % M`` (distinct within a group; over ``M`` tiles every MAC holds every index), slots as
    placed, random nonzero weights; more instances per tile than the pipeline's latency, each
    followed by its bitwise complement (every operand bit 0 and 1 at every MAC and index).
    Bit-exact under stalls, 80% on the output: a full pipeline held in every column."""
    rows, cols, beta = params["rows"], params["cols"], params["beta"]
    m, n = _window_ms(engine, params)[-1]
    q = m // n
    k_tile, o_tile = gf.tile_shape(n, m, rows, cols, beta)
    w = np.zeros((o_tile, m * k_tile), dtype=np.int64)
    slot_of = {}                           # (output, group, index) -> slot of the weight
    for t in range(m):
        for r in range(rows):
            group = t * rows // n + r // n
            for e in range(o_tile):
                index = (t + e + (r % n) * q) % m
                w[e, group * m + index] = int(rng.integers(1, 128)) * int(rng.choice((-1, 1)))
                slot_of[(e, group, index)] = r % n

    def place(values, indices):
        order = np.zeros(values.shape, dtype=np.int64)
        for o in range(values.shape[0]):
            for pos in range(values.shape[1]):
                order[o, pos - pos % n + slot_of[(o, pos // n, int(indices[o, pos]))]] = pos
        return (np.take_along_axis(values, order, axis=1),
                np.take_along_axis(indices, order, axis=1))

    # instances of a tile fill the pipeline (B > its latency), each followed by its complement
    pairs = -(-(gf.pipeline_latency(cols) + 1) // 2)
    x0 = rng.integers(-128, 128, size=(w.shape[1], pairs))
    x = np.stack([x0, -x0 - 1], axis=2).reshape(w.shape[1], 2 * pairs)
    fig = await _gemm(dut, engine, params, w, x, n, m, rngs=_rngs(48),
                      stall=(0.3, 0.3, 0.8), permute=place)
    assert _fault(dut) == 0, f"spurious fault {_fault(dut):#x} in the MAC index sweep"
    assert {(r, e, j) for r in range(rows) for e in range(o_tile) for j in range(m)} <= \
        fig["entries"], "a MAC did not hold every index"
    dut._log.info(f"{engine} MAC index sweep {n}:{m}: {m} tiles ok")


def _reversed_tile_phases(w, n, m, params):
    """Exchange phases of the one-tile weights ``w`` with slots in descending index order."""
    values, indices = nm.compress(w, n, m)
    order = np.arange(values.shape[1]).reshape(-1, n)[:, ::-1].reshape(-1)
    wrows = gf.weight_rows(values[:, order], indices[:, order], n, m, rows=params["rows"],
                           cols=params["cols"], beta=params["beta"], o_tile=0, k_tile=0)
    return len(gf.tile_schedule(wrows, n, m, params["alpha"]))


async def _exchange_phase_sweep(dut, params, rng):
    """FiGS at the largest M, slots in descending index order (slot 0 takes the group's far
    end, so every rotation can occur; ascending slots reach displacements -6..6 only at 8:32):
    one tile per phase count 1..N, found among tiles whose outputs mix low/high/random/fine
    masks with some kept weights zeroed (golden :func:`golden.figs.tile_schedule` counts the
    phases), run as one GEMM, bit-exact under stalls."""
    rows, cols, beta = params["rows"], params["cols"], params["beta"]
    m, n = _window_ms("figs", params)[-1]
    k_tile, o_tile = gf.tile_shape(n, m, rows, cols, beta)
    kinds = ("low", "high", "random", "fine", "alternating")
    found = {}
    for _ in range(300):
        w = np.concatenate([make_weights(kinds[int(rng.integers(len(kinds)))], 1, k_tile, n,
                                         m, rng) for _ in range(o_tile)])
        w[rng.random(w.shape) < rng.random()] = 0
        found.setdefault(_reversed_tile_phases(w, n, m, params), w)
    tiles = [found[p] for p in sorted(found)]
    w = np.concatenate(tiles, axis=1)
    x = rng.integers(-128, 128, size=(w.shape[1], 2))
    fig = await _gemm(dut, "figs", params, w, x, n, m, rngs=_rngs(49), stall=0.3,
                      permute="reverse")
    assert _fault(dut) == 0
    dut._log.info(f"figs descending slots {n}:{m}: phases {fig['phases']}")


async def short_tiles(dut, engine):
    """``cols - 1`` and ``cols`` instances per weight tile (about what the pipeline holds),
    random stalls on the activations (30%) and the output (80%), weights without stalls: the
    next tile's weights are loaded early, and tile t+2's first instance can arrive while tile
    t's outputs are still in the pipeline; it must wait until bank ``t % 2`` holds tile t+2 (the
    RTL let it in on the stale bank until the fix). Every N:M pattern, bit-exact."""
    params = dut_params(engine)
    await start(dut, **PORTS)
    rng = np.random.default_rng(common.rng(61).randrange(1 << 30))
    done = 0
    for b in sorted({max(1, params["cols"] - 1), params["cols"]}):
        for n, m in SUPPORTED_RATIOS:
            if not _supported(engine, params, n, m):
                continue
            k_tile, o_tile = gf.tile_shape(n, m, params["rows"], params["cols"], params["beta"])
            w = make_weights("random", o_tile, 4 * k_tile, n, m, rng)
            x = rng.integers(-128, 128, size=(4 * k_tile, b))
            await _gemm(dut, engine, params, w, x, n, m, stall=(0.0, 0.3, 0.8),
                        rngs=_rngs(60 + done))
            assert _fault(dut) == 0
            done += 1
    assert done > 0


async def exchange(dut):
    """FiGS swap exchange: 8:32 with every kept weight at the low end of its group (slots in
    ascending order, displacements 0..-6), random 8:32 and 4:16 masks and a 4:8 mask at the
    high end, without slot assignment,
    no stalls: bit-exact, no fault, and the cycles equal :func:`golden.figs.predicted_cycles`
    with the schedule's phases (``B >= rows + L + 1``, ``L`` the pipeline latency: one instance
    per phase). Then every rotation of every weight position as the only one its tile needs
    (:func:`_sole_rotation_sweep`), every row's rotation decode of the other rows' weights
    (:func:`_cross_row_sweep`) and of its own weights at every other rotation
    (:func:`_one_rotation_sweep`)."""
    engine = "figs"
    params = dut_params(engine)
    rows, cols, beta = params["rows"], params["cols"], params["beta"]
    await start(dut, **PORTS)
    rng = np.random.default_rng(common.rng(21).randrange(1 << 30))
    results = []
    exchanged = 0
    for n, m, kind in ((8, 32, "low"), (8, 32, "random"), (4, 16, "random"), (4, 8, "high")):
        if not _supported(engine, params, n, m):
            continue
        k_tile, o_tile = gf.tile_shape(n, m, rows, cols, beta)
        b = rows + gf.pipeline_latency(cols) + 1
        w = make_weights(kind, o_tile, 2 * k_tile, n, m, rng)
        x = rng.integers(-128, 128, size=(2 * k_tile, b))
        await restart(dut, **PORTS)
        fig = await _gemm(dut, engine, params, w, x, n, m, rngs=_rngs(80 + n), permute=False)
        assert _fault(dut) == 0
        pred = gf.predicted_cycles(engine, n, m, k=2 * k_tile, o=o_tile, b=b, rows=rows,
                                   cols=cols, beta=beta, width=params["width"],
                                   phases=fig["phases"])
        dut._log.info(f"{n}:{m} {kind}: phases {fig['phases']}, cycles {fig['cycles']}, "
                      f"predicted {pred}")
        assert fig["cycles"] == pred, f"{n}:{m}: {fig['cycles']} cycles, predicted {pred}"
        results.append((n, m, fig["phases"], fig["cycles"]))
        exchanged += max(fig["phases"]) > 1
    if params["alpha"] < 2 and _supported(engine, params, 8, 32):
        assert exchanged, "no case used the swap exchange"
    common.record(exchange=results)
    await _sole_rotation_sweep(dut, params, rng)
    await _cross_row_sweep(dut, params, rng)
    await _one_rotation_sweep(dut, params, rng)


def _largest_m_per_n(params):
    """``(n, m)`` for every N that figs supports at ``params``, the largest N first, each at its
    largest supported M (the sweeps below cover every rotation there)."""
    for n in sorted({n for n, _ in SUPPORTED_RATIOS}, reverse=True):
        ms = [m for n_, m in SUPPORTED_RATIOS if n_ == n and _supported("figs", params, n, m)]
        if ms:
            yield n, max(ms)


def _sole_rotation_tiles(params):
    """``[(n, m, tiles)]`` of :func:`_sole_rotation_sweep`: every ``(row, entry, rotation)`` a
    nonzero weight can need (golden :func:`golden.figs.route` over every slot and sub-block, at
    the largest M of each N, the largest N first; a triple found at a larger N is not repeated),
    packed into tiles (first fit) so that in every tile each rotation is needed by exactly one
    weight: ``tiles[i] = {(row, entry): (rotation, index)}``, every other weight of the tile
    zero."""
    rows, alpha = params["rows"], params["alpha"]
    e_count = params["cols"] * params["beta"]
    done = set()
    out = []
    for n, m in _largest_m_per_n(params):
        q = m // n
        tiles = []
        for t in range(1, n):
            for r in range(rows):
                for sub in range(n):
                    if gf.route(sub, r % n, n, alpha)[0] != t:
                        continue
                    for e in range(e_count):
                        if (r, e, t) in done:
                            continue
                        done.add((r, e, t))
                        for tile in tiles + [{}]:
                            used = {idx for (rr, ee), (_, idx) in tile.items()
                                    if ee == e and rr // n == r // n}
                            lanes = [sub * q + lane for lane in range(q)
                                     if sub * q + lane not in used]
                            if (r, e) in tile or any(tt == t for tt, _ in tile.values()) \
                                    or not lanes:
                                continue
                            if not tile:
                                tiles.append(tile)
                            tile[(r, e)] = (t, lanes[0])
                            break
        if tiles:
            out.append((n, m, tiles))
    return out


def _place_slots(values, indices, n, slot_of):
    """Compressed weights (:func:`golden.nm.compress`) with the nonzero weight of index ``i`` of
    output ``o``, group ``g`` moved to slot ``slot_of[(o, g, i)]`` of its group (the other slots
    in compress order): the ``permute`` of the exchange sweeps (a slot order is a legal
    stream)."""
    values, indices = values.copy(), indices.copy()
    for o in range(values.shape[0]):
        for g in range(values.shape[1] // n):
            span = slice(g * n, (g + 1) * n)
            v, i = values[o, span].copy(), indices[o, span].copy()
            order = [None] * n
            rest = []
            for s in range(n):
                target = slot_of.get((o, g, int(i[s]))) if v[s] else None
                if target is None:
                    rest.append(s)
                else:
                    order[target] = s
            for slot in range(n):
                if order[slot] is None:
                    order[slot] = rest.pop(0)
            values[o, span], indices[o, span] = v[order], i[order]
    return values, indices


async def _sole_rotation_sweep(dut, params, rng):
    """FiGS exchange schedule, one weight at a time: for every ``(row, entry, rotation)`` a
    nonzero weight can need (:func:`_sole_rotation_tiles`), a tile in which that weight is the
    only one that needs this rotation (the schedule must include the rotation because of that
    weight alone: row ``r``'s rotation decode at load, OR-ed into the bank's schedule), random
    nonzero weights and activations, one GEMM per N:M (K tiles of one output tile), slots as
    placed (no slot assignment), bit-exact under stalls. The golden schedule
    (:func:`golden.figs.tile_schedule`) of every tile is checked to hold exactly the rotations
    placed."""
    rows, cols, beta = params["rows"], params["cols"], params["beta"]
    e_count = cols * beta
    swept = []
    for n, m, tiles in _sole_rotation_tiles(params):
        k_tile, o_tile = gf.tile_shape(n, m, rows, cols, beta)
        w = np.zeros((o_tile, len(tiles) * k_tile), dtype=np.int64)
        slot_of = {}                       # (output, group, index) -> slot of the weight
        for kt, tile in enumerate(tiles):
            for (r, e), (_, index) in tile.items():
                group = kt * rows // n + r // n
                value = int(rng.integers(1, 128)) * int(rng.choice((-1, 1)))
                w[e, group * m + index] = value
                slot_of[(e, group, index)] = r % n

        def place(values, indices, n=n, slot_of=slot_of):
            return _place_slots(values, indices, n, slot_of)

        # the stimulus is what it claims: each placed rotation needed by its weight alone
        values, indices = place(*nm.compress(w, n, m))
        for kt, tile in enumerate(tiles):
            wrows = gf.weight_rows(values, indices, n, m, rows=rows, cols=cols, beta=beta,
                                   o_tile=0, k_tile=kt)
            need = [(gf.route(i // (m // n), r % n, n, params["alpha"])[0], (r, e))
                    for r, row in enumerate(wrows) for e, (v, i) in enumerate(row) if v]
            assert sorted(need) == sorted((t, cell) for cell, (t, _) in tile.items()), \
                f"sole-rotation tile {kt} at {n}:{m} is not what was placed"
            assert gf.tile_schedule(wrows, n, m, params["alpha"]) == \
                [0] + sorted(t for t, _ in tile.values())
        shape = (w.shape[1], 1)         # nonzero activations: every missed product shows
        x = rng.integers(1, 128, size=shape) * rng.choice((-1, 1), size=shape)
        await _gemm(dut, "figs", params, w, x, n, m, rngs=_rngs(85 + n), stall=0.3,
                    permute=place)
        assert _fault(dut) == 0
        swept.append((n, m, len(tiles), sum(len(t) for t in tiles)))
        dut._log.info(f"figs sole-rotation sweep {n}:{m}: {len(tiles)} tiles, "
                      f"{sum(len(t) for t in tiles)} (row, entry, rotation) triples")
    common.record(sole_rotation=swept)


def _cross_row_tiles(params):
    """``[(n, m, tiles)]`` of :func:`_cross_row_sweep`: tiles of one nonzero weight each,
    ``tiles[i] = (row, entry, index)``, chosen (greedily, the largest N first, at the largest M
    of each N) so that every ``(row r, rotation t)`` with a sub-block ``s`` that row ``r`` reaches
    with rotation ``t`` (``golden.figs.route(s, r % N)``) has a tile whose weight sits in another
    row at sub-block ``s`` and needs another rotation: row ``r``'s decode of that weight
    (computed at load for every row in parallel, only the loaded row's kept) would add ``t`` to
    the tile's schedule."""
    rows, alpha = params["rows"], params["alpha"]
    e_count = params["cols"] * params["beta"]
    out = []
    for n, m in _largest_m_per_n(params):
        q = m // n
        need = {(r, gf.route(s, r % n, n, alpha)[0]) for r in range(rows) for s in range(n)}
        need = {(r, t) for r, t in need if t}
        tiles = []
        for s in range(n):
            for own in range(rows):
                own_t = gf.route(s, own % n, n, alpha)[0]
                covers = {(r, gf.route(s, r % n, n, alpha)[0]) for r in range(rows)
                          if r != own} & need
                covers = {(r, t) for r, t in covers if t != own_t}
                if covers:
                    need -= covers
                    tiles.append((own, len(tiles) % e_count, s * q + len(tiles) % q))
        assert not need, f"cross-row pairs {sorted(need)} not covered at {n}:{m}"
        if tiles:
            out.append((n, m, tiles))
    return out


async def _gemm_exact_cycles(dut, params, w, n, m, o_tile, place, rng, salt, what):
    """One FiGS GEMM of the weights ``w`` (placed by ``place``) on random activations with
    ``B = rows + L + 1`` and no stalls, from a restart: bit-exact (:func:`_gemm`), no fault, and
    its cycles equal to :func:`golden.figs.predicted_cycles` with the phases it ran. Returns
    the run's figures."""
    rows, cols, beta = params["rows"], params["cols"], params["beta"]
    b = rows + gf.pipeline_latency(cols) + 1
    shape = (w.shape[1], b)
    x = rng.integers(1, 128, size=shape) * rng.choice((-1, 1), size=shape)
    await restart(dut, **PORTS)
    fig = await _gemm(dut, "figs", params, w, x, n, m, rngs=_rngs(salt), permute=place)
    assert _fault(dut) == 0
    pred = gf.predicted_cycles("figs", n, m, k=w.shape[1], o=o_tile, b=b, rows=rows,
                               cols=cols, beta=beta, width=params["width"],
                               phases=fig["phases"])
    assert fig["cycles"] == pred, f"{what} {n}:{m}: {fig['cycles']} cycles, predicted {pred}"
    return fig


async def _cross_row_sweep(dut, params, rng):
    """FiGS exchange schedule against the other rows' weights: every row decodes the weight row
    being loaded as if it were its own, and only the loaded row's rotations may enter the
    bank's schedule (a row's decode leaking would add a phase no MAC uses: the sums stay right,
    each instance takes a cycle more). For every ``(row, rotation)`` a tile whose one nonzero
    weight is in another row, at the sub-block that row would reach with that rotation, and
    needs another rotation (:func:`_cross_row_tiles`); one GEMM per N:M with
    ``B = rows + L + 1`` and no stalls: bit-exact, no fault, and the cycles equal
    :func:`golden.figs.predicted_cycles` with the golden schedule (the tile's own rotation
    only: checked)."""
    rows, cols, beta = params["rows"], params["cols"], params["beta"]
    swept = []
    for n, m, tiles in _cross_row_tiles(params):
        k_tile, o_tile = gf.tile_shape(n, m, rows, cols, beta)
        w = np.zeros((o_tile, len(tiles) * k_tile), dtype=np.int64)
        slot_of = {}
        for kt, (r, e, index) in enumerate(tiles):
            group = kt * rows // n + r // n
            w[e, group * m + index] = int(rng.integers(1, 128)) * int(rng.choice((-1, 1)))
            slot_of[(e, group, index)] = r % n

        def place(values, indices, n=n, slot_of=slot_of):
            return _place_slots(values, indices, n, slot_of)

        values, indices = place(*nm.compress(w, n, m))
        for kt, (r, e, index) in enumerate(tiles):
            wrows = gf.weight_rows(values, indices, n, m, rows=rows, cols=cols, beta=beta,
                                   o_tile=0, k_tile=kt)
            assert [(rr, ee) for rr, row in enumerate(wrows) for ee, (v, _) in enumerate(row)
                    if v] == [(r, e)], f"cross-row tile {kt} at {n}:{m} is not what was placed"
            own = gf.route(index // (m // n), r % n, n, params["alpha"])[0]
            assert gf.tile_schedule(wrows, n, m, params["alpha"]) == sorted({0, own})
        fig = await _gemm_exact_cycles(dut, params, w, n, m, o_tile, place, rng, 88 + n,
                                       "cross-row sweep")
        swept.append((n, m, len(tiles)))
        dut._log.info(f"figs cross-row sweep {n}:{m}: {len(tiles)} tiles, phases "
                      f"{fig['phases']}, {fig['cycles']} cycles")
    common.record(cross_row=swept)


async def _one_rotation_sweep(dut, params, rng):
    """FiGS exchange schedule against a row's own weights at the other rotations: a weight's
    rotation decode must add its own rotation and no other (a decode that also matched another
    rotation would add a phase no MAC uses: the sums stay right, each instance takes a cycle
    more). For every N:M (the largest M of each N) and every rotation ``u`` in 0..N-1, a tile
    with a nonzero weight at every ``(row, entry)``, each at the sub-block ``u`` slots after
    its own (so needing rotation ``u``, or none where that is within ``alpha`` rows); one GEMM
    per N:M with ``B = rows + L + 1`` and no stalls: bit-exact, no fault, and the cycles equal
    :func:`golden.figs.predicted_cycles` with the golden schedule (``[0]`` or ``[0, u]``:
    checked)."""
    rows, cols, beta, alpha = params["rows"], params["cols"], params["beta"], params["alpha"]
    e_count = cols * beta
    swept = []
    for n, m in _largest_m_per_n(params):
        if n == 1:
            continue
        q = m // n
        k_tile, o_tile = gf.tile_shape(n, m, rows, cols, beta)
        w = np.zeros((o_tile, n * k_tile), dtype=np.int64)
        slot_of = {}
        for u in range(n):
            for r in range(rows):
                group = u * rows // n + r // n
                for e in range(e_count):
                    index = (r % n + u) % n * q + int(rng.integers(q))
                    w[e, group * m + index] = int(rng.integers(1, 128)) * int(rng.choice((-1, 1)))
                    slot_of[(e, group, index)] = r % n

        def place(values, indices, n=n, slot_of=slot_of):
            return _place_slots(values, indices, n, slot_of)

        values, indices = place(*nm.compress(w, n, m))
        for u in range(n):
            wrows = gf.weight_rows(values, indices, n, m, rows=rows, cols=cols, beta=beta,
                                   o_tile=0, k_tile=u)
            assert all(v for row in wrows for v, _ in row), f"tile {u} at {n}:{m} not full"
            need = {gf.route(i // q, r % n, n, alpha)[0]
                    for r, row in enumerate(wrows) for _, i in row}
            assert need <= {0, u} and gf.tile_schedule(wrows, n, m, alpha) == sorted(need | {0})
        fig = await _gemm_exact_cycles(dut, params, w, n, m, o_tile, place, rng, 90 + n,
                                       "one-rotation sweep")
        swept.append((n, m, n))
        dut._log.info(f"figs one-rotation sweep {n}:{m}: phases {fig['phases']}, "
                      f"{fig['cycles']} cycles")
    common.record(one_rotation=swept)


async def accepted_patterns(dut, engine):
    """Every pattern the engine accepts at run time beyond the issue's list
    (:func:`_accepted_patterns`: N = M > 1 such as 2:2, 4:4, 8:8, and 8:16 at 8 rows, ratio 4),
    random and high-end masks (the high end with corner operands, as :func:`gemm_cases`),
    bit-exact against the golden GEMM under stalls, no fault."""
    params = dut_params(engine)
    await start(dut, **PORTS)
    rng = np.random.default_rng(common.rng(101).randrange(1 << 30))
    ran = []
    for n, m in _accepted_patterns(engine, params):
        for kind in ("random", "high"):
            k_tile, o_tile = gf.tile_shape(n, m, params["rows"], params["cols"], params["beta"])
            o, k, b = o_tile + 1, 2 * k_tile, 3
            w = make_weights(kind, o, k, n, m, rng)
            x = rng.integers(-128, 128, size=(k, b))
            if kind == "high":
                x[:, 0] = -128
                w = np.where(w != 0, -128, 0)
            fig = await _gemm(dut, engine, params, w, x, n, m, rngs=_rngs(100 + len(ran)),
                              stall=0.3)
            assert _fault(dut) == 0, f"spurious fault {_fault(dut):#x} for {kind} {n}:{m}"
            ran.append((n, m, kind))
            dut._log.info(f"{engine} {kind} {n}:{m} ok, phases {fig['phases']}")
    assert ran, "no accepted pattern beyond the list at these parameters"
    common.record(accepted=[f"{n}:{m}" for n, m, _ in ran])


async def _load_one_phase_tile(dut, engine, params, layouts, w, x, n, m):
    """Load the ``n:m`` tile of dense weights ``w`` (``o_tile x k_tile``) through the ``w``
    port (FiGS: its slots assigned, and required to run in one phase) and stop the source;
    return the golden GEMM of ``x`` (int64)."""
    from sparsehw.verif.stream import StreamSource
    rows, cols, beta = params["rows"], params["cols"], params["beta"]
    o_tile, k_tile = w.shape
    values, indices = nm.compress(w, n, m)
    expected = nm.gemm_int8(nm.decompress(values, indices, n, m), x).astype(np.int64)
    if engine == "figs":
        values, indices, _ = gf.assign_slots(values, indices, n, m)
        assert gf.gemm_schedule(values, indices, n, m, k=k_tile, o=o_tile, rows=rows, cols=cols,
                                beta=beta, alpha=params["alpha"]) == [1], "not a one-phase tile"
    wsrc = StreamSource(dut, "w")
    wsrc.send_nowait(pack(layouts["w"], {"entries": [{"value": v, "index": i} for v, i in row],
                                        "n_log2": exact_log2(n), "m_log2": exact_log2(m)})
                     for row in gf.weight_rows(values, indices, n, m, rows=rows, cols=cols,
                                               beta=beta, o_tile=0, k_tile=0))
    await wsrc.wait_idle(timeout_cycles=50 + 4 * rows)
    wsrc.stop()
    dut.w__valid.value = 0
    return expected


async def held_output(dut, engine):
    """Latency with the output held: ``o.ready`` low, one instance at a time into an empty
    array (a one-phase tile: FiGS's slots assigned, a fine mask), ``o.valid`` must rise exactly
    :func:`golden.figs.pipeline_latency` cycles after the input transfer (the cycle a sink that
    is ready would take it), not earlier, and not wait for ``o.ready``; then, still not ready,
    ``o.valid`` and the payload must hold for a few cycles (stream rules); then the sink takes it,
    and the partial sums must be the golden GEMM's. Both instances of the tile in turn."""
    from cocotb.triggers import ReadOnly
    from sparsehw.verif.figs import lanes_of, pack_instance, unpack_psums
    params = dut_params(engine)
    rows, cols, beta = params["rows"], params["cols"], params["beta"]
    await start(dut, **PORTS)           # o.ready low from here on
    rng = np.random.default_rng(common.rng(111).randrange(1 << 30))
    n, m = (2, 4) if engine == "nm_fixed24" else \
        ((2, 8) if _supported(engine, params, 2, 8) else (1, 1))
    k_tile, o_tile = gf.tile_shape(n, m, rows, cols, beta)
    layouts = layouts_of(engine, params)
    lanes = lanes_of(engine, params)
    w = make_weights("fine", o_tile, k_tile, n, m, rng)
    x = rng.integers(-128, 128, size=(k_tile, 2))
    expected = await _load_one_phase_tile(dut, engine, params, layouts, w, x, n, m)
    lat = gf.pipeline_latency(cols)
    hold = 3
    for b in range(x.shape[1]):
        inst = gf.instance(engine, x, n, m, rows=rows, lanes=lanes, k_tile=0, b=b)
        dut.i__payload.value = pack_instance(layouts["i"], inst, b == x.shape[1] - 1,
                                             params["width"])
        dut.i__valid.value = 1
        for waited in range(20 + 4 * rows):             # until the input transfer
            await ReadOnly()
            fire = dut.i__ready.value == 1
            await RisingEdge(dut.clk)
            if fire:
                break
        else:
            raise AssertionError(f"instance {b} not accepted with o.ready low")
        dut.i__valid.value = 0
        # cycle t after the transfer: o.valid high in cycle lat - 1 (transferred at the edge
        # ending it, lat cycles after the input's) and in every later one while not ready
        seen = None
        for t in range(lat + hold):
            await ReadOnly()
            valid = dut.o__valid.value == 1
            if t < lat - 1:
                assert not valid, f"o.valid {lat - 1 - t} cycles early (instance {b})"
            else:
                assert valid, (f"o.valid low {t + 1} cycles after the input transfer with "
                               f"o.ready low (latency {lat}, instance {b})")
                payload = int(dut.o__payload.value)
                assert seen is None or payload == seen, "payload changed while held"
                seen = payload
            await RisingEdge(dut.clk)
        dut.o__ready.value = 1
        await ReadOnly()
        assert dut.o__valid.value == 1 and int(dut.o__payload.value) == seen
        await RisingEdge(dut.clk)
        dut.o__ready.value = 0
        sums, last = unpack_psums(layouts["o"], seen, cols * beta)
        assert last == int(b == x.shape[1] - 1), f"last {last} on instance {b}"
        assert sums[:o_tile] == expected[:, b].tolist(), \
            f"instance {b}: got {sums[:o_tile]}, expected {expected[:, b].tolist()}"
        await ReadOnly()
        assert dut.o__valid.value == 0, "o.valid after the only output was taken"
        await RisingEdge(dut.clk)
    assert _fault(dut) == 0
    common.record(held_latency=lat)


async def full_rate(dut, engine):
    """Without stalls and with B >= rows + L + 1 (``L`` = :func:`golden.figs.pipeline_latency`:
    the next-but-one tile's weights load while the current tile streams), one instance per
    cycle: cycles <= instances + rows + L + 3 (the first weight load and the pipeline latency,
    3 cycles of handshake slack)."""
    params = dut_params(engine)
    await start(dut, **PORTS)
    rng = np.random.default_rng(3)
    n, m = (2, 8) if _supported(engine, params, 2, 8) else (1, 1)
    k_tile, o_tile = gf.tile_shape(n, m, params["rows"], params["cols"], params["beta"])
    lat = gf.pipeline_latency(params["cols"])
    b = params["rows"] + lat + 1
    w = make_weights("fine", 2 * o_tile, 2 * k_tile, n, m, rng)
    x = rng.integers(-128, 128, size=(2 * k_tile, b))
    fig = await _gemm(dut, engine, params, w, x, n, m, rngs=_rngs(70))
    bound = fig["instances"] + params["rows"] + lat + 3
    assert fig["cycles"] <= bound, f"{fig['cycles']} cycles for {fig['instances']} instances"
    common.record(cycles=fig["cycles"], instances=fig["instances"])


async def malformed_then_correct(dut, engine):
    """A GEMM whose first tile carries a malformed index (FiGS: a tile that uses the swap
    exchange, 4:16 with every kept weight at the low end and slots in compress order) is
    flagged (fault.index); the next GEMM on the same hardware, without a reset, is bit-exact
    (and FiGS's uses the exchange again)."""
    params = dut_params(engine)
    rows, cols, beta = params["rows"], params["cols"], params["beta"]
    await start(dut, **PORTS)
    rng = np.random.default_rng(common.rng(31).randrange(1 << 30))
    if engine == "nm_fixed24":
        n, m, kind, row = 2, 4, "random", 1             # row 1: slot 1 of group 0
    else:
        n, m, kind, row = (4, 16, "low", rows - 1) if engine == "figs" else (2, 8, "random", 0)
        if not _supported(engine, params, n, m) or m >= _max_m(engine, params):
            dut._log.info(f"{n}:{m} with an index >= M not representable here: skipped")
            return
    k_tile, o_tile = gf.tile_shape(n, m, rows, cols, beta)
    b = 4
    w = make_weights(kind, o_tile, 2 * k_tile, n, m, rng)
    x = rng.integers(-128, 128, size=(2 * k_tile, b))
    bad = await _gemm(dut, engine, params, w, x, n, m, rngs=_rngs(90), stall=0.2,
                      check=False, permute=False, corrupt=(0, row))
    assert dut.fault.value.to_unsigned() == 0b001, f"fault {_fault(dut):#05b}, expected index"
    w2 = make_weights(kind, o_tile + 1, 2 * k_tile, n, m, rng)
    x2 = rng.integers(-128, 128, size=(2 * k_tile, b))
    good = await _gemm(dut, engine, params, w2, x2, n, m, rngs=_rngs(95), stall=0.2,
                       permute=False)
    _coverage(engine, params)[1]["malformed"]("recovered")
    if engine == "figs" and params["alpha"] < 2:
        assert max(bad["phases"]) > 1 and max(good["phases"]) > 1, "no exchange used"
    common.record(bad_phases=bad["phases"], good_phases=good["phases"])


async def output_fifo(dut):
    """FiGS (issue 14, stop 31): no stall enable, an output FIFO with credit-based issue. With
    ``o.ready`` held low from reset, a one-phase tile's instances (FiGS's slots assigned, a fine
    mask) offered back to back are accepted one per cycle from the first until the FIFO's ``L + 1`` entries
    (``L`` = :func:`golden.figs.pipeline_latency`, the documented depth) are all reserved, and
    no more while the sink stays stalled; ``o.valid`` rises ``L`` cycles after the first
    transfer and the payload holds. Then the sink takes one result per cycle: the tile's
    results leave in order and equal the golden GEMM's, and the remaining instances follow."""
    from cocotb.triggers import ReadOnly
    from sparsehw.verif.figs import lanes_of, pack_instance, unpack_psums
    params = dut_params("figs")
    rows, cols, beta = params["rows"], params["cols"], params["beta"]
    await start(dut, **PORTS)           # o.ready low from here on
    rng = np.random.default_rng(common.rng(121).randrange(1 << 30))
    n, m = (2, 8) if _supported("figs", params, 2, 8) else (1, 1)
    k_tile, o_tile = gf.tile_shape(n, m, rows, cols, beta)
    layouts = layouts_of("figs", params)
    lanes = lanes_of("figs", params)
    lat = gf.pipeline_latency(cols)
    room = lat + 1
    count = room + 3
    w = make_weights("fine", o_tile, k_tile, n, m, rng)
    x = rng.integers(-128, 128, size=(k_tile, count))
    expected = await _load_one_phase_tile(dut, "figs", params, layouts, w, x, n, m)

    def offer(b):
        inst = gf.instance("figs", x, n, m, rows=rows, lanes=lanes, k_tile=0, b=b)
        dut.i__payload.value = pack_instance(layouts["i"], inst, b == count - 1,
                                             params["width"])
        dut.i__valid.value = 1

    sent, first, held, got = 0, None, None, []
    offer(0)
    for cycle in range(room + 3 * lat):          # the sink stalled throughout
        await ReadOnly()
        fire = dut.i__ready.value == 1
        if first is not None:
            valid = dut.o__valid.value == 1
            if cycle < first + lat:
                assert not valid, f"o.valid {first + lat - cycle} cycles early"
            else:
                assert valid, f"o.valid low {cycle - first} cycles after the first transfer"
                payload = int(dut.o__payload.value)
                assert held is None or payload == held, "payload changed while held"
                held = payload
        await RisingEdge(dut.clk)
        if fire:
            first = cycle if first is None else first
            assert sent == cycle - first, (f"instance {sent} accepted {cycle - first} cycles "
                                           f"after the first: not one per cycle")
            sent += 1
            offer(sent)
    assert sent == room, (f"{sent} instances accepted with the sink stalled, the output "
                          f"FIFO holds {room} (pipeline_latency + 1)")
    dut.o__ready.value = 1
    for _ in range(count + 3 * lat):
        await ReadOnly()
        fire = dut.i__ready.value == 1 and sent < count
        if dut.o__valid.value == 1:
            got.append(int(dut.o__payload.value))
        await RisingEdge(dut.clk)
        if fire:
            sent += 1
            if sent < count:
                offer(sent)
            else:
                dut.i__valid.value = 0
        if len(got) == count:
            break
    dut.o__ready.value = 0
    assert sent == count and len(got) == count, f"{sent} sent, {len(got)} of {count} results"
    for b, payload in enumerate(got):
        sums, last = unpack_psums(layouts["o"], payload, cols * beta)
        assert last == int(b == count - 1), f"last {last} on instance {b}"
        assert sums[:o_tile] == expected[:, b].tolist(), \
            f"instance {b}: got {sums[:o_tile]}, expected {expected[:, b].tolist()}"
    assert _fault(dut) == 0
    common.record(fifo_room=room)
