"""sparsehw.synth: the Yosys driver (transistors, FPGA resources) and the nextpnr wrapper's
argument checks. The figures of real blocks are tested with their families (tests/test_cli.py,
tests/test_hbfp.py)."""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparsehw.synth.fmax import place_and_route
from sparsehw.synth.yosys import SynthError, synthesize


class _Register(wiring.Component):
    """An ``n``-bit register: n flip-flops and no logic."""

    def __init__(self, n):
        self._n = n
        super().__init__({"d": In(n), "q": Out(n)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.q.eq(self.d)
        return m


@pytest.mark.synth
def test_a_register_is_n_flip_flops(tmp_path):
    cmos = synthesize(_Register(8), "reg8", target="cmos", build_dir=tmp_path / "cmos")
    # dfflegalize turns the synchronous reset into a plain DFF and a gate per bit.
    assert cmos["cell_types"].get("$_DFF_P_") == 8
    assert cmos["transistors"] > 0
    ecp5 = synthesize(_Register(8), "reg8", target="ecp5", build_dir=tmp_path / "ecp5")
    assert ecp5["ffs"] == 8 and ecp5["dsps"] == 0 and ecp5["brams"] == 0


@pytest.mark.synth
def test_verilog_text_is_accepted(tmp_path):
    verilog = "module inv(input a, output y); assign y = ~a; endmodule\n"
    record = synthesize(verilog, "inv", target="cmos", build_dir=tmp_path)
    assert record["cells"] == 1 and record["transistors"] == 2     # one CMOS inverter


def test_bad_arguments_raise_before_any_tool_runs(tmp_path):
    with pytest.raises(ValueError, match="target must be one of cmos, ecp5, ice40, not 'asic'"):
        synthesize(_Register(1), "r", target="asic", build_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="device must be one of 25k, 45k, 85k, not '12k'"):
        place_and_route(_Register(1), "r", build_dir=tmp_path / "b", device="12k")
    with pytest.raises(ValueError, match="seeds must name at least one seed"):
        place_and_route(_Register(1), "r", build_dir=tmp_path / "c", seeds=())
    assert not any(tmp_path.iterdir())


@pytest.mark.synth
def test_a_yosys_failure_names_its_log(tmp_path):
    with pytest.raises(SynthError, match="yosys failed for broken .*yosys-cmos.log"):
        synthesize("module broken(input a; endmodule\n", "broken", target="cmos",
                   build_dir=tmp_path)
