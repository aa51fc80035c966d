"""Report section of the chip family: utilization per N:M on 1, 2 and 4 subsystems, speedup and
scaling efficiency, ring traffic, the flit-width curve, area."""

from sparsehw.experiments.sections import (Section, _area_lines, _cmd, figure, find, save_plot,
                                           table)
from sparsehw.families.chip import REFERENCE_PARAMS


_RATIOS = ((1, 1), (1, 2), (1, 4), (1, 8), (1, 16), (1, 32))
#: Weight memory per subsystem count: the tied weights of the densest ratio that fits (2**18
#: words would be needed at 1:1 on one subsystem; generating such a memory takes too long).
_WMEM = {1: 1 << 17, 2: 1 << 17, 4: 1 << 16}
_FLITS = (32, 64, 128, 192, 256)
_QUICK = {"subsystems": 2, "lanes": 4, "macs": 2, "max_m": 32, "act_rows": 2, "max_k": 64,
          "bank_rows": 128, "imem_depth": 32, "wmem_depth": 2048, "pmem_depth": 256,
          "flit_width": 64}


def _reference(subsystems, flit_width=256):
    return {**REFERENCE_PARAMS, "subsystems": subsystems, "flit_width": flit_width,
            "wmem_depth": _WMEM[subsystems] if flit_width == 256 else 1 << 13}


def _points(quick):
    if quick:
        return [{"kind": "perf", "block": "chip", "params": _QUICK, "sim": "icarus",
                 "workload": {"k": 64, "b": 4, "layers": 2, "n": n, "m": m}}
                for n, m in ((1, 1), (1, 8))]
    points = []
    for s in (1, 2, 4):
        for n, m in _RATIOS:
            if s == 1 and m == 1:
                continue                  # needs 2**18 weight words (see _WMEM)
            points.append({"kind": "perf", "block": "chip", "params": _reference(s),
                           "sim": "verilator", "workload": {"n": n, "m": m}})
    for flit in _FLITS[:-1]:
        for n, m in ((1, 16), (1, 32)):
            points.append({"kind": "perf", "block": "chip", "params": _reference(4, flit),
                           "sim": "verilator", "workload": {"n": n, "m": m}})
    points += [{"kind": "synth", "block": "chip", "params": {}, "target": t}
               for t in ("cmos", "ecp5")]
    return points


def _render(results, plot_dir, quick):
    rows, curves = [], {}
    for result in (r for r in results if r["status"] == "ok"):
        point = result["point"]
        if point["kind"] != "perf" or point["block"] != "chip":
            continue
        r = result["record"]
        p, w = point["params"], point["workload"]
        ratio = f"{w.get('n', 1)}:{w.get('m', 1)}"
        rows.append([p.get("subsystems"), p.get("flit_width"), ratio, r["cycles"],
                     r["ideal_cycles"], r["utilization"], r.get("speedup_vs_1", "-"),
                     r.get("scaling_efficiency", "-"), r["ring_flits"], r["ring_wait_cycles"],
                     r.get("sim_cycles_per_second", "-"), _cmd(result)])
        if p.get("subsystems") == 4 and "scaling_efficiency" in r:
            curves.setdefault(ratio, []).append((p.get("flit_width"), r["scaling_efficiency"]))
    rows.sort(key=lambda row: (row[0], row[1], int(row[2].split(":")[1])))
    lines = ["Chain of 4 GEMMs K = O = 1024, B = 16 (tied weights), same n:m in every layer, "
             "weights and x loaded through the host port before the start; cycles from start to "
             "done (hardware counter). Utilization = nonzero MACs / (all MACs of the chip x "
             "cycles); scaling efficiency = speedup over one subsystem / subsystems.", ""]
    lines += table(["subsystems", "flit bits", "n:m", "cycles", "ideal", "utilization",
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
    return lines + [""] + _area_lines(results, ("chip",)) + [""]


SECTION = Section("chip", "Chip: SPU subsystems on the ring", ("chip",), _points, _render)
