"""cocotb testbench for tests/test_mutate.py's fail-fast test (:func:`verif.common.test`): the
first test fails, the second records that it ran."""

from sparsehw.verif import common


@common.test()
async def first_fails(dut):
    assert False, "this test fails on purpose"


@common.test()
async def second_records(dut):
    common.record(second_ran=True)
