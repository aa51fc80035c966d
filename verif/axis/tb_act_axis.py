"""cocotb regression of the activation engine's AXI4-Stream top against golden/act.py.

Only cocotbext-axi drives and checks the top (sources and monitors on ``s_axis_cmd/i/p``, a sink
on ``m_axis_o``, random pauses on all of them). Each command's beats of each input port are one
frame; each command's output must be one frame, ``tlast`` on the row's last beat (the payload's
``last``), or the single error beat of a rejected command. Commands come from the activation
engine regression's generator (:func:`verif.act.make_job`, :func:`verif.act.reject_job`); the
checking is :func:`verif.axis.run_job_frames`.
"""

import cocotb
import numpy as np

from sparsehw.golden import act as golden
from sparsehw.hw.act_engine import ACT_PARAMS
from sparsehw.verif import common
from sparsehw.verif.act import PORTS, layouts_of, make_job, reject_job
from sparsehw.verif.axis import run_job_frames, start


@cocotb.test()
async def act_axis_random_pauses(dut):
    """Every op built, rows of several lengths (partial last beats), rejected commands between
    correct ones, pauses on every AXIS endpoint."""
    params = common.params(ACT_PARAMS)
    ops = [op for op in golden.OPS if op in params["ops"].split(",")]
    knobs = common.workload()
    pause = float(knobs.get("pause", 0.3))
    gen = np.random.default_rng(common.rng(1).getrandbits(32))
    lanes = params["lanes"]
    jobs = []
    for k, op in enumerate(ops):
        for n in (1, lanes + 1, 3 * lanes - 1):
            jobs.append(make_job(gen, params, op, min(n, params["max_row"]),
                                 kind=("random", "corner")[k % 2]))
        if k == 0:
            jobs.append(reject_job(params, op=7, n=1))              # unknown op
            jobs.append(reject_job(params, op=golden.OP_CODES[op], n=0))
    assert sum(e["error"] for job in jobs for e in job.expected) == 2
    axis = await start(dut, knobs["interfaces"], rng=common.rng(2), pause=pause)
    rows = await run_job_frames(dut, axis, jobs, layouts_of(params), PORTS, "o", pause=pause)
    common.record(jobs=len(jobs), beats=rows)
