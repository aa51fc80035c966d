"""cocotb regression of the FiGS family: the swap-register array (block ``figs``) and its
baselines ``nm_broadcast``, ``nm_fanout`` and ``nm_fixed24``, one module for all four.

The engine is the simulation's toplevel (the registry name of the block, as ``run_cocotb`` and
``sparsehw mutate`` export it); the test bodies are in :mod:`cases`. Functional coverage
(:mod:`cases`) is reported after every test.

With ``SPARSEHW_FAIL_FAST=1`` in the environment (``sparsehw mutate`` sets it), the tests after
the first failing one return at once: the run has failed already, and a mutant is killed as
soon as one test fails (:func:`verif.common.test`).
"""

import os

import cocotb

from sparsehw.verif import common
from sparsehw.verif.figs import cases


def _engine():
    name = os.environ.get("COCOTB_TOPLEVEL") or cocotb.top._name
    if name not in cases.ENGINES:
        raise ValueError(f"toplevel must be one of {', '.join(cases.ENGINES)}, not {name!r}")
    return name


ENGINE = _engine()
@common.test()
async def random_masks_all_ratios_under_stalls(dut):
    await cases.gemm_cases(dut, ENGINE, ("random",), stall=0.3)
    cases.report(dut, ENGINE)


@common.test()
async def adversarial_masks_all_ratios(dut):
    await cases.gemm_cases(dut, ENGINE, ("low", "high", "alternating", "fine", "nested"),
                           stall=0.2)
    cases.report(dut, ENGINE)


@common.test()
async def nested_figs_masks(dut):
    await cases.nested_levels(dut, ENGINE)
    cases.report(dut, ENGINE)


@common.test()
async def every_window_position(dut):
    await cases.window_sweep(dut, ENGINE)
    cases.report(dut, ENGINE)


@common.test()
async def short_tiles_under_output_back_pressure(dut):
    await cases.short_tiles(dut, ENGINE)
    cases.report(dut, ENGINE)


@common.test()
async def malformed_index_is_flagged(dut):
    await cases.malformed_index(dut, ENGINE)
    cases.report(dut, ENGINE)


@common.test()
async def unsupported_pattern_is_flagged(dut):
    await cases.bad_config(dut, ENGINE)
    cases.report(dut, ENGINE)


@common.test(skip=ENGINE != "figs")
async def swap_exchange_routes_every_pattern(dut):
    await cases.exchange(dut)
    cases.report(dut, ENGINE)


@common.test()
async def one_instance_per_cycle(dut):
    await cases.full_rate(dut, ENGINE)
    cases.report(dut, ENGINE)


@common.test()
async def malformed_index_then_next_gemm_correct(dut):
    await cases.malformed_then_correct(dut, ENGINE)
    cases.report(dut, ENGINE)


@common.test(skip=ENGINE == "nm_fixed24")
async def accepted_patterns_beyond_the_list(dut):
    await cases.accepted_patterns(dut, ENGINE)
    cases.report(dut, ENGINE)


@common.test()
async def latency_with_output_held(dut):
    await cases.held_output(dut, ENGINE)
    cases.report(dut, ENGINE)


@common.test(skip=ENGINE != "figs")
async def output_fifo_holds_everything_in_flight(dut):
    await cases.output_fifo(dut)
    cases.report(dut, ENGINE)
