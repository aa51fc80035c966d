# amaranth: UnusedElaboratable=no
"""hw/parts.py: the pieces the area studies synthesize alone (functional checks and parameters)."""

import pytest
from amaranth.sim import Simulator

from sparsehw.hw.parts import EnabledRegs, Fp32Half, Multiplier, OperandMux


def _run(dut, bench, clock=True):
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_multiplier_is_a_signed_product():
    dut = Multiplier(8)
    seen = []

    async def bench(ctx):
        for a, b in [(-128, -128), (-128, 127), (127, 127), (0, -5), (-3, 7)]:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.delay(1e-6)
            seen.append((a * b, ctx.get(dut.y)))

    _run(dut, bench, clock=False)
    assert len(seen) == 5 and all(want == got for want, got in seen), seen


def test_operand_mux_selects_operand_sel():
    dut = OperandMux(8, 5)
    operands = [11, 22, 33, 44, 255]
    seen = []

    async def bench(ctx):
        ctx.set(dut.x, sum(v << (8 * i) for i, v in enumerate(operands)))
        for sel in range(5):
            ctx.set(dut.sel, sel)
            await ctx.delay(1e-6)
            seen.append(ctx.get(dut.y))

    _run(dut, bench, clock=False)
    assert seen == operands


def test_enabled_regs_hold_without_enable():
    dut = EnabledRegs(12)
    seen = []

    async def bench(ctx):
        for d, en in [(0xABC, 1), (0x123, 0), (0x456, 1)]:
            ctx.set(dut.d, d)
            ctx.set(dut.en, en)
            await ctx.tick()
            seen.append(ctx.get(dut.q))

    _run(dut, bench)
    assert seen == [0xABC, 0xABC, 0x456]


@pytest.mark.parametrize("build, error, message", [
    (lambda: Fp32Half("div"), ValueError, r"^op must be one of 'mul', 'add', not 'div'$"),
    (lambda: Multiplier(0), ValueError, r"^width must be an integer in 1\.\.64, not 0$"),
    (lambda: OperandMux(8, 0), ValueError, r"^inputs must be an integer in 1\.\.1024, not 0$"),
    (lambda: OperandMux(8.0, 2), TypeError, r"^width must be an integer in 1\.\.64, not 8\.0$"),
    (lambda: EnabledRegs(0), ValueError, r"^bits must be an integer in 1\.\.65536, not 0$"),
])
def test_parameter_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_fp32_half_ports():
    for op in ("mul", "add"):
        half = Fp32Half(op)
        assert len(half.i.payload.as_value()) == 64 and len(half.o.payload) == 32
