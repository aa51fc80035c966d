"""cocotb regression of the fan-out N:M baseline (block ``nm_fanout``)."""

import cocotb

from sparsehw.verif.figs import cases

ENGINE = "nm_fanout"


@cocotb.test()
async def random_masks_all_ratios_under_stalls(dut):
    await cases.gemm_cases(dut, ENGINE, ("random",), stall=0.3)


@cocotb.test()
async def adversarial_masks_all_ratios(dut):
    await cases.gemm_cases(dut, ENGINE, ("low", "high", "alternating", "fine", "nested"),
                           stall=0.2)


@cocotb.test()
async def nested_figs_masks(dut):
    await cases.nested_levels(dut, ENGINE)


@cocotb.test()
async def malformed_index_is_flagged(dut):
    await cases.malformed_index(dut, ENGINE)


@cocotb.test()
async def unsupported_pattern_is_flagged(dut):
    await cases.bad_config(dut, ENGINE)


@cocotb.test()
async def one_instance_per_cycle(dut):
    await cases.full_rate(dut, ENGINE)


@cocotb.test()
async def malformed_index_then_next_gemm_correct(dut):
    await cases.malformed_then_correct(dut, ENGINE)
