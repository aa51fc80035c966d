"""AXI4-Stream tops (hw/axis.py): names, bit tables, tlast, lint counts, and the SPU top's
cocotbext-axi regression against the golden model (verif/axis/)."""

import random
import re

import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from sparsehw import registry
from sparsehw.hw.axis import AxisTop, expand_table, field_table, tdata_width
from sparsehw.hw.export import to_verilog
from sparsehw.hw.spu import SPU
from sparsehw.verif.axis import flatten, from_tdata, to_tdata
from sparsehw.verif.lint import (AXIS_SUFFIX, AXIS_UNUSED, WAIVERS, lint_verilog,
                                 waivers_for)
from sparsehw.verif.runner import new_build_dir, run_cocotb
from sparsehw.verif.stream import unpack

BLOCKS = registry.all_blocks()


def _top(name, **params):
    block = BLOCKS[name]
    return AxisTop(block.build(**{**block.defaults(), **params}), name + AXIS_SUFFIX)


def _verilog_ports(verilog, module):
    start = verilog.index(f"module {module}(")
    body = verilog[start:verilog.index("endmodule", start)]
    return {name: (direction, int(msb) + 1 if msb else 1) for direction, msb, name in
            re.findall(r"^\s*(input|output) (?:wire |reg )?(?:\[(\d+):0\] )?(\w+);", body, re.M)}


def test_spu_top_has_the_conventional_ports():
    top = _top("spu")
    ports = _verilog_ports(to_verilog(top, "spu_axis"), "spu_axis")
    expected = {"aclk": ("input", 1), "aresetn": ("input", 1)}
    # Payload bits at the defaults: cfg 3+3+8+16+1, act 2*4*8, w 2*(8+5), post 32+16+5, and
    # o 4*8+1+1 without 'last', which travels in tlast.
    for port, bits in (("cfg", 31), ("act", 64), ("w", 26), ("post", 53)):
        expected.update({f"s_axis_{port}_tdata": ("input", -(-bits // 8) * 8),
                         f"s_axis_{port}_tvalid": ("input", 1),
                         f"s_axis_{port}_tready": ("output", 1),
                         f"s_axis_{port}_tlast": ("input", 1)})
    expected.update({"m_axis_o_tdata": ("output", 40), "m_axis_o_tvalid": ("output", 1),
                     "m_axis_o_tready": ("input", 1), "m_axis_o_tlast": ("output", 1)})
    assert ports == expected


def test_port_arrays_and_plain_ports():
    ring = _verilog_ports(to_verilog(_top("ring"), "ring_axis"), "ring_axis")
    nodes = BLOCKS["ring"].defaults()["nodes"]
    assert ring["bad_dest"] == ("output", nodes)
    for node in range(nodes):
        assert ring[f"s_axis_inject_{node}_tvalid"] == ("input", 1)
        assert ring[f"m_axis_eject_{node}_tready"] == ("input", 1)
        assert f"m_axis_eject_{node}_tlast" not in ring       # no end of transfer: no tlast
    figs = _verilog_ports(to_verilog(_top("figs"), "figs_axis"), "figs_axis")
    assert figs["fault"] == ("output", 3)
    assert "clk" not in figs and "rst" not in figs


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_bit_table_matches_the_payload_layout(name):
    """Packing by the table equals packing by the block's layout (with 'last' moved to tlast),
    every payload bit is in exactly one field, tdata is whole bytes."""
    top = _top(name)
    block = top.core
    rnd = random.Random(name)
    for interface in top.interfaces:
        port = block
        for part in interface["port"].split("."):
            port = port[int(part)] if part.isdigit() else getattr(port, part)
        layout = port.signature.members["payload"].shape
        bits = interface["payload_bits"]
        assert interface["tdata_width"] % 8 == 0 and 0 <= interface["tdata_width"] - bits < 8
        covered = 0
        for _name, lsb, width, _signed in expand_table(interface["fields"]):
            mask = ((1 << width) - 1) << lsb
            assert covered & mask == 0, f"{interface['name']}: overlapping fields"
            covered |= mask
        assert covered == (1 << bits) - 1
        for _ in range(5):
            word = rnd.getrandbits(len(port.payload.as_value()) if isinstance(layout, data.Layout)
                                   else len(port.payload))
            value = unpack(layout, word)
            if interface["tlast"] == "payload field 'last'":
                offset = layout["last"].offset
                word = (word & ((1 << offset) - 1)) | (word >> (offset + 1) << offset)
                value = {k: v for k, v in value.items() if k != "last"}
            assert to_tdata(interface["fields"], flatten(value)) == word
            assert from_tdata(interface["fields"], word, interface["tdata_width"]) == \
                flatten(value)


def test_field_table_text():
    layout = data.StructLayout({"y": data.ArrayLayout(data.ArrayLayout(unsigned(8), 4), 2),
                                "flag": unsigned(1)})
    rows = field_table(layout)
    assert [(r["field"], r["bits"], r["repeat"]) for r in rows] == [
        ("y[i][j]", "32*i+8*j+7:32*i+8*j", [[2, 32], [4, 8]]), ("flag", "64", [])]
    assert expand_table(rows)[5] == ("y[1][1]", 40, 8, False)
    assert tdata_width(1) == 8 and tdata_width(64) == 64 and tdata_width(65) == 72


class _Echo(wiring.Component):
    """Toy block: input stream (value, last) registered to an output stream, a plain port."""
    def __init__(self):
        layout = data.StructLayout({"value": unsigned(12), "last": unsigned(1)})
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout)),
                          "count": Out(4)})

    def elaborate(self, platform):
        m = Module()
        with m.If(self.o.ready | ~self.o.valid):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
            with m.If(self.i.valid):
                m.d.sync += self.count.eq(self.count + 1)
        m.d.comb += self.i.ready.eq(self.o.ready | ~self.o.valid)
        return m


def test_tlast_maps_to_last_and_reset_is_active_low():
    top = AxisTop(_Echo(), "echo_axis")
    assert [i["tdata_width"] for i in top.interfaces] == [16, 16]
    assert [r["field"] for r in top.interfaces[0]["fields"]] == ["value"]

    async def bench(ctx):
        ctx.set(top.aresetn, 1)
        ctx.set(top.m_axis_o_tready, 1)
        for value, last in ((0xABC, 1), (0x123, 0)):
            ctx.set(top.s_axis_i_tdata, 0xF000 | value)       # padding bits set: ignored
            ctx.set(top.s_axis_i_tlast, last)
            ctx.set(top.s_axis_i_tvalid, 1)
            await ctx.tick()
            ctx.set(top.s_axis_i_tvalid, 0)
            assert ctx.get(top.m_axis_o_tvalid) == 1
            assert ctx.get(top.m_axis_o_tdata) == value         # padding out is zero
            assert ctx.get(top.m_axis_o_tlast) == last
        assert ctx.get(top.count) == 2
        ctx.set(top.aresetn, 0)                                 # active low, synchronous
        await ctx.tick()
        assert ctx.get(top.count) == 0 and ctx.get(top.m_axis_o_tvalid) == 0

    async def aclk(ctx):    # the top drives its own sync domain from the aclk port
        while True:
            await ctx.delay(5e-9)
            ctx.set(top.aclk, 1)
            await ctx.delay(5e-9)
            ctx.set(top.aclk, 0)

    sim = Simulator(top)
    sim.add_process(aclk)
    sim.add_testbench(bench)
    sim.run()


def test_illegal_arguments_raise():
    with pytest.raises(TypeError, match="wiring.Component"):
        AxisTop(object(), "x")
    with pytest.raises(ValueError, match="Verilog identifier"):
        AxisTop(_Echo(), "1bad name")


#: AXIS tops whose lint takes longest (the whole chip): run with -m slow; make lint covers the
#: chip itself.
SLOW_LINT = {"chip"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_LINT
                                  else n for n in sorted(BLOCKS)])
def test_axis_top_lint_matches_waivers(name, tmp_path):
    """The block's counts plus the wrapper's own (verif.lint.AXIS_UNUSED), exactly."""
    lint_verilog(to_verilog(_top(name), name + AXIS_SUFFIX), name + AXIS_SUFFIX, tmp_path)


def test_axis_waivers_are_for_registered_blocks():
    assert set(AXIS_UNUSED) <= set(BLOCKS) and all(n > 0 for n in AXIS_UNUSED.values())
    spu_axis = {w.rule: w.count for w in waivers_for("spu" + AXIS_SUFFIX)}
    spu = {w.rule: w.count for w in WAIVERS["spu"]}
    assert spu_axis == {**spu, "UNUSEDSIGNAL": spu["UNUSEDSIGNAL"] + AXIS_UNUSED["spu"]}


@pytest.mark.sim
@pytest.mark.parametrize("params", [
    {"lanes": 4, "macs": 2, "max_m": 32, "max_k": 128, "act_rows": 2},   # the defaults
    {"lanes": 3, "macs": 3, "max_m": 8, "max_k": 64, "act_rows": 4},     # odd widths
], ids=["defaults", "odd"])
def test_spu_axis_cocotbext_regression(params):
    top = AxisTop(SPU(**params), "spu_axis")
    result = run_cocotb(top, "spu_axis", "sparsehw.verif.axis.tb_spu_axis",
                        build_dir=new_build_dir("axis-spu"), sim="icarus", seed=7,
                        params=params, workload={"interfaces": top.interfaces, "pause": 0.3})
    assert result.passed, f"{result.errors}; log: {result.log}"
    assert result.record["rows"] > result.record["jobs"] >= 8


@pytest.mark.sim
def test_hbfp_dot_axis_cocotbext_regression():
    """Input tlast carries meaning here: one dot product per input frame."""
    block = BLOCKS["hbfp_dot"]
    params = block.defaults()
    top = _top("hbfp_dot")
    result = run_cocotb(top, "hbfp_dot_axis", "sparsehw.verif.axis.tb_hbfp_dot_axis",
                        build_dir=new_build_dir("axis-hbfp_dot"), sim="icarus", seed=3,
                        params=params, workload={"interfaces": top.interfaces, "pause": 0.3})
    assert result.passed, f"{result.errors}; log: {result.log}"
    assert result.record["blocks"] > result.record["dot_products"] >= 20


@pytest.mark.slow
@pytest.mark.sim
def test_spu_axis_reference_point_verilator():
    """The SPU's reference design point (sparsehw perf spu) through its AXIS top, on Verilator."""
    from sparsehw.families.spu import REFERENCE_PARAMS
    params = dict(REFERENCE_PARAMS)
    top = AxisTop(SPU(**params), "spu_axis")
    result = run_cocotb(top, "spu_axis", "sparsehw.verif.axis.tb_spu_axis",
                        build_dir=new_build_dir("axis-spu-ref"), sim="verilator", seed=11,
                        params=params, workload={"interfaces": top.interfaces, "pause": 0.5})
    assert result.passed, f"{result.errors}; log: {result.log}"


@pytest.mark.sim
def test_act_engine_axis_cocotbext_regression():
    """Output tlast is the end of a row of the activation engine."""
    params = BLOCKS["act_engine"].defaults()
    top = _top("act_engine")
    result = run_cocotb(top, "act_engine_axis", "sparsehw.verif.axis.tb_act_axis",
                        build_dir=new_build_dir("axis-act"), sim="icarus", seed=5,
                        params=params, workload={"interfaces": top.interfaces, "pause": 0.3})
    assert result.passed, f"{result.errors}; log: {result.log}"
    assert result.record["beats"] > result.record["jobs"] >= 10
