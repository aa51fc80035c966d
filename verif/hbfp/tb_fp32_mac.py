"""cocotb regression of ``fp32_mac`` against :func:`golden.fp32.fp32_mac_bits`, bit for bit: a NaN
result must be the canonical ``0x7FC00000``.

Functional coverage (:class:`verif.hbfp.cover.Fp32MacCoverage`, reported after every test,
cumulative): operand and result classes, product and sum rounding (exact, below/at/above a tie,
normal and subnormal), special cases, and the handshake bins of ``i`` and ``o``."""

import cocotb
import numpy as np

from sparsehw.golden.fp32 import fp32_mac_bits
from sparsehw.hw.fp32 import Fp32Mac
from sparsehw.verif import common
from sparsehw.verif.hbfp.cover import Fp32MacCoverage
from sparsehw.verif.hbfp.vectors import fp32_mac_vectors
from sparsehw.verif.stream import collect, compare, endpoints, pack, start


async def _run(dut, a, b, c, stall):
    await start(dut, sources=("i",), sinks=("o",))
    src, sink = endpoints(dut, "i", "o", stall=stall, salt=11)
    src.send_nowait(pack(Fp32Mac.layout, {"a": int(x), "b": int(y), "c": int(z)})
                    for x, y, z in zip(a, b, c))
    got = await collect(sink, len(a))
    want = [fp32_mac_bits(x, y, z) for x, y, z in zip(a, b, c)]
    compare(got, want, what="result", show=10,
            describe=lambda i, g, w: (f"a={int(a[i]):#010x} b={int(b[i]):#010x} "
                                      f"c={int(c[i]):#010x}: got {g:#010x}, want {w:#010x}"))
    cov = Fp32MacCoverage.get()
    for x, y, z, r in zip(a, b, c, want):
        cov.sample(x, y, z, r)
    cov.report(dut._log, i=src, o=sink)
    return sink


@cocotb.test()
async def random_and_corner_vectors_with_stalls(dut):
    """Thousands of random/corner triples, random valid/ready stalls on both streams."""
    wl = common.workload()
    rng = np.random.default_rng(common.rng(1).getrandbits(32))
    a, b, c = fp32_mac_vectors(rng, int(wl.get("vectors", 3000)))
    sink = await _run(dut, a, b, c, float(wl.get("stall", 0.3)))
    common.record(vectors=len(a), cycles=sink.last_cycle + 1)


@cocotb.test()
async def directed_corners(dut):
    """Every pair of special values (zeros, subnormal extremes, max, Inf, NaN) times a few c."""
    sp = [0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007FFFFF, 0x00800000, 0x3F800000,
          0xBF800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x7FC00000, 0x3F000000,
          0x1F800000, 0x5F800000]
    cs = [0x00000000, 0x80000000, 0x00000001, 0xBF800000, 0x7F800000, 0xFF800000, 0x7F7FFFFF]
    trip = np.array([(x, y, z) for x in sp for y in sp for z in cs], dtype=np.uint32)
    # exact cancellation: c = -(a*b) for exactly representable products
    trip2 = np.array([(0x3FC00000, 0x40000000, 0xC0400000), (0x3F800001, 0x3F800001, 0xBF800002),
                      (0x00800000, 0x3F000000, 0x80400000), (0x80000001, 0x3F000000, 0x00000000),
                      (0x00000001, 0x3F400000, 0x00000000),      # 0.75 * min subnormal: tie up
                      (0x00000003, 0x3F000000, 0x00000000)],     # 1.5 * min subnormal: tie even
                     dtype=np.uint32)
    trip = np.concatenate([trip, trip2])
    await _run(dut, trip[:, 0], trip[:, 1], trip[:, 2], 0.2)
