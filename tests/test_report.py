"""``sparsehw report --quick``: every section renders from real design points, with plots."""

import csv
import json
from pathlib import Path

import pytest

from sparsehw.cli import main
from sparsehw.experiments import sections
from sparsehw.golden.spu import spu_cycles


def _check_report(out, titles, plots):
    """The report in ``out``: every design point ran, each of ``titles`` is a section and each of
    ``plots`` a rendered figure, the CSV has a row per point, every row names the command that
    recomputes it, and the SPU's closed-form cycle model equals the RTL's cycles."""
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    failed = [r for r in results if r["status"] != "ok"]
    assert not failed, [(r["command"], r["error"]) for r in failed]
    for title in titles:
        assert f"## {title}" in report
    for plot in plots:
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000, plot
        assert (out / "plots" / f"{plot}.svg").exists(), plot
        assert f"plots/{plot}.png" in report
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(results)
    for result in results:
        assert result["command"].startswith("sparsehw ")
        assert f"`{result['command']}`" in report
    spu = [r for r in results if r["point"]["block"] == "spu" and r["point"]["kind"] == "perf"]
    for result in spu:
        assert result["record"]["cycles"] == spu_cycles(result["record"]["params"],
                                                         result["point"]["workload"])[0]
    return report, results


def _rerun_is_cached(argv, out):
    assert main(argv + ["--jobs", "1"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again and all(r["cached"] for r in again)


@pytest.mark.sim
@pytest.mark.synth
@pytest.mark.slow
def test_quick_report_end_to_end(tmp_path, capsys):
    # Every section: make test's longest test by far (37 of the 76 min of one loaded
    # `pytest -n 2` run, with the suite at its 15-min budget on an idle machine), hence slow;
    # make test runs the one-family report below.
    out = tmp_path / "report"
    argv = ["report", "--quick", "--out", str(out)]
    assert main(argv + ["--jobs", "2"]) == 0
    _check_report(out, [section.title for section in sections.available()],
                  ("spu_speedup", "ring_latency", "hbfp_area_per_lane", "figs_bandwidth",
                   "pareto"))
    _rerun_is_cached(argv, out)


@pytest.mark.sim
@pytest.mark.synth
def test_quick_report_of_one_family_end_to_end(tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["report", "--quick", "--only", "spu", "--out", str(out)]
    assert main(argv + ["--jobs", "2"]) == 0
    spu_title = sections.available(["spu"])[0].title
    report, results = _check_report(out, [spu_title], ("spu_speedup",))
    assert {r["point"]["block"] for r in results} == {"spu"}
    others = [s.title for s in sections.available() if s.title != spu_title]
    assert others and not any(f"## {title}" in report for title in others)
    _rerun_is_cached(argv, out)


def test_unknown_section_is_rejected(tmp_path, capsys):
    assert main(["report", "--quick", "--only", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown report section" in capsys.readouterr().err
    assert not (tmp_path / "r").exists(), "nothing may be written for a bad sweep"


def _pnr_result(block, fmax_by_seed, status="ok"):
    from sparsehw import registry
    params = registry.resolve_params(registry.get_block(block), {})
    path = {"from_cell": "a_reg", "to_cell": "b_reg", "delay_ns": 7.5, "logic_ns": 3.0,
            "routing_ns": 4.5, "logic_levels": 4, "nets": []}
    record = {"params": params, "fmax_by_seed": fmax_by_seed,
              "fmax_mhz": sorted(fmax_by_seed.values())[len(fmax_by_seed) // 2],
              "luts": 100, "ffs": 50, "dsps": 2,
              "critical_path_by_seed": {seed: dict(path, to_cell=f"b_{seed}")
                                        for seed in fmax_by_seed},
              "pnr_seconds": {"yosys_s": 1.0, "by_seed": {s: {"wall_s": 120.0}
                                                          for s in fmax_by_seed}}}
    return {"point": {"kind": "pnr", "block": block, "params": params,
                      "seeds": [int(s) for s in fmax_by_seed]},
            "status": status, "record": record if status == "ok" else None,
            "error": None if status == "ok" else "PnrTimeout: nextpnr did not finish",
            "command": f"sparsehw synth {block} --target ecp5 --place"}


def test_fpga_table_renders_from_records(tmp_path):
    # The table is made from records only: the median seed's critical path, before and after,
    # ops/s from a perf record (figs: o*k*b*n/m useful MACs over the measured cycles).
    from sparsehw import registry
    from sparsehw.experiments.report import render_fpga_records
    figs = _pnr_result("figs", {"1": 90.0, "2": 80.0, "3": 100.0})
    figs["record"]["pnr_dsp_registers"] = {"dsps": 2, "input_a": 2, "input_b": 2,
                                           "output": 2, "flip_flops_moved": 40, "or_gates": 1}
    params = registry.resolve_params(registry.get_block("figs"), {})
    workload = {"o": 64, "k": 512, "b": 32, "n": 2, "m": 8}
    perf = {"point": {"kind": "perf", "block": "figs", "params": params, "workload": workload,
                      "sim": "verilator"},
            "status": "ok", "record": {"params": params, "cycles": 4096},
            "command": "sparsehw perf figs"}
    broken = _pnr_result("nm_broadcast", {"1": 1.0}, status="failed")
    unpacked = _pnr_result("spu", {"1": 120.0})
    unpacked["record"].update(pnr_pack_dsp_registers=False, pnr_dsp_registers=None)
    old = _pnr_result("hbfp_dot", {"1": 100.0})                     # before the packing pass
    own_budget = _pnr_result("chip", {"1": 95.0})
    own_budget["record"].update(pnr_router="router2", pnr_budget_s=4500)
    figs["record"]["pnr_budget_s"] = 1800
    for name, result in (("figs-pnr", figs), ("figs-perf", perf), ("nmb-pnr", broken),
                         ("spu-pnr", unpacked), ("hbfp-pnr", old), ("chip-pnr", own_budget)):
        (tmp_path / f"{name}.json").write_text(json.dumps(result))
    text = render_fpga_records(tmp_path).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| figs |"))
    assert "35.87 (1 seed)" in row and "**90.0**" in row and "90.0, 80.0, 100.0" in row
    assert "a_reg -> b_1, 4 levels, 7.5 ns" in row          # seed 1 holds the median
    assert "100/50/2 (before 7,608/2,973/64); placed with 40 of these FF in DSP registers " \
        "(+1 LUT4)" in row
    assert "64 MAC/cycle = 5.76 GMAC/s" in row and "| 2.0, 2.0, 2.0 |" in row
    broken_row = next(line for line in text.splitlines() if line.startswith("| nm_broadcast |"))
    assert "failed: PnrTimeout" in broken_row and "not finished in 31 min" in broken_row
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert "DSP registers not packed (the block's choice" in rows["spu"]
    assert "DSP registers not packed (record before synth/dsp_registers.py)" in rows["hbfp_dot"]
    assert rows["ring"].count("not run")
    # a block's own budget is named in its row; the table's own is not repeated
    assert "95.0 (router2)" in rows["chip"]
    assert "| 2.0 (budget 75 min per run, the block's own; the table's is 30) |" in rows["chip"]
    assert "budget" not in rows["figs"] and "budget" not in rows["hbfp_dot"]


def test_fpga_summary_states_each_target(tmp_path):
    # The README's short table: the target per row (chip 100, the others 125), met or missed
    # by how much, a record that did not finish shown as such; markers required.
    from sparsehw.experiments.report import (SUMMARY_BEGIN, SUMMARY_END,
                                             readme_with_fpga_summary)
    results = {"figs-pnr": _pnr_result("figs", {"1": 125.0, "2": 130.0, "3": 120.0}),
               "chip-pnr": _pnr_result("chip", {"1": 95.0}),
               "spu-pnr": _pnr_result("spu", {"1": 124.9}),
               "ring-pnr": _pnr_result("ring", {"1": 1.0}, status="failed")}
    for name, result in results.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(result))
    readme = f"intro\n{SUMMARY_BEGIN}\nstale\n{SUMMARY_END}\nrest\n"
    text = readme_with_fpga_summary(readme, tmp_path)
    assert text.startswith(f"intro\n{SUMMARY_BEGIN}\n| block |") and "stale" not in text
    assert text.endswith(f"{SUMMARY_END}\nrest\n")
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| block")}
    assert "| **125.0** | 3 | 125: met | 100/50/2 |" in rows["figs"]
    assert "| 1 | 100: missed by 5.0 |" in rows["chip"]
    assert "125: missed by 0.1" in rows["spu"]
    assert "| not finished |" in rows["ring"] and "| not run |" in rows["hbfp_dot"]
    with pytest.raises(ValueError, match="fpga-summary"):
        readme_with_fpga_summary(f"{SUMMARY_END}\n{SUMMARY_BEGIN}\n", tmp_path)


def test_readme_fpga_summary_matches_the_records():
    # The README's FPGA figures are the committed records' (re-render after a new record).
    from sparsehw.experiments.report import readme_with_fpga_summary
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert readme == readme_with_fpga_summary(readme, root / "docs/report/fpga"), \
        "README.md: run python -m sparsehw.experiments.report render docs/report/fpga " \
        "--readme README.md"
