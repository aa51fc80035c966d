"""Mutation flow (sparsehw.experiments.mutate) on a hand-made design whose answer is known.

``tiny`` (below) has a counter that runs 0..4, so ``flag = cnt == 7`` is never true: forcing it
to 0 is an equivalent mutant, which the regression cannot kill and the automatic equivalence
check must prove. Its testbench (tests/mutate_fixture_tb.py) checks ``y[2:0]`` but not ``y[3]``:
inverting ``y[0]`` must be killed, inverting ``y[3]`` must survive and must NOT be called
equivalent (the check finds a counterexample).

``TWO`` (below) has answers only an outputs-only check gets right: forcing the internal register
``q2`` to 0 changes ``q2`` in reachable states (whenever ``a == 3``) but never the output
``o = q1 | q2`` (``q2`` implies ``q1``): equivalent, although a check that pairs internal signals
sees ``q2`` differ (the check before version 3 said *different*). ``hit`` compares a counter
with 200: moving the comparison to 216 changes ``hit`` only 200 cycles after reset, beyond the
bounded check, and no induction of length 5 proves it, so the answer must be *unknown*, never
*equivalent*. ``r`` starts at 1 and keeps its value (no reset): forcing it to 1 is equivalent
only if the check starts from the registers' ``init`` values.
"""

import json

import pytest

from sparsehw.experiments import mutate


TINY = """\
module tiny(input clk, input rst, input [3:0] a, input i__valid, output reg [3:0] y,
            output reg o__valid);
  reg [2:0] cnt = 3'd0;
  wire flag = cnt == 3'd7;   // never true: cnt counts 0..4
  always @(posedge clk) begin
    if (rst) begin cnt <= 3'd0; o__valid <= 1'b0; y <= 4'd0; end
    else begin
      cnt <= (cnt == 3'd4) ? 3'd0 : cnt + 3'd1;
      o__valid <= i__valid;
      y <= (a ^ {flag, 3'b101}) + {1'b0, cnt == 3'd2, 2'b00};
    end
  end
endmodule
"""

EQUIVALENT = "mutate -mode const0 -module tiny -cell $eq$tiny.v:4$1 -port Y -portbit 0"
KILLABLE = "mutate -mode inv -module tiny -cell $procdff$19 -port Q -portbit 0"
SURVIVOR = "mutate -mode inv -module tiny -cell $procdff$19 -port Q -portbit 3"


@pytest.mark.sim
@pytest.mark.synth
def test_classification_on_known_mutants(tmp_path, monkeypatch):
    result = mutate.mutate_design(TINY, "tiny", "tests.mutate_fixture_tb",
                                  mutations=[EQUIVALENT, KILLABLE, SURVIVOR],
                                  cache_dir=tmp_path / "cache", work_dir=tmp_path / "work")
    assert result["sanity"] == {"roundtrip": "passed", "stuck_valid": "failed"}
    by_line = {r["line"]: r for r in result["results"]}
    assert by_line[KILLABLE]["killed"]
    assert not by_line[EQUIVALENT]["killed"]
    assert by_line[EQUIVALENT]["equivalence"]["verdict"] == "equivalent"
    assert not by_line[SURVIVOR]["killed"]
    assert by_line[SURVIVOR]["equivalence"]["verdict"] == "different"
    assert result["mutants"] == 3 and result["killed"] == 1 and result["equivalent"] == 1
    assert [s["line"] for s in result["survived"]] == [SURVIVOR]
    assert result["score"] == 0.5 and result["score_raw"] == pytest.approx(1 / 3, abs=1e-4)
    json.dumps(result)

    # A second run with another testbench fingerprint: the simulations run again, the
    # equivalence verdicts (keyed by the mutant netlist) come from the cache.
    def no_check(*args, **kwargs):
        raise AssertionError("the equivalence verdict should have come from the cache")
    monkeypatch.setattr(mutate, "check_equivalence", no_check)
    again = mutate.mutate_design(TINY, "tiny", "tests.mutate_fixture_tb",
                                 mutations=[EQUIVALENT, KILLABLE, SURVIVOR],
                                 cache_dir=tmp_path / "cache", work_dir=tmp_path / "work2",
                                 fingerprint="another testbench")
    assert [r["killed"] for r in again["results"]] == [r["killed"] for r in result["results"]]
    assert again["score"] == result["score"]
    assert (again["results"][0]["equivalence"]["verdict"],
            again["results"][2]["equivalence"]["verdict"]) == ("equivalent", "different")


TWO = """\
module two(input clk, input rst, input [1:0] a, output reg o, output reg [7:0] c,
           output reg hit, output y);
  reg q1 = 1'b0, q2 = 1'b0;
  reg r = 1'b1;
  assign y = r;
  always @(posedge clk) begin
    q1 <= a[0];
    q2 <= a[0] & a[1];
    o <= q1 | q2;
    r <= r;
    if (rst) c <= 8'd0; else c <= c + 8'd1;
    hit <= (c == 8'd200);
  end
endmodule
"""


@pytest.mark.synth
@pytest.mark.parametrize("line, verdict, dropped", [
    # internal state changed, outputs never: proven, q2 dropped from the pairing
    ("mutate -mode const0 -module two -cell $procdff$16 -port Q -portbit 0", "equivalent",
     ["q2"]),
    # forced to the init value it keeps: proven only from the init state
    ("mutate -mode const1 -module two -cell $procdff$17 -port Q -portbit 0", "equivalent",
     None),
    # o stuck at 1: an output differs one cycle after the start
    ("mutate -mode const1 -module two -cell $or$two.v:9$3 -port Y -portbit 0", "different",
     None),
    # hit at c == 216: differs only after 200 cycles; bounded "no difference" is not equivalent
    ("mutate -mode inv -module two -cell $eq$two.v:12$5 -port A -portbit 4", "unknown", None),
])
def test_equivalence_is_judged_on_outputs_and_proven(tmp_path, line, verdict, dropped):
    mutate._prepare(TWO, "two", tmp_path)
    work = tmp_path / "m"
    work.mkdir()
    mutate._make_mutant(work, "two", line)
    assert not mutate._same_netlist(work / "mutant.v", tmp_path / "original.v")
    result = mutate.check_equivalence(work, "two", line=line)
    assert result["verdict"] == verdict, result
    assert result["k"] == mutate.EQUIV_SEQ
    if dropped is not None:
        assert result["dropped"] == dropped
    assert not set(result["dropped"]) & {"o", "c", "hit", "y"}      # outputs are never dropped
    if verdict == "unknown":
        # bounded "no difference" is reported with its depth, not as equivalent
        assert result["depth"] == mutate.EQUIV_BMC
        assert f"no output difference within {mutate.EQUIV_BMC} cycles" in result["reason"]
        assert "hit not proven" in result["reason"]


@pytest.mark.synth
def test_listed_mutations_are_mutate_commands(tmp_path):
    mutate._prepare(TINY, "tiny", tmp_path)
    lines = mutate.list_mutations(tmp_path, 5, 1)
    assert len(lines) == 5 and all(line.startswith("mutate -mode ") for line in lines)
    assert lines == mutate.list_mutations(tmp_path, 5, 1)     # same seed, same list


def test_bad_arguments_raise_before_running():
    from sparsehw.registry import UserError
    with pytest.raises(UserError, match="unknown block"):
        mutate.run_mutation("no_such_block")
    with pytest.raises(UserError, match="-n must be at least 1"):
        mutate.run_mutation("fp32_mac", n=0)


def test_cli_mutate_user_errors_exit_2(capsys):
    from sparsehw import cli
    assert cli.main(["mutate", "no_such_block"]) == 2
    assert "unknown block" in capsys.readouterr().err
    assert cli.main(["mutate", "fp32_mac", "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_identical_netlist_is_equivalent_by_construction(tmp_path):
    from sparsehw.experiments.mutate import _same_netlist
    a, b, c = tmp_path / "a.v", tmp_path / "b.v", tmp_path / "c.v"
    a.write_text("module t(y);\n  assign y = 1'h1;\nendmodule\n")
    b.write_text("// other comment\n\nmodule t(y);\n  assign y = 1'h1;\nendmodule\n")
    c.write_text("module t(y);\n  assign y = 1'h0;\nendmodule\n")
    assert _same_netlist(a, b)                  # comments and blank lines aside
    assert _same_netlist(b, b)
    assert not _same_netlist(b, c)
    assert not _same_netlist(b, tmp_path / "missing.v")


def test_mutated_names_are_read_from_the_line_and_the_cell():
    netlist = ("module \\gate\n  cell $and $and$ring.v:398$4\n    parameter \\Y_WIDTH 1\n"
               "    connect \\Y \\$42 [0]\n    connect \\B \\$41\n    connect \\A \\x\n  end\n"
               "  cell $dff $procdff$7\n    connect \\Q \\r.q\n  end\nend\n")
    line = "mutate -mode const1 -module ring -cell $and$ring.v:398$4 -port B -portbit 0 -wire \\$41"
    # the line's wire (a public name that starts with '$') and the cell's output, not its inputs
    assert mutate._mutated_names(netlist, line) == {"$41", "$42"}
    assert mutate._mutated_names(netlist, "mutate -mode inv -module ring -cell $procdff$7 "
                                          "-port Q -portbit 0") == {"r.q"}


@pytest.mark.parametrize("fail_fast", [False, True])
def test_fail_fast_skips_the_tests_after_the_first_failure(tmp_path, fail_fast):
    """verif.common.test: under SPARSEHW_FAIL_FAST=1 (what `sparsehw mutate` sets) the test after
    a failing one returns at once; without it, it runs."""
    from sparsehw.verif.runner import run_cocotb
    result = run_cocotb(TINY, "tiny", "tests.fail_fast_fixture_tb", build_dir=tmp_path / "sim",
                        extra_env={"SPARSEHW_FAIL_FAST": "1" if fail_fast else "0"})
    assert not result.passed and result.failures == 1
    assert result.record.get("second_ran", False) is not fail_fast


#: ``s[3:2]`` are always 0: ``prep`` turns them into constants and leaves them ``x`` in ``s``'s
#: init. Forcing register ``r``'s bit 0 to 0 ties a bit whose init is ``0`` to the same constant,
#: and ``opt_clean`` then stops on "Conflicting init values" (act_engine's mutant 29, stop 25).
CONST_BITS = """\
module cz(input clk, input [3:0] a, output reg [3:0] s = 4'd0, output reg [3:0] r = 4'd0);
  always @(posedge clk) begin s <= {2'b00, a[1:0]}; r <= a; end
endmodule
"""


@pytest.mark.synth
def test_mutant_whose_forced_bit_keeps_a_conflicting_init_is_cleaned_and_checked(tmp_path):
    mutate._prepare(CONST_BITS, "cz", tmp_path)
    work = tmp_path / "m"
    work.mkdir()
    line = ("mutate -mode const0 -module cz -cell $procdff$5 -port Q -portbit 0 -wire r "
            "-wirebit 0")
    mutate._make_mutant(work, "cz", line)
    assert "ERROR" not in (work / "mutant.log").read_text()      # cleaned, not the fallback
    # the check runs (it stopped on the same Yosys error before) and finds r[0] stuck at 0
    result = mutate.check_equivalence(work, "cz", line=line)
    assert result["verdict"] == "different", result
    assert result["depth"] == mutate.EQUIV_BMC


def test_clear_wire_init_bit_edits_only_that_bit(tmp_path):
    il = tmp_path / "m.il"
    il.write_text("module \\m\n  attribute \\init 4'0101\n  attribute \\src \"m.v:1\"\n"
                  "  wire width 4 output 1 \\r\n  attribute \\init 1'1\n  wire \\q\nend\n")
    assert mutate._clear_wire_init_bit(il, "mutate -mode const0 -module m -cell $x -port Q "
                                           "-portbit 2 -wire r -wirebit 2")
    assert "attribute \\init 4'0x01\n" in il.read_text()          # bit 2, MSB first
    assert mutate._clear_wire_init_bit(il, "mutate -mode const0 -wire q -wirebit 0")
    assert "attribute \\init 1'x\n  wire \\q" in il.read_text()
    assert not mutate._clear_wire_init_bit(il, "mutate -mode const0 -wire q -wirebit 0")
    assert not mutate._clear_wire_init_bit(il, "mutate -mode inv -cell $x -port A -portbit 0")


def test_stop_reason_names_the_limit_or_the_yosys_error(tmp_path):
    log = tmp_path / "equiv.log"
    log.write_text("-- Running command `memory_map' --\nERROR: Conflicting init values for "
                   "signal 1'0.\n")
    assert mutate._stop_reason(None, log) == " (time limit)"
    assert mutate._stop_reason(1, log) == " (Yosys error: Conflicting init values for signal 1'0.)"
    assert mutate._stop_reason(0, log) == ""
    assert mutate._stop_reason(1, tmp_path / "missing.log") == \
        " (Yosys exit status 1 without an error message)"


@pytest.mark.synth
def test_mutant_whose_init_cannot_be_cleared_is_still_written(tmp_path):
    # Without -wire the init bit cannot be found (act_engine's mutant on a struct member, whose
    # init is on the whole struct's wire, stop 27): the mutant is written without the clean-up,
    # not left unwritten with the path returned anyway.
    mutate._prepare(CONST_BITS, "cz", tmp_path)
    work = tmp_path / "m"
    work.mkdir()
    line = "mutate -mode const0 -module cz -cell $procdff$5 -port Q -portbit 0"
    path = mutate._make_mutant(work, "cz", line)
    assert path.exists() and "module cz" in path.read_text()
    assert (work / "mutant.il").exists()


#: A 4-bit memory of which only bits 2:0 are ever read, and a register chain: ``memory_map``
#: names the words ``mem[0]`` .. ``mem[3]`` (pattern characters in a wire name).
WORD_BITS = """\
module wb(input clk, input [3:0] a, input [1:0] wa, input [1:0] ra, input we,
          output [2:0] o, output [2:0] m);
  reg [3:0] r = 4'd0;
  reg [3:0] q = 4'd0;
  reg [3:0] mem [0:3];
  always @(posedge clk) begin r <= a; q <= r; if (we) mem[wa] <= a; end
  assign o = q[2:0];
  assign m = mem[ra][2:0];
endmodule
"""


@pytest.mark.synth
@pytest.mark.parametrize("mode", ["inv", "const0", "cnot1 -ctrlbit 1"])
def test_a_bit_no_output_reads_is_unpaired_alone_and_proven(tmp_path, mode):
    """The stored bit 3 of ``mem`` is never read: equivalent, with only that bit of each word
    unpaired (the word's other bits, read by output ``m``, stay paired); the input ``a`` named by
    the line is never unpaired (both halves share it)."""
    mutate._prepare(WORD_BITS, "wb", tmp_path)
    line = next(text for text in mutate.list_mutations(tmp_path, 30, 1)
                if text.startswith("mutate -mode inv ") and "-port B -portbit 3 -wire a" in text)
    line = line.replace("-mode inv ", f"-mode {mode.split()[0]} ").replace(
        "-portbit 3 ", "-portbit 3 " + " ".join(mode.split()[1:]) + " ")
    work = tmp_path / "m"
    work.mkdir()
    mutate._make_mutant(work, "wb", line)
    result = mutate.check_equivalence(work, "wb", line=line)
    assert result["verdict"] == "equivalent", result
    assert result["dropped"] == [f"mem[{w}][3]" for w in range(4)]


@pytest.mark.synth
@pytest.mark.parametrize("bit, verdict", [(3, "equivalent"), (2, "unknown")])
def test_dead_site_check_proves_a_bit_without_path_to_an_output(tmp_path, bit, verdict):
    """Bit 3 of the memory's write data is stored and never read (``m`` takes bits 2:0; prep
    trims the registers' unread bit 3, but not the memory's): dead, whatever the mutation. Bit
    2 of the same signal reaches ``m``: the check does not say equivalent."""
    mutate._prepare(WORD_BITS, "wb", tmp_path)
    line = next(text for text in mutate.list_mutations(tmp_path, 60, 1)
                if "-port B -portbit 3 -wire a -wirebit 3 " in text)
    line = line.replace("-portbit 3 -wire a -wirebit 3 ",
                        f"-portbit {bit} -wire a -wirebit {bit} ")
    work = tmp_path / "m"
    work.mkdir()
    result = mutate.check_dead_site(work, "wb", line)
    assert result["verdict"] == verdict, (line, result)
    assert result["method"] == mutate.DEAD_METHOD


@pytest.mark.synth
def test_dead_site_check_needs_a_cut(tmp_path):
    """A line whose cell does not exist cuts nothing, so nothing is proven (the count of free
    inputs at the end would be 0 all the same)."""
    mutate._prepare(WORD_BITS, "wb", tmp_path)
    work = tmp_path / "m"
    work.mkdir()
    result = mutate.check_dead_site(work, "wb", "mutate -mode inv -module wb -cell $nothing "
                                                "-port Y -portbit 0")
    assert result["verdict"] == "unknown" and "not found" in result["reason"], result


@pytest.mark.synth
def test_dead_site_check_does_not_prove_a_bit_that_reaches_an_output(tmp_path):
    """``flag`` of DEEP is never 1, but it feeds ``y``: a path is there, so the structural
    check leaves it to the proofs."""
    work, line = _deep_mutant(tmp_path)
    assert mutate.check_dead_site(work, "deep", line)["verdict"] == "unknown"


def test_select_patterns_match_one_wire_name():
    assert mutate._pattern("sub1.$419") == "\\sub1.$419"
    assert mutate._pattern("ccw.storage[3]") == "\\ccw.storage[[]3[\\]]"
    assert mutate._pattern("a*b?") == "\\a[*]b[?]"
    assert mutate._split_script({"x[2]", "y", "m[0][3]"}) == (
        "splitnets gold/w:\\m[[]0[\\]] gate/w:\\m[[]0[\\]]; splitnets gold/w:\\x gate/w:\\x; ")
    assert mutate._bit_names("mutate -mode inv -cell $x -port Q -portbit 2 -wire r -wirebit 2 "
                             "-src a.v:1") == {"r", "r[2]"}
    assert mutate._bit_names("mutate -mode inv -cell $x -port Y -portbit 0") == set()
    status = ("  Unproven $equiv $auto$equiv_make.cc:295:w$38: \\sub1.$419_gold [127] "
              "\\sub1.$419_gate [127]\n  Unproven $equiv $a$1: \\x_gold_y_gold \\x_gold_y_gate\n"
              "  Unproven $equiv $a$2: \\m[0][3]_gold \\m[0][3]_gate\n")
    assert mutate._UNPROVEN_BIT.findall(status) == [
        ("$auto$equiv_make.cc:295:w$38", "sub1.$419", "127"), ("$a$1", "x_gold_y", ""),
        ("$a$2", "m[0][3]", "")]


#: ``c`` counts 0..99 and wraps, so ``flag = c == 120`` is never true: forcing ``flag`` to 0
#: is equivalent, but only in the states the counter reaches; from ``c = 115`` (unreachable)
#: the next five cycles agree and the sixth does not, so k-induction (k = 5) cannot prove it,
#: and the bounded check sees no difference. The PDR stage finds the invariant ``c < 100``.
DEEP = """\
module deep(input clk, input rst, input [3:0] a, output reg [3:0] y);
  reg [6:0] c = 7'd0;
  wire flag = c == 7'd120;
  always @(posedge clk) begin
    if (rst) c <= 7'd0; else c <= (c == 7'd99) ? 7'd0 : c + 7'd1;
    y <= a ^ {3'b000, flag};
  end
endmodule
"""


def _deep_mutant(tmp_path):
    mutate._prepare(DEEP, "deep", tmp_path)
    line = next(text for text in mutate.list_mutations(tmp_path, 60, 1)
                if text.startswith("mutate -mode const0 ") and "-cell $eq$" in text
                and "-port Y " in text)
    work = tmp_path / "m"
    work.mkdir()
    mutate._make_mutant(work, "deep", line)
    return work, line


def _require_abc():
    assert mutate.abc_available(), f"{mutate.ABC} is not installed: run 'make tools'"


@pytest.mark.synth
def test_pdr_stage_proves_what_holds_only_in_reachable_states(tmp_path):
    _require_abc()
    work, line = _deep_mutant(tmp_path)
    first = mutate.check_equivalence(work, "deep", line=line)
    assert first["verdict"] == "unknown", first
    second = mutate.check_equivalence_pdr(work, "deep")
    assert second["verdict"] == "equivalent", second
    assert second["method"] == mutate.PDR_METHOD


@pytest.mark.synth
def test_pdr_stage_does_not_prove_a_difference_after_200_cycles(tmp_path):
    """``hit`` at ``c == 216`` instead of 200 (``TWO``): a real difference, 200 cycles after
    the start; the PDR stage refutes the output pair (and never says equivalent)."""
    _require_abc()
    mutate._prepare(TWO, "two", tmp_path)
    work = tmp_path / "m"
    work.mkdir()
    mutate._make_mutant(work, "two", "mutate -mode inv -module two -cell $eq$two.v:12$5 "
                                     "-port A -portbit 4")
    result = mutate.check_equivalence_pdr(work, "two")
    assert result["verdict"] == "unknown", result
    assert "an output pair is refuted in the model: hit" in result["reason"]


#: DEEP's counter inside an instance ``u`` of ``outer``; ``hold`` (an input of ``inner``) is
#: tied to 0 by ``outer``, so ``y`` follows ``a`` in the whole design, while ``inner`` alone
#: can hold ``y``.
NESTED = """\
module inner(input clk, input rst, input hold, input [3:0] a, output reg [3:0] y);
  reg [6:0] c = 7'd0;
  wire flag = c == 7'd120;
  always @(posedge clk) begin
    if (rst) c <= 7'd0; else c <= (c == 7'd99) ? 7'd0 : c + 7'd1;
    if (!hold) y <= a ^ {3'b000, flag};
  end
endmodule
module outer(input clk, input rst, input [3:0] a, output [3:0] y);
  inner u(.clk(clk), .rst(rst), .hold(1'b0), .a(a), .y(y));
endmodule
"""


def _nested_line(tmp_path, pick):
    mutate._prepare(NESTED, "outer", tmp_path)
    line = next(text for text in mutate.list_mutations(tmp_path, 200, 1) if pick(text))
    work = tmp_path / "m"
    work.mkdir()
    return work, line


def test_instance_path_and_the_line_inside_the_instance():
    assert mutate.instance_path("$flatten\\sub0.\\spu.\\out_fifo.$ternary$chip.v:3$9") == (
        ["sub0", "spu", "out_fifo"], "$ternary$chip.v:3$9")
    assert mutate.instance_path("ring.router2.q.storage") == (["ring", "router2", "q"], "storage")
    line = ("mutate -mode cnot0 -module chip -cell $flatten\\sub0.\\spu.$procmux$5 -port A "
            "-portbit 3 -ctrlbit 1 -wire sub0.spu.$2 -wirebit 3 -src chip.v:1.2-1.3")
    assert mutate._level_line(line, 2) == (
        "mutate -mode cnot0 -module lvl -cell $procmux$5 -port A -portbit 3 -ctrlbit 1")
    assert mutate._level_line(line, 1) == (
        "mutate -mode cnot0 -module lvl -cell $flatten\\spu.$procmux$5 -port A -portbit 3 "
        "-ctrlbit 1")


@pytest.mark.synth
def test_modular_stage_proves_the_mutant_on_its_instance(tmp_path):
    """``flag`` forced 0 inside ``u``: proven on ``inner`` alone (``u``'s ports), which holds
    in ``outer``."""
    _require_abc()
    work, line = _nested_line(tmp_path, lambda text: text.startswith("mutate -mode const0 ")
                              and "-cell $flatten\\u.$eq$" in text and "-port Y " in text)
    result = mutate.check_equivalence_modular(work, "outer", line)
    assert result["verdict"] == "equivalent", result
    assert [level["instance"] for level in result["levels"]] == ["u"]


@pytest.mark.synth
def test_modular_stage_does_not_prove_what_only_the_context_hides(tmp_path):
    """A bit of ``y``'s hold path (the register's own value, chosen while ``hold``) forced 0
    inside ``u``: ``outer`` ties ``hold`` to 0, so the whole design never selects it, but the
    stage judges ``inner`` at its own ports, where ``hold`` is free: never equivalent."""
    _require_abc()
    work, line = _nested_line(tmp_path, lambda text: text.startswith("mutate -mode const0 ")
                              and "$procmux$" in text and "-port B " in text
                              and "-wire y " in text)
    result = mutate.check_equivalence_modular(work, "outer", line)
    assert result["verdict"] == "unknown", result
    assert "u: an output pair is refuted" in result["reason"], result


def test_pdr_model_reads_the_gold_value_after_each_pair_and_checks_the_pairs():
    paired = ("module \\equiv\n  wire input 2 \\a\n  wire output 5 \\o\n  wire \\x_gold\n"
              "  wire \\x_gate\n  wire \\x\n  wire \\s\n"
              "  cell $equiv $e1\n    connect \\A \\x_gold\n    connect \\B \\x_gate\n"
              "    connect \\Y \\x\n  end\n"
              "  cell $equiv $e2\n    connect \\A \\s\n    connect \\B \\s\n    connect \\Y \\o\n"
              "  end\nend\n")
    model, points = mutate.pdr_model(paired)
    assert points == [{"name": "x", "output": False}]
    assert "$equiv" not in model
    assert "  connect \\x \\x_gold\n" in model and "  connect \\o \\s\n" in model
    assert "  wire input 1 \\a\n" in model and "  wire output 2 \\bad_0\n" in model
    assert "    connect \\A \\x_gold\n    connect \\B \\x_gate\n    connect \\Y \\bad_0\n" in model
    assert "output 5" not in model


def test_pdr_model_names_a_pair_by_the_signal_paired_not_by_its_nets():
    """``opt_merge`` leaves a net one of its names: an output port driven straight by a
    FIFO's register has ``A``/``B`` named after the register. The pair is the port (``Y``):
    an output, which the stage never unpairs."""
    paired = ("module \\equiv\n  wire output 1 \\o\n  wire \\f.r_gold\n  wire \\f.r_gate\n"
              "  cell $equiv $e1\n    connect \\A \\f.r_gold\n    connect \\B \\f.r_gate\n"
              "    connect \\Y \\o\n  end\nend\n")
    _, points = mutate.pdr_model(paired)
    assert points == [{"name": "o", "output": True}]


#: One register per output: ``held`` keeps its init 0 forever (``ok``), ``follows`` copies
#: ``a`` (``fails`` is 1 a cycle after ``a`` is).
PDR_OUTPUTS = """\
module t(input clk, input a, output ok, output fails);
  reg held = 1'b0;
  reg follows = 1'b0;
  always @(posedge clk) begin held <= held; follows <= a; end
  assign ok = held;
  assign fails = follows;
endmodule
"""


@pytest.mark.synth
@pytest.mark.parametrize("keep, outputs, failed, proven", [
    (("ok",), 1, set(), True),
    (("fails",), 1, {0}, False),
    (("ok", "fails"), 2, {1}, False),
])
def test_pdr_each_result_reads_abc(tmp_path, keep, outputs, failed, proven):
    """The verdict of ABC's ``pdr -a`` as it prints it, one property included (its summary
    line, not plain ``pdr``'s ``Property proved``)."""
    _require_abc()
    (tmp_path / "t.v").write_text(PDR_OUTPUTS)
    drop = "".join(f"delete -port t/{name}; " for name in ("ok", "fails") if name not in keep)
    status, _ = mutate._yosys(f"read_verilog t.v; proc; {drop}opt_clean; techmap; opt_clean; "
                              "dffunmap; aigmap; write_aiger -zinit t.aig", tmp_path, "t.log")
    assert status == 0
    log = mutate._abc("read_aiger t.aig; strash; pdr -a -T 20; print_status", tmp_path,
                      "abc.log", 30)
    assert mutate.pdr_each_result(log, outputs) == (failed, proven)
