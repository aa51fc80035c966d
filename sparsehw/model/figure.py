"""S4's Figure 2 from our cycle models: end-to-end speedup versus sparsity for MiniLM and ResNet-50.

The chip cycle model's per-instruction costs are checked against the chip RTL per operator kind
(:mod:`sparsehw.model.calibrate`, docs/model.md); the figure's cycles themselves are the model's.

``python -m sparsehw.model.figure [--out docs/img/s4_fig2]`` writes the PNG and SVG and prints
the table (JSON) that ``docs/model.md`` shows.

- **Chip** (:data:`MINILM_CHIP`): 4 subsystems, ``lanes`` 16 (a bank row holds 16 tokens;
  the SPU computes 16 token columns x ``macs`` 2 nonzero weights per cycle), ``act_rows`` 2,
  an activation engine per subsystem; banks of 32,768 rows (the ISA's 15-bit row addresses).
  At the default ``lanes`` 4 one MiniLM layer of 128 tokens needs 49,152 rows for the FFN's
  intermediate alone; at ``lanes`` 16 the whole layer is resident (24,576 rows per bank).
- **MiniLM** (all-MiniLM-L6 shapes: H 384, 12 heads, FFN 1536, 6 layers; 128 tokens): one
  encoder layer compiled by :func:`golden.chip_compile.compile_encoder_layer` and run on the
  golden chip model (4 subsystems) with the **chip cycle model** (``docs/chip.md``, "Cycle
  model"): every weight GEMM at 1:m, attention's products dense, softmax / LayerNorm / GELU /
  residual adds on the activation engine, gathers over the ring; its output checked bit-exact
  against :func:`golden.chip_compile.reference_encoder_layer` at every sparsity. Cycles x 6
  layers (identical shapes). Random int8 weights: cycles depend on shapes and patterns only.
  Not counted: the host step between the layer's two phases (k, v into the weight memory),
  the embeddings and the pooling (host).
- **ResNet-50**: :func:`sparsehw.model.resnet.speedup_table` at the same chip parameters (the
  SPU cycle rule per convolution, output channels over 4 subsystems; no ring, no pooling).
- FLOP-predicted speedup: dense MACs / executed MACs (attention's products stay dense).
- Amdahl bound: total cycles at 1:1 / the cycles at 1:1 that sparsity cannot shrink
  (everything but the weight GEMMs' beats). X-load bound: the same with the weight GEMMs at
  their floor (every weight row down to one beat: ``k / act_rows - 1 + o`` cycles per tile),
  i.e. the limit of the cycle model as ``m`` grows.
"""

import argparse
import json

import numpy as np

from sparsehw.golden.chip import Gemm, beats_per_row
from sparsehw.golden.chip_compile import (random_encoder_layer, reference_encoder_layer,
                                         run_encoder_layer)
from sparsehw.model import resnet

__all__ = ["minilm_sweep", "resnet_sweep", "figure", "MS", "MINILM_CHIP", "TOKENS"]

MS = (1, 2, 4, 8, 16, 32)
TOKENS = 128
#: The chip of the figure (both models): 4 subsystems of lanes 16, macs 2, act_rows 2, with
#: the activation engine; memories big enough for one MiniLM layer of 128 tokens resident.
MINILM_CHIP = dict(subsystems=4, lanes=16, macs=2, act_rows=2, max_k=2048, bank_rows=32768,
                   wmem_depth=1 << 20, pmem_depth=8192, imem_depth=1024, act_engine=True,
                   act_max_row=512)
#: Categories of :meth:`golden.chip_compile.CompiledLayer.cycle_categories` that sparsity
#: shrinks (the Amdahl bound's complement).
SHRINKS = ("weight_beats", "weight_xload")


def _floor(compiled, phase, s, params):
    """Weight-GEMM cycles of subsystem ``s``'s program at their floor (one beat per row)."""
    program = compiled.phase1[s] if phase == 1 else compiled.phase2[s]
    att = {a for (t, _, _), a in compiled.att_w.items() if t == s}
    return sum(max(0, i.k // params["act_rows"] - 1) + i.o for i in program
               if isinstance(i, Gemm) and i.w_addr not in att)


def minilm_sweep(ms=MS, tokens=TOKENS, layers=6, hidden=384, heads=12, ffn=1536, subsystems=4,
                 params=None, check=True):
    """Per ``1:m``: chip-model cycles of ``layers`` encoder layers, their categories on the
    critical path (:meth:`~golden.chip_compile.CompiledLayer.cycle_categories`, both phases,
    x ``layers``), the FLOP-predicted speedup and (``check``) whether the chip's output was
    bit-exact against :func:`golden.chip_compile.reference_encoder_layer`."""
    params = params or MINILM_CHIP
    weight = layers * tokens * (4 * hidden * hidden + 2 * hidden * ffn)
    attention = layers * 2 * tokens * tokens * hidden
    out = []
    for m in ms:
        rng = np.random.default_rng(m)
        layer = random_encoder_layer(rng, hidden, heads, ffn, (1, m))
        x = rng.integers(-128, 128, (hidden, tokens)).astype(np.int8)
        y, model, compiled, cycles = run_encoder_layer(layer, x, subsystems, params)
        parts, floor = {}, 0
        for phase, (s, cats) in enumerate(compiled.categories, start=1):
            for key, value in cats.items():
                parts[key] = parts.get(key, 0) + layers * value
            floor += layers * _floor(compiled, phase, s, compiled.params)
        row = {"m": m, "cycles": layers * sum(cycles), "parts": parts, "floor": floor,
               "nonzero_weight_macs": weight // m, "attention_macs": attention,
               "flop_speedup": (weight + attention) / (weight / m + attention)}
        assert sum(parts.values()) == row["cycles"]
        if check:
            row["bit_exact"] = bool(np.array_equal(y, reference_encoder_layer(layer, x)))
        out.append(row)
    base = out[0]
    fixed = sum(v for k, v in base["parts"].items() if k not in SHRINKS)
    for row in out:
        row["speedup"] = base["cycles"] / row["cycles"]
        row["amdahl_bound"] = base["cycles"] / fixed
        row["xload_bound"] = base["cycles"] / (fixed + base["floor"])
    return out


def resnet_sweep(ms=MS, subsystems=4, params=None):
    """:func:`sparsehw.model.resnet.speedup_table` at the figure's chip, with the same bounds:
    Amdahl (everything but the weight beats at 1:1: the pipeline latency) and X-load (every
    weight row down to one beat)."""
    from sparsehw.golden.chip import chip_params
    from sparsehw.golden.spu import SPU_PIPELINE_LATENCY
    p = chip_params(params or MINILM_CHIP)
    rows = resnet.speedup_table(ms, subsystems, p)
    floor = 0
    for g in resnet.resnet50_gemms():
        tiles = -(-g["rows"] // p["lanes"])
        k = -(-g["k"] // p["act_rows"]) * p["act_rows"]
        floor += tiles * (max(0, k // p["act_rows"] - 1) + -(-g["cols"] // subsystems))
        floor += SPU_PIPELINE_LATENCY
    base = rows[0]
    for row in rows:
        row["amdahl_bound"] = base["cycles"] / base["parts"]["pipeline"]
        row["xload_bound"] = base["cycles"] / floor
    return rows


CATEGORIES = (("weight GEMMs (weight beats)", ("weight_beats",)),
              ("weight GEMMs: SPU X-load stalls", ("weight_xload",)),
              ("attention GEMMs", ("attention_gemm",)),
              ("ACT softmax", ("act_softmax",)), ("ACT LayerNorm", ("act_layernorm",)),
              ("ACT GELU", ("act_gelu",)), ("ACT residual add", ("act_add", "act_other")),
              ("ring: WAIT stalls", ("ring_wait", "send")),
              ("sequencer issue + drain", ("issue", "drain")))


def tables(result):
    """docs/model.md's markdown tables from :func:`figure`'s result."""
    mini, res = result["minilm"], result["resnet50"]
    head = "| | " + " | ".join(f"1:{r['m']}" for r in mini) + " |"
    sep = "|---" * (len(mini) + 1) + "|"

    def line(name, values):
        return f"| {name} | " + " | ".join(values) + " |"
    lines = [head, sep,
             line(f"MiniLM cycles, {TOKENS} tokens, 6 layers (chip model)",
                  [f"{r['cycles']:,}" for r in mini]),
             line("MiniLM speedup", [f"{r['speedup']:.2f}" for r in mini]),
             line("MiniLM FLOP-predicted", [f"{r['flop_speedup']:.2f}" for r in mini]),
             line("MiniLM Amdahl bound", [f"{r['amdahl_bound']:.2f}" for r in mini]),
             line("MiniLM X-load bound", [f"{r['xload_bound']:.2f}" for r in mini]),
             line("MiniLM bit-exact vs reference_encoder_layer",
                  ["yes" if r.get("bit_exact") else "no" if "bit_exact" in r else "not checked"
                   for r in mini]),
             line("ResNet-50 cycles (SPU rule)", [f"{r['cycles']:,}" for r in res]),
             line("ResNet-50 speedup", [f"{r['speedup']:.2f}" for r in res]),
             line("ResNet-50 FLOP-predicted", [f"{r['flop_speedup']}" for r in res]),
             line("ResNet-50 Amdahl bound", [f"{r['amdahl_bound']:,.0f}" for r in res]),
             line("ResNet-50 X-load bound", [f"{r['xload_bound']:.2f}" for r in res])]
    lines += ["", "| MiniLM, critical path | " + " | ".join(f"1:{r['m']}" for r in mini)
              + " |", sep]
    for name, keys in CATEGORIES:
        cells = []
        for r in mini:
            v = sum(r["parts"].get(k, 0) for k in keys)
            cells.append(f"{v:,} ({100 * v / r['cycles']:.1f}%)")
        lines.append(line(name, cells))
    lines.append(line("total", [f"{r['cycles']:,}" for r in mini]))
    lines += ["", "| ResNet-50 | " + " | ".join(f"1:{r['m']}" for r in res) + " |", sep]
    for name, key in (("weight GEMMs (weight beats)", "weight_beats"),
                      ("weight GEMMs: SPU X-load stalls", "weight_xload"),
                      ("SPU pipeline latency", "pipeline")):
        lines.append(line(name, [f"{r['parts'][key]:,} ({100 * r['parts'][key] / r['cycles']:.1f}%)"
                                 for r in res]))
    lines.append(line("total", [f"{r['cycles']:,}" for r in res]))
    return "\n".join(lines)


def figure(out="docs/img/s4_fig2", ms=MS, check=True):
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "sparsehw"     # deterministic SVG ids
    import matplotlib.pyplot as plt
    mini = minilm_sweep(ms, check=check)
    res = resnet_sweep(ms)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ax.plot(ms, [r["speedup"] for r in res], "o-", color="tab:blue",
            label="ResNet-50 (SPU cycle rule)")
    ax.plot(ms, ms, ":", color="tab:blue", label="ResNet-50 FLOP-predicted")
    ax.axhline(res[0]["xload_bound"], color="tab:blue", ls="--", lw=0.8,
               label=f"ResNet-50 X-load bound ({res[0]['xload_bound']:.1f}x)")
    ax.plot(ms, [r["speedup"] for r in mini], "s-", color="tab:red",
            label=f"MiniLM, {TOKENS} tokens (chip cycle model)")
    ax.plot(ms, [r["flop_speedup"] for r in mini], ":", color="tab:red",
            label="MiniLM FLOP-predicted")
    ax.axhline(mini[0]["amdahl_bound"], color="tab:red", ls="--", lw=0.8,
               label=f"MiniLM Amdahl bound ({mini[0]['amdahl_bound']:.1f}x)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(ms, [f"1:{m}" for m in ms])
    ax.set_xlabel("sparsity (N:M, every weight GEMM)")
    ax.set_ylabel("end-to-end speedup over dense")
    ax.set_title("S4 Figure 2 (cycle models): 4 subsystems, lanes 16, macs 2, act_rows 2",
                 fontsize=9)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(f"{out}.{ext}", dpi=120, metadata={"Date": None} if ext == "svg" else None)
    plt.close(fig)
    return {"chip": MINILM_CHIP, "tokens": TOKENS, "minilm": mini, "resnet50": res}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/s4_fig2")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the bit-exact check against reference_encoder_layer")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = figure(args.out, check=not args.no_check)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(tables(result))


if __name__ == "__main__":
    main()
