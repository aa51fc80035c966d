"""cocotb regression of the SPU's AXI4-Stream top (``AxisTop(SPU(...))``) against golden/spu.py.

Driven and checked only through cocotbext-axi: an ``AxiStreamSource`` and an
``AxiStreamMonitor`` on each of ``s_axis_cfg/act/w/post``, an ``AxiStreamSink`` on
``m_axis_o``, random pauses on every source and on the sink. Each input frame is one GEMM's
beats of that port; each output frame must be exactly one GEMM's rows, ``tlast`` on its last
row (or the single ``cfg_error`` beat of a rejected configuration). Jobs come from the SPU
regression's generator (:func:`verif.spu.make_job`, :func:`verif.spu.reject_job`). The bit
table of every interface arrives as the workload knob ``interfaces`` (the top's
:attr:`hw.axis.AxisTop.interfaces`), so beats are packed and unpacked by the table the
generated JSON documents. Generation parameters come from ``verif.common.params()``; the
checking is :func:`verif.axis.run_job_frames`.
"""

import cocotb
import numpy as np

from sparsehw.hw.spu import SPU_PARAMS
from sparsehw.verif import common
from sparsehw.verif.axis import run_job_frames, start
from sparsehw.verif.spu import PORTS, layouts_of, make_job, reject_job


def _jobs(gen, params):
    """Every group size m with a random n, corner data, malformed rows and rejected
    configurations, each followed by correct work."""
    jobs = []
    m = 1
    unit = lambda m: max(m, params["act_rows"])                          # noqa: E731
    while m <= params["max_m"]:
        n = 1 << int(gen.integers(0, m.bit_length()))
        k = min(params["max_k"], unit(m) * int(gen.integers(1, 3)))
        jobs.append(make_job(gen, params, n=n, m=m, k=k, o=int(gen.integers(1, 4)),
                             relu=bool(gen.integers(0, 2)), corner=m in (1, params["max_m"])))
        m *= 2
    small_m = min(4, params["max_m"])
    jobs.append(make_job(gen, params, n=max(1, small_m // 2), m=small_m,
                         k=unit(small_m) * 2, o=3, relu=False, corrupt_rows=(1,)))
    jobs.append(reject_job(params, n_log2=2, m_log2=1, k=params["max_k"], o=1))      # n > m
    jobs.append(reject_job(params, n_log2=0, m_log2=0, k=params["max_k"], o=0))      # o == 0
    jobs.append(make_job(gen, params, n=1, m=small_m, k=params["max_k"], o=2, relu=True))
    return jobs


@cocotb.test()
async def spu_axis_random_pauses(dut):
    """GEMMs at every ratio and rejected configurations, pauses on every AXIS endpoint."""
    params = common.params(SPU_PARAMS)
    knobs = common.workload()
    pause = float(knobs.get("pause", 0.3))
    gen = np.random.default_rng(common.rng(1).getrandbits(32))
    jobs = _jobs(gen, params)
    assert sum(e["error"] for job in jobs for e in job.expected) >= 1
    assert sum(e["cfg_error"] for job in jobs for e in job.expected) == 2
    axis = await start(dut, knobs["interfaces"], rng=common.rng(2), pause=pause)
    rows = await run_job_frames(dut, axis, jobs, layouts_of(params), PORTS, "o", pause=pause)
    common.record(jobs=len(jobs), rows=rows)
