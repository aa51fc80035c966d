"""cocotb regression of ``hbfp_dot``'s AXI4-Stream top against :func:`golden.hbfp.dot`.

Only cocotbext-axi drives and checks the top: an ``AxiStreamSource`` and an ``AxiStreamMonitor``
on ``s_axis_i``, an ``AxiStreamSink`` on ``m_axis_o``, random pauses on both sides. Here the
input's ``tlast`` carries meaning: each dot product is one input frame, ``tlast`` on its last
block pair (the payload's ``last`` field), so a top that ignored ``tlast`` would merge dot
products and fail. ``m_axis_o`` has no ``tlast``: every beat is one result. Dot products and
their expected results come from the HBFP regression's generator
(:func:`verif.hbfp.vectors.dot_ops`), malformed and invalid blocks included.
"""

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, with_timeout

from sparsehw.golden.fp32 import same
from sparsehw.hw.hbfp import HBFP_DOT_PARAMS
from sparsehw.verif import common
from sparsehw.verif.axis import flatten, start
from sparsehw.verif.hbfp.vectors import dot_ops


@cocotb.test()
async def hbfp_dot_axis_random_pauses(dut):
    """Multi-block dot products (invalid and malformed blocks included), pauses everywhere."""
    params = common.params(HBFP_DOT_PARAMS)
    knobs = common.workload()
    pause = float(knobs.get("pause", 0.3))
    rng = np.random.default_rng(common.rng(1).getrandbits(32))
    beats, expected = dot_ops(rng, int(params["block_size"]), int(params["mant_bits"]),
                              mixed=bool(params["mixed"]), ops=int(knobs.get("ops", 40)),
                              p_malformed=0.1)
    assert any(e[2] for e in expected) and not all(e[2] for e in expected)

    axis = await start(dut, knobs["interfaces"], rng=common.rng(2), pause=pause)

    frames, current = [], []
    for beat in beats:
        current.append(flatten({k: v for k, v in beat.items() if k != "last"}))
        if beat["last"]:
            frames.append(current)
            current = []
    assert not current and len(frames) == len(expected)
    sent = []
    for frame_beats in frames:
        frame = axis.frame("s_axis_i", frame_beats)
        sent.append(list(frame.tdata))
        axis.sources["s_axis_i"].send_nowait(frame)

    budget = int((40 * len(beats) + 200) / (1 - pause) ** 2)
    bad = []
    for n, (value, invalid, error) in enumerate(expected):
        frame = await with_timeout(axis.sinks["m_axis_o"].recv(), budget * 10, "ns")
        (got,) = axis.beats("m_axis_o", frame)       # no tlast: one beat per frame
        if not (same(got["value"], value) and got["invalid"] == invalid
                and got["error"] == error):
            bad.append(f"dot {n}: got {got}, want value={value:#010x} invalid={invalid} "
                       f"error={error}")
    assert not bad, f"{len(bad)} of {len(expected)} results differ:\n" + "\n".join(bad[:8])

    accepted = []
    while not axis.monitors["s_axis_i"].empty():
        accepted.append(list(axis.monitors["s_axis_i"].recv_nowait().tdata))
    assert accepted == sent, "the frames the top accepted differ from those sent"
    for _ in range(20):
        await RisingEdge(dut.aclk)
    assert axis.sinks["m_axis_o"].empty(), "results beyond the expected dot products"
    common.record(dot_products=len(expected), blocks=len(beats))
