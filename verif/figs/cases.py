"""Test bodies shared by ``tb_figs``, ``tb_nm_broadcast``, ``tb_nm_fanout`` and ``tb_nm_fixed24``
(each wraps them in ``@cocotb.test``)."""

import numpy as np
from cocotb.triggers import RisingEdge

from sparsehw.golden import figs as gf
from sparsehw.golden import nm
from sparsehw.hw.figs import SUPPORTED_RATIOS
from sparsehw.verif import common
from sparsehw.verif.figs import PORTS, dut_params, layouts_of, make_weights, run_gemm
from sparsehw.verif.stream import pack, restart, start


__all__ = ["gemm_cases", "nested_levels", "malformed_index", "bad_config", "exchange",
           "full_rate", "malformed_then_correct"]


def _max_m(engine, params):
    return 4 if engine == "nm_fixed24" else params["max_m"]


def _supported(engine, params, n, m):
    if engine == "nm_fixed24":      # every pattern, compiled to 2:4 tiles
        return True
    if params["rows"] % n or m > params["max_m"]:
        return False
    return engine not in ("figs", "nm_fanout") or m // n <= params["ratio"]


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
            fig = await run_gemm(dut, engine, params, w, x, n, m, rngs=_rngs(ran * 10),
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
        await run_gemm(dut, engine, params, wl, x, n, m, rngs=_rngs(50 + done), stall=0.3)
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
    """An index >= M is flagged (fault.index); a legal tile loaded first is not. Fixed 2:4: a
    group whose slot-1 index does not exceed slot 0's is flagged, an ascending one is not."""
    params = dut_params(engine)
    await start(dut, **PORTS)
    e = params["cols"] * params["beta"]
    if engine == "nm_fixed24":
        # ascending pairs 0/3, and 0/2 at the last MAC of the last group: legal
        legal = lambda r: [{"value": 5, "index": 2 if (r == params["rows"] - 1 and j == e - 1)
                            else 3 * (r % 2)} for j in range(e)]
        await _load_tile(dut, engine, params, legal, 1, 2)
        assert _fault(dut) == 0, "legal tile flagged"
        bad_row = params["rows"] - 1
        equal = lambda r: [{"value": 5, "index": 1 if (r >= bad_row - 1 and j == e - 1) else
                            3 * (r % 2)} for j in range(e)]
        # ... then both slots of the last group's last MAC hold index 1
        await _load_tile(dut, engine, params, equal, 1, 2)
        assert dut.fault.value.to_unsigned() == 0b001, f"fault {_fault(dut):#05b}, expected index"
        return
    n, m = 1, 2 if params["max_m"] >= 2 else 1
    legal = lambda r: [{"value": 5, "index": m - 1} for _ in range(e)]
    await _load_tile(dut, engine, params, legal, 0, m.bit_length() - 1)
    assert _fault(dut) == 0, "legal tile flagged"
    if params["max_m"] < 4:
        return
    bad_row = params["rows"] - 1
    illegal = lambda r: [{"value": 5, "index": m if (r == bad_row and j == e - 1) else 0}
                         for j in range(e)]
    await _load_tile(dut, engine, params, illegal, 0, m.bit_length() - 1)
    assert dut.fault.value.to_unsigned() == 0b001, f"fault {_fault(dut):#05b}, expected index"


async def bad_config(dut, engine):
    """N > M, M > max_m and N not dividing rows are flagged (fault.config)."""
    params = dut_params(engine)
    e = params["cols"] * params["beta"]
    zero = lambda r: [{"value": 0, "index": 0} for _ in range(e)]
    bad = [(2, 1)]                                       # 4:2
    if engine == "nm_fixed24":                           # anything but 2:4
        bad += [(0, 0), (1, 3), (0, 2), (2, 2)]
    elif params["max_m"] < 32:
        bad.append((0, params["max_m"].bit_length()))    # 1:(2*max_m)
    if params["rows"] < 64 and engine != "nm_fixed24":
        nlog = params["rows"].bit_length()               # N = 2**nlog > rows: cannot divide
        if nlog <= 5:
            bad.append((nlog, 5))
    for i, (n_log2, m_log2) in enumerate(bad):
        await (restart if i else start)(dut, **PORTS)
        await _load_tile(dut, engine, params, zero, n_log2, m_log2)
        assert dut.fault.value.to_unsigned() & 0b010, f"{n_log2}:{m_log2} (log2) not flagged"


async def exchange(dut):
    """FiGS swap exchange: 8:32 with every kept weight at the low end of its group (slots in
    ascending order, displacements 0..-6), random 8:32 and 4:16 masks and a 4:8 mask at the
    high end, without slot assignment,
    no stalls: bit-exact, no fault, and the cycles equal :func:`golden.figs.predicted_cycles`
    with the schedule's phases (``B >= rows + cols + 2``: one instance per phase)."""
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
        b = rows + cols + 2
        w = make_weights(kind, o_tile, 2 * k_tile, n, m, rng)
        x = rng.integers(-128, 128, size=(2 * k_tile, b))
        await restart(dut, **PORTS)
        fig = await run_gemm(dut, engine, params, w, x, n, m, rngs=_rngs(80 + n), permute=False)
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


async def full_rate(dut, engine):
    """Without stalls and with B >= rows + cols + 2 (the next-but-one tile's weights load while
    the current tile streams), one instance per cycle: cycles <= instances + rows + cols + 4
    (the first weight load and the pipeline latency)."""
    params = dut_params(engine)
    await start(dut, **PORTS)
    rng = np.random.default_rng(3)
    n, m = (2, 8) if _supported(engine, params, 2, 8) else (1, 1)
    k_tile, o_tile = gf.tile_shape(n, m, params["rows"], params["cols"], params["beta"])
    b = params["rows"] + params["cols"] + 2
    w = make_weights("fine", 2 * o_tile, 2 * k_tile, n, m, rng)
    x = rng.integers(-128, 128, size=(2 * k_tile, b))
    fig = await run_gemm(dut, engine, params, w, x, n, m, rngs=_rngs(70))
    bound = fig["instances"] + params["rows"] + params["cols"] + 4
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
    bad = await run_gemm(dut, engine, params, w, x, n, m, rngs=_rngs(90), stall=0.2,
                         check=False, permute=False, corrupt=(0, row))
    assert dut.fault.value.to_unsigned() == 0b001, f"fault {_fault(dut):#05b}, expected index"
    w2 = make_weights(kind, o_tile + 1, 2 * k_tile, n, m, rng)
    x2 = rng.integers(-128, 128, size=(2 * k_tile, b))
    good = await run_gemm(dut, engine, params, w2, x2, n, m, rngs=_rngs(95), stall=0.2,
                          permute=False)
    if engine == "figs" and params["alpha"] < 2:
        assert max(bad["phases"]) > 1 and max(good["phases"]) > 1, "no exchange used"
    common.record(bad_phases=bad["phases"], good_phases=good["phases"])
