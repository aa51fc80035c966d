"""Report sections: per block family, the design points it sweeps and how it renders them.

Each :class:`Section` lists design points (``points(quick)``) and turns their results into
Markdown lines plus plots (``render(results, plot_dir, quick)``). A section whose blocks are not
registered is left out, so the report grows as blocks land.
"""

import math
from dataclasses import dataclass
from typing import Callable

from sparsehw import registry
from sparsehw.experiments import sparsity_quant
from sparsehw.flow import PNR_BUDGET_S
from sparsehw.families.spu import REFERENCE_PARAMS as SPU_REFERENCE_PARAMS
from sparsehw.golden.spu import spu_cycles
from sparsehw.hw.spu import SPU_PARAMS


__all__ = ["Section", "SECTIONS", "available", "render_pareto", "save_plot", "table"]


@dataclass(frozen=True)
class Section:
    family: str
    title: str
    blocks: tuple
    points: Callable
    render: Callable


# -- helpers shared by the sections --------------------------------------------------------------

def save_plot(fig, plot_dir, name):
    """Save ``fig`` as PNG and SVG; return the Markdown image line (PNG, relative path)."""
    import matplotlib.pyplot as plt     # lazy: heavy, and only the plots need it
    for ext in ("png", "svg"):
        fig.savefig(plot_dir / f"{name}.{ext}", dpi=110, bbox_inches="tight",
                    metadata={"Date": None} if ext == "svg" else None)
    plt.close(fig)
    return f"![{name}](plots/{name}.png)"


def figure(**kwargs):
    import matplotlib                   # lazy: heavy, and only the plots need it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(**kwargs)


def table(header, rows):
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(cell) for cell in row) + " |")
    return lines


def _fmt(value):
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def ok(results):
    return [r for r in results if r["status"] == "ok"]


def find(results, kind, **match):
    """The first ok result of ``kind`` whose point matches ``match`` (params/workload subsets)."""
    for result in ok(results):
        point = result["point"]
        if point["kind"] != kind:
            continue
        if all(_matches(point.get(key), value) for key, value in match.items()):
            return result
    return None


def _matches(actual, wanted):
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(actual.get(k) == v for k, v in wanted.items())
    return actual == wanted


# -- sections -------------------------------------------------------------------------------------

SECTIONS = []


def available(families=None):
    blocks = registry.all_blocks()
    chosen = []
    for section in SECTIONS:
        if families and section.family not in families:
            continue
        if all(name in blocks for name in section.blocks):
            chosen.append(section)
    if families:
        known = {section.family for section in SECTIONS}
        unknown = [family for family in families if family not in known]
        if unknown:
            raise registry.UserError(f"unknown report section(s) {', '.join(unknown)}; "
                                     f"known: {', '.join(sorted(known))}")
    return chosen


def render_pareto(results, plot_dir):
    """Area versus throughput (MACs or flits per cycle) across every design point that has
    both a cmos synthesis and a perf record with the same block and parameters."""
    area = {}
    for result in ok(results):
        point = result["point"]
        if point["kind"] == "synth" and point["target"] == "cmos":
            area[(point["block"], _key(point["params"]))] = result["record"]["transistors"]
    points = []
    for result in ok(results):
        point, record = result["point"], result["record"]
        key = (point["block"], _key(point["params"]))
        peak = _peak_macs(point["block"], point["params"])
        if point["kind"] == "perf" and key in area and peak and record.get("utilization"):
            points.append((area[key], record["utilization"] * peak, point["block"]))
    if len(points) < 2:
        return []
    fig, ax = figure(figsize=(6, 4))
    for block in sorted({p[2] for p in points}):
        mine = [p for p in points if p[2] == block]
        ax.scatter([p[0] for p in mine], [p[1] for p in mine], label=block, s=18)
    front = _pareto_front([(p[0], p[1]) for p in points])
    ax.plot([p[0] for p in front], [p[1] for p in front], "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("area (transistors, Yosys cmos estimate)")
    ax.set_ylabel("measured useful MACs per cycle")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return ["## Area versus throughput", "",
            "Every design point with both a CMOS area and a measured throughput; the dashed "
            "line joins the points no other point beats on both axes.", "",
            save_plot(fig, plot_dir, "pareto"), ""]


def _peak_macs(block, params):
    """MAC units of a compute block (None for blocks that do not compute)."""
    if block == "spu":
        return params["lanes"] * params["macs"]
    if block in ("figs", "nm_broadcast"):
        return params["rows"] * params["cols"] * params["beta"]
    if block == "hbfp_dot":
        return params["block_size"]
    return None


def _key(params):
    return tuple(sorted(params.items()))


def _pareto_front(points):
    front = []
    for area, throughput in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or throughput > front[-1][1]:
            front.append((area, throughput))
    return front


def _cmd(result):
    return f"`{result['command']}`" if result else "-"


def _synth_points(block, params_list, targets=("cmos", "ecp5")):
    return [{"kind": "synth", "block": block, "params": params, "target": target}
            for params in params_list for target in targets]


def _pnr_points(block, params_list, quick, seeds=(1, 2, 3)):
    seeds = [1] if quick else list(seeds)
    return [{"kind": "pnr", "block": block, "params": params, "seeds": seeds}
            for params in params_list]


def render_timing(results):
    """ECP5 post-place-and-route Fmax of every ``pnr`` design point the FPGA section's table
    does not show (:func:`is_fpga_point`)."""
    rows = []
    for result in ok(results):
        point, record = result["point"], result["record"]
        if point["kind"] != "pnr" or is_fpga_point(point):
            continue
        params = ", ".join(f"{k}={v}" for k, v in sorted(point["params"].items()))
        seeds = ", ".join(f"{v:.1f}" for v in record["fmax_by_seed"].values())
        rows.append([point["block"], params, record["fmax_mhz"], seeds, record["luts"],
                     record["ffs"], record["dsps"], _cmd(result)])
    if not rows:
        return []
    return ["## FPGA timing at other design points (ECP5, nextpnr)", "",
            "Post-place-and-route Fmax, out of context on an LFE5U-85F (block ports stay "
            "internal nets), median over placement seeds, next to the Yosys resource counts.",
            ""] + table(["block", "params", "Fmax MHz (median)", "per seed", "LUT4", "FF",
                         "DSP", "command"], rows) + [""]


# -- FPGA table: every block at its defaults, Fmax before and after -------------------------------

#: Blocks of the FPGA table, in table order (each at its default parameters).
FPGA_BLOCKS = ("spu", "ring", "fp32_mac", "hbfp_dot", "bfp_convert", "figs", "nm_broadcast",
               "nm_fanout", "nm_fixed24", "act_engine", "subsystem", "chip")
#: Placement seeds of the FPGA table (median of three); blocks listed in FPGA_SEEDS_OVERRIDE use
#: fewer because one nextpnr run takes most of the budget (flow.PNR_BUDGET_S) on 2 shared cores.
FPGA_SEEDS = (1, 2, 3)
FPGA_SEEDS_OVERRIDE = {name: (1,) for name in ("figs", "nm_broadcast", "nm_fanout", "nm_fixed24",
                                               "subsystem", "chip")}
#: The perf workload whose measured cycles give each block's useful operations per cycle
#: (registry defaults plus these knobs; blocks without a perf workload have no ops/s figure).
#: act_engine: GELU, the element-wise op of a transformer's MLP (elements per cycle); chip: the
#: perf chain at the chip's default parameters (K = O = max_k = 128, one tile of lanes = 4
#: columns, 1:2, the densest n:m whose weights fit wmem_depth = 1024 at K = 128; no
#: one-subsystem baseline run: the table needs the chip's own cycles only).
FPGA_WORKLOADS = {"spu": {"k": 128}, "ring": {}, "hbfp_dot": {}, "figs": {}, "nm_broadcast": {},
                  "nm_fanout": {}, "nm_fixed24": {}, "act_engine": {"op": "gelu"},
                  "chip": {"k": 128, "b": 4, "n": 1, "m": 2, "baseline": False}}

#: The FPGA figures before issue 14's pipelining, by block: Fmax (MHz, None: no figure), how it
#: was measured, LUT4/FF/DSP of the same Yosys run (None: not recorded) and its critical path
#: (None: the old flow did not record it). Sources: the report of commit d60bae4
#: (docs/report/report.md, median of 3 seeds unless said), docs/figs.md (issue 16) and
#: docs/chip.md.
FPGA_BEFORE = {
    "spu": {"fmax": 50.24, "how": "median of 3", "area": (2947, 1123, 16), "path": None},
    "ring": {"fmax": 87.2, "how": "median of 3", "area": (2069, 672, 0), "path": None},
    "fp32_mac": {"fmax": 21.86, "how": "median of 3", "area": (1592, 98, 4), "path": None},
    # Before: block_size=16 only (the default is 8), so its area is no comparison: left out.
    "hbfp_dot": {"fmax": 21.23, "how": "median of 3, block_size=16", "area": None,
                 "path": None},
    # Before: the first router1 record (e3655a7), still with the FP32 adder for max + 1e-8.
    "bfp_convert": {"fmax": 49.12, "how": "median of 3, e3655a7", "area": (2896, 2713, 0),
                    "path": "cvt_exp_exp -> cvt_lane_r2 (exponent -> lane shift/round), "
                            "27 levels, 20.4 ns"},
    "figs": {"fmax": 35.87, "how": "1 seed", "area": (7608, 2973, 64), "path": None},
    "nm_broadcast": {"fmax": None, "how": "place and route not finished in 31 min",
                     "area": (19137, 10265, 64), "path": None},
    "nm_fanout": {"fmax": None, "how": "not placed (issue 16)", "area": None, "path": None},
    "nm_fixed24": {"fmax": 44.4, "how": "1 seed (issue 16)", "area": (6829, 2201, 64),
                   "path": None},
    "act_engine": {"fmax": 5.48, "how": "1 seed, router2; the record before issue 14's "
                                       "pipeline",
                   "area": (11087, 3323, 97),
                   "path": "op -> the row scalar's single-cycle Newton reciprocal / inverse "
                           "square root (14 multipliers in series) -> y_row, 143 levels, "
                           "182.3 ns"},
    "subsystem": {"fmax": 25.45, "how": "1 seed (docs/chip.md)", "area": None,
                  "path": "imem DP16KD DOB -> decode/range checks -> post_addr CE, 53 levels, "
                          "39.3 ns"},
    "chip": {"fmax": None, "how": "stopped while routing (> 43 min)", "area": None,
             "path": None},
}


def fpga_points(quick, blocks=None):
    """Design points of the FPGA table: per block (default parameters) one ``pnr`` point and,
    where the block has a perf workload, one ``perf`` point for its useful operations per
    cycle. Quick: fp32_mac alone, one seed (the flow end to end in a few minutes)."""
    registered = registry.all_blocks()
    chosen = ("fp32_mac",) if quick else (blocks or FPGA_BLOCKS)
    points = []
    for name in chosen:
        if name not in registered:
            continue
        seeds = (1,) if quick else FPGA_SEEDS_OVERRIDE.get(name, FPGA_SEEDS)
        points.append({"kind": "pnr", "block": name, "params": {}, "seeds": list(seeds)})
        if name in FPGA_WORKLOADS and not quick:
            points.append({"kind": "perf", "block": name, "params": {}, "sim": "verilator",
                           "workload": dict(FPGA_WORKLOADS[name])})
    return points


def is_fpga_point(point):
    """Whether a (normalized) design point is one the FPGA table shows: a block of
    :data:`FPGA_BLOCKS` at its default parameters (pnr), or its ops/cycle perf point."""
    name = point["block"]
    if name not in FPGA_BLOCKS or name not in registry.all_blocks():
        return False
    if point["params"] != registry.resolve_params(registry.get_block(name), {}):
        return False
    if point["kind"] == "perf":
        wanted = FPGA_WORKLOADS.get(name)
        return wanted is not None and all(point["workload"].get(k) == v
                                          for k, v in wanted.items())
    return point["kind"] == "pnr"


def ops_per_cycle(block, params, workload, record):
    """Useful operations per cycle measured by a perf run, and their unit; None when the block
    has no such figure. GEMM engines: useful (nonzero-weight) MACs, o*k*b*n/m over the measured
    cycles; hbfp_dot: block_size MACs per block; ring: delivered flits per cycle at saturation
    (saturation throughput per node times nodes); act_engine: elements per cycle of the op;
    chip: useful MACs of the whole chain (layers x O x K/m*n x b, O = K) over its cycles."""
    cycles = record.get("cycles")
    w = workload
    if block in ("spu", "figs", "nm_broadcast", "nm_fanout", "nm_fixed24") and cycles:
        return w["o"] * w["k"] * w["b"] * w["n"] / w["m"] / cycles, "MAC"
    if block == "chip" and cycles:
        return w["layers"] * w["k"] * (w["k"] // w["m"] * w["n"]) * w["b"] / cycles, "MAC"
    if block == "act_engine" and "elements_per_cycle" in record:
        return record["elements_per_cycle"], "element"
    if block == "hbfp_dot" and cycles:
        return record["blocks"] * params["block_size"] / cycles, "MAC"
    if block == "ring" and "saturation_throughput" in record:
        return record["saturation_throughput"] * params["nodes"], "flit"
    return None


def _short_cell(name, limit=48):
    return name if len(name) <= limit else "..." + name[-(limit - 3):]


def _path_text(path):
    if not path:
        return "-"
    return (f"{_short_cell(path['from_cell'])} -> {_short_cell(path['to_cell'])}, "
            f"{path['logic_levels']} levels, {path['delay_ns']:.1f} ns "
            f"({path['routing_ns']:.1f} routing)")


def _median_seed(record):
    """The seed whose Fmax is the median (its critical path is the one shown)."""
    by_seed = record["fmax_by_seed"]
    ordered = sorted(by_seed, key=lambda seed: by_seed[seed])
    return ordered[(len(ordered) - 1) // 2]


def fpga_rows(pnr, perf):
    """Rows of the FPGA table. ``pnr``: block -> a pnr result (``point``, ``status``,
    ``record``, ``error``, ``command``) or None; ``perf``: block -> a perf result or None."""
    rows = []
    for name in FPGA_BLOCKS:
        before = FPGA_BEFORE.get(name, {})
        result = pnr.get(name)
        old = "-" if not before else (f"{before['fmax']} ({before['how']})"
                                      if before.get("fmax") else before["how"])
        old_area = before.get("area")
        if result is None:
            rows.append([name, old, "not run", "-", _fmt_area(None, old_area), "-",
                         before.get("path") or "-", "-", "-", "-"])
            continue
        if result["status"] != "ok":
            rows.append([name, old, "failed: " + (result.get("error") or "")[:480], "-",
                         _fmt_area(None, old_area), "-", before.get("path") or "-", "-",
                         "-", f"`{result['command']}`"])
            continue
        record = result["record"]
        seeds = (", ".join(f"{v:.1f}" for v in record["fmax_by_seed"].values())
                 + f" ({record.get('pnr_router') or 'router not recorded'})")
        path = (record.get("critical_path_by_seed") or {}).get(_median_seed(record))
        ops = _ops_text(name, record, perf.get(name))
        times = (record.get("pnr_seconds") or {}).get("by_seed", {})
        run = (", ".join(f"{t['wall_s'] / 60:.1f}" for t in times.values()) or "-") \
            + _budget_text(record)
        rows.append([name, old, f"**{record['fmax_mhz']}**", seeds,
                     _fmt_area((record["luts"], record["ffs"], record["dsps"]), old_area)
                     + _dsp_registers_text(record),
                     _path_text(path), before.get("path") or "not recorded", ops, run,
                     f"`{result['command']}`"])
    return rows


def _ops_per_second(name, record, measured):
    """``(per_cycle, unit, giga_per_s)``: the operations per cycle of a placed block's perf
    result ``measured`` and Fmax times them; None without one."""
    if measured is None or measured["status"] != "ok":
        return None
    found = ops_per_cycle(name, measured["record"].get("params", record["params"]),
                          measured["point"]["workload"], measured["record"])
    if not found:
        return None
    per_cycle, unit = found
    return per_cycle, unit, per_cycle * record["fmax_mhz"] / 1000


def _ops_text(name, record, measured):
    """Useful operations per second of a placed block, with the operations per cycle behind
    them ("-" without a perf result)."""
    found = _ops_per_second(name, record, measured)
    if not found:
        return "-"
    per_cycle, unit, giga = found
    return f"{per_cycle:.3g} {unit}/cycle = {giga:.3g} G{unit}/s"


#: Issue 14's Fmax targets (MHz): the chip 100, every other row 125 (the subsystem too: it is a
#: block of the table, although a part of the chip).
FPGA_TARGET_MHZ = {"chip": 100.0}
FPGA_DEFAULT_TARGET_MHZ = 125.0

FPGA_SUMMARY_HEADER = ["block", "Fmax before (MHz)", "Fmax now, median (MHz)", "seeds",
                       "target (MHz)", "LUT4/FF/DSP", "useful ops/s"]


def fpga_summary_rows(pnr, perf):
    """The short form of :func:`fpga_rows` (the README's): Fmax before and now, against the
    target, area and ops/s. Arguments as :func:`fpga_rows`."""
    rows = []
    for name in FPGA_BLOCKS:
        before = FPGA_BEFORE.get(name, {})
        target = FPGA_TARGET_MHZ.get(name, FPGA_DEFAULT_TARGET_MHZ)
        result = pnr.get(name)
        old = before.get("fmax") or before.get("how", "-")
        if result is None or result["status"] != "ok":
            now = "not run" if result is None else "not finished"
            rows.append([name, old, now, "-", f"{target:g}: missed", "-", "-"])
            continue
        record = result["record"]
        fmax = record["fmax_mhz"]
        verdict = "met" if fmax >= target else f"missed by {target - fmax:.1f}"
        found = _ops_per_second(name, record, perf.get(name))
        rows.append([name, old, f"**{fmax}**", len(record["fmax_by_seed"]),
                     f"{target:g}: {verdict}",
                     "/".join(f"{v:,}" for v in (record["luts"], record["ffs"], record["dsps"])),
                     f"{found[2]:.3g} G{found[1]}/s" if found else "-"])
    return rows


def _budget_text(record):
    """The budget a record ran under, when it is not the table's (flow.PNR_BUDGET_S)."""
    budget = record.get("pnr_budget_s")
    if budget is None or budget == PNR_BUDGET_S:
        return ""
    return f" (budget {budget / 60:g} min per run, the block's own; the table's is " \
           f"{PNR_BUDGET_S / 60:g})"


def _dsp_registers_text(record):
    """What the flow moved into the DSPs before placement (synth/dsp_registers.py)."""
    if not record["dsps"]:
        return ""
    packed = record.get("pnr_dsp_registers")
    if record.get("pnr_pack_dsp_registers") is False:
        return "; DSP registers not packed (the block's choice: packing lowered its Fmax)"
    if not packed:
        return "; DSP registers not packed (record before synth/dsp_registers.py)"
    if not packed["flip_flops_moved"]:
        return ""
    return (f"; placed with {packed['flip_flops_moved']:,} of these FF in DSP registers "
            f"(+{packed['or_gates']} LUT4)")


def _fmt_area(now, old):
    text = lambda area: "/".join(f"{value:,}" for value in area)
    if now is None:
        return f"- (before {text(old)})" if old else "-"
    return f"{text(now)} (before {text(old)})" if old else text(now)


FPGA_HEADER = ["block", "Fmax before (MHz)", "Fmax after, median (MHz)", "per seed",
               "LUT4/FF/DSP after (before)", "critical path after (median seed)",
               "critical path before", "useful ops/s (Fmax x measured ops/cycle)",
               "P&R wall min per seed", "command"]

FPGA_NOTE = ("ECP5 LFE5U-85F, out of context (block ports stay internal nets), nextpnr "
             "(YoWASP build), router as named per row (router1 is the default: synth/fmax.py says why), `--freq 100 --timing-allow-fail`, default "
             "parameters of every block; Fmax is nextpnr's timing report of the placed and "
             "routed design, median over the seeds listed. LUT4/FF/DSP: the Yosys "
             "`synth_ecp5` run that was placed; before placement the flip-flops directly in "
             "front of and behind each multiplier move into the MULT18X18D's own registers "
             "(synth/dsp_registers.py, as vendor tools do; the row says how many). Critical path: nextpnr's worst "
             "clock-to-clock path of the median seed (launching cell -> capturing cell, "
             "logic levels, total and routing delay). Ops/s: Fmax times the operations per "
             "cycle that `sparsehw perf` measured in simulation at the workload of the "
             "command below the table (GEMM engines and the chip: nonzero-weight MACs; "
             "act_engine: elements of the op named there, GELU). Run time: wall minutes per nextpnr run on 2 cores "
             "shared with other jobs (budget: flow.PNR_BUDGET_S, 30 min per run, unless the row "
             "names a block's own budget (Block.pnr_budget_s); a run over it is stopped and "
             "reported as not finished, with how far it got).")


def _fpga_results(results):
    """The FPGA table's pnr and perf results by block (the last of each wins)."""
    pnr, perf = {}, {}
    for result in results:
        point = result["point"]
        if not is_fpga_point(point):
            continue
        if point["kind"] == "pnr":
            pnr[point["block"]] = result
        elif point["kind"] == "perf":
            perf[point["block"]] = result
    return pnr, perf


def render_fpga_summary(results):
    """The README's short FPGA table (:func:`fpga_summary_rows`) from sweep results."""
    return table(FPGA_SUMMARY_HEADER, fpga_summary_rows(*_fpga_results(results)))


def render_fpga(results):
    """The FPGA table from sweep results (``pnr`` and ``perf`` points of
    :func:`fpga_points`)."""
    pnr, perf = _fpga_results(results)
    lines = [FPGA_NOTE, ""] + table(FPGA_HEADER, fpga_rows(pnr, perf)) + [""]
    commands = [f"`{r['command']}`" for r in perf.values()]
    if commands:
        lines += ["Perf commands (ops/cycle): " + "; ".join(commands), ""]
    return lines


def _fpga_render(results, plot_dir, quick):
    return render_fpga(results)


def _area_lines(results, blocks):
    return ["Area:", ""] + table(["block", "params", "target", "figures", "command"],
                                 _synth_rows(results, blocks))


def _synth_rows(results, blocks):
    rows = []
    for result in ok(results):
        point = result["point"]
        if point["kind"] != "synth" or point["block"] not in blocks:
            continue
        record = result["record"]
        figures = (f"{record['transistors']:,} transistors" if point["target"] == "cmos" else
                   f"{record['luts']} LUT4, {record['ffs']} FF, {record['dsps']} DSP, "
                   f"{record['carry']} CCU2C, {record['brams']} BRAM")
        params = ", ".join(f"{k}={v}" for k, v in sorted(point["params"].items()))
        rows.append([point["block"], params, point["target"], figures, _cmd(result)])
    return rows


# -- SPU ------------------------------------------------------------------------------------------

_SPU_RATIOS = ((1, 1), (1, 2), (1, 4), (1, 8), (1, 16), (1, 32))
_SPU_REFERENCE = SPU_REFERENCE_PARAMS      # the reference point of `sparsehw perf spu`
# Validated (defaults filled in), so it equals the params the sweep records for its points.
_SPU_QUICK = SPU_PARAMS.validate(lanes=4, macs=2, max_m=32, max_k=256, act_rows=4)


def _spu_points(quick):
    if quick:
        params, load, sim = _SPU_QUICK, {"k": 256, "o": 16, "b": 4}, "icarus"
        ratios = ((1, 1), (1, 4), (1, 32))
        synth = [{"lanes": 1, "macs": 1, "max_m": 4, "max_k": 8, "act_rows": 1}]
    else:
        params, load, sim = _SPU_REFERENCE, {"k": 1024, "o": 256, "b": 16}, "verilator"
        ratios = _SPU_RATIOS
        synth = [{}, {"lanes": 8, "macs": 4, "max_m": 32, "max_k": 128, "act_rows": 4}]
    perf = [{"kind": "perf", "block": "spu", "params": params, "sim": sim,
             "workload": {"n": n, "m": m, **load}} for n, m in ratios]
    if quick:
        # The tiny synthesized point also gets cycles, for the Pareto front.
        perf.append({"kind": "perf", "block": "spu", "params": synth[0], "sim": sim,
                     "workload": {"n": 1, "m": 4, "k": 8, "o": 8, "b": 1}})
    else:
        # Small design points with both area and measured cycles, for the Pareto front.
        for lanes, macs in ((2, 2), (4, 2), (4, 4), (8, 4)):
            small = {"lanes": lanes, "macs": macs, "max_m": 32, "max_k": 64, "act_rows": 4}
            perf.append({"kind": "perf", "block": "spu", "params": small, "sim": sim,
                         "workload": {"n": 1, "m": 4, "k": 64, "o": 64, "b": lanes}})
            synth.append(small)
    return perf + _synth_points("spu", synth)


def _spu_render(results, plot_dir, quick):
    main_params = _SPU_QUICK if quick else _SPU_REFERENCE
    perf = sorted((r for r in ok(results) if r["point"]["kind"] == "perf"
                   and r["point"]["params"] == main_params),
                  key=lambda r: r["point"]["workload"]["m"])
    lines = ["Speedup of one GEMM versus N:M sparsity (the S4 paper's Figure 2, from our RTL). "
             "Utilization = ideal cycles (nonzero MACs / (lanes x macs)) / measured cycles; the "
             "model column is the closed form of `golden/spu.py: spu_cycles` (compute beats + the cycles "
             "row 0 waits for X to load + pipeline latency).", ""]
    rows, xs, speedups = [], [], []
    dense = next((r for r in perf if r["point"]["workload"]["m"] == 1), None)
    for result in perf:
        record, point = result["record"], result["point"]
        model, parts = spu_cycles(record["params"], point["workload"])
        speedup = (dense["record"]["cycles"] / record["cycles"]) if dense else float("nan")
        xs.append(point["workload"]["m"])
        speedups.append(speedup)
        rows.append([f"{point['workload']['n']}:{point['workload']['m']}", record["cycles"],
                     record["ideal_cycles"], round(record["utilization"], 4), model,
                     record["cycles"] - model, parts["x_load_stall"],
                     round(record["input_bits_per_cycle"], 1), round(speedup, 2), _cmd(result)])
    lines += table(["n:m", "cycles", "ideal", "utilization", "model", "measured - model",
                    "X-load stall (model)", "input bits/cycle", "speedup vs 1:1", "command"],
                   rows)
    lines += ["", "Where the RTL loses cycles: only while `X` loads (row 0 of a GEMM needs every "
              "row of X) and in the pipeline fill; both are fixed costs, so they weigh most at "
              "1:32 where the GEMM itself is shortest. Double-buffering X would hide the load "
              "across back-to-back GEMMs.", ""]
    if len(xs) >= 2:
        fig, ax = figure(figsize=(5, 3.6))
        ax.plot(xs, xs, "k--", lw=1, label="linear (ideal)")
        ax.plot(xs, speedups, "o-", label="measured (RTL)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("sparsity M (1:M)")
        ax.set_ylabel("speedup over dense")
        ax.legend()
        ax.grid(alpha=0.3)
        lines += [save_plot(fig, plot_dir, "spu_speedup"), ""]
    lines += _area_lines(results, {"spu"})
    return lines


SECTIONS.append(Section("spu", "SPU: N:M sparse GEMM", ("spu",), _spu_points, _spu_render))


# -- ring -----------------------------------------------------------------------------------------

_RING_PATTERNS = ("uniform", "neighbour", "tornado", "hotspot")


def _ring_points(quick):
    # pattern=all sweeps the four patterns in one simulation (one build per k).
    if quick:
        nodes, load, sim = (4,), {"warmup": 200, "window": 1000}, "icarus"
    else:
        nodes, load, sim = (4, 8, 16), {}, "verilator"
    points = [{"kind": "perf", "block": "ring", "params": {"nodes": k}, "sim": sim,
               "workload": {"pattern": "all", **load}} for k in nodes]
    small = [{}] if not quick else [{"nodes": 2, "width": 8, "depth": 2}]
    return points + _synth_points("ring", small)


def _ring_patterns(result):
    """(k, per-pattern record) pairs of a ring perf result."""
    record = result["record"]
    k = result["point"]["params"]["nodes"]
    return [(k, r) for r in record.get("patterns", [record])]


def _ring_render(results, plot_dir, quick):
    perf = [r for r in ok(results) if r["point"]["kind"] == "perf"]
    rows, curves = [], []
    for result in perf:
        for k, record in _ring_patterns(result):
            sat, ideal = record["saturation_throughput"], record["ideal_throughput"]
            rows.append([k, record["pattern"], round(sat, 3), round(ideal, 3),
                         round(sat / ideal, 3), record["zero_load_latency"],
                         record.get("min_node_vs_mean_at_full_load", float("nan")),
                         _cmd(result)])
            curves.append((k, record))
    lines = ["Accepted throughput (flits/cycle/node) and average latency versus offered load, "
             "from the hardware traffic generators around the ring. Saturation throughput is "
             "the highest offered load whose accepted throughput still tracks it "
             "(docs/ring.md); the bound is the channel/ejection limit of the pattern.", ""]
    lines += table(["k", "pattern", "saturation", "bound", "saturation / bound",
                    "zero-load latency", "min node / mean at load 1.0", "command"], rows)
    if curves:
        # One panel per k, one colour per pattern (the same in every panel), the pattern's
        # bound as a dotted line of its colour.
        ks = sorted({k for k, _record in curves})
        colours = dict(zip(_RING_PATTERNS, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
        fig, axes = figure(ncols=len(ks), figsize=(3.4 * len(ks), 3.6), sharey=True,
                           squeeze=False)
        for ax, k in zip(axes[0], ks):
            for kk, record in curves:
                if kk != k:
                    continue
                curve = record.get("curve") or []
                colour = colours.get(record["pattern"], "black")
                ax.plot([c["offered"] for c in curve], [c["latency"] for c in curve], ".-",
                        color=colour, label=record["pattern"])
                ax.axvline(record["ideal_throughput"], color=colour, ls=":", lw=1)
            ax.set_title(f"k = {k}")
            ax.set_xlabel("offered load (flits/cycle/node)")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("average latency (cycles)")
        axes[0][0].legend(fontsize=7, title="dotted: bound", title_fontsize=7)
        lines += ["", save_plot(fig, plot_dir, "ring_latency"), ""]
    lines += _area_lines(results, {"ring"})
    return lines


SECTIONS.append(Section("ring", "Ring interconnect", ("ring",), _ring_points, _ring_render))


# -- HBFP -----------------------------------------------------------------------------------------

def _hbfp_points(quick):
    # Quick: the default block size (8), so the perf point pairs with an area for the Pareto.
    mants, blocks = ((7, 3), (8,)) if quick else ((7, 5, 3), (16, 32, 64))
    targets = ("cmos",) if quick else ("cmos", "ecp5")
    points = _synth_points("fp32_mac", [{}], targets)
    points += _synth_points("hbfp_dot", [{"block_size": b, "mant_bits": m, "mixed": False}
                                         for m in mants for b in blocks], targets)
    if not quick:
        points += _pnr_points("hbfp_dot", [{"block_size": 16, "mant_bits": m, "mixed": False}
                                           for m in mants], quick)
    points.append({"kind": "perf", "block": "hbfp_dot", "params": {},
                   "sim": "icarus" if quick else "verilator",
                   "workload": {"blocks": 500 if quick else 10000}})
    return points


def _hbfp_render(results, plot_dir, quick):
    names = {7: "HBFP8", 5: "HBFP6", 3: "HBFP4"}
    lines = ["Area per MAC lane, same Yosys flow and run: one `fp32_mac` (IEEE binary32 "
             "multiply then add) per lane versus one `hbfp_dot` of B lanes / B (exponent logic, "
             "block-to-FP32 conversion and FP32 accumulator included). Ratio = FP32 per lane / "
             "HBFP per lane; targets: HBFP8 >= 8.5x, HBFP4 >= 17x. `python -m sparsehw.experiments.hbfp_area` "
             "adds the breakdown of where the area goes.", ""]
    rows, series = [], {}
    for target, metric in (("cmos", "transistors"), ("ecp5", "luts")):
        fp32 = find(results, "synth", block="fp32_mac", target=target)
        if fp32 is None:
            continue
        for result in ok(results):
            point = result["point"]
            if point["kind"] != "synth" or point["block"] != "hbfp_dot" or \
                    point["target"] != target:
                continue
            m, b = point["params"]["mant_bits"], point["params"]["block_size"]
            per_lane = result["record"][metric] / b
            ratio = fp32["record"][metric] / per_lane if per_lane else float("nan")
            rows.append([target, names.get(m, f"m={m}"), b, fp32["record"][metric],
                         round(per_lane, 1), round(ratio, 2), _cmd(result)])
            if target == "cmos":
                series.setdefault(m, []).append((b, per_lane))
    lines += table(["target", "format", "B", f"FP32 per lane", "HBFP per lane", "ratio",
                    "command"], rows)
    fp32 = find(results, "synth", block="fp32_mac", target="cmos")
    if series and fp32:
        fig, ax = figure(figsize=(5, 3.6))
        for m, points in sorted(series.items(), reverse=True):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-",
                    label=names.get(m, f"m={m}"))
        ax.axhline(fp32["record"]["transistors"], color="k", ls="--", lw=1, label="FP32 MAC")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("block size B (lanes)")
        ax.set_ylabel("transistors per MAC lane")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        lines += ["", save_plot(fig, plot_dir, "hbfp_area_per_lane"), ""]
    study = sparsity_quant.run(seed=3, rows=64 if quick else 256, cols=128 if quick else 512,
                               block_size=16)
    lines += ["Sparsity and quantization order (golden models, heavy-tailed random weights; "
              "`sparsehw study prune-quant`):", "", sparsity_quant.table(study), ""]
    perf = find(results, "perf", block="hbfp_dot")
    if perf:
        record = perf["record"]
        lines += [f"Throughput: `hbfp_dot` ran {record.get('blocks')} block pairs in "
                  f"{record['cycles']} cycles (ideal {record['ideal_cycles']}, utilization "
                  f"{record['utilization']:.4f}); {_cmd(perf)}.", ""]
    return lines


SECTIONS.append(Section("hbfp", "HBFP versus FP32", ("hbfp_dot", "fp32_mac"), _hbfp_points,
                        _hbfp_render))


# -- FiGS -----------------------------------------------------------------------------------------

def _figs_points(quick):
    load = {"k": 64, "o": 16, "b": 8} if quick else {"k": 512, "o": 64, "b": 32}
    sim = "icarus" if quick else "verilator"
    # Quick: a 4x2 array (its CMOS synthesis takes seconds, the default's minutes).
    arrays = [{"rows": 4, "cols": 2}] if quick else [{}, {"rows": 16, "cols": 4}]
    points = []
    for engine in ("figs", "nm_broadcast"):
        for params in arrays:
            points.append({"kind": "perf", "block": engine, "params": params, "sim": sim,
                           "workload": {"n": 2, "m": 8, "sweep": True, **load}})
    for engine in ("figs", "nm_broadcast"):
        points += _synth_points(engine, arrays, ("cmos",) if quick else ("cmos", "ecp5"))
        if not quick:
            points += _synth_points(engine, [{"max_m": m} for m in (4, 8, 16)], ("cmos",))
    # Fmax of every engine at its defaults: the FPGA section (fpga_points).
    return points


def _figs_render(results, plot_dir, quick):
    lines = ["Both engines at equal MAC count, every ratio in one simulation per engine: the "
             "activation bits per cycle each needs at full utilization (measured, and predicted "
             "by `golden/figs.py`), and cycles for the same GEMM when both get the FiGS array's "
             "bandwidth budget. See docs/figs.md for the dataflow and formulas.", ""]
    sweeps = {}
    for result in ok(results):
        point = result["point"]
        if point["kind"] == "perf" and "by_ratio" in result["record"]:
            # Pair the engines by what they share (figs has alpha and ratio on top).
            shared = tuple((k, point["params"][k])
                           for k in ("rows", "cols", "beta", "width", "max_m"))
            sweeps[(point["block"], shared)] = result
    rows, bw = [], {}
    for index, key in enumerate(sorted({k[1] for k in sweeps})):
        figs, bcast = sweeps.get(("figs", key)), sweeps.get(("nm_broadcast", key))
        if not figs or not bcast:
            continue
        array = ", ".join(f"{k}={v}" for k, v in key) or "defaults"
        by_ratio = figs["record"]["by_ratio"]
        for ratio in sorted(by_ratio, key=lambda r: tuple(map(int, r.split(":")))):
            f = by_ratio[ratio]
            b = bcast["record"]["by_ratio"].get(ratio)
            if not b:
                continue
            ff, bf = f["full"], b["full"]
            if not ff.get("routable", True):
                rows.append([array, ratio, "not routable", "", "", "", "", "", ""])
                continue
            fl, bl = f["at_figs_budget"], b["at_figs_budget"]
            measured = bf["input_bits_per_cycle"] / ff["input_bits_per_cycle"]
            predicted = bf["predicted_bits_per_cycle"] / ff["predicted_bits_per_cycle"]
            rows.append([array, ratio, round(ff["input_bits_per_cycle"], 1),
                         round(bf["input_bits_per_cycle"], 1), round(measured, 2),
                         round(predicted, 2), round(ff["utilization"], 3),
                         f"{fl['cycles']} / {bl['cycles']}",
                         f"{ff['cycles'] - ff['predicted_cycles']:+.0f} / "
                         f"{bf['cycles'] - bf['predicted_cycles']:+.0f}"])
            if index == 0:      # the plot shows the first array
                n, m = map(int, ratio.split(":"))
                bw.setdefault(n, []).append((m, ff["input_bits_per_cycle"],
                                             bf["input_bits_per_cycle"]))
    lines += table(["array", "n:m", "FiGS bits/cycle", "broadcast bits/cycle",
                    "broadcast / FiGS (measured)", "(predicted)", "FiGS utilization",
                    "cycles at FiGS budget (FiGS / broadcast)",
                    "measured - model cycles (FiGS / broadcast)"], rows)
    if bw:
        fig, ax = figure(figsize=(5.5, 3.8))
        for n, points in sorted(bw.items()):
            points.sort()
            line, = ax.plot([p[0] for p in points], [p[1] for p in points], "o-",
                            label=f"FiGS N={n}")
            ax.plot([p[0] for p in points], [p[2] for p in points], "s--",
                    color=line.get_color(), label=f"broadcast N={n}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("M")
        ax.set_ylabel("activation bits/cycle at full utilization")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        lines += ["", save_plot(fig, plot_dir, "figs_bandwidth"), ""]
    area = {}
    for result in ok(results):
        point = result["point"]
        if point["kind"] == "synth" and point["target"] == "cmos" and \
                point["block"] in ("figs", "nm_broadcast"):
            area.setdefault(point["block"], []).append(
                (point["params"]["max_m"], result["record"]["transistors"], point["params"]))
    # Area versus the largest M, at the default array shape (8 x 4).
    area = {engine: sorted((p[0], p[1]) for p in points
                           if p[2]["rows"] == 8 and p[2]["cols"] == 4)
            for engine, points in area.items()}
    if any(len(points) >= 2 for points in area.values()):
        fig, ax = figure(figsize=(5, 3.6))
        for engine, points in sorted(area.items()):
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=engine)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("largest M supported (max_m)")
        ax.set_ylabel("transistors (cmos)")
        ax.legend()
        ax.grid(alpha=0.3)
        lines += [save_plot(fig, plot_dir, "figs_area"), ""]
    lines += _area_lines(results, {"figs", "nm_broadcast"})
    if not quick:   # the grid choice made in _figs_points
        lines += ["FPGA timing: the broadcast N:M engine at its default size (the largest "
                  "design) is not placed, because its place and route did not finish in 30 "
                  "minutes on 2 cores; the 128-MAC FiGS array uses one seed for the same "
                  "reason.", ""]
    return lines


SECTIONS.append(Section("figs", "FiGS swap-register array versus broadcast N:M engine",
                        ("figs", "nm_broadcast"), _figs_points, _figs_render))


# Families whose section lives in a module of its own (``section_<family>.py`` exporting
# ``SECTION``, or None while the family has no section yet). Imported here, at the end, because
# they may build on the helpers above (Section, table, find, ...).
from sparsehw.experiments import section_act, section_chip     # noqa: E402

SECTIONS.extend(module.SECTION for module in (section_act, section_chip)
                if module.SECTION is not None)

# The FPGA table comes last: it covers every block (blocks=(): always available).
SECTIONS.append(Section("fpga", "FPGA timing (ECP5, nextpnr): every block, before and after "
                        "issue 14", (), fpga_points, _fpga_render))
