"""``sparsehw report``: sweep every block over a documented grid and write the report.

Output in ``--out DIR``: ``report.md`` (tables, embedded plots, the command that recomputes each
design point), ``results.json`` and ``results.csv`` (one row per design point), and every plot as
PNG and SVG under ``plots/``. Records come only from ``sparsehw perf`` / ``sparsehw synth``
(see :mod:`synth.sweep`); sections per block family live in :mod:`synth.sections`.
"""

import csv
import json
import sys
from pathlib import Path

from sparsehw.experiments import sections as _sections
from sparsehw.experiments.sweep import run_points, validate_point


__all__ = ["build_report", "run_fpga_records", "render_fpga_records"]


def _flatten(prefix, value, row):
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, item, row)
    elif isinstance(value, (list, tuple)):
        row[prefix] = json.dumps(value)
    else:
        row[prefix] = value


def _write_csv(results, path):
    rows = []
    for result in results:
        row = {"status": result["status"], "command": result["command"]}
        _flatten("point", result["point"], row)
        if result["record"]:
            record = {k: v for k, v in result["record"].items()
                      if k not in ("params", "workload", "block", "curve", "cell_types")}
            _flatten("", record, row)
        rows.append(row)
    columns = sorted({key for row in rows for key in row})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _headline(record, kind):
    if record is None:
        return "-"
    if kind == "perf":
        return f"{record['cycles']} cycles, utilization {record['utilization']:.3f}"
    if kind == "pnr":
        return f"{record['fmax_mhz']} MHz"
    if "transistors" in record:
        return f"{record['transistors']:,} transistors"
    return f"{record['luts']} LUT4, {record['ffs']} FF, {record['dsps']} DSP"


def _index(results):
    """Every design point, its headline figure and the command that recomputes it alone."""
    lines = ["## Every design point", "",
             "| # | kind | block | status | headline | cached | command |",
             "|---|---|---|---|---|---|---|"]
    for number, r in enumerate(results, 1):
        point = r["point"]
        lines.append(f"| {number} | {point['kind']} | {point['block']} | {r['status']} | "
                     f"{_headline(r['record'], point['kind'])} | "
                     f"{'yes' if r.get('cached') else 'no'} | `{r['command']}` |")
    return lines + [""]


def build_report(out_dir, *, quick=False, jobs=1, dask_address=None, force=False,
                 families=None, progress=True):
    """Run the sweeps and write the report; return the path of ``report.md``.

    Every section's design points are validated before any of them runs.
    """
    chosen = _sections.available(families)
    planned = [(section, section.points(quick)) for section in chosen]
    all_points = [point for _, points in planned for point in points]
    for point in all_points:        # fail on a bad sweep spec before anything is written
        validate_point(point)
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    results = run_points(all_points, cache_dir=out_dir / "cache", jobs=jobs,
                         dask_address=dask_address, force=force, progress=progress,
                         log_root=out_dir / "logs")
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    _write_csv(results, out_dir / "results.csv")

    failed = [r for r in results if r["status"] != "ok"]
    lines = ["# sparsehw design-space report", "",
             f"Grid: {'quick' if quick else 'full'}; {len(results)} design points, "
             f"{len(failed)} failed. Every figure below is measured on the generated RTL "
             "(cycle counts from simulation, area from Yosys, Fmax from nextpnr). "
             "`results.json` / `results.csv` hold every record; each table row gives the "
             "command that recomputes it alone.", ""]
    offset = 0
    section_results = []
    for section, points in planned:
        mine = results[offset:offset + len(points)]
        offset += len(points)
        section_results.append((section, mine))
        lines += [f"## {section.title}", ""]
        lines += section.render(mine, plots, quick=quick)
        lines.append("")
    lines += _sections.render_timing(results)
    lines += _sections.render_pareto([r for _, rs in section_results for r in rs], plots)
    lines += _index(results)
    if failed:
        lines += ["## Failed design points", "",
                  "| command | error | log |", "|---|---|---|"]
        lines += [f"| `{r['command']}` | {r['error']} | `{r['log']}` |" for r in failed]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


# -- the FPGA table from a records directory -------------------------------------------------------

def run_fpga_records(records_dir, blocks, *, seeds=None, kinds=("pnr", "perf"), progress=True):
    """Compute the FPGA table's design points of ``blocks`` (:func:`sections.fpga_points`) one
    at a time, cached under ``records_dir/cache`` (the sweep's cache: ``sparsehw report`` with
    that cache serves them), and write each result as ``records_dir/<block>-<kind>.json``.
    ``seeds`` overrides the placement seeds; ``kinds`` chooses the point kinds. Returns the
    results."""
    records_dir = Path(records_dir)
    points = [p for p in _sections.fpga_points(False, blocks=tuple(blocks)) if p["kind"] in kinds]
    if seeds:
        points = [{**p, "seeds": list(seeds)} if p["kind"] == "pnr" else p for p in points]
    results = []
    for point in points:     # one at a time, each result written as soon as it exists
        result = run_points([point], cache_dir=records_dir / "cache", jobs=1,
                            progress=progress, log_root=records_dir / "logs")[0]
        name = f"{point['block']}-{point['kind']}.json"
        (records_dir / name).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        results.append(result)
    return results


def _load_records(records_dir):
    results = []
    for path in sorted(Path(records_dir).glob("*.json")):
        loaded = json.loads(path.read_text())
        results += loaded if isinstance(loaded, list) else [loaded]
    return results


#: The markers around the README's FPGA summary (:func:`readme_with_fpga_summary`).
SUMMARY_BEGIN = "<!-- fpga-summary: rendered by `python -m sparsehw.experiments.report render " \
                "docs/report/fpga --readme README.md`; do not edit by hand -->"
SUMMARY_END = "<!-- /fpga-summary -->"


def readme_with_fpga_summary(readme_text, records_dir):
    """``readme_text`` with the part between :data:`SUMMARY_BEGIN` and :data:`SUMMARY_END`
    replaced by the short FPGA table of the records in ``records_dir``. Raises ``ValueError``
    when the markers are missing or out of order."""
    begin, end = readme_text.find(SUMMARY_BEGIN), readme_text.find(SUMMARY_END)
    if begin < 0 or end < begin:
        raise ValueError(f"readme: needs the lines {SUMMARY_BEGIN!r} and {SUMMARY_END!r}, "
                         f"in that order")
    summary = _sections.render_fpga_summary(_load_records(records_dir))
    head = readme_text[:begin + len(SUMMARY_BEGIN)]
    return head + "\n" + "\n".join(summary) + "\n" + readme_text[end:]


def render_fpga_records(records_dir, out=None):
    """Write the FPGA table from every ``*.json`` result in ``records_dir`` (written by
    :func:`run_fpga_records`, or the same result format from ``sparsehw report``'s
    ``results.json``) to ``out`` (default ``records_dir/fpga.md``); return its path. Blocks
    without a record show as "not run"."""
    records_dir = Path(records_dir)
    results = _load_records(records_dir)
    lines = ["# FPGA timing (ECP5, nextpnr): every block, before and after issue 14", "",
             f"Rendered by `python -m sparsehw.experiments.report render {records_dir}` "
             f"from the records in this directory (one JSON per design point); "
             f"`python -m sparsehw.experiments.report run {records_dir} BLOCK...` recomputes "
             f"a block's records (cached in `cache/`, the cache of `sparsehw report`).", ""]
    lines += _sections.render_fpga(results)
    out = Path(out) if out else records_dir / "fpga.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def _main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m sparsehw.experiments.report",
                                     description="The FPGA table's records: run, render.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="compute the FPGA points of BLOCKs into DIR")
    run.add_argument("dir")
    run.add_argument("blocks", nargs="+")
    run.add_argument("--seeds", help="placement seeds, comma-separated (default: the table's)")
    run.add_argument("--kind", action="append", choices=("pnr", "perf"),
                     help="only these point kinds (repeatable; default both)")
    render = sub.add_parser("render", help="write DIR/fpga.md from the records in DIR")
    render.add_argument("dir")
    render.add_argument("--readme", help="also rewrite this README's FPGA summary")
    args = parser.parse_args(argv)
    if args.command == "run":
        seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
        kinds = tuple(args.kind) if args.kind else ("pnr", "perf")
        for result in run_fpga_records(args.dir, args.blocks, seeds=seeds, kinds=kinds):
            print(result["status"], result["command"], result.get("error") or "", flush=True)
    print(render_fpga_records(args.dir))
    if getattr(args, "readme", None):
        readme = Path(args.readme)
        try:
            readme.write_text(readme_with_fpga_summary(readme.read_text(), args.dir))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
