"""The studies (sparsehw.experiments.hbfp_area, figs_compare, sparsity_quant): their caches are
keyed by the sources they depend on (an RTL edit recomputes them) and live under the one build
root; ``sparsehw study`` runs them."""

import json

import pytest

from sparsehw import cli, flow
from sparsehw.experiments import figs_compare, hbfp_area, sparsity_quant, sweep


def _relative(paths):
    return {str(path.relative_to(sweep._REPO)) for path in paths}


def test_the_study_closures_hold_the_rtl_they_measure():
    area = _relative(sweep.module_closure("sparsehw.experiments.hbfp_area"))
    assert {"hw/hbfp.py", "hw/fp32.py", "hw/parts.py", "synth/yosys.py"} <= area
    compare = _relative(sweep.module_closure("sparsehw.experiments.figs_compare"))
    assert {"hw/figs.py", "hw/parts.py", "verif/figs/perf_figs.py", "synth/yosys.py"} <= compare
    # the perf testbench (perf_figs is its own cocotb module) and the drivers it uses
    assert {"verif/figs/__init__.py", "verif/stream.py", "verif/runner.py"} <= compare
    assert "hw/ring.py" not in area | compare


def test_study_caches_live_under_the_build_root():
    assert flow.BUILD_ROOT in hbfp_area.STUDY_DIR.parents
    assert flow.BUILD_ROOT in figs_compare.DEFAULT_OUT.parents


def test_the_stamp_follows_the_sources(monkeypatch):
    before = sweep.study_stamp("sparsehw.experiments.hbfp_area")
    assert sweep.study_stamp("sparsehw.experiments.hbfp_area") == before
    monkeypatch.setattr(sweep, "module_fingerprint", lambda *names: "an RTL edit")
    assert sweep.study_stamp("sparsehw.experiments.hbfp_area") != before


def test_hbfp_area_serves_only_records_of_the_current_sources(tmp_path, monkeypatch):
    cache = tmp_path / "cache.json"
    record = {"block": "fp32_mac", "params": {}, "transistors": 123}
    monkeypatch.setattr(hbfp_area, "_stamp", lambda: "now")
    cache.write_text(json.dumps({"stamp": "now", "records": {"k": record}}))
    assert hbfp_area._load_cache(cache) == {"k": record}
    cache.write_text(json.dumps({"stamp": "before the edit", "records": {"k": record}}))
    assert hbfp_area._load_cache(cache) == {}
    cache.write_text(json.dumps({"k": record}))               # the unstamped format of old
    assert hbfp_area._load_cache(cache) == {}


def test_figs_compare_serves_only_records_of_the_current_sources(tmp_path, monkeypatch):
    path = tmp_path / "perf-figs-default.json"
    monkeypatch.setattr(figs_compare, "_stamp", lambda: "now")
    figs_compare._store(path, {"cycles": 10})
    assert figs_compare._cached(path) == {"cycles": 10, "stamp": "now"}
    monkeypatch.setattr(figs_compare, "_stamp", lambda: "after an edit")
    assert figs_compare._cached(path) is None
    assert figs_compare._cached(tmp_path / "missing.json") is None


def test_study_command_runs_the_study(capsys):
    assert cli.STUDIES["prune-quant"] is sparsity_quant
    assert cli.main(["study", "prune-quant", "--rows", "8", "--cols", "32"]) == 0
    assert "prune" in capsys.readouterr().out.lower()


def test_unknown_study_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as error:
        cli.main(["study", "nope"])
    assert error.value.code == 2
