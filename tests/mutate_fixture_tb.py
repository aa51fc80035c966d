"""cocotb testbench of the hand-made design in tests/test_mutate.py (module ``tiny``).

Deliberately incomplete: it checks ``o__valid`` and ``y[2:0]`` every cycle but never ``y[3]``, so
tests/test_mutate.py knows which mutants must survive.

Specification of ``tiny`` (registered, one cycle latency, synchronous reset): a counter ``cnt``
runs 0, 1, 2, 3, 4, 0, ... (from 0 after reset); ``o__valid`` is the previous ``i__valid``;
``y`` is ``(a ^ 0b0101) + (4 if cnt == 2 else 0)`` modulo 16 of the previous cycle's ``a`` and
``cnt``.
"""

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sparsehw.verif import common
from sparsehw.verif.stream import reset, start_clock


@cocotb.test()
async def tiny_low_bits(dut):
    rng = common.rng(1)
    start_clock(dut)
    dut.a.value = 0
    dut.i__valid.value = 0
    await reset(dut)
    cnt = 0
    for _ in range(60):
        a, valid = rng.randrange(16), rng.randrange(2)
        dut.a.value = a
        dut.i__valid.value = valid
        await RisingEdge(dut.clk)
        await ReadOnly()
        expected = ((a ^ 0b0101) + (4 if cnt == 2 else 0)) % 16
        cnt = 0 if cnt == 4 else cnt + 1
        assert int(dut.o__valid.value) == valid
        assert int(dut.y.value) & 0b111 == expected & 0b111, (a, cnt)
        await FallingEdge(dut.clk)
