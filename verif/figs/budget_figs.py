"""Budget sweep of one engine for ``sparsehw study figs-compare``.

One cocotb test, :func:`budget_sweep`, runs one K x O x B GEMM per (mask, N:M, budget) of the
workload (``engine``, ``k``, ``o``, ``b``, ``masks``, ``ratios``: list of ``[n, m]``,
``budgets``: activation bits per cycle, 0 = unlimited), each bit-exact against the golden GEMM,
and records cycles, the activations that crossed the port (nonzero values counted in the
delivered payloads; the activations have no zeros) and the predicted cycles. The weights of a
(mask, N:M) case come from a generator seeded by the case alone, so every engine runs the same
matrices.
"""

import zlib

import cocotb
import numpy as np

from sparsehw.golden import figs as gf
from sparsehw.verif import common
from sparsehw.verif.figs import PORTS, dut_params, make_weights, run_gemm
from sparsehw.verif.stream import start


@cocotb.test()
async def budget_sweep(dut):
    wl = common.workload()
    engine = wl["engine"]
    params = dut_params(engine)
    rows, cols, beta, width = params["rows"], params["cols"], params["beta"], params["width"]
    await start(dut, **PORTS)
    k, o, b = wl["k"], wl["o"], wl["b"]
    runs = []
    for mask in wl["masks"]:
        for n, m in wl["ratios"]:
            rng = np.random.default_rng(zlib.crc32(f"{mask} {n}:{m}".encode()))
            w = make_weights(mask, o, k, n, m, rng)
            x = rng.integers(-128, 128, size=(k, b))
            x[x == 0] = 1
            for budget in wl["budgets"]:
                salt = 1000 * n + 10 * m + budget
                fig = await run_gemm(dut, engine, params, w, x, n, m, budget=budget,
                                     rngs=(common.rng(salt), common.rng(salt + 1),
                                           common.rng(salt + 2)))
                assert int(dut.fault.value) == 0
                ideal = o * (k * n // m) * b / (rows * cols * beta)
                runs.append({
                    "mask": mask, "n": n, "m": m, "budget": budget, "cycles": fig["cycles"],
                    "act_values": fig["act_values"], "instances": fig["instances"],
                    "tiles": fig["tiles"], "phases": fig["phases"],
                    "utilization": ideal / fig["cycles"],
                    "input_bits_per_cycle": fig["act_values"] * width / fig["cycles"],
                    "predicted_cycles": gf.predicted_cycles(
                        engine, n, m, k=k, o=o, b=b, rows=rows, cols=cols, beta=beta,
                        width=width, budget=budget, phases=fig["phases"]),
                })
                dut._log.info(f"{engine} {mask} {n}:{m} budget {budget}: {fig['cycles']} cycles")
    common.record(runs=runs)
