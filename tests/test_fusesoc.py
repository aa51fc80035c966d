"""FuseSoC cores of generated blocks (synth/fusesoc.py): FuseSoC accepts them and their Verilator
lint target passes with the block's waivers, and fails without them (so it really lints)."""

import json
from importlib.metadata import version

import pytest

from sparsehw import registry
from sparsehw.cli import main
from sparsehw.hw.axis import AxisTop
from sparsehw.hw.export import to_verilog
from sparsehw.synth.fusesoc import (CoreTop, FuseSocError, core_name, core_text, fusesoc_lint,
                                    write_core)
from sparsehw.verif.lint import waiver_config
from sparsehw.verif.runner import verilator_env


def test_core_name_and_text():
    assert core_name("spu", "0.1.0") == "sparsehw:blocks:spu:0.1.0"
    text = core_text("spu", "0.1.0", [CoreTop("spu_axis", "spu_axis.v", "spu_axis.vlt"),
                                      CoreTop("spu", "spu.v")])
    assert text.startswith("CAPI=2:\n")
    assert "name: sparsehw:blocks:spu:0.1.0\n" in text
    assert "  default:\n    filesets:\n      - rtl_spu_axis\n      - rtl_spu\n" \
           "    toplevel: spu_axis\n" in text
    assert "  lint:\n" in text and "  lint_spu:\n" in text and "waivers_spu:" not in text


@pytest.mark.parametrize("block, version, match", [
    ("spu-x", "0.1.0", "Verilog identifier"), ("spu", "v1", "version"), ("spu", 1, "version")])
def test_illegal_names_raise(block, version, match):
    with pytest.raises(ValueError, match=match):
        core_name(block, version)


def _spu_files(out_dir, waivers=True):
    """The SPU and its AXIS top written by hand (not through ``sparsehw gen``)."""
    block = registry.get_block("spu")
    tops = []
    for module, component in (("spu_axis", AxisTop(block.build(**block.defaults()), "spu_axis")),
                              ("spu", block.build(**block.defaults()))):
        (out_dir / f"{module}.v").write_text(to_verilog(component, module))
        if waivers:
            (out_dir / f"{module}.vlt").write_text(waiver_config(module))
        tops.append(CoreTop(module, f"{module}.v", f"{module}.vlt" if waivers else None))
    return write_core(out_dir, "spu", "0.1.0", tops)


def test_gen_axis_writes_the_core_files(tmp_path):
    assert main(["gen", "spu", "--axis", "-o", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "spu.json").read_text())
    assert sorted(meta["files"]) == sorted(p.name for p in tmp_path.iterdir())
    assert meta["core"] == "sparsehw:blocks:spu:" + version("sparsehw")
    assert meta["axis"]["module"] == "spu_axis"
    assert [i["name"] for i in meta["axis"]["interfaces"]] == \
        ["s_axis_cfg", "s_axis_act", "s_axis_w", "s_axis_post", "m_axis_o"]
    assert "module spu_axis(" in (tmp_path / "spu_axis.v").read_text()
    assert (tmp_path / "spu.vlt").read_text() == waiver_config("spu")


def test_fusesoc_accepts_and_lints_the_generated_spu_core(tmp_path):
    cores = tmp_path / "cores"
    assert main(["gen", "spu", "--axis", "-o", str(cores)]) == 0
    for target, top in (("lint", "spu_axis"), ("lint_spu", "spu")):
        work = tmp_path / target
        output = fusesoc_lint(cores, "sparsehw:blocks:spu:" + version("sparsehw"), work,
                              target=target, env=verilator_env())
        assert "verilator -f" in output
        (vc,) = (work / "build").glob(f"*/{target}/*.vc")
        options = vc.read_text().split()
        assert "--lint-only" in options and "-Wall" in options
        assert options[options.index("--top-module") + 1] == top
        assert any(o.endswith(f"{top}.vlt") for o in options)


def test_fusesoc_lint_fails_without_the_waivers(tmp_path):
    cores = tmp_path / "cores"
    cores.mkdir()
    _spu_files(cores, waivers=False)
    with pytest.raises(FuseSocError, match="%Warning-UNUSEDSIGNAL"):
        fusesoc_lint(cores, "sparsehw:blocks:spu", tmp_path / "work", target="lint_spu",
                     env=verilator_env())
