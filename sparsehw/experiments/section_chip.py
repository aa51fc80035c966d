"""Report section of the chip family: utilization per N:M on 1, 2 and 4 subsystems, speedup and
scaling efficiency, ring traffic, the flit-width curve per N:M, area split by part, Fmax."""

from sparsehw.experiments.sections import (Section, _area_lines, _cmd, _pnr_points, figure, ok,
                                           save_plot, table)
from sparsehw.families.chip import REFERENCE_PARAMS


_RATIOS = ((1, 1), (1, 2), (1, 4), (1, 8), (1, 16), (1, 32))
#: Weight memory per subsystem count: the tied weights of the densest ratio that fits (2**18
#: words would be needed at 1:1 on one subsystem; generating such a memory takes too long).
_WMEM = {1: 1 << 17, 2: 1 << 17, 4: 1 << 16}
_FLITS = (32, 64, 128, 192, 256)
#: Ratios of the flit-width sweep (four subsystems): 1:8 shows the dense side, where compute
#: hides the all-gather; 1:16 and 1:32 are where the ring limits scaling.
_FLIT_RATIOS = ((1, 8), (1, 16), (1, 32))
#: K = O of the 1:1 point on one subsystem: 512 needs 2**16 weight words, which the reference
#: memory holds; 1024 would need 2**18, whose generation is the slow part (docs/chip.md).
_K_1TO1 = 512
_QUICK = {"subsystems": 2, "lanes": 4, "macs": 2, "max_m": 32, "act_rows": 2, "max_k": 64,
          "bank_rows": 128, "imem_depth": 32, "wmem_depth": 2048, "pmem_depth": 256,
          "flit_width": 64}


def _reference(subsystems, flit_width=256, wmem_depth=None):
    if wmem_depth is None:
        wmem_depth = _WMEM[subsystems] if flit_width == 256 else 1 << 13
    return {**REFERENCE_PARAMS, "subsystems": subsystems, "flit_width": flit_width,
            "wmem_depth": wmem_depth}


def _points(quick):
    if quick:
        return [{"kind": "perf", "block": "chip", "params": _QUICK, "sim": "icarus",
                 "workload": {"k": 64, "b": 4, "layers": 2, "n": n, "m": m}}
                for n, m in ((1, 1), (1, 8))]
    points = []
    for s in (1, 2, 4):
        for n, m in _RATIOS:
            # 1:1 on one subsystem needs 2**18 weight words (see _WMEM): run at K = O = 512.
            load = {"k": _K_1TO1} if s == 1 and m == 1 else {}
            points.append({"kind": "perf", "block": "chip", "params": _reference(s),
                           "sim": "verilator", "workload": {"n": n, "m": m, **load}})
    for flit in _FLITS[:-1]:
        for n, m in _FLIT_RATIOS:
            # 1:8 needs 2**15 weight words per subsystem; 1:16 and 1:32 fit 2**13.
            wmem = 1 << 15 if m == 8 else None
            points.append({"kind": "perf", "block": "chip", "params": _reference(4, flit, wmem),
                           "sim": "verilator", "workload": {"n": n, "m": m}})
    # Area split (hierarchy kept) of the chip and of one subsystem at the default point. The
    # chip's CMOS run maps four SPUs through ABC; the subsystem's gives the per-subsystem split.
    points += [{"kind": "synth", "block": block, "params": {}, "target": t}
               for block in ("chip", "subsystem") for t in ("cmos", "ecp5")]
    points += _pnr_points("chip", [{}], quick)
    return points


_PART_ORDER = ("spu", "sequencer", "memories", "ring", "host")


def _split_lines(results):
    """One row per (block, target, part) of the hierarchical synthesis records."""
    rows = []
    for result in ok(results):
        point, record = result["point"], result["record"]
        if point["kind"] != "synth" or "split" not in record:
            continue
        for part in (p for p in _PART_ORDER if p in record["split"]):
            figures = record["split"][part]
            if point["target"] == "cmos":
                text = (f"{figures['bits']:,} memory bits in {figures['macros']} macros"
                        if part == "memories" else f"{figures['transistors']:,} transistors")
            else:
                text = ", ".join(f"{figures.get(k, 0)} {name}" for k, name in (
                    ("luts", "LUT4"), ("ffs", "FF"), ("dsps", "DSP"), ("carry", "CCU2C"),
                    ("brams", "DP16KD"), ("lutrams", "DPR16X4")) if figures.get(k))
            rows.append([point["block"], point["target"], part, text, _cmd(result)])
    if not rows:
        return []
    notes = sorted({r["record"]["memory_note"] for r in ok(results)
                    if r["point"]["kind"] == "synth" and "memory_note" in r["record"]})
    return (["Area split by part (default parameters, hierarchy kept: no optimization across "
             "module boundaries). How memories count: " + "; ".join(notes) + ".", ""]
            + table(["block", "target", "part", "figures", "command"], rows) + [""])


def _fmax_lines(results):
    rows = []
    for result in ok(results):
        point, record = result["point"], result["record"]
        if point["kind"] == "pnr" and point["block"] == "chip":
            seeds = ", ".join(f"{v:.1f}" for v in record["fmax_by_seed"].values())
            rows.append([record["fmax_mhz"], seeds, record["luts"], record["ffs"],
                         record["dsps"], _cmd(result)])
    if not rows:
        return []
    return (["Fmax of the chip at the default parameters (ECP5 LFE5U-85F, nextpnr, out of "
             "context, median over seeds; target >= 100 MHz, issue 14):", ""]
            + table(["Fmax MHz (median)", "per seed", "LUT4", "FF", "DSP", "command"], rows)
            + [""])


def _render(results, plot_dir, quick):
    rows, curves = [], {}
    for result in (r for r in results if r["status"] == "ok"):
        point = result["point"]
        if point["kind"] != "perf" or point["block"] != "chip":
            continue
        r = result["record"]
        p, w = point["params"], point["workload"]
        ratio = f"{w.get('n', 1)}:{w.get('m', 1)}"
        rows.append([p.get("subsystems"), p.get("flit_width"), ratio, w.get("k", 1024),
                     r["cycles"],
                     r["ideal_cycles"], r["utilization"], r.get("speedup_vs_1", "-"),
                     r.get("scaling_efficiency", "-"), r["ring_flits"], r["ring_wait_cycles"],
                     r.get("sim_cycles_per_second", "-"), _cmd(result)])
        if p.get("subsystems") == 4 and "scaling_efficiency" in r:
            curves.setdefault(ratio, []).append((p.get("flit_width"), r["scaling_efficiency"]))
    rows.sort(key=lambda row: (row[0], row[1], int(row[2].split(":")[1])))
    lines = ["Chain of 4 GEMMs K = O (1024 unless the K column says otherwise), B = 16 (tied "
             "weights), same n:m in every layer, "
             "weights and x loaded through the host port before the start; cycles from start to "
             "done (hardware counter). Utilization = nonzero MACs / (all MACs of the chip x "
             "cycles); scaling efficiency = speedup over one subsystem / subsystems.", ""]
    lines += table(["subsystems", "flit bits", "n:m", "K = O", "cycles", "ideal",
                    "utilization",
                    "speedup vs 1", "efficiency", "ring flits", "ring wait cycles",
                    "sim cycles/s", "command"], rows)
    if curves and not quick:
        fig, ax = figure(figsize=(5.5, 3.5))
        for ratio, pts in sorted(curves.items()):
            pts.sort()
            ax.plot([f for f, _ in pts], [e for _, e in pts], marker="o", label=ratio)
        ax.set_xlabel("flit width (bits)")
        ax.set_ylabel("scaling efficiency, 4 subsystems")
        ax.axhline(0.9, color="grey", lw=0.8, ls="--")
        ax.legend()
        lines += ["", save_plot(fig, plot_dir, "chip_flit_width")]
    if curves:
        flits = sorted({f for pts in curves.values() for f, _ in pts})
        by_ratio = {ratio: dict(pts) for ratio, pts in curves.items()}
        lines += ["", "Scaling efficiency of four subsystems versus ring flit width, per n:m "
                  "(the curve above as a table; '-' = not measured):", ""]
        lines += table(["n:m", *[f"{f} bits" for f in flits]],
                       [[ratio, *[by_ratio[ratio].get(f, "-") for f in flits]]
                        for ratio in sorted(by_ratio, key=lambda r: int(r.split(":")[1]))])
    return (lines + [""] + _area_lines(results, ("chip", "subsystem")) + [""]
            + _split_lines(results) + _fmax_lines(results))


SECTION = Section("chip", "Chip: SPU subsystems on the ring", ("chip",), _points, _render)
