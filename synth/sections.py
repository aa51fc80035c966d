"""Report sections: per block family, the design points it sweeps and how it renders them.

Each :class:`Section` lists design points (``points(quick)``) and turns their results into
Markdown lines plus plots (``render(results, plot_dir, quick)``). A section whose blocks are not
registered is left out, so the report grows as blocks land.
"""

import math
from dataclasses import dataclass
from typing import Callable

from sparsehw import registry


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
    import matplotlib.pyplot as plt
    for ext in ("png", "svg"):
        fig.savefig(plot_dir / f"{name}.{ext}", dpi=110, bbox_inches="tight",
                    metadata={"Date": None} if ext == "svg" else None)
    plt.close(fig)
    return f"![{name}](plots/{name}.png)"


def figure(**kwargs):
    import matplotlib
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
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
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
        if point["kind"] == "perf" and key in area and record.get("throughput") is not None:
            points.append((area[key], record["throughput"], point["block"],
                           record.get("throughput_unit", "ops/cycle")))
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
    ax.set_ylabel("measured throughput (useful ops per cycle)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return ["## Area versus throughput", "",
            "Every design point with both a CMOS area and a measured throughput; the dashed "
            "line joins the points no other point beats on both axes.", "",
            save_plot(fig, plot_dir, "pareto"), ""]


def _key(params):
    return tuple(sorted(params.items()))


def _pareto_front(points):
    front = []
    for area, throughput in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or throughput > front[-1][1]:
            front.append((area, throughput))
    return front
