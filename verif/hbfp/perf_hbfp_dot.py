"""Throughput workload of ``hbfp_dot``: ``blocks`` block pairs back to back, no stalls by default.

Cycle counts come from the simulation (edges counted by the stream drivers), never from timers.
Every result is also checked against the golden model.
"""

import cocotb
import numpy as np

from sparsehw.hw.hbfp import DOT_OUT_LAYOUT, dot_in_layout
from sparsehw.verif import common
from sparsehw.verif.hbfp.vectors import dot_ops
from sparsehw.verif.stream import StreamSink, StreamSource, pack, reset, start_clock, unpack


@cocotb.test()
async def throughput(dut):
    p = common.params()
    wl = common.workload()
    B, m, mixed = int(p["block_size"]), int(p["mant_bits"]), bool(p.get("mixed"))
    blocks = int(wl.get("blocks", 10000))
    per_dot = int(wl.get("blocks_per_dot", 16))
    stall = float(wl.get("stall", 0.0))
    rng = np.random.default_rng(common.rng(1).getrandbits(32))
    beats, expected = dot_ops(rng, B, m, mixed=mixed, ops=-(-blocks // per_dot),
                              fixed_blocks=per_dot, lo=-20, hi=20, p_invalid=0.0)
    beats = beats[:blocks]
    layout = dot_in_layout(B, m, mixed)
    start_clock(dut)
    await reset(dut)
    src = StreamSource(dut, "i", rng=common.rng(2), stall=stall)
    sink = StreamSink(dut, "o", rng=common.rng(3), stall=stall)
    src.send_nowait(pack(layout, beat) for beat in beats)
    n_out = sum(beat["last"] for beat in beats)
    await sink.wait_for(n_out, timeout_cycles=10 * blocks + 100)
    from sparsehw.golden.fp32 import same
    mismatches = sum(not same(unpack(DOT_OUT_LAYOUT, item)["value"], want[0])
                     for item, want in zip(sink.items, expected))
    assert mismatches == 0, f"{mismatches} of {n_out} dot products differ from the golden model"
    accept_cycles = src.last_cycle - src.first_cycle + 1
    cycles = sink.last_cycle - src.first_cycle + 1
    common.record(cycles=cycles, ideal_cycles=blocks + 4, blocks=blocks,
                  dot_products=n_out, input_cycles=accept_cycles,
                  utilization=blocks / accept_cycles,
                  input_bits_per_cycle=blocks * layout.size / cycles,
                  input_bits_per_block=layout.size)


def run_perf(params, workload, *, sim, seed, build_dir):
    """Build ``hbfp_dot`` with ``params``, run :func:`throughput`, return the perf figures."""
    from sparsehw.hw.hbfp import HbfpDot
    from sparsehw.verif.runner import run_cocotb
    result = run_cocotb(HbfpDot(**params), "hbfp_dot", "sparsehw.verif.hbfp.perf_hbfp_dot",
                        build_dir=build_dir, sim=sim, seed=seed, params=params,
                        workload=workload)
    if not result.passed:
        raise RuntimeError(f"hbfp_dot perf run failed ({'; '.join(result.errors) or 'test'}); "
                           f"see {result.log}")
    keys = ("cycles", "ideal_cycles", "utilization", "input_bits_per_cycle", "blocks",
            "dot_products", "input_cycles", "input_bits_per_block")
    return {k: result.record[k] for k in keys if k in result.record} | {"sim": sim}
