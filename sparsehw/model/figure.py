"""S4's Figure 2 from our cycle models: end-to-end speedup versus sparsity for MiniLM and ResNet-50.

The chip cycle model's per-instruction costs are checked against the chip RTL per operator kind
(:mod:`sparsehw.model.calibrate`, docs/model.md); the figure's cycles themselves are the model's.

``python -m sparsehw.model.figure [--out docs/img/s4_fig2]`` writes the PNG and SVG and prints
the table (JSON) that ``docs/model.md`` shows.

- **MiniLM** (all-MiniLM-L6 shapes: H 384, 12 heads, FFN 1536, 6 layers): one encoder layer
  compiled by :func:`golden.chip_compile.compile_encoder_layer` and run on the golden chip model
  (4 subsystems) with the **chip cycle model** (``docs/chip.md``, "Cycle model"): every weight
  GEMM at 1:m, attention's products dense, softmax / LayerNorm / GELU / residual adds on the
  activation engine, gathers over the ring. Cycles x 6 layers (identical shapes). Random int8
  weights: cycles depend on shapes and patterns only. The host step between the layer's two
  phases (k, v into the weight memory) is not counted.
- **ResNet-50**: :func:`sparsehw.model.resnet.speedup_table` (the SPU cycle rule per
  convolution, output channels over 4 subsystems; no ring, no pooling).
- FLOP-predicted speedup: dense MACs / executed MACs (attention's products stay dense).
- Amdahl bound: total cycles at 1:1 / the cycles that sparsity cannot shrink (attention GEMMs,
  activation engine, ring waits, drain).
"""

import argparse
import json
import math

import numpy as np

from sparsehw.golden.chip_compile import EncoderLayer, GemmLayer, run_encoder_layer
from sparsehw.model import resnet

__all__ = ["minilm_sweep", "figure", "MS", "MINILM_CHIP"]

MS = (1, 2, 4, 8, 16, 32)
#: Chip parameters big enough for one MiniLM layer of 32 tokens (the most the 15-bit bank
#: addresses hold with every tensor of a layer resident).
MINILM_CHIP = dict(subsystems=4, lanes=4, macs=2, max_k=2048, bank_rows=32768,
                   wmem_depth=1 << 20, pmem_depth=8192, imem_depth=1024, act_engine=True,
                   act_max_row=512)


def _layer(rng, hidden, heads, ffn, m):
    def g(o, k):
        shift = max(1, round(math.log2(74 * 74 * math.sqrt(k / m) / 40)))
        return GemmLayer(rng.integers(-128, 128, (o, k)).astype(np.int8), 1, m,
                         rng.integers(-2000, 2000, o), np.ones(o, int), np.full(o, shift), False)

    def ln():
        return rng.integers(2048, 6144, hidden), rng.integers(-200, 200, hidden), 8, 3
    return EncoderLayer(qkv=[g(hidden, hidden) for _ in range(3)], wo=g(hidden, hidden),
                        w1=g(ffn, hidden), w2=g(hidden, ffn), heads=heads, score_post=(1, 10),
                        ctx_post=(1, 7), softmax=(3, 15, 8), add1=(0, 0, 1), ln1=ln(),
                        gelu=(5, 8, 3), add2=(0, 0, 1), ln2=ln())


def minilm_sweep(ms=MS, tokens=32, layers=6, hidden=384, heads=12, ffn=1536, subsystems=4,
                 params=None):
    """Per ``1:m``: chip-model cycles of ``layers`` encoder layers and their breakdown."""
    params = params or MINILM_CHIP
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (hidden, tokens)).astype(np.int8)
    weight = layers * tokens * (4 * hidden * hidden + 2 * hidden * ffn)
    attention = layers * 2 * tokens * tokens * hidden
    out = []
    for m in ms:
        _, _, compiled, cycles = run_encoder_layer(_layer(rng, hidden, heads, ffn, m), x,
                                                   subsystems, params)
        parts = {}
        for phase in compiled.breakdowns:
            for key, value in phase.items():
                parts[key] = parts.get(key, 0) + layers * value
        out.append({"m": m, "cycles": layers * sum(cycles), "parts": parts,
                    "flop_speedup": (weight + attention) / (weight / m + attention)})
    base = out[0]
    fixed = sum(v for k, v in base["parts"].items() if k != "weight_gemm")
    for row in out:
        row["speedup"] = base["cycles"] / row["cycles"]
        row["amdahl_bound"] = base["cycles"] / fixed
    return out


def figure(out="docs/img/s4_fig2", ms=MS):
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "sparsehw"     # deterministic SVG ids
    import matplotlib.pyplot as plt
    mini = minilm_sweep(ms)
    res = resnet.speedup_table(ms)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(ms, [r["speedup"] for r in res], "o-", color="tab:blue",
            label="ResNet-50 (SPU cycle model)")
    ax.plot(ms, ms, ":", color="tab:blue", label="ResNet-50 FLOP-predicted")
    ax.plot(ms, [r["speedup"] for r in mini], "s-", color="tab:red",
            label="MiniLM, 32 tokens (chip cycle model)")
    ax.plot(ms, [r["flop_speedup"] for r in mini], ":", color="tab:red",
            label="MiniLM FLOP-predicted")
    ax.axhline(mini[0]["amdahl_bound"], color="tab:red", ls="--", lw=0.8,
               label=f"MiniLM Amdahl bound ({mini[0]['amdahl_bound']:.1f}x)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(ms, [f"1:{m}" for m in ms])
    ax.set_xlabel("sparsity (N:M, every weight GEMM)")
    ax.set_ylabel("end-to-end speedup over dense, 4 subsystems")
    ax.set_title("S4 Figure 2: cycle models, MiniLM's costs checked on the chip RTL")
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(f"{out}.{ext}", dpi=120, metadata={"Date": None} if ext == "svg" else None)
    plt.close(fig)
    return {"minilm": mini, "resnet50": res}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/s4_fig2")
    args = parser.parse_args(argv)
    print(json.dumps(figure(args.out), indent=1))


if __name__ == "__main__":
    main()
