"""fp32_mac: golden-model sanity, and the cocotb regression against numpy float32."""

import numpy as np
import pytest

from sparsehw.golden.fp32 import QNAN, bits, fp32_mac, from_bits, same
from sparsehw.hw.fp32 import Fp32Mac


def test_golden_is_two_roundings():
    # (1 + 2**-12)**2 = 1 + 2**-11 + 2**-24: the product rounds (tie -> even) to 1 + 2**-11,
    # so subtracting 1 + 2**-11 gives exactly 0, whereas a fused multiply-add would give 2**-24.
    a = np.float32(1 + 2.0 ** -12)
    assert fp32_mac(a, a, np.float32(-(1 + 2.0 ** -11))) == 0.0


def test_golden_signed_zero_and_nan_rules():
    assert bits(fp32_mac(np.float32(-0.0), np.float32(1.0), np.float32(-0.0))) == 0x80000000
    assert bits(fp32_mac(np.float32(1.0), np.float32(1.0), np.float32(-1.0))) == 0x00000000
    assert np.isnan(fp32_mac(np.float32(np.inf), np.float32(0.0), np.float32(1.0)))
    assert same(QNAN, 0xFFC00001) and not same(QNAN, 0x7F800000)
    assert not same(0x00000000, 0x80000000)


def test_golden_keeps_subnormals():
    tiny = from_bits(0x00000001)
    assert bits(fp32_mac(tiny, np.float32(3.0), np.float32(0.0))) == 0x00000003
    assert bits(fp32_mac(tiny, np.float32(0.5), np.float32(0.0))) == 0x00000000   # tie to even


def test_amaranth_sim_quick_check():
    from amaranth.sim import Simulator
    from sparsehw.verif.hbfp.vectors import fp32_mac_vectors
    a, b, c = fp32_mac_vectors(np.random.default_rng(9), 400)
    dut = Fp32Mac()
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for i in range(len(a) + dut.latency + 2):
            ctx.set(dut.i.valid, i < len(a))
            if i < len(a):
                ctx.set(dut.i.payload, {"a": int(a[i]), "b": int(b[i]), "c": int(c[i])})
            await ctx.tick()
            if ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(got) == len(a)
    bad = [i for i in range(len(a))
           if not same(got[i], bits(fp32_mac(from_bits(a[i]), from_bits(b[i]), from_bits(c[i]))))]
    assert not bad


@pytest.mark.sim
def test_fp32_mac_regression(tmp_path):
    from sparsehw.verif.runner import run_cocotb
    result = run_cocotb(Fp32Mac(), "fp32_mac", "sparsehw.verif.hbfp.tb_fp32_mac", build_dir=tmp_path,
                        seed=2024, params={}, workload={"vectors": 4000, "stall": 0.3})
    assert result.passed, (result.errors, result.log)
    assert result.tests == 2 and result.record["vectors"] == 4000


class _NoStickyMac(Fp32Mac):
    """An fp32_mac whose result is truncated by one ulp whenever it ends in binary ...11:
    a plausible rounding bug that the regression must catch."""

    def elaborate(self, platform):
        from amaranth.hdl import Module, Mux
        inner = Fp32Mac()
        m = Module()
        m.submodules.inner = inner
        wrong = inner.o.payload[0] & inner.o.payload[1] & (inner.o.payload[23:31] != 255)
        m.d.comb += [
            inner.i.payload.eq(self.i.payload), inner.i.valid.eq(self.i.valid),
            self.i.ready.eq(inner.i.ready), self.o.valid.eq(inner.o.valid),
            inner.o.ready.eq(self.o.ready),
            self.o.payload.eq(Mux(wrong, inner.o.payload - 1, inner.o.payload)),
        ]
        return m


@pytest.mark.sim
def test_fp32_mac_testbench_catches_a_rounding_bug(tmp_path):
    from sparsehw.verif.runner import run_cocotb
    result = run_cocotb(_NoStickyMac(), "fp32_mac", "sparsehw.verif.hbfp.tb_fp32_mac", build_dir=tmp_path,
                        seed=5, params={}, workload={"vectors": 300},
                        testcase="random_and_corner_vectors_with_stalls")
    assert not result.passed and result.failures == 1
