"""The sweep engine behind ``sparsehw report``: validation, caching, failures, Dask."""

import json

import pytest

from sparsehw import registry
from sparsehw.params import Param, ParamSpec, float_in, int_in
from sparsehw.registry import Block, UserError
from sparsehw.experiments import sweep
from sparsehw.verif.runner import run_cocotb
from sparsehw.verif.selftest import StreamFifo


FIFO_PARAMS = ParamSpec(Param("depth", 4, int_in(1, 64)))


def _fifo(**params):
    FIFO_PARAMS.validate(**params)
    return StreamFifo()


def _fifo_perf(params, workload, *, sim, seed, build_dir):
    if workload["stall"] >= 0.99:
        raise RuntimeError("deliberately broken design point")
    result = run_cocotb(StreamFifo(), "fifo", "sparsehw.verif.selftest.tb_fifo", build_dir=build_dir,
                        sim=sim, seed=seed, workload=workload)
    cycles = result.record.get("cycles", 0)
    return {"passed": result.passed, "cycles": cycles, "ideal_cycles": 300,
            "utilization": 300 / cycles if cycles else 0.0, "input_bits_per_cycle": 18.0}


FIFO = Block(name="fifo", summary="test FIFO", params=FIFO_PARAMS, build=_fifo, perf=_fifo_perf,
             workload_params=ParamSpec(Param("stall", 0.0, float_in(0, 1)),
                                       kind="workload knob"))


@pytest.fixture
def fifo_registry(monkeypatch):
    monkeypatch.setattr(registry, "all_blocks", lambda: {"fifo": FIFO})


def test_unknown_names_fail_before_anything_runs(fifo_registry, tmp_path):
    good = {"kind": "synth", "block": "fifo", "params": {}, "target": "cmos"}
    for bad, message in [({"kind": "synth", "block": "nope"}, "unknown block 'nope'"),
                         ({**good, "params": {"width": 3}}, "unknown parameter 'width'"),
                         ({"kind": "perf", "block": "fifo", "workload": {"x": 1}},
                          "unknown workload knob 'x'"),
                         ({**good, "params": {"depth": 99}}, "depth must be"),
                         ({"kind": "bake", "block": "fifo"}, "kind must be")]:
        with pytest.raises(UserError, match=message):
            sweep.run_points([good, bad], cache_dir=tmp_path)
    assert not list(tmp_path.iterdir()), "nothing may run when a point is invalid"


def test_command_reruns_one_point(fifo_registry):
    point = sweep.validate_point({"kind": "perf", "block": "fifo", "workload": {"stall": 0.5}})
    assert sweep.point_command(point) == \
        "sparsehw perf fifo -p depth=4 -w stall=0.5 --sim verilator"


@pytest.mark.sim
def test_failed_point_is_recorded_and_rest_completes_and_cache_works(fifo_registry, tmp_path):
    points = [{"kind": "perf", "block": "fifo", "workload": {"stall": 0.0}, "sim": "icarus"},
              {"kind": "perf", "block": "fifo", "workload": {"stall": 0.995}, "sim": "icarus"}]
    first = sweep.run_points(points, cache_dir=tmp_path / "cache", log_root=tmp_path / "logs",
                             progress=False)
    assert [r["status"] for r in first] == ["ok", "failed"]
    assert "deliberately broken" in first[1]["error"]
    assert (tmp_path / "logs").exists() and first[1]["log"]
    assert first[0]["record"]["cycles"] > 0 and not first[0]["cached"]
    again = sweep.run_points(points, cache_dir=tmp_path / "cache", log_root=tmp_path / "logs",
                             progress=False)
    assert again[0]["cached"] and again[0]["record"] == first[0]["record"]
    assert not again[1]["cached"], "failed points are not cached"
    forced = sweep.run_points(points[:1], cache_dir=tmp_path / "cache", force=True,
                              progress=False)
    assert not forced[0]["cached"]


@pytest.mark.sim
def test_dask_local_cluster(fifo_registry, tmp_path):
    from distributed import LocalCluster     # lazy: heavy, only this test needs it
    points = [{"kind": "perf", "block": "fifo", "workload": {"stall": s}, "sim": "icarus"}
              for s in (0.0, 0.3)]
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster:
        results = sweep.run_points(points, cache_dir=tmp_path, dask_address=cluster.scheduler_address,
                                   progress=False)
    assert [r["status"] for r in results] == ["ok", "ok"]
    assert results[0]["record"]["cycles"] < results[1]["record"]["cycles"]


def test_source_files_are_the_blocks_import_closure():
    names = {str(p.relative_to(sweep._REPO)) for p in sweep.source_files("ring", "perf")}
    # The RTL, its golden model, the testbenches (named by string) and the shared runner.
    assert {"hw/ring.py", "golden/ring.py", "verif/ring/perf_ring.py",
            "verif/ring/tb_harness.py", "verif/runner.py", "hw/export.py",
            "sparsehw/flow.py"} <= names
    assert not names & {"hw/spu.py", "hw/figs.py", "golden/hbfp.py", "synth/yosys.py"}
    synth_names = {str(p.relative_to(sweep._REPO)) for p in sweep.source_files("spu", "synth")}
    assert {"hw/spu.py", "synth/yosys.py"} <= synth_names and "hw/ring.py" not in synth_names
    # hw/chip/__init__.py reaches the subsystem and chip RTL only by relative imports
    # (`from .subsystem import ...`): an edit there must change the subsystem's cache key.
    chip_names = {str(p.relative_to(sweep._REPO)) for p in sweep.source_files("subsystem",
                                                                               "pnr")}
    assert {"hw/chip/__init__.py", "hw/chip/subsystem.py", "hw/chip/chip.py"} <= chip_names


def test_cache_key_changes_with_the_sources(monkeypatch):
    point = {"kind": "synth", "block": "ring", "params": {}, "target": "cmos"}
    versions = {"tool": "1"}
    before = sweep.point_key(point, versions)
    assert sweep.point_key(point, versions) == before
    monkeypatch.setattr(sweep, "source_fingerprint", lambda block, kind: "edited")
    assert sweep.point_key(point, versions) != before
