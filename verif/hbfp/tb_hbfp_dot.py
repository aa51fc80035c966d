"""cocotb regression of ``hbfp_dot`` against :func:`golden.hbfp.dot`."""

import cocotb
import numpy as np

from sparsehw.hw.hbfp import DOT_OUT_LAYOUT, dot_in_layout
from sparsehw.verif import common
from sparsehw.verif.hbfp.vectors import dot_ops
from sparsehw.verif.stream import StreamSink, StreamSource, pack, reset, start_clock, unpack


async def _check(dut, beats, expected, stall, salt):
    p = common.params()
    layout = dot_in_layout(int(p["block_size"]), int(p["mant_bits"]), bool(p.get("mixed")))
    start_clock(dut)
    await reset(dut)
    src = StreamSource(dut, "i", rng=common.rng(salt), stall=stall)
    sink = StreamSink(dut, "o", rng=common.rng(salt + 1), stall=stall)
    src.send_nowait(pack(layout, beat) for beat in beats)
    await sink.wait_for(len(expected), timeout_cycles=40 * len(beats) + 100)
    from sparsehw.golden.fp32 import same
    bad = []
    for i, (item, (value, invalid, error)) in enumerate(zip(sink.items, expected)):
        got = unpack(DOT_OUT_LAYOUT, item)
        if not (same(got["value"], value) and got["invalid"] == invalid
                and got["error"] == error):
            bad.append(f"dot {i}: got {got}, want value={value:#010x} invalid={invalid} "
                       f"error={error}")
    assert not bad, f"{len(bad)} of {len(expected)} results differ:\n" + "\n".join(bad[:8])
    assert len(sink.items) == len(expected)
    return sink


@cocotb.test()
async def dot_products_match_golden_with_stalls(dut):
    """Random multi-block dot products, wide exponent range, invalid blocks, random stalls."""
    p = common.params()
    wl = common.workload()
    rng = np.random.default_rng(common.rng(1).getrandbits(32))
    beats, expected = dot_ops(rng, int(p["block_size"]), int(p["mant_bits"]),
                              mixed=bool(p.get("mixed")), ops=int(wl.get("ops", 120)))
    sink = await _check(dut, beats, expected, float(wl.get("stall", 0.3)), 2)
    common.record(blocks=len(beats), dot_products=len(expected), cycles=sink.last_cycle + 1)


@cocotb.test()
async def malformed_data_is_flagged(dut):
    """Out-of-range mantissas, exponents and (mixed) modes raise ``error`` and give NaN."""
    p = common.params()
    rng = np.random.default_rng(common.rng(5).getrandbits(32))
    beats, expected = dot_ops(rng, int(p["block_size"]), int(p["mant_bits"]),
                              mixed=bool(p.get("mixed")), ops=60, p_malformed=0.3)
    assert any(e[2] for e in expected) and not all(e[2] for e in expected)
    await _check(dut, beats, expected, 0.2, 6)
