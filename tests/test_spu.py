# amaranth: UnusedElaboratable=no
"""SPU: parameter errors, golden GEMM model, an Amaranth-simulator check, the cocotb regression
(two design points) and a perf smoke run."""

import numpy as np
import pytest

from sparsehw.verif.coverage import holes

from sparsehw.golden import nm
from sparsehw.golden import spu as golden_spu
from sparsehw.hw.spu import SPU, SPU_PARAMS
from sparsehw.verif.spu import make_job


# -- generation parameters ----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"lanes": 0}, ValueError, r"^lanes must be an integer in 1\.\.64, not 0$"),
    ({"lanes": 65}, ValueError, r"^lanes must be an integer in 1\.\.64, not 65$"),
    ({"lanes": 4.0}, TypeError, r"^lanes must be an integer in 1\.\.64, not 4\.0$"),
    ({"macs": 0}, ValueError, r"^macs must be an integer in 1\.\.16, not 0$"),
    ({"macs": 17}, ValueError, r"^macs must be an integer in 1\.\.16, not 17$"),
    ({"macs": "2"}, TypeError, r"^macs must be an integer in 1\.\.16, not '2'$"),
    ({"max_m": 3}, ValueError, r"^max_m must be a power of two in 1\.\.32, not 3$"),
    ({"max_m": 64}, ValueError, r"^max_m must be a power of two in 1\.\.32, not 64$"),
    ({"max_m": True}, TypeError, r"^max_m must be a power of two in 1\.\.32, not True$"),
    ({"act_rows": 3}, ValueError, r"^act_rows must be a power of two in 1\.\.16, not 3$"),
    ({"act_rows": 32}, ValueError, r"^act_rows must be a power of two in 1\.\.16, not 32$"),
    ({"max_k": 100}, ValueError, r"^max_k must be a power of two in 32\.\.65536, not 100$"),
    ({"max_k": 16}, ValueError, r"^max_k must be a power of two in 32\.\.65536, not 16$"),
    ({"max_m": 4, "act_rows": 8, "max_k": 4}, ValueError,
     r"^max_k must be a power of two in 8\.\.65536, not 4$"),
    ({"max_k": 1 << 17}, ValueError, r"^max_k must be a power of two in 32\.\.65536, not 131072$"),
    ({"max_k": None}, TypeError, r"^max_k must be a power of two in 32\.\.65536, not None$"),
    ({"x_buffers": 3}, ValueError, r"^x_buffers must be one of 1, 2, not 3$"),
    ({"x_buffers": 0}, ValueError, r"^x_buffers must be one of 1, 2, not 0$"),
    ({"x_buffers": "2"}, TypeError, r"^x_buffers must be one of 1, 2, not '2'$"),
    ({"lane": 4}, TypeError, r"^unknown parameter 'lane'; allowed: lanes, macs, max_m, "
                             r"act_rows, max_k, x_buffers$"),
])
def test_parameter_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        SPU(**kwargs)


def test_parameters_are_read_only():
    spu = SPU(lanes=2, macs=3, max_m=8, max_k=64, act_rows=4)
    assert (spu.lanes, spu.macs, spu.max_m, spu.max_k, spu.act_rows) == (2, 3, 8, 64, 4)
    with pytest.raises(AttributeError):
        spu.lanes = 4
    assert spu.layouts["w"].size == 3 * (8 + 3)


def test_registry_entry():
    from sparsehw import registry
    block = registry.get_block("spu")
    assert block.params is SPU_PARAMS and block.build is SPU
    assert block.defaults() == {"lanes": 4, "macs": 2, "max_m": 32, "act_rows": 2, "max_k": 128,
                                "x_buffers": 1}
    with pytest.raises(registry.UserError,
                       match=r"^spu: max_m must be a power of two in 1\.\.32, not 5$"):
        registry.build(block, {**block.defaults(), "max_m": 5})
    with pytest.raises(registry.UserError, match=r"^spu: max_k must be a power of two in "):
        registry.check_params(block, {"max_k": "100"})
    assert registry.resolve_params(block, {"lanes": "8"})["lanes"] == 8


# -- golden model -------------------------------------------------------------------------------

def test_golden_spu_gemm_matches_dense_reference():
    rng = np.random.default_rng(0)
    for n, m in [(1, 1), (1, 4), (2, 8), (1, 32), (16, 32)]:
        w = rng.integers(-128, 128, size=(5, 64)).astype(np.int8)
        x = rng.integers(-128, 128, size=(64, 3)).astype(np.int8)
        bias = rng.integers(-5000, 5000, size=5)
        mult = rng.integers(0, 65536, size=5)
        shift = rng.integers(10, 20, size=5)
        values, indices = nm.compress(w, n, m)
        y, err = golden_spu.spu_gemm(values, indices, n, m, x, bias, mult, shift, True)
        pruned = np.where(nm.mask(w, n, m), w, 0).astype(np.int64)
        for o in range(5):
            for b in range(3):
                acc = int(sum(int(pruned[o, t]) * int(x[t, b]) for t in range(64)))
                p = (acc + int(bias[o])) * int(mult[o])
                want = max(0, min(127, max(-128, (p + (1 << (int(shift[o]) - 1)))
                                                  >> int(shift[o]))))
                assert int(y[o, b]) == want
        assert not err.any()


def test_golden_spu_flags_malformed_rows():
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, size=(3, 16)).astype(np.int8)
    x = rng.integers(-128, 128, size=(16, 2)).astype(np.int8)
    values, indices = nm.compress(w, 2, 8)
    indices = indices.astype(int)
    indices[0, 1] = 8           # out of range
    indices[2, 3] = indices[2, 2]   # not ascending
    y, err = golden_spu.spu_gemm(values, indices, 2, 8, x, [0] * 3, [1] * 3, [0] * 3, False)
    assert err.tolist() == [True, False, True]
    assert (y[0] == 0).all() and (y[2] == 0).all()
    good, _ = golden_spu.spu_gemm(values[1:2], indices[1:2], 2, 8, x, [0], [1], [0], False)
    assert (y[1] == good[0]).all()


def test_golden_cfg_error():
    kw = {"max_m": 32, "max_k": 128, "act_rows": 2}
    assert not golden_spu.cfg_error(0, 5, 128, 1, **kw)
    assert golden_spu.cfg_error(0, 6, 128, 1, **kw)      # m = 64
    assert golden_spu.cfg_error(3, 2, 128, 1, **kw)      # n > m
    assert golden_spu.cfg_error(0, 2, 130, 1, **kw)      # k > max_k
    assert golden_spu.cfg_error(0, 3, 36, 1, **kw)       # k % m
    assert golden_spu.cfg_error(0, 0, 3, 1, **kw)        # k % act_rows
    assert golden_spu.cfg_error(0, 0, 0, 1, **kw)        # k == 0
    assert golden_spu.cfg_error(0, 0, 2, 0, **kw)        # o == 0


# -- Amaranth simulator: one small GEMM, quick check of the RTL ------------------------------------

@pytest.mark.parametrize("x_buffers", [1, 2])
def test_amaranth_sim_small_gemm(x_buffers):
    from amaranth.sim import Simulator
    params = {"lanes": 2, "macs": 2, "max_m": 8, "max_k": 32, "act_rows": 2,
              "x_buffers": x_buffers}
    dut = SPU(**params)
    job = make_job(np.random.default_rng(3), params, n=2, m=8, k=32, o=3, relu=True,
                   corrupt_rows=(1,))
    got = []

    async def feed(ctx, port, beats):
        stream = getattr(dut, port)
        for beat in beats:
            ctx.set(stream.valid, 1)
            ctx.set(stream.payload.as_value(), beat)
            await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)

    def feeder(port):
        async def tb(ctx):
            await feed(ctx, port, job.beats[port])
        return tb

    async def collect(ctx):
        ctx.set(dut.o.ready, 1)
        while len(got) < len(job.expected):
            payload, = await ctx.tick().sample(dut.o.payload).until(dut.o.valid)
            got.append({"y": [int(v) for v in payload.y], "error": int(payload.error),
                        "cfg_error": int(payload.cfg_error), "last": int(payload.last)})

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for port in ("cfg", "act", "w", "post"):
        sim.add_testbench(feeder(port))
    sim.add_testbench(collect)
    sim.run_until(2e-3)
    assert got == job.expected
    assert [row["error"] for row in got] == [0, 1, 0]


# -- cocotb regression and perf smoke -----------------------------------------------------------

@pytest.mark.sim
@pytest.mark.parametrize("params, stall", [
    ({"lanes": 4, "macs": 2, "max_m": 32, "max_k": 128, "act_rows": 2}, None),     # defaults
    ({"lanes": 4, "macs": 2, "max_m": 32, "max_k": 128, "act_rows": 2}, 0.7),      # heavy stalls
    ({"lanes": 2, "macs": 3, "max_m": 8, "max_k": 64, "act_rows": 4}, None),
    ({"lanes": 4, "macs": 2, "max_m": 32, "max_k": 128, "act_rows": 2, "x_buffers": 2}, None),
    ({"lanes": 4, "macs": 2, "max_m": 32, "max_k": 128, "act_rows": 2, "x_buffers": 2}, 0.6),
    ({"lanes": 2, "macs": 3, "max_m": 8, "max_k": 64, "act_rows": 4, "x_buffers": 2}, 0.3),
    # one activation word per bank: the bank bit is the whole buffer address
    ({"lanes": 1, "macs": 1, "max_m": 16, "max_k": 16, "act_rows": 16, "x_buffers": 2}, 0.3),
])
def test_cocotb_regression(params, stall, tmp_path):
    from sparsehw.verif.runner import run_cocotb
    result = run_cocotb(SPU(**params), "spu", "sparsehw.verif.spu.tb_spu", build_dir=tmp_path,
                        params=params, seed=11,
                        workload={} if stall is None else {"stall": stall})
    assert result.passed, (result.errors, result.log)
    assert result.tests == 7
    bits = params["max_m"].bit_length()
    assert result.record["regression_jobs"] == bits * (bits + 1) // 2     # every n:m pattern
    # Functional coverage: every run-time mode reached (n:m, malformed kinds, rejected
    # configurations, ReLU, corner data); the ports' handshake holes are listed, not required.
    found = holes(result.record, "spu")
    modes = {point: bins for point, bins in found.items() if not point.endswith(".handshake")}
    assert modes == {}, f"coverage holes: {modes}"
    print("spu port coverage holes:", {p: b for p, b in found.items() if p not in modes})


@pytest.mark.sim
def test_perf_smoke_is_correct(tmp_path):
    from sparsehw.verif.spu.perf_spu import run_perf
    params = {"lanes": 4, "macs": 2, "max_m": 32, "max_k": 128, "act_rows": 4}
    record = run_perf(params, {"n": 2, "m": 8, "k": 128, "o": 6, "b": 8}, sim="icarus",
                      seed=2, build_dir=tmp_path)
    assert record["passed"], record
    assert record["mismatches"] == 0 and record["outputs_checked"] == 12
    assert record["ideal_cycles"] == 6 * 32 * 8 / 8


@pytest.mark.sim
@pytest.mark.parametrize("o", [6, 40])          # loading X slower / faster than a tile computes
def test_perf_double_buffer_cycles(o, tmp_path):
    """With two X buffers only the first column tile waits for its X (golden.spu.spu_cycles):
    four tiles of a 1:32 GEMM take the model's cycles, fewer than with one buffer."""
    from sparsehw.verif.spu.perf_spu import run_perf
    params = {"lanes": 4, "macs": 2, "max_m": 32, "max_k": 128, "act_rows": 4, "x_buffers": 2}
    load = {"n": 1, "m": 32, "k": 128, "o": o, "b": 16}
    record = run_perf(params, load, sim="icarus", seed=3, build_dir=tmp_path)
    assert record["passed"] and record["outputs_checked"] == 4 * o, record
    model, parts = golden_spu.spu_cycles(params, load)
    assert record["cycles"] == model, (record["cycles"], parts)
    single, _ = golden_spu.spu_cycles({**params, "x_buffers": 1}, load)
    assert record["cycles"] < single


@pytest.mark.parametrize("workload, error, message", [
    ({"n": 1, "m": 64, "k": 128, "o": 1, "b": 4}, ValueError,
     r"^m must be a power of two in 1\.\.32, not 64$"),
    ({"n": 3, "m": 4, "k": 128, "o": 1, "b": 4}, ValueError,
     r"^n must be a power of two in 1\.\.4, not 3$"),
    ({"n": 1, "m": 4, "k": 256, "o": 1, "b": 4}, ValueError,
     r"^k must be a multiple of 4 in 4\.\.128, not 256$"),
    ({"n": 1, "m": 4, "k": 130, "o": 1, "b": 4}, ValueError,
     r"^k must be a multiple of 4 in 4\.\.128, not 130$"),
    ({"n": 1, "m": 4, "k": 128, "o": 0, "b": 4}, ValueError,
     r"^o must be an integer in 1\.\.65535, not 0$"),
    ({"n": 1, "m": 4, "k": 128, "o": 1, "b": 6}, ValueError,
     r"^b must be a positive multiple of 4, not 6$"),
    ({"n": 1, "m": 4, "k": 128, "o": 1, "b": 0}, ValueError,
     r"^b must be a positive multiple of 4, not 0$"),
    ({"n": 1.0}, TypeError, r"^n must be a power of two in 1\.\.1, not 1\.0$"),
    ({"q": 1}, TypeError, r"^unknown workload knob 'q'; allowed: m, n, k, o, b$"),
])
def test_perf_workload_errors(workload, error, message):
    from sparsehw.verif.spu.perf_spu import check_workload
    params = {"lanes": 4, "macs": 2, "max_m": 32, "max_k": 128, "act_rows": 2}
    with pytest.raises(error, match=message):
        check_workload(params, workload)


def test_perf_workload_defaults_are_the_reference_workload():
    from sparsehw.families.spu import REFERENCE_PARAMS
    from sparsehw.verif.spu.perf_spu import check_workload
    assert check_workload(REFERENCE_PARAMS, {}) == {"n": 1, "m": 1, "k": 1024, "o": 256, "b": 16}
    with pytest.raises(ValueError, match=r"^k must be a multiple of 2 in 2\.\.128, not 1024$"):
        check_workload(SPU_PARAMS.defaults(), {})        # the defaults cannot hold K=1024
