"""`sparsehw model inspect` and `sparsehw model run`: output, JSON record, one-line errors."""

import json

import pytest

pytest.importorskip("onnx")

from sparsehw import cli  # noqa: E402


def test_inspect_changed_only(tmp_path, capsys):
    config = tmp_path / "prune.toml"
    config.write_text('[[layer]]\nmatch = "*layer.1.output.dense"\nprune_in = [4, 5, 6]\n')
    assert cli.main(["model", "inspect", "minilm", "--config", str(config), "--changed"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "before propagation" in out[0] and "after propagation" in out[0]
    body = out[1:]
    # the FFN-in weight loses 3 columns, its output and the GELU output 3 channels
    assert len(body) == 3
    assert "3/1536 channels pruned" in body[0]          # the weight: its output columns
    assert all("3 channels pruned" in line.split("int8", 1)[1] for line in body[1:])
    assert any("layer.1.intermediate.dense" in line for line in body)


@pytest.mark.parametrize("argv, message", [
    (["model", "inspect", "minilm", "--nm", "3:4"], "n must be a power of two"),
    (["model", "inspect", "minilm", "--nm", "2:3"], "nm 2:3"),
    (["model", "inspect", "no_such.onnx"], "no ONNX file at no_such.onnx"),
    (["model", "run", "minilm", "--seq-len", "1"], "--seq-len must be at least 2"),
    (["model", "run", "minilm", "--text", "a", "--texts", "f.txt"], "not both"),
])
def test_user_errors_are_one_line(argv, message, capsys):
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_not_an_onnx_file(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    assert cli.main(["model", "inspect", str(bad)]) == cli.EXIT_USAGE
    assert "not a readable ONNX file" in capsys.readouterr().err


def test_run_writes_the_record(tmp_path, capsys, monkeypatch):
    import functools
    from sparsehw.model import run
    from sparsehw.model.sentences import CALIBRATION
    # the CLI calibrates on all 12 sentences; 2 keep this test quick
    monkeypatch.setattr(run, "run_model",
                        functools.partial(run.run_model, calib_texts=CALIBRATION[:2]))
    path = tmp_path / "run.json"
    assert cli.main(["model", "run", "minilm", "--text", "Short one.", "--nm", "1:2",
                     "--seq-len", "8", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "embedding cosine vs onnxruntime float32" in out
    record = json.loads(path.read_text())
    assert record["texts"] == ["Short one."] and record["seq_len"] == 8
    assert len(record["gemms"]) == 48
    assert record["nonzero_weight_macs"] * 2 == record["weight_macs"]
    assert record["speedup"] > 1 and 0 < record["embedding_cosine"] <= 1
