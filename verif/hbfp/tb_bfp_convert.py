"""cocotb regression of ``bfp_convert`` against :func:`golden.hbfp.quantize`."""

import cocotb
import numpy as np

from sparsehw.golden.hbfp import INVALID_EXP, quantize
from sparsehw.hw.hbfp import bfp_out_layout
from sparsehw.verif import common
from sparsehw.verif.hbfp.vectors import corner_blocks, wide_values
from sparsehw.verif.stream import StreamSink, StreamSource, pack, reset, start_clock, unpack


@cocotb.test()
async def blocks_match_golden_with_stalls(dut):
    """Corner blocks, wide-range values (2**-40..2**40), huge+tiny, random bit patterns."""
    p = common.params()
    B, m = int(p["block_size"]), int(p["mant_bits"])
    wl = common.workload()
    rng = np.random.default_rng(common.rng(1).getrandbits(32))
    n = int(wl.get("blocks", 300))
    blocks = corner_blocks(rng, B)
    blocks += list(wide_values(rng, (n, B)))
    huge_tiny = wide_values(rng, (n // 4, B), -40, -30)
    huge_tiny[:, 0] = wide_values(rng, n // 4, 30, 40)
    blocks += list(huge_tiny)
    raw = rng.integers(0, 1 << 32, (n // 4, B), dtype=np.uint64).astype(np.uint32)
    blocks += list(raw.view(np.float32))                 # every exponent, subnormals, NaN, Inf
    blocks = [np.asarray(x, np.float32) for x in blocks]
    order = rng.permutation(len(blocks))
    blocks = [blocks[i] for i in order]

    start_clock(dut)
    await reset(dut)
    layout = bfp_out_layout(B, m)
    stall = float(wl.get("stall", 0.3))
    src = StreamSource(dut, "i", rng=common.rng(2), stall=stall)
    sink = StreamSink(dut, "o", rng=common.rng(3), stall=stall)
    src.send_nowait(sum(int(v) << (32 * k) for k, v in enumerate(x.view(np.uint32)))
                    for x in blocks)
    await sink.wait_for(len(blocks), timeout_cycles=40 * len(blocks) + 100)
    bad = []
    for x, item in zip(blocks, sink.items):
        got = unpack(layout, item)
        q, e = quantize(x, m, B)
        want = {"mant": [int(v) for v in q[0]], "exp": int(e[0]),
                "invalid": int(e[0] == INVALID_EXP)}
        if got != want:
            bad.append(f"{x.view(np.uint32)}: got {got}, want {want}")
    assert not bad, f"{len(bad)} of {len(blocks)} blocks differ, e.g.\n" + "\n".join(bad[:5])
    common.record(blocks=len(blocks), cycles=sink.last_cycle + 1)
