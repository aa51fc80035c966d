"""cocotb regression of the SPU's AXI4-Stream top (``AxisTop(SPU(...))``) against golden/spu.py.

Driven and checked only through cocotbext-axi: an ``AxiStreamSource`` and an
``AxiStreamMonitor`` on each of ``s_axis_cfg/act/w/post``, an ``AxiStreamSink`` on
``m_axis_o``, random pauses on every source and on the sink. Each input frame is one GEMM's
beats of that port; each output frame must be exactly one GEMM's rows, ``tlast`` on its last
row (or the single ``cfg_error`` beat of a rejected configuration). Jobs come from the SPU
regression's generator (:func:`verif.spu.make_job`, :func:`verif.spu.reject_job`). The bit
table of every interface arrives as the workload knob ``interfaces`` (the top's
:attr:`hw.axis.AxisTop.interfaces`), so beats are packed and unpacked by the table the
generated JSON documents. Generation parameters come from ``verif.common.params()``.
"""

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, with_timeout

from sparsehw.hw.spu import SPU_PARAMS
from sparsehw.verif import common
from sparsehw.verif.axis import AxisPorts, flatten
from sparsehw.verif.spu import PORTS, layouts_of, make_job, reject_job
from sparsehw.verif.stream import unpack


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
    lay = layouts_of(params)
    gen = np.random.default_rng(common.rng(1).getrandbits(32))
    jobs = _jobs(gen, params)
    assert sum(e["error"] for job in jobs for e in job.expected) >= 1
    assert sum(e["cfg_error"] for job in jobs for e in job.expected) == 2

    Clock(dut.aclk, 10, unit="ns").start()
    dut.aresetn.value = 0
    axis = AxisPorts(dut, knobs["interfaces"], rng=common.rng(2), pause=pause)
    for _ in range(4):
        await RisingEdge(dut.aclk)
    dut.aresetn.value = 1
    await RisingEdge(dut.aclk)

    sent = {port: [] for port in PORTS}
    for job in jobs:
        for port in PORTS:
            if job.beats[port]:
                beats = [flatten(unpack(lay[port], word)) for word in job.beats[port]]
                frame = axis.frame(f"s_axis_{port}", beats)
                sent[port].append(list(frame.tdata))
                axis.sources[f"s_axis_{port}"].send_nowait(frame)

    budget = 200 + 3 * sum(len(job.beats["w"]) + len(job.beats["act"]) + 10 for job in jobs)
    budget = int(budget / (1 - pause) ** 2)
    for j, job in enumerate(jobs):
        frame = await with_timeout(axis.sinks["m_axis_o"].recv(), budget * 10, "ns")
        got = axis.beats("m_axis_o", frame)
        want = [flatten({k: v for k, v in beat.items() if k != "last"}) for beat in job.expected]
        assert len(got) == len(want), (f"job {j} ({job.info}): frame of {len(got)} beats (tlast "
                                       f"on the last), expected {len(want)} rows")
        for r, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"job {j} ({job.info}) row {r}: got {g}, expected {w}"

    for port in PORTS:
        name = f"s_axis_{port}"
        assert axis.sources[name].empty() and not axis.sources[name].active, \
            f"{name}: the source still holds beats after the last output"
        accepted = []
        while not axis.monitors[name].empty():
            accepted.append(list(axis.monitors[name].recv_nowait().tdata))
        assert accepted == sent[port], f"{name}: the beats the top accepted differ from those sent"
    for _ in range(20):
        await RisingEdge(dut.aclk)
    assert axis.sinks["m_axis_o"].empty(), "output beats after the last expected row"
    common.record(jobs=len(jobs), rows=sum(len(job.expected) for job in jobs))
