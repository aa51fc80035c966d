"""Order of N:M pruning and HBFP quantization: which is better on heavy-tailed weights?

Golden-level study (no hardware): :func:`prune_then_quantize` and :func:`quantize_then_prune`
apply the same two operators (``golden.nm.mask`` N:M magnitude pruning, ties to the lower index;
``golden.hbfp.quantize`` HBFP, round-half-even) in the two orders.

* ``prune_then_quantize``: the N:M mask is chosen on the full-precision weights; the survivors are
  compressed (N:M form, as an N:M sparse datapath stores them) and quantized in blocks of
  ``block_size`` survivors, so each shared exponent comes from survivors only.
* ``quantize_then_prune``: the dense weights are quantized in blocks of ``block_size`` dense
  elements, then the N:M mask is chosen on the quantized values (rounding can merge or reorder
  magnitudes, so the mask may differ from the full-precision one) and applied.

Errors (relative Frobenius norms) are measured against the ideally pruned weights ``S(W)`` (the
error added by quantization, given the pruning the model was trained for), against the dense
``W``, and on a matrix-vector product with Gaussian activations. ``support_disagreement`` is the
fraction of positions where exactly one of the two results is non-zero (a different mask, or a
survivor rounded to zero). The weights are Student-t
(heavy-tailed) rows. The report states which order wins for each setting; it is measured, not
assumed.

Usage: ``python -m sparsehw.experiments.sparsity_quant [--seed S] [--rows R] [--cols C] [--out FILE.json]`` or
:func:`run` (returns a dict).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sparsehw.golden import hbfp, nm


__all__ = ["prune_then_quantize", "quantize_then_prune", "run", "main"]


def _deq(x, mant_bits, block_size):
    q, e = hbfp.quantize(x, mant_bits, block_size)
    return hbfp.dequantize(q, e, mant_bits, block_size)[..., :x.shape[-1]]


def prune_then_quantize(w, n, m, mant_bits, block_size):
    """N:M-prune ``w`` (last axis), then HBFP-quantize the compressed survivors.

    Returns the dense float32 result (zeros where pruned). Each shared exponent covers
    ``block_size`` consecutive survivors of a row.
    """
    w = np.asarray(w, np.float32)
    keep = nm.mask(w, n, m)
    values, _ = nm.compress(w, n, m)
    out = np.zeros_like(w)
    out[keep] = _deq(values, mant_bits, block_size).reshape(-1)
    return out


def quantize_then_prune(w, n, m, mant_bits, block_size):
    """HBFP-quantize dense ``w`` (blocks of ``block_size`` dense elements), then N:M-prune the
    quantized values (mask chosen on the quantized magnitudes, ties to the lower index)."""
    w = np.asarray(w, np.float32)
    wq = _deq(w, mant_bits, block_size)
    return np.where(nm.mask(wq, n, m), wq, np.float32(0))


def _rel(a, b):
    return float(np.linalg.norm((a - b).astype(np.float64)) / np.linalg.norm(b.astype(np.float64)))


def run(*, seed=3, rows=256, cols=512, dof=(3.0,), patterns=((2, 4), (1, 4), (2, 8)),
        mant_bits=(3, 5, 7), block_size=16):
    """Run the study; returns ``{"settings": ..., "results": [...], "summary": ...}``."""
    rng = np.random.default_rng(seed)
    results = []
    for df in dof:
        w = (rng.standard_t(df, size=(rows, cols)) * 0.02).astype(np.float32)
        x = rng.standard_normal(cols).astype(np.float32)
        for n, m in patterns:
            ideal = np.where(nm.mask(w, n, m), w, np.float32(0))
            y_ideal = ideal.astype(np.float64) @ x
            for mb in mant_bits:
                pq = prune_then_quantize(w, n, m, mb, block_size)
                qp = quantize_then_prune(w, n, m, mb, block_size)
                row = {"dof": df, "n": n, "m": m, "mant_bits": mb, "block_size": block_size}
                for name, wh in (("prune_first", pq), ("quantize_first", qp)):
                    row[f"{name}_err_vs_pruned"] = _rel(wh, ideal)
                    row[f"{name}_err_vs_dense"] = _rel(wh, w)
                    row[f"{name}_matvec_err"] = _rel(wh.astype(np.float64) @ x, y_ideal)
                row["support_disagreement"] = float(np.mean((pq != 0) != (qp != 0)))
                row["better"] = ("prune_first" if row["prune_first_err_vs_pruned"]
                                 < row["quantize_first_err_vs_pruned"] else "quantize_first")
                results.append(row)
    wins = sum(r["better"] == "prune_first" for r in results)
    return {"settings": {"seed": seed, "rows": rows, "cols": cols, "dof": list(dof),
                         "block_size": block_size, "weights": "Student-t * 0.02",
                         "activations": "standard normal"},
            "results": results,
            "summary": {"prune_first_wins": wins, "settings_compared": len(results)}}


def table(result):
    lines = ["| N:M | m | prune first: err vs S(W) | quantize first: err vs S(W) | "
             "prune first: matvec err | quantize first: matvec err | support disagreement | better |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["results"]:
        lines.append(f"| {r['n']}:{r['m']} | {r['mant_bits']} | "
                     f"{r['prune_first_err_vs_pruned']:.4f} | "
                     f"{r['quantize_first_err_vs_pruned']:.4f} | "
                     f"{r['prune_first_matvec_err']:.4f} | {r['quantize_first_matvec_err']:.4f} | "
                     f"{r['support_disagreement']:.4f} | {r['better']} |")
    s = result["summary"]
    lines.append("")
    lines.append(f"Prune-first has the lower error in {s['prune_first_wins']} of "
                 f"{s['settings_compared']} settings.")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sparsehw.experiments.sparsity_quant", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--cols", type=int, default=512)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    result = run(seed=args.seed, rows=args.rows, cols=args.cols, block_size=args.block_size)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    print(table(result))
    return result


if __name__ == "__main__":
    main()
