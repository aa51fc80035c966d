"""``sparsehw report --quick``: every section renders from real design points, with plots."""

import csv
import json

import pytest

from sparsehw.cli import main
from sparsehw.experiments import sections
from sparsehw.golden.spu import spu_cycles


@pytest.mark.sim
@pytest.mark.synth
def test_quick_report_end_to_end(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--quick", "--out", str(out), "--jobs", "2"]) == 0
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    failed = [r for r in results if r["status"] != "ok"]
    assert not failed, [(r["command"], r["error"]) for r in failed]
    for section in sections.available():
        assert f"## {section.title}" in report
    for plot in ("spu_speedup", "ring_latency", "hbfp_area_per_lane", "figs_bandwidth",
                 "pareto"):
        assert (out / "plots" / f"{plot}.png").stat().st_size > 1000, plot
        assert (out / "plots" / f"{plot}.svg").exists(), plot
        assert f"plots/{plot}.png" in report
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(results)
    # Every row names the command that recomputes it alone.
    for result in results:
        assert result["command"].startswith("sparsehw ")
        assert f"`{result['command']}`" in report
    # The SPU's closed-form model matches the RTL exactly at the quick design point.
    spu = [r for r in results if r["point"]["block"] == "spu" and r["point"]["kind"] == "perf"]
    for result in spu:
        assert result["record"]["cycles"] == spu_cycles(result["record"]["params"],
                                                         result["point"]["workload"])[0]
    # A rerun is served from the cache.
    assert main(["report", "--quick", "--out", str(out), "--jobs", "1"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert all(r["cached"] for r in again)


def test_unknown_section_is_rejected(tmp_path, capsys):
    assert main(["report", "--quick", "--only", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown report section" in capsys.readouterr().err
    assert not (tmp_path / "r").exists(), "nothing may be written for a bad sweep"
