"""verif/coverage.py: coverpoints and per-port stall coverage, read back from a real run."""

import pytest

from sparsehw.verif.coverage import PORT_BINS, Coverage, holes, per_process
from sparsehw.verif.runner import run_cocotb
from sparsehw.verif.selftest import StreamFifo


def _run(tmp_path, stall):
    result = run_cocotb(StreamFifo(), "stream_fifo", "sparsehw.verif.selftest.tb_fifo",
                        build_dir=tmp_path, seed=7, workload={"stall": stall})
    assert result.passed, result.errors or result.log.read_text()[-3000:]
    return result


@pytest.mark.sim
def test_stalls_on_both_sides_cover_every_handshake_bin(tmp_path):
    result = _run(tmp_path, 0.6)
    assert holes(result.record, "stream_fifo") == {}
    summary = result.record["coverage"]["stream_fifo"]
    assert set(summary) == {"b", "i.handshake", "o.handshake"}
    assert sum(summary["b"]["bins"].values()) == 300          # one sample per item sent
    assert summary["o.handshake"]["bins"]["transfer"] == 300
    assert "coverage stream_fifo.o.handshake: 5/5" in result.log.read_text()


@pytest.mark.sim
def test_no_stalls_leave_the_back_pressure_bins_as_holes(tmp_path):
    # Sink always ready and a FIFO that never fills: no port is ever held.
    result = _run(tmp_path, 0.0)
    found = holes(result.record, "stream_fifo")
    assert found == {"i.handshake": ["held", "long_hold"], "o.handshake": ["held", "long_hold"]}
    assert "holes: held, long_hold" in result.log.read_text()


def test_point_arguments_are_checked():
    cov = Coverage("unit")
    with pytest.raises(ValueError, match="at least one bin"):
        cov.point("none", [])
    with pytest.raises(ValueError, match="duplicate"):
        cov.point("dup", [1, 1])
    with pytest.raises(ValueError, match="2 labels for 3 bins"):
        cov.point("lab", [1, 2, 3], labels=["a", "b"])
    with pytest.raises(ValueError, match="block must be"):
        Coverage("a.b")
    sample = cov.point("mode", ["x", "y"])
    sample("x")
    sample("z")                                                 # no bin: ignored
    assert cov.summary() == {"mode": {"bins": {"x": 1, "y": 0}, "holes": ["y"]}}
    assert PORT_BINS[0] == "transfer"


def test_per_process_builds_a_block_model_once():
    built = []

    def make():
        built.append(object())
        return built[-1]

    first = per_process("unit_per_process", make)
    assert per_process("unit_per_process", make) is first
    assert per_process("unit_per_process_other", make) is not first
    assert len(built) == 2
