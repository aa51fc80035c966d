"""The sparsehw command line: listing, generation, errors, synthesis and simulation."""

import dataclasses
import json
import subprocess
import sys

import pytest

from sparsehw import registry
from sparsehw.cli import main

BLOCKS = registry.all_blocks()


def run_cli(*args):
    """Run the CLI in a subprocess, as a user does (exit status and streams)."""
    return subprocess.run([sys.executable, "-m", "sparsehw", *args],
                          capture_output=True, text=True)


def test_list_json_has_every_block_with_ranges(capsys):
    assert main(["list", "--json"]) == 0
    listed = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert set(listed) == set(BLOCKS)
    for entry in listed.values():
        for param in entry["params"]:
            assert {"name", "default", "allowed", "type"} <= set(param)


def test_list_text(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in BLOCKS:
        assert f"{name}:" in out


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_gen_is_byte_identical(name, tmp_path):
    assert main(["gen", name, "-o", str(tmp_path / "a")]) == 0
    assert main(["gen", name, "-o", str(tmp_path / "b")]) == 0
    for suffix in (".v", ".json"):
        a = (tmp_path / "a" / f"{name}{suffix}").read_bytes()
        b = (tmp_path / "b" / f"{name}{suffix}").read_bytes()
        assert a == b
    meta = json.loads((tmp_path / "a" / f"{name}.json").read_text())
    assert meta["block"] == name
    assert meta["params"] == BLOCKS[name].defaults()
    assert {"clk", "rst"} <= {port["name"] for port in meta["ports"]}
    assert "amaranth" in meta["tools"]
    verilog = (tmp_path / "a" / f"{name}.v").read_text()
    for port in meta["ports"]:
        assert port["name"] in verilog


def test_unknown_block_is_one_line_error():
    result = run_cli("gen", "no_such_block")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown block 'no_such_block'" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_parameter_is_one_line_error():
    name = sorted(BLOCKS)[0]
    result = run_cli("gen", name, "-p", "bogus=3")
    assert result.returncode == 2
    assert "unknown parameter 'bogus'" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_assignment_is_an_error():
    name = sorted(BLOCKS)[0]
    result = run_cli("gen", name, "-p", "novalue")
    assert result.returncode == 2
    assert "NAME=VALUE" in result.stderr


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_non_integer_value_is_an_error(name):
    int_params = [p for p in BLOCKS[name].params if p.type is int]
    if not int_params:
        pytest.skip("block has no integer parameter")
    result = run_cli("gen", name, "-p", f"{int_params[0].name}=abc")
    assert result.returncode == 2
    assert int_params[0].name in result.stderr and "'abc'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_illegal_value_is_rejected_before_writing(name, tmp_path):
    # -1 is illegal for every integer generation parameter (sizes, widths, depths, counts).
    int_params = [p for p in BLOCKS[name].params if p.type is int]
    if not int_params:
        pytest.skip("block has no integer parameter")
    param = int_params[0]
    result = run_cli("gen", name, "-p", f"{param.name}=-1", "-o", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert param.name in result.stderr and "-1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir()), "nothing may be written for illegal parameters"


def test_unknown_workload_knob_is_an_error():
    with_perf = [name for name, block in BLOCKS.items() if block.perf is not None]
    if not with_perf:
        pytest.skip("no block has a perf workload yet")
    result = run_cli("perf", with_perf[0], "-w", "bogus=1")
    assert result.returncode == 2
    assert "unknown workload knob 'bogus'" in result.stderr


@pytest.mark.synth
def test_synth_cmos_and_ecp5_json(tmp_path):
    # A small SPU keeps this quick (its defaults take minutes of CMOS synthesis).
    small = ["-p", "lanes=1", "-p", "macs=1", "-p", "max_m=4", "-p", "max_k=8", "-p", "act_rows=1"]
    for target, keys in (("cmos", {"transistors"}), ("ecp5", {"luts", "ffs", "dsps"})):
        out = tmp_path / f"{target}.json"
        assert main(["synth", "spu", *small, "--target", target, "--json", str(out)]) == 0
        record = json.loads(out.read_text())
        assert record["params"]["max_k"] == 8
        assert {"block", "params", "target", "cells"} | keys <= set(record)
        assert record["target"] == target and record["cells"] > 0
        for key in keys:
            assert isinstance(record[key], int)


def test_perf_overlays_p_on_perf_defaults(monkeypatch, capsys):
    seen = []

    def fake_perf(params, workload, *, sim, seed, build_dir):
        seen.append(dict(params))
        return {"cycles": 1, "ideal_cycles": 1, "utilization": 1.0, "input_bits_per_cycle": 0}

    spu = dataclasses.replace(BLOCKS["spu"], perf=fake_perf)
    monkeypatch.setattr(registry, "all_blocks", lambda: {"spu": spu})
    assert main(["perf", "spu"]) == 0
    assert seen[-1] == {**spu.defaults(), **spu.perf_defaults}
    assert main(["perf", "spu", "-p", "lanes=4"]) == 0
    assert seen[-1] == {**spu.defaults(), **spu.perf_defaults, "lanes": 4}
    # the default workload (K=1024) needs max_k >= 1024: checked against -p before running
    calls = len(seen)
    assert main(["perf", "spu", "-p", "max_k=128"]) == 2
    assert "k must be" in capsys.readouterr().err
    assert len(seen) == calls
    assert main(["perf", "spu", "-p", "max_k=128", "-w", "k=128"]) == 0
    assert seen[-1] == {**spu.defaults(), **spu.perf_defaults, "max_k": 128}
    record = json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")
    assert record["params"]["max_k"] == 128


def test_perf_chip_rejects_weights_that_do_not_fit_wmem(monkeypatch, capsys):
    # At the chip's default parameters (wmem_depth 1024, 4 subsystems, macs 2) a dense K = 128
    # chain needs 32 rows x 64 words = 2048 words per subsystem: rejected before anything runs
    # (it used to fail inside the run with "KeyError: (1, 1)"); 1:2 needs 1024 and runs.
    seen = []

    def fake_perf(params, workload, *, sim, seed, build_dir):
        seen.append(dict(workload))
        return {"cycles": 1, "ideal_cycles": 1, "utilization": 1.0}

    chip = dataclasses.replace(BLOCKS["chip"], perf=fake_perf, perf_defaults={})
    monkeypatch.setattr(registry, "all_blocks", lambda: {"chip": chip})
    assert main(["perf", "chip", "-w", "k=128", "-w", "b=4"]) == 2
    err = capsys.readouterr().err
    assert "k must be" in err and "wmem_depth = 1024" in err and "1:1" in err
    assert "largest power of two that fits is 64" in err and "not 128" in err
    assert not seen
    assert main(["perf", "chip", "-w", "k=64", "-w", "b=4"]) == 0
    assert main(["perf", "chip", "-w", "k=128", "-w", "b=4", "-w", "n=1", "-w", "m=2"]) == 0
    assert [(w["k"], w["n"], w["m"]) for w in seen] == [(64, 1, 1), (128, 1, 2)]


@pytest.mark.parametrize("outcome,message", [
    (RuntimeError("the simulator crashed"), "sparsehw: spu: perf run failed: the simulator crashed"),
    ({"passed": False, "error": "beat 3 differs"}, "sparsehw: spu: perf run failed: beat 3 differs"),
    ({"passed": False}, "sparsehw: spu: perf run failed: outputs differ from the golden model"),
    (ValueError("o must be an integer in 1..65535, not 0"),
     "sparsehw: error: spu: o must be an integer in 1..65535, not 0"),
])
def test_every_perf_failure_is_one_line(monkeypatch, capsys, outcome, message):
    def fake_perf(params, workload, *, sim, seed, build_dir):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    spu = dataclasses.replace(BLOCKS["spu"], perf=fake_perf)
    monkeypatch.setattr(registry, "all_blocks", lambda: {"spu": spu})
    status = main(["perf", "spu", "--json", "-"])
    err = capsys.readouterr().err
    assert status == (2 if isinstance(outcome, ValueError) else 1)
    assert err == message + "\n"


@pytest.mark.parametrize("flag, expected", [([], {"spu": False, "figs": True}),
                                            (["--dsp-registers"], {"spu": True, "figs": True}),
                                            (["--no-dsp-registers"],
                                             {"spu": False, "figs": False})])
def test_place_packs_dsp_registers_by_block_choice_or_flag(flag, expected, monkeypatch,
                                                           tmp_path):
    # The placement itself is replaced: this checks which packing choice reaches it.
    from sparsehw import flow
    seen = {}

    def fake_synthesize(component, name, **kwargs):
        return {"target": "ecp5", "cells": 1, "luts": 1, "ffs": 1, "dsps": 0}

    def fake_place(component, name, **kwargs):
        seen[name] = kwargs["pack_dsp_registers"]
        return {"fmax_mhz": 1.0, "fmax_by_seed": {"1": 1.0}, "device": "85k"}

    monkeypatch.setattr(flow, "synthesize", fake_synthesize)
    monkeypatch.setattr(flow, "place_and_route", fake_place)
    for name in expected:
        assert main(["synth", name, "--target", "ecp5", "--place", "--seeds", "1", *flag,
                     "--json", str(tmp_path / f"{name}.json")]) == 0
    assert seen == expected


def test_dsp_registers_flag_needs_place():
    result = run_cli("synth", "figs", "--target", "ecp5", "--no-dsp-registers")
    assert result.returncode == 2
    assert "--dsp-registers/--no-dsp-registers needs --place" in result.stderr
    assert "Traceback" not in result.stderr
