"""sparsehw.synth: the Yosys driver (transistors, FPGA resources) and the nextpnr wrapper's
argument checks. The figures of real blocks are tested with their families (tests/test_cli.py,
tests/test_hbfp.py)."""

import json
from pathlib import Path

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparsehw.synth.dsp_registers import pack_dsp_registers
from sparsehw.synth.fmax import (ROUTER, PnrTimeout, _progress, critical_path, place_and_route,
                                 stage_times)
from sparsehw.synth.yosys import SPLITS, Split, SynthError, synthesize


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


class _MemoryAndRegister(wiring.Component):
    """A 16 x 8 memory (one write, one synchronous read port) in the top module, and a 4-bit
    register in the submodule ``inner``."""

    def __init__(self):
        super().__init__({"we": In(1), "addr": In(4), "wdata": In(8), "rdata": Out(8),
                          "d": In(4), "q": Out(4)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=8, depth=16, init=[])
        m.submodules.inner = inner = _Register(4)
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.addr.eq(self.addr), wr.data.eq(self.wdata), wr.en.eq(self.we),
                     rd.addr.eq(self.addr), self.rdata.eq(rd.data),
                     inner.d.eq(self.d), self.q.eq(inner.q)]
        return m


_SPLIT = Split(groups=(("inner", ("top.inner",)), ("rest", ("top",))), macros=("top",))


@pytest.mark.synth
def test_split_keeps_the_macro_memory_out_of_the_cmos_gates(tmp_path):
    split = synthesize(_MemoryAndRegister(), "top", target="cmos", build_dir=tmp_path / "s",
                       split=_SPLIT)
    flat = synthesize(_MemoryAndRegister(), "top", target="cmos", build_dir=tmp_path / "f",
                      split=False)
    assert split["hierarchy"] == "kept" and "hierarchy" not in flat
    assert split["memories"] == [{"module": "top", "name": "mem", "width": 8, "depth": 16,
                                  "bits": 128, "read_ports": 1, "write_ports": 1}]
    assert split["memory_bits"] == 128 and split["split"]["memories"]["bits"] == 128
    assert split["cell_types"].get("$mem_v2") == 1          # one macro, not 128 flip-flops
    # The flat run maps the memory to flip-flops: 128 storage bits + 8 read register + 4.
    assert flat["cell_types"]["$_DFF_P_"] >= 128 + 4
    assert split["transistors"] < flat["transistors"]
    parts = split["split"]
    assert parts["inner"]["transistors"] > 0 and parts["rest"]["transistors"] > 0
    assert split["transistors"] == parts["inner"]["transistors"] + parts["rest"]["transistors"]


@pytest.mark.synth
def test_split_on_ecp5_counts_memory_primitives_in_memories(tmp_path):
    record = synthesize(_MemoryAndRegister(), "top", target="ecp5", build_dir=tmp_path,
                        split=_SPLIT)
    parts = record["split"]
    assert parts["inner"]["ffs"] == 4 and parts["inner"]["brams"] == 0
    assert parts["memories"]["brams"] + parts["memories"]["lutrams"] >= 1
    assert parts["rest"]["brams"] + parts["rest"]["lutrams"] == 0
    assert record["ffs"] == parts["inner"]["ffs"] + parts["rest"]["ffs"]


def test_chip_modules_fall_into_the_documented_parts():
    chip = SPLITS["chip"]
    assert [chip.part(m) for m in ("chip", "chip.ring", "chip.ring.router3.local", "chip.sub0",
                                   "chip.sub12.w_fifo", "chip.sub3.spu",
                                   "chip.sub3.spu.out_fifo")] == [
        "host", "ring", "ring", "sequencer", "sequencer", "spu", "spu"]
    assert chip.is_macro_module("chip.sub7") and chip.is_macro_module("chip.sub15")
    assert not chip.is_macro_module("chip.sub7.spu") and not chip.is_macro_module("chip")


def test_critical_path_sums_the_worst_path():
    def step(kind, delay, a, b, net=None):
        return {"type": kind, "delay": delay, "from": {"cell": a}, "to": {"cell": b},
                **({"net": net} if net else {})}
    short = {"path": [step("clk-to-q", 0.5, "x", "x"), step("routing", 0.5, "x", "y", "n0")]}
    worst = {"path": [step("clk-to-q", 0.5, "a", "a"), step("routing", 1.0, "a", "l", "n1"),
                      step("logic", 0.25, "l", "l"), step("routing", 2.0, "l", "b", "n2"),
                      step("setup", 0.125, "b", "b")]}
    summary = critical_path({"critical_paths": [short, worst]})
    assert summary == {"from_cell": "a", "to_cell": "b", "delay_ns": 3.875, "logic_ns": 0.875,
                       "routing_ns": 3.0, "logic_levels": 1, "nets": ["n1", "n2"]}
    assert critical_path({"critical_paths": []}) is None


def test_stage_times_reads_nextpnrs_own_step_times():
    log = ("Info: HeAP Placer Time: 599.91s\nInfo:   of which solving equations: 1s\n"
           "Info: SA placement time 12.50s\nInfo: Router2 time 80.25s\n")
    assert stage_times(log) == {"place_heap_s": 599.9, "place_sa_s": 12.5, "route_s": 80.2}
    assert stage_times("Info: Router1 time 3.0s\n") == {"route_s": 3.0}
    assert stage_times("nothing timed\n") == {}


def test_a_stopped_run_says_how_far_the_router_got():
    router1 = ("Info: Routing 158000 arcs.\n"
               "Info:            |   (re-)routed arcs  |   delta    | remaining|       time spent     |\n"
               "Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| batch(sec) total(sec)|\n"
               "Info:       1000 |        3         997 |    3   997 |    157003|       1.53       1.53|\n"
               "Info:      21000 |      120       20880 |  117 19883 |    145210|       9.10     912.00|\n")
    assert _progress(router1) == "router1: 145,210 arcs left after 21,000 iterations"
    assert _progress("Info: Running router2...\nInfo:      12    4521   overused\n\n") == (
        "last log line: Info: 12 4521 overused")
    assert _progress("") is None


@pytest.mark.synth
def test_place_and_route_reuses_the_netlist_and_stops_at_the_budget(tmp_path):
    # A 16-bit counter placed and routed for real (one seed): Fmax and run times are recorded,
    # a netlist from `synthesize(..., netlist=True)` is placed without a second Yosys run, and a
    # budget too small for nextpnr to load the device stops the run instead of giving a figure.
    class _Counter(wiring.Component):
        q: Out(16)

        def elaborate(self, platform):
            m = Module()
            m.d.sync += self.q.eq(self.q + 1)
            return m

    synth = synthesize(_Counter(), "ctr", target="ecp5", build_dir=tmp_path / "s",
                       split=False, netlist=True)
    assert synth["ffs"] == 16 and synth["netlist"].endswith("ctr.json")
    result = place_and_route(_Counter(), "ctr", build_dir=tmp_path / "p", seeds=(1,),
                             netlist=synth["netlist"])
    assert result["router"] == ROUTER and result["yosys_s"] == 0.0
    assert not (tmp_path / "p" / "yosys-ecp5-pnr.log").exists()
    assert 50 < result["fmax_mhz"] < 1000
    timed = result["seconds_by_seed"]["1"]
    assert timed["wall_s"] > 0 and "route_s" in timed
    with pytest.raises(PnrTimeout, match="did not finish ctr .seed 1. in 0.5 s") as stopped:
        place_and_route(_Counter(), "ctr", build_dir=tmp_path / "t", seeds=(1,),
                        netlist=synth["netlist"], budget_s=0.5)
    assert stopped.value.seconds < 30


def test_netlist_needs_target_ecp5(tmp_path):
    with pytest.raises(ValueError, match="netlist needs target ecp5, not 'cmos'"):
        synthesize(_Register(1), "r", target="cmos", build_dir=tmp_path, netlist=True)
    assert not any(tmp_path.iterdir())


def _cells_by_family(module):
    types = [cell["type"] for cell in module["cells"].values()]
    return {"luts": types.count("LUT4"), "ffs": types.count("TRELLIS_FF"),
            "brams": types.count("DP16KD"), "lutrams": types.count("TRELLIS_DPR16X4"),
            "dsps": types.count("MULT18X18D")}


def _design_modules(path):
    """The netlist's modules other than the cell library's black boxes."""
    modules = json.loads(Path(path).read_text())["modules"]
    return {name: body for name, body in modules.items()
            if not int(str(body.get("attributes", {}).get("blackbox", "0")), 2)}


@pytest.mark.synth
def test_a_split_run_writes_the_netlist_it_counted_flattened(tmp_path):
    # The placed run reuses the split run's synthesis: one module (the submodule's register is
    # in it), with exactly the cells the record counts.
    record = synthesize(_MemoryAndRegister(), "top", target="ecp5", build_dir=tmp_path,
                        split=_SPLIT, netlist=True)
    assert record["hierarchy"] == "kept" and record["split"]["inner"]["ffs"] == 4
    assert record["netlist"] == str(tmp_path / "top.json")
    modules = _design_modules(record["netlist"])
    assert list(modules) == ["top"]
    assert _cells_by_family(modules["top"]) == {key: record[key] for key in (
        "luts", "ffs", "brams", "lutrams", "dsps")}


class _RegisteredProduct(wiring.Component):
    """``p = a_q * b_q`` registered, with the multiplier in the submodule ``inner`` and its
    operand and product registers in the top module: packing them into the DSP needs the
    flattened netlist."""

    def __init__(self):
        super().__init__({"a": In(8), "b": In(8), "p": Out(16)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = _Product()
        a_q, b_q = Signal(8), Signal(8)
        m.d.sync += [a_q.eq(self.a), b_q.eq(self.b), self.p.eq(inner.p)]
        m.d.comb += [inner.a.eq(a_q), inner.b.eq(b_q)]
        return m


class _Product(wiring.Component):
    a: In(8)
    b: In(8)
    p: Out(16)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(self.a * self.b)
        return m


@pytest.mark.synth
def test_dsp_registers_pack_across_the_kept_hierarchy_as_in_a_flat_run(tmp_path):
    split = Split(groups=(("inner", ("top.inner",)), ("rest", ("top",))))
    kept = synthesize(_RegisteredProduct(), "top", target="ecp5", build_dir=tmp_path / "k",
                      split=split, netlist=True)
    flat = synthesize(_RegisteredProduct(), "top", target="ecp5", build_dir=tmp_path / "f",
                      split=False, netlist=True)
    assert kept["split"]["inner"]["dsps"] == 1 and kept["split"]["rest"]["ffs"] == 32
    packed = pack_dsp_registers(kept["netlist"])
    # both operand registers (8 + 8) and the product register (16) move into the MULT18X18D
    assert packed["input_a"] == packed["input_b"] == packed["output"] == 1
    assert packed["flip_flops_moved"] == 32
    assert packed == pack_dsp_registers(flat["netlist"])
