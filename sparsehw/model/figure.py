"""S4's Figure 2 from our cycle models: end-to-end speedup versus sparsity for MiniLM and ResNet-50.

The chip cycle model's per-instruction costs are checked against the chip RTL per operator kind
(:mod:`sparsehw.model.calibrate`, docs/model.md); the figure's cycles themselves are the model's.

``python -m sparsehw.model.figure [--out docs/img/s4_fig2]`` writes the PNG and SVG and prints
the table (JSON) that ``docs/model.md`` shows.

- **Chip** (:data:`MINILM_CHIP`): 4 subsystems of the reference SPU shape, ``lanes`` 4,
  ``macs`` 2, ``act_rows`` 2 (the shape the cycle model is calibrated at), an activation engine
  per subsystem, banks of 32,768 rows (the ISA's 15-bit row addresses). One MiniLM layer of 128
  tokens does not fit them with every tensor resident (49,152 rows for the FFN's intermediate
  alone), so it is **streamed** (:func:`golden.chip_compile.compile_encoder_layer_streamed`): a
  phase computing k and v of all 128 tokens, the host step (k, v into the weight memory), then
  8 phases of 16 tokens (:data:`CHUNK_TILES` tiles) each. For comparison, :data:`WIDE_CHIP`
  (``lanes`` 16: a bank row holds 16 tokens and the layer fits whole, two phases).
- **MiniLM** (all-MiniLM-L6 shapes: H 384, 12 heads, FFN 1536, 6 layers; 128 tokens): the
  encoder layer compiled for and run on the golden chip model (4 subsystems) with the **chip
  cycle model** (``docs/chip.md``, "Cycle model"): every weight GEMM at 1:m, attention's
  products dense, softmax / LayerNorm / GELU / residual adds on the activation engine, gathers
  over the ring; its output checked bit-exact against
  :func:`golden.chip_compile.reference_encoder_layer` at every sparsity. Cycles of every phase
  x 6 layers (identical shapes). Random int8 weights: cycles depend on shapes and patterns
  only. Not counted: the host step (k, v into the weight memory) and the host's program loads
  between phases, the embeddings and the pooling (host).
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

from sparsehw.golden.chip import Gemm
from sparsehw.golden.chip_compile import (random_encoder_layer, reference_encoder_layer,
                                         run_encoder_layer, run_encoder_layer_streamed)
from sparsehw.model import resnet

__all__ = ["minilm_sweep", "resnet_sweep", "figure", "tables", "MS", "MINILM_CHIP",
           "WIDE_CHIP", "CHUNK_TILES", "TOKENS"]

MS = (1, 2, 4, 8, 16, 32)
TOKENS = 128
#: The figure's chip (both models): 4 subsystems of the reference SPU shape (lanes 4, macs 2,
#: act_rows 2, the shape the cycle model is calibrated at) with the activation engine, memories
#: for one MiniLM layer; a 128-token layer is streamed in chunks of :data:`CHUNK_TILES` tiles.
MINILM_CHIP = dict(subsystems=4, lanes=4, macs=2, act_rows=2, max_k=2048, bank_rows=32768,
                   wmem_depth=1 << 20, pmem_depth=8192, imem_depth=1024, act_engine=True,
                   act_max_row=512)
#: Token tiles per chunk at lanes 4 (16 tokens: the most that fits next to the resident x, k, v).
CHUNK_TILES = 4
#: The same chip with lanes 16: a 128-token layer fits the banks whole (no streaming).
WIDE_CHIP = dict(MINILM_CHIP, lanes=16)
#: Categories of :meth:`golden.chip_compile.CompiledLayer.cycle_categories` that sparsity
#: shrinks (the Amdahl bound's complement).
SHRINKS = ("weight_beats", "weight_xload")


def _floor(compiled, phase, s, params):
    """Weight-GEMM cycles of subsystem ``s``'s program at their floor (one beat per row)."""
    att = {a for (t, _, _), a in compiled.att_w.items() if t == s}
    return sum(max(0, i.k // params["act_rows"] - 1) + i.o for i in compiled.program(phase, s)
               if isinstance(i, Gemm) and i.w_addr not in att)


def minilm_sweep(ms=MS, tokens=TOKENS, layers=6, hidden=384, heads=12, ffn=1536, subsystems=4,
                 params=None, chunk_tiles=None, check=True):
    """Per ``1:m``: chip-model cycles of ``layers`` encoder layers, their categories on the
    critical path (:meth:`~golden.chip_compile.CompiledLayer.cycle_categories`, every phase,
    x ``layers``), the FLOP-predicted speedup and (``check``) whether the chip's output was
    bit-exact against :func:`golden.chip_compile.reference_encoder_layer`. ``chunk_tiles``:
    the layer streamed by token chunks (:func:`golden.chip_compile.
    run_encoder_layer_streamed`); None: every tensor resident
    (:func:`golden.chip_compile.run_encoder_layer`)."""
    params = params or MINILM_CHIP
    weight = layers * tokens * (4 * hidden * hidden + 2 * hidden * ffn)
    attention = layers * 2 * tokens * tokens * hidden
    out = []
    for m in ms:
        rng = np.random.default_rng(m)
        layer = random_encoder_layer(rng, hidden, heads, ffn, (1, m))
        x = rng.integers(-128, 128, (hidden, tokens)).astype(np.int8)
        if chunk_tiles:
            y, model, compiled, cycles = run_encoder_layer_streamed(layer, x, chunk_tiles,
                                                                    subsystems, params)
        else:
            y, model, compiled, cycles = run_encoder_layer(layer, x, subsystems, params)
        parts, floor = {}, 0
        for phase, (s, cats) in enumerate(compiled.categories, start=1):
            for key, value in cats.items():
                parts[key] = parts.get(key, 0) + layers * value
            floor += layers * _floor(compiled, phase, s, compiled.params)
        row = {"m": m, "cycles": layers * sum(cycles), "phases": len(cycles), "parts": parts,
               "floor": floor, "nonzero_weight_macs": weight // m, "attention_macs": attention,
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


def _breakdown(rows, title):
    sep = "|---" * (len(rows) + 1) + "|"
    lines = [f"| {title} | " + " | ".join(f"1:{r['m']}" for r in rows) + " |", sep]
    for name, keys in CATEGORIES:
        cells = []
        for r in rows:
            v = sum(r["parts"].get(k, 0) for k in keys)
            cells.append(f"{v:,} ({100 * v / r['cycles']:.1f}%)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| total | " + " | ".join(f"{r['cycles']:,}" for r in rows) + " |")
    return lines


def tables(result):
    """docs/model.md's markdown tables from :func:`figure`'s result."""
    mini, wide, res = result["minilm"], result["minilm_lanes16"], result["resnet50"]
    head = "| | " + " | ".join(f"1:{r['m']}" for r in mini) + " |"
    sep = "|---" * (len(mini) + 1) + "|"

    def line(name, values):
        return f"| {name} | " + " | ".join(values) + " |"
    lines = [head, sep]
    for rows, label in ((mini, "MiniLM, lanes 4 (streamed)"), (wide, "MiniLM, lanes 16")):
        lines += [
            line(f"{label}: cycles, {TOKENS} tokens, 6 layers",
                 [f"{r['cycles']:,}" for r in rows]),
            line(f"{label}: speedup", [f"**{r['speedup']:.2f}**" for r in rows]),
            line(f"{label}: Amdahl bound", [f"{r['amdahl_bound']:.2f}" for r in rows]),
            line(f"{label}: X-load bound", [f"{r['xload_bound']:.2f}" for r in rows]),
            line(f"{label}: bit-exact vs reference_encoder_layer",
                 ["yes" if r.get("bit_exact") else "no" if "bit_exact" in r
                  else "not checked" for r in rows])]
    lines += [line("MiniLM FLOP-predicted", [f"{r['flop_speedup']:.2f}" for r in mini]),
              line("ResNet-50 cycles (SPU rule, lanes 4)", [f"{r['cycles']:,}" for r in res]),
              line("ResNet-50 speedup", [f"**{r['speedup']:.2f}**" for r in res]),
              line("ResNet-50 FLOP-predicted", [f"{r['flop_speedup']}" for r in res]),
              line("ResNet-50 Amdahl bound", [f"{r['amdahl_bound']:,.0f}" for r in res]),
              line("ResNet-50 X-load bound", [f"{r['xload_bound']:.2f}" for r in res])]
    lines += [""] + _breakdown(mini, "MiniLM lanes 4, critical path")
    lines += [""] + _breakdown(wide, "MiniLM lanes 16, critical path")
    lines += ["", "| ResNet-50 (SPU rule, busiest subsystem) | "
              + " | ".join(f"1:{r['m']}" for r in res) + " |", sep]
    for name, key in (("weight GEMMs (weight beats)", "weight_beats"),
                      ("weight GEMMs: SPU X-load stalls", "weight_xload"),
                      ("SPU pipeline latency", "pipeline")):
        lines.append(line(name, [f"{r['parts'][key]:,} "
                                 f"({100 * r['parts'][key] / r['cycles']:.1f}%)" for r in res]))
    lines.append(line("total", [f"{r['cycles']:,}" for r in res]))
    return "\n".join(lines)


def figure(out="docs/img/s4_fig2", ms=MS, check=True):
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "sparsehw"     # deterministic SVG ids
    import matplotlib.pyplot as plt
    mini = minilm_sweep(ms, params=MINILM_CHIP, chunk_tiles=CHUNK_TILES, check=check)
    wide = minilm_sweep(ms, params=WIDE_CHIP, check=check)
    res = resnet_sweep(ms, params=MINILM_CHIP)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
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
    ax.plot(ms, [r["speedup"] for r in wide], "^-", color="tab:orange", lw=1, ms=4,
            label=f"MiniLM, {TOKENS} tokens, lanes 16 "
                  f"(Amdahl {wide[0]['amdahl_bound']:.1f}x)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(ms, [f"1:{m}" for m in ms])
    ax.set_xlabel("sparsity (N:M, every weight GEMM)")
    ax.set_ylabel("end-to-end speedup over dense")
    ax.set_title("S4 Figure 2 (cycle models): 4 subsystems, lanes 4, macs 2, act_rows 2",
                 fontsize=9)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(f"{out}.{ext}", dpi=120, metadata={"Date": None} if ext == "svg" else None)
    plt.close(fig)
    return {"chip": MINILM_CHIP, "chunk_tiles": CHUNK_TILES, "wide_chip": WIDE_CHIP,
            "tokens": TOKENS, "minilm": mini, "minilm_lanes16": wide, "resnet50": res}


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
