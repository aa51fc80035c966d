"""What a cocotb testbench needs from the flow: parameters, workload, seed, and result records.

The runner (:mod:`verif.runner`) passes generation parameters and workload knobs through the
environment (``SPARSEHW_PARAMS``, ``SPARSEHW_WORKLOAD``, JSON) and collects figures that the
testbench reports with :func:`record` from the JSON file named by ``SPARSEHW_RESULT``.
"""

import json
import os
import random


__all__ = ["params", "workload", "rng", "record", "test"]

#: ``SPARSEHW_FAIL_FAST=1`` (``sparsehw mutate`` sets it): see :func:`test`.
_FAIL_FAST = os.environ.get("SPARSEHW_FAIL_FAST") == "1"
_FAILED = []


def params(spec=None):
    """The generation parameters of the design under test (a dict).

    With ``spec`` (the block's :class:`sparsehw.params.ParamSpec`): validated, with the defaults
    filled in for those the runner did not pass.
    """
    given = json.loads(os.environ.get("SPARSEHW_PARAMS", "{}"))
    return given if spec is None else spec.validate(**given)


def workload():
    """The workload knobs of this run (a dict, empty for a plain regression)."""
    return json.loads(os.environ.get("SPARSEHW_WORKLOAD", "{}"))


def test(**kwargs):
    """``cocotb.test(**kwargs)`` with the fail-fast rule: under ``SPARSEHW_FAIL_FAST=1`` the
    tests after the first failing one return at once (the run has failed already: a mutant is
    killed as soon as one test fails, and the mutation run is shorter, not different)."""
    import functools

    import cocotb

    def decorate(body):
        @functools.wraps(body)
        async def run(dut):
            if _FAILED:
                dut._log.info(f"fail-fast: {_FAILED[0]} failed, {body.__name__} not run")
                return
            try:
                await body(dut)
            except BaseException:
                if _FAIL_FAST:
                    _FAILED.append(body.__name__)
                raise
        return cocotb.test(**kwargs)(run)
    return decorate


def rng(salt=0):
    """A :class:`random.Random` seeded from cocotb's seed (``--seed``), plus ``salt``.

    Separate generators (different salts) keep stimulus and stall patterns independent, so
    changing the stall rate does not change the data.
    """
    import cocotb
    return random.Random(cocotb.RANDOM_SEED * 1000003 + salt)


def record(**figures):
    """Merge ``figures`` into this run's result record (read back as ``RunResult.record``)."""
    path = os.environ.get("SPARSEHW_RESULT")
    if not path:
        return
    current = {}
    if os.path.exists(path):
        with open(path) as f:
            current = json.load(f)
    current.update(figures)
    with open(path, "w") as f:
        json.dump(current, f, indent=1, sort_keys=True, default=_jsonable)


def _jsonable(value):
    if hasattr(value, "item"):          # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):        # numpy arrays
        return value.tolist()
    raise TypeError(f"cannot record {type(value).__name__}")
