"""Every registered block's Verilog at default parameters lints with exactly its waived warnings
(per block, per rule, counted: verif/lint.py), and is deterministic."""

from collections import Counter

import pytest

from sparsehw import registry
from sparsehw.hw.export import to_verilog
from sparsehw.verif.lint import (AXIS_SUFFIX, AXIS_UNUSED, EXTRA_DESIGNS, RULE_REASONS, WAIVERS,
                                 LintError, Waiver, check_counts, lint_verilog, waiver_config)

BLOCKS = registry.all_blocks()


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_verilator_lint_matches_waivers(name, tmp_path):
    block = BLOCKS[name]
    verilog = to_verilog(block.build(**block.defaults()), name)
    lint_verilog(verilog, name, tmp_path)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_verilog_is_deterministic(name):
    block = BLOCKS[name]
    first = to_verilog(block.build(**block.defaults()), name)
    second = to_verilog(block.build(**block.defaults()), name)
    assert first == second
    assert "/work/" not in first and "/tmp/" not in first, "absolute path in Verilog"


def test_every_waiver_is_for_a_design_and_has_a_count_and_reason():
    for block, waivers in WAIVERS.items():
        base = block[:-len(AXIS_SUFFIX)] if block.endswith(AXIS_SUFFIX) else block
        assert base in BLOCKS or block in EXTRA_DESIGNS, \
            f"waivers for {block!r}, which is neither a registered block (or its AXIS top) " \
            f"nor a known harness"
        rules = [w.rule for w in waivers]
        assert len(rules) == len(set(rules)), f"{block}: a rule waived twice"
        for waiver in waivers:
            assert waiver.rule.isupper() and waiver.count > 0 and len(waiver.reason) > 40


def test_no_waiver_for_every_file():
    # The old scheme switched six rules off for every file: no rule is waived for all designs
    # unless each of them measurably needs it (the per-block counts above prove that).
    assert "DECLFILENAME" not in {w.rule for w in WAIVERS["fp32_mac"]}
    assert set(RULE_REASONS) >= {w.rule for ws in WAIVERS.values() for w in ws}


def test_check_counts_flags_every_kind_of_mismatch():
    waivers = (Waiver("UNUSEDSIGNAL", 3, "x" * 50), Waiver("PROCASSINIT", 2, "x" * 50))
    assert check_counts("b", Counter(UNUSEDSIGNAL=3, PROCASSINIT=2), waivers) == []
    up = check_counts("b", Counter(UNUSEDSIGNAL=4, PROCASSINIT=2), waivers)
    assert len(up) == 1 and "went up" in up[0]
    loose = check_counts("b", Counter(UNUSEDSIGNAL=1, PROCASSINIT=2), waivers)
    assert len(loose) == 1 and "set it to 1" in loose[0]
    unneeded = check_counts("b", Counter(UNUSEDSIGNAL=3), waivers)
    assert len(unneeded) == 1 and "no longer needed" in unneeded[0]
    new = check_counts("b", Counter(UNUSEDSIGNAL=3, PROCASSINIT=2, WIDTHEXPAND=1), waivers)
    assert len(new) == 1 and "no waiver for WIDTHEXPAND" in new[0]


def test_lint_fails_on_a_new_warning_and_an_unneeded_waiver(tmp_path):
    verilog = to_verilog(BLOCKS["fp32_mac"].build(**BLOCKS["fp32_mac"].defaults()), "fp32_mac")
    fewer = tuple(w if w.rule != "WIDTHTRUNC" else Waiver(w.rule, w.count - 1, w.reason)
                  for w in WAIVERS["fp32_mac"])
    with pytest.raises(LintError, match="WIDTHTRUNC count went up"):
        lint_verilog(verilog, "fp32_mac", tmp_path / "up", waivers=fewer)
    extra = WAIVERS["fp32_mac"] + (Waiver("CASEINCOMPLETE", 1, RULE_REASONS["CASEINCOMPLETE"]),)
    with pytest.raises(LintError, match="CASEINCOMPLETE waiver of 1 is no longer needed"):
        lint_verilog(verilog, "fp32_mac", tmp_path / "unneeded", waivers=extra)


def test_unknown_block_is_told_to_add_waivers(tmp_path):
    verilog = "module newblock(input wire a, output wire y);\n  assign y = a;\nendmodule\n"
    with pytest.raises(LintError, match="'newblock' has no lint waivers.*verif/lint.py"):
        lint_verilog(verilog, "newblock", tmp_path)


def test_lint_catches_a_real_problem(tmp_path):
    # An undriven output is a warning no block is waived for.
    bad = ("module bad(input wire a, output wire y, output wire z);\n"
           "  assign y = a;\nendmodule\n")
    with pytest.raises(LintError, match="no waiver for UNDRIVEN"):
        lint_verilog(bad, "bad", tmp_path, waivers=())
    with pytest.raises(LintError, match="error"):
        lint_verilog("module broken(input wire a);\n  assign b = ;\nendmodule\n", "broken",
                     tmp_path / "syntax", waivers=())


def test_waiver_config_lists_only_the_blocks_rules():
    text = waiver_config("nm_broadcast")
    assert text.startswith("`verilator_config")
    assert sorted(line.split()[2] for line in text.splitlines() if line.startswith("lint_off")) \
        == ["PROCASSINIT", "UNUSEDSIGNAL"]


# -- the Verilator simulation build: the block's waivers, warnings fatal --------------------------

def test_simulation_build_uses_the_blocks_own_waivers(tmp_path):
    from sparsehw.verif.runner import _simulation_waiver_file
    path = _simulation_waiver_file(tmp_path, "ring")
    rules = sorted(line.split()[2] for line in path.read_text().splitlines()
                   if line.startswith("lint_off"))
    assert rules == sorted(w.rule for w in WAIVERS["ring"])
    # A harness builds with the waivers of the block it wraps; a design with no entry gets none.
    harness = _simulation_waiver_file(tmp_path, "ring_harness")
    assert sorted(line.split()[2] for line in harness.read_text().splitlines()
                  if line.startswith("lint_off")) == rules
    assert _simulation_waiver_file(tmp_path, "stream_fifo") is None
    assert not (tmp_path / "stream_fifo.vlt").exists()


def test_runner_passes_no_global_warning_switch():
    # The old runner added -Wno-fatal -Wno-WIDTH to every Verilator build.
    from pathlib import Path
    import sparsehw.verif.runner as runner
    source = Path(runner.__file__).read_text()
    assert "-Wno-" not in source and "build_args" not in source


def test_verilator_build_fails_on_an_unwaived_warning(tmp_path):
    # Warnings are fatal in simulation builds: a design with a WIDTHEXPAND warning and no waiver
    # entry stops at Verilator (before any C++ is compiled), and the runner reports it.
    from sparsehw.verif.runner import run_cocotb
    verilog = ("module widthy(input wire clk, input wire rst, input wire [3:0] a,\n"
               "              output wire [7:0] y);\n  assign y = a + 1'b1;\nendmodule\n")
    result = run_cocotb(verilog, "widthy", "sparsehw.verif.selftest.tb_fifo",
                        build_dir=tmp_path, sim="verilator")
    assert not result.passed and result.errors
    assert "%Warning-WIDTHEXPAND" in (tmp_path / "build.log").read_text()


def _integration_lint_rows():
    """The rows of docs/integration.md's waiver table: design -> the row's cells."""
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "docs" / "integration.md").read_text()
    header = next(line for line in text.splitlines()
                  if line.startswith("| design | DECLFILENAME |"))
    rules = [cell.strip() for cell in header.strip("|").split("|")][1:-1]
    rows = {}
    for line in text.splitlines()[text.splitlines().index(header) + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rules, rows


def test_integration_doc_lint_table_is_the_waivers():
    """docs/integration.md shows every WAIVERS entry with its counts (the table went stale once:
    verif/lint.py is the home of the counts, the document must follow it)."""
    rules, rows = _integration_lint_rows()
    assert set(rows) == set(WAIVERS)
    for design, waivers in WAIVERS.items():
        counts = {w.rule: w.count for w in waivers}
        assert set(counts) <= set(rules), design
        expected = [str(counts[rule]) if rule in counts else "-" for rule in rules]
        axis = f"+{AXIS_UNUSED[design]}" if design in AXIS_UNUSED else "-"
        assert rows[design] == expected + [axis], design
