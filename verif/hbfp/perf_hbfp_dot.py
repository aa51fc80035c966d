"""Throughput workload of ``hbfp_dot``: ``blocks`` block pairs back to back, no stalls by default.

Cycle counts come from the simulation (edges counted by the stream drivers), never from timers.
Every result is also checked against the golden model.
"""

import cocotb
import numpy as np

from sparsehw.hw.hbfp import DOT_OUT_LAYOUT, HBFP_DOT_PARAMS, dot_in_layout, dot_latency
from sparsehw.verif import common
from sparsehw.verif.hbfp import HBFP_DOT_WORKLOAD
from sparsehw.verif.hbfp.vectors import dot_ops
from sparsehw.verif.stream import collect, compare, endpoints, pack, start, unpack


@cocotb.test()
async def throughput(dut):
    p = common.params(HBFP_DOT_PARAMS)
    wl = check_workload(p, common.workload())
    block_size, m, mixed = p["block_size"], p["mant_bits"], bool(p["mixed"])
    blocks, per_dot, stall = wl["blocks"], wl["blocks_per_dot"], wl["stall"]
    rng = np.random.default_rng(common.rng(1).getrandbits(32))
    beats, expected = dot_ops(rng, block_size, m, mixed=mixed, partials=p["add_stages"] + 1,
                              ops=-(-blocks // per_dot),
                              fixed_blocks=per_dot, lo=-20, hi=20, p_invalid=0.0)
    beats = beats[:blocks]
    layout = dot_in_layout(block_size, m, mixed)
    await start(dut, sources=("i",), sinks=("o",))
    src, sink = endpoints(dut, "i", "o", stall=stall, salt=2)
    src.send_nowait(pack(layout, beat) for beat in beats)
    n_out = sum(beat["last"] for beat in beats)
    got = await collect(sink, n_out, timeout_cycles=10 * blocks + 100,
                        decode=lambda bits: unpack(DOT_OUT_LAYOUT, bits)["value"])
    compare(got, [want[0] for want in expected[:n_out]], what="dot product")
    # Beats after the last complete dot product produce no output: count the input window up
    # to the last beat actually taken, not to the moment the last output appeared.
    await src.wait_idle(timeout_cycles=10 * blocks + 100)
    assert src.transfers == blocks
    accept_cycles = src.last_cycle - src.first_cycle + 1
    cycles = max(sink.last_cycle, src.last_cycle) - src.first_cycle + 1
    latency = dot_latency(p["add_stages"])
    common.record(cycles=cycles, ideal_cycles=blocks + latency, blocks=blocks,
                  dot_products=n_out, input_cycles=accept_cycles,
                  utilization=blocks / accept_cycles,
                  input_bits_per_cycle=blocks * layout.size / cycles,
                  input_bits_per_block=layout.size)


def check_workload(params, workload):
    """``workload`` validated (defaults filled in); ``ValueError``/``TypeError`` naming the knob."""
    return HBFP_DOT_WORKLOAD.validate(params, **workload)


def run_perf(params, workload, *, sim, seed, build_dir):
    """Build ``hbfp_dot`` with ``params``, run :func:`throughput`, return the perf record
    (:func:`verif.runner.perf_record`: a failed run is ``passed = False`` and a one-line
    ``error``, not an exception)."""
    from sparsehw.hw.hbfp import HbfpDot
    from sparsehw.verif.runner import perf_record, run_cocotb
    workload = check_workload(params, workload)
    result = run_cocotb(HbfpDot(**params), "hbfp_dot", "sparsehw.verif.hbfp.perf_hbfp_dot",
                        build_dir=build_dir, sim=sim, seed=seed, params=params,
                        workload=workload)
    keys = ("cycles", "ideal_cycles", "utilization", "input_bits_per_cycle", "blocks",
            "dot_products", "input_cycles", "input_bits_per_block")
    return perf_record(result, sim=sim, keys=keys)
