"""Activation engine (hw/act_engine.py): parameter errors, registry entry, the cocotb regression
against golden/act.py on three design points (Icarus), a perf smoke run."""

import pytest

from sparsehw.golden import act as golden
from sparsehw.hw.act_engine import ACT_PARAMS, ActEngine


@pytest.mark.parametrize("kwargs, error, message", [
    ({"lanes": 3}, ValueError, r"^lanes must be a power of two in 1\.\.16, not 3$"),
    ({"lanes": 32}, ValueError, r"^lanes must be a power of two in 1\.\.16, not 32$"),
    ({"lanes": 4.0}, TypeError, r"^lanes must be a power of two in 1\.\.16, not 4\.0$"),
    ({"max_row": 4}, ValueError, r"^max_row must be a power of two in 8\.\.4096, not 4$"),
    ({"max_row": 100}, ValueError, r"^max_row must be a power of two in 8\.\.4096, not 100$"),
    ({"max_row": 8192}, ValueError, r"max_row must be a power of two in 8\.\.4096, not 8192$"),
    ({"ops": "gelu,tanh"}, ValueError, r"^ops must be a comma-separated subset of gelu,"),
    ({"ops": "gelu,gelu"}, ValueError, r"^ops must be a comma-separated subset"),
    ({"ops": ""}, ValueError, r"^ops must be a comma-separated subset"),
    ({"ops": ["gelu"]}, TypeError, r"^ops must be a comma-separated subset"),
    ({"width": 8}, TypeError, r"unexpected keyword argument 'width'"),
])
def test_parameter_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        ActEngine(**kwargs)


def test_parameters_and_layouts():
    engine = ActEngine(lanes=2, max_row=64, ops="softmax,gelu")
    assert (engine.lanes, engine.max_row, engine.ops) == (2, 64, ("gelu", "softmax"))
    assert engine.layouts["o"].size == 2 * 16 + 2 + 2
    assert engine.layouts["cmd"].size == 3 + 16 + 3 + 4
    with pytest.raises(AttributeError):
        engine.lanes = 4
    assert ACT_PARAMS.defaults() == {"lanes": 4, "max_row": 256,
                                     "ops": "gelu,exp,log2,recip,softmax,layernorm"}


@pytest.mark.parametrize("op", golden.OPS)
def test_every_single_op_engine_elaborates(op):
    from sparsehw.hw.export import to_verilog
    verilog = to_verilog(ActEngine(lanes=2, max_row=8, ops=op), "act_engine")
    assert ("rowbuf" in verilog) == (op in golden.ROW_OPS)


def test_registry_entry():
    from sparsehw import registry
    block = registry.get_block("act_engine")
    assert block.params is ACT_PARAMS
    with pytest.raises(registry.UserError, match="act_engine: max_row must be a power of two"):
        registry.build(block, {"max_row": 5})
    assert registry.resolve_workload(block, {"op": "softmax", "n": "64"},
                                     params=block.defaults())["n"] == 64
    with pytest.raises(registry.UserError, match=r"act_engine: n must be an integer in 0\.\.256, not 257"):
        registry.resolve_workload(block, {"op": "softmax", "n": "257"}, params=block.defaults())


@pytest.mark.sim
@pytest.mark.parametrize("params, stall", [
    ({"lanes": 4, "max_row": 16, "ops": ",".join(golden.OPS)}, None),
    ({"lanes": 4, "max_row": 16, "ops": ",".join(golden.OPS)}, 0.7),        # heavy stalls
    ({"lanes": 1, "max_row": 8, "ops": "layernorm,recip,softmax"}, None),   # ops left out
    ({"lanes": 8, "max_row": 32, "ops": "gelu,log2,exp,softmax"}, None),
    ({"lanes": 2, "max_row": 4, "ops": "recip,gelu"}, None),               # no row buffer
])
def test_cocotb_regression(params, stall, tmp_path):
    from sparsehw.verif.runner import run_cocotb
    result = run_cocotb(ActEngine(**params), "act_engine", "sparsehw.verif.act.tb_act",
                        build_dir=tmp_path, params=params, seed=5,
                        workload={} if stall is None else {"stall": stall})
    assert result.passed, (result.errors, result.log)
    assert result.tests == 12
    n_ops = len(params["ops"].split(","))
    assert result.record["regression_jobs"] == 2 * 3 * n_ops + 4 * n_ops
    # Functional coverage: every op built, every rejection kind, domain flags, saturation,
    # data kinds, row shapes, format extremes; port holes are printed, not required.
    from sparsehw.verif.coverage import holes
    found = holes(result.record, "act_engine")
    modes = {point: bins for point, bins in found.items() if not point.endswith(".handshake")}
    assert modes == {}, f"coverage holes: {modes}"
    print("act_engine port coverage holes:", {p: b for p, b in found.items() if p not in modes})


@pytest.mark.sim
@pytest.mark.parametrize("op", ["gelu", "softmax", "layernorm"])
def test_perf_smoke(op, tmp_path):
    from sparsehw.verif.act.perf_act import run_perf
    params = {"lanes": 4, "max_row": 32, "ops": ",".join(golden.OPS)}
    record = run_perf(params, {"op": op, "n": 32, "rows": 2}, sim="icarus", seed=3,
                      build_dir=tmp_path)
    assert record["passed"], record
    assert record["mismatches"] == 0 and record["outputs_checked"] == 2 * 8
    # element-wise: 2 x 8 beats; row-wise: one load pass, then 2 (softmax) or 1 read-back
    # passes per row
    assert record["ideal_cycles"] == {"gelu": 16, "softmax": 8 + 2 * 2 * 8, "layernorm": 8 + 2 * 8}[op]
    assert 0 < record["utilization"] <= 1
    bound = {"gelu": 6e-4, "softmax": 5e-5, "layernorm": 6e-4}[op]
    assert record["max_abs_error"] <= bound


def test_perf_rejects_an_op_not_built(tmp_path):
    from sparsehw.verif.act.perf_act import run_perf
    with pytest.raises(ValueError, match="op must be one of the operations built"):
        run_perf({"lanes": 4, "max_row": 32, "ops": "gelu"}, {"op": "exp"}, sim="icarus",
                 seed=1, build_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.parametrize("stall", [0.3, 0.8])
def test_long_regression_verilator(stall, tmp_path):
    """The default design point (max_row=256), eight rounds of every op, Verilator."""
    from sparsehw.verif.runner import run_cocotb
    params = ACT_PARAMS.defaults()
    result = run_cocotb(ActEngine(**params), "act_engine", "sparsehw.verif.act.tb_act",
                        build_dir=tmp_path, params=params, seed=17, sim="verilator",
                        workload={"stall": stall, "rounds": 8})
    assert result.passed, (result.errors, result.log)
    assert result.record["regression_jobs"] == 8 * 3 * 6 + 4 * 6


def test_pow2_values_fit_the_rtl_widths():
    """hw/act_engine.py registers exp's Horner values (golden.act.pow2_steps) in 15, 16 and 16
    bits (each next product then fits one 18x18 multiplier): every f."""
    steps = [golden.pow2_steps(f) for f in range(1 << 16)]
    for index, bits in enumerate((15, 16, 16)):
        assert min(s[index] for s in steps) >= 0
        assert max(s[index] for s in steps) < 1 << bits
