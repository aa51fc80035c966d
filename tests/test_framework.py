"""The shared machinery: packing, the cocotb runner and the stream drivers."""

import subprocess
import sys
import time

import pytest
from amaranth.lib import data

from sparsehw.verif.runner import RunResult, perf_record, run_cocotb, run_in_process_group
from sparsehw.verif.selftest import StreamFifo
from sparsehw.verif.stream import pack, unpack


def test_pack_roundtrip_signed_nested():
    layout = StreamFifo.layout
    value = {"a": [-128], "b": 15, "c": {"s": -1}}
    assert unpack(layout, pack(layout, value)) == value
    assert pack(layout, {"a": [1], "b": 0, "c": {"s": 0}}) == 1


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError, match="does not fit"):
        pack(data.StructLayout({"x": 4}), {"x": 16})


@pytest.mark.sim
@pytest.mark.parametrize("sim,stall", [("icarus", 0.0), ("icarus", 0.6), ("verilator", 0.6)])
def test_stream_drivers_under_stalls(tmp_path, sim, stall):
    result = run_cocotb(StreamFifo(), "stream_fifo", "sparsehw.verif.selftest.tb_fifo",
                        build_dir=tmp_path, sim=sim, seed=7, workload={"stall": stall})
    assert result.passed, result.errors or result.log.read_text()[-3000:]
    assert result.record["transfers"] == 300
    if stall == 0.0:
        # Full rate: one item per cycle after the FIFO's fill latency.
        assert result.record["cycles"] <= 300 + 4


@pytest.mark.sim
def test_runner_reports_a_failing_testbench(tmp_path):
    # The FIFO testbench checks order; a design that drops items must fail, not pass silently.
    from amaranth.hdl import Module
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    class Lossy(wiring.Component):
        i: In(stream.Signature(StreamFifo.layout))
        o: Out(stream.Signature(StreamFifo.layout))

        def elaborate(self, platform):
            m = Module()
            odd = __import__("amaranth").hdl.Signal()
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += odd.eq(~odd)
            # Every second item is dropped: accepted but never shown as valid.
            m.d.comb += [self.o.payload.eq(self.i.payload), self.o.valid.eq(self.i.valid & ~odd),
                         self.i.ready.eq(self.o.ready | odd)]
            return m

    result = run_cocotb(Lossy(), "lossy", "sparsehw.verif.selftest.tb_fifo", build_dir=tmp_path, seed=1,
                        workload={"stall": 0.0})
    assert not result.passed
    assert result.failures == 1
    # As a perf record: passed False and one line naming the failure and the log.
    record = perf_record(result, sim="icarus")
    assert record["passed"] is False and record["sim"] == "icarus"
    assert "\n" not in record["error"] and record["error"].endswith(f"(see {result.log})")
    first = " ".join(result.errors[0].split()) if result.errors else "1 of 1 cocotb tests failed"
    assert record["error"].startswith(first)


def test_perf_record_shape(tmp_path):
    log = tmp_path / "sim.log"
    ok = RunResult(passed=True, tests=1, failures=0, record={"cycles": 10, "extra": 1},
                   build_dir=tmp_path, log=log)
    assert perf_record(ok, sim="verilator") == {"cycles": 10, "extra": 1, "passed": True,
                                                 "sim": "verilator", "log": str(log)}
    assert perf_record(ok, sim="icarus", keys=("cycles", "absent")) == {
        "cycles": 10, "passed": True, "sim": "icarus", "log": str(log)}
    # The testbench's own verdict counts too (a perf test that records passed=False).
    mismatch = RunResult(passed=True, tests=1, failures=0, record={"passed": False},
                         build_dir=tmp_path, log=log)
    record = perf_record(mismatch, sim="icarus")
    assert record["passed"] is False
    assert record["error"] == f"0 of 1 cocotb tests failed (see {log})"
    crashed = RunResult(passed=False, tests=0, failures=0, record={}, build_dir=tmp_path, log=log,
                        errors=["SystemExit: 1", "no results: the simulation did not\ncomplete"])
    assert perf_record(crashed, sim="icarus")["error"] == (
        f"SystemExit: 1; no results: the simulation did not complete (see {log})")


def test_compare_lists_mismatches():
    from sparsehw.verif.stream import compare
    compare([1, 2, 3], [1, 2, 3])
    with pytest.raises(AssertionError, match=r"^2 items, expected 3$"):
        compare([1, 2], [1, 2, 3])
    with pytest.raises(AssertionError, match=r"^2 of 3 beats differ:\nbeat 0: got 5, expected 1\n"
                                             r"beat 2: got 7, expected 3$"):
        compare([5, 2, 7], [1, 2, 3], what="beat")
    compare([0x7FC00001], [0x7FC00000], same=lambda g, e: (g >> 22) == (e >> 22))
    with pytest.raises(AssertionError, match=r"^1 of 2 items differ:\n#1 4!=5$"):
        compare([1, 4], [1, 5], describe=lambda i, g, e: f"#{i} {g}!={e}")


def test_common_params_and_workload(monkeypatch):
    from sparsehw.hw.spu import SPU_PARAMS
    from sparsehw.verif import common
    monkeypatch.setenv("SPARSEHW_PARAMS", '{"lanes": 8}')
    monkeypatch.setenv("SPARSEHW_WORKLOAD", '{"stall": 0.5}')
    assert common.params() == {"lanes": 8}
    assert common.params(SPU_PARAMS) == {**SPU_PARAMS.defaults(), "lanes": 8}
    assert common.workload() == {"stall": 0.5}
    monkeypatch.setenv("SPARSEHW_PARAMS", '{"lanes": 99}')
    with pytest.raises(ValueError, match=r"^lanes must be an integer in 1\.\.64, not 99$"):
        common.params(SPU_PARAMS)


def test_common_record_merges_into_the_result_file(tmp_path, monkeypatch):
    import json
    from sparsehw.verif import common
    path = tmp_path / "record.json"
    monkeypatch.setenv("SPARSEHW_RESULT", str(path))
    common.record(cycles=3)
    common.record(extra=[1, 2])
    assert json.loads(path.read_text()) == {"cycles": 3, "extra": [1, 2]}


def test_run_in_process_group_returns_status_and_kills_the_group_on_timeout(tmp_path):
    with open(tmp_path / "log", "w") as log:
        assert run_in_process_group([sys.executable, "-c", "raise SystemExit(3)"],
                                    cwd=tmp_path, stdout=log) == 3
    # The child starts a grandchild that would write a file after the timeout: both must die.
    script = ("import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
              "'import time; time.sleep(3); open(\"late\", \"w\")']); import time; time.sleep(30)")
    with open(tmp_path / "log", "w") as log, pytest.raises(subprocess.TimeoutExpired):
        run_in_process_group([sys.executable, "-c", script], cwd=tmp_path, stdout=log, timeout=1)
    time.sleep(3.5)
    assert not (tmp_path / "late").exists()
