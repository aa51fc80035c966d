"""The model runner: import, attributes, propagation, quantization, the integer run, accuracy and
the GEMM list.

>>> from sparsehw.model import run
>>> result = run.run_model("minilm", texts=["A short sentence."], nm=(2, 4))   # doctest: +SKIP

The float reference is onnxruntime on the same ONNX file (what a user would compare with); the
sentence embedding is the mean of the last hidden state over the real tokens (all-MiniLM-L6-v2's
pooling); accuracy is the cosine similarity of our integer embedding with onnxruntime's.
"""

import functools
import math

import numpy as np

from sparsehw.model import files
from sparsehw.model.attrs import LayerSetting
from sparsehw.model.execute import FloatEngine, execute, feeds_for
from sparsehw.model.graph import import_onnx
from sparsehw.model.propagate import initial_attrs, materialise, propagate
from sparsehw.model.quantize import IntEngine, calibrate
from sparsehw.model.sentences import CALIBRATION


__all__ = ["load_graph", "load_tokenizer", "encode", "prepare", "inspect_rows", "inspect_text",
           "reference_hidden", "mean_pool", "cosine", "gemm_list", "run_model", "Prepared"]


@functools.lru_cache(maxsize=4)
def load_graph(model="minilm"):
    """Import (once per process) the ONNX model named by an alias or a path."""
    return import_onnx(files.model_file(model))


def load_tokenizer(model="minilm", tokenizer=None):
    """The ``tokenizers`` tokenizer from ``tokenizer.json``, without padding."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(files.tokenizer_file(model, tokenizer)))
    tok.no_padding()
    tok.no_truncation()
    return tok


def encode(tok, text, seq_len=None):
    """Feeds for one sentence: truncated to ``seq_len`` tokens, padded to it (mask 0) if given."""
    ids = list(tok.encode(text).ids)
    if seq_len is not None:
        if seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, not {seq_len}")
        if len(ids) > seq_len:
            ids = ids[:seq_len - 1] + ids[-1:]
        real = len(ids)
        ids = ids + [0] * (seq_len - real)
        feeds = feeds_for(ids)
        feeds["attention_mask"][0, real:] = 0
        return feeds
    return feeds_for(ids)


class Prepared:
    """A model ready to run: graph, attributes before and after propagation, masks, calibration.

    Attributes
    ----------
    graph, before, after, masks, amax, engine
    """

    def __init__(self, graph, settings, calib_feeds):
        self.graph = graph
        self.settings = list(settings)
        self.before = initial_attrs(graph, self.settings)
        self.after = propagate(graph, self.before)
        self.masks = materialise(graph, self.after)
        self.amax = calibrate(graph, calib_feeds, self.masks)
        self.engine = IntEngine(graph, self.after, self.masks, self.amax)


def settings_for(nm=None, config=None):
    """Layer settings from ``--nm N:M`` (every weight GEMM) and/or a config file's list."""
    settings = []
    if nm is not None:
        settings.append(LayerSetting(nm=tuple(nm)))
    settings.extend(config or [])
    return settings


def prepare(model="minilm", settings=(), tok=None, calib_texts=CALIBRATION):
    """Import, set and propagate attributes, prune, calibrate (on ``calib_texts``)."""
    graph = load_graph(model)
    tok = tok or load_tokenizer(model)
    return Prepared(graph, settings, [encode(tok, t) for t in calib_texts])


def _weight_shape(graph, w):
    return graph.consts[w].shape


def inspect_rows(graph, before, after):
    """One row per attributed tensor: ``(op kind, op/label, tensor, before, after)``."""
    rows = []
    for op in graph.act_ops():
        tensors = [op.inputs[1]] if op.kind == "linear" else []
        tensors.append(op.outputs[0])
        for t in tensors:
            k, n = _weight_shape(graph, t) if t in graph.consts else (None, None)
            b, a = before[t], after[t]
            rows.append((op.kind, op.label, t,
                         f"{b.sparsity.describe(n, k)}, {b.precision}",
                         f"{a.sparsity.describe(n, k)}, {a.precision}"))
    return rows


def inspect_text(graph, before, after, changed_only=False):
    """The ``sparsehw model inspect`` table."""
    rows = inspect_rows(graph, before, after)
    if changed_only:
        rows = [r for r in rows if r[3] != r[4]]
    header = ("kind", "layer", "tensor", "before propagation", "after propagation")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(5)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


@functools.lru_cache(maxsize=2)
def _session(path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def reference_hidden(model, feeds):
    """onnxruntime's float32 output (the graph's first output) on ``feeds``."""
    return _session(str(files.model_file(model))).run(None, feeds)[0]


def mean_pool(hidden, mask):
    """Mean over the tokens whose mask is 1: ``(1, T, H)`` -> ``(H,)``."""
    mask = np.asarray(mask, np.float64).reshape(-1)
    hidden = np.asarray(hidden, np.float64).reshape(mask.size, -1)
    return (hidden * mask[:, None]).sum(axis=0) / max(mask.sum(), 1.0)


def cosine(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den else 0.0


def gemm_cycles(rows, k, cols, n, m, runs, subsystems, params):
    """SPU cycles of one GEMM split by output columns over ``subsystems``.

    Each run (sentence, or attention head) is one SPU job per subsystem: the weight (cols x k,
    N:M along k) against ``rows`` tokens (padded to whole ``lanes`` tiles), with
    ``ceil(cols / subsystems)`` output rows on the busiest subsystem, counted by the SPU's cycle
    model :func:`sparsehw.golden.spu.spu_cycles` (calibrated against the SPU RTL). Ring
    transfers, the activation engine and the sequencer are not in it.
    """
    from sparsehw.golden.spu import spu_cycles
    lanes = params["lanes"]
    per_sub = -(-cols // subsystems)
    total = 0
    for r in runs:
        b = -(-r // lanes) * lanes
        total += spu_cycles(params, {"n": n, "m": m, "k": k, "o": per_sub, "b": b})[0]
    return total


def gemm_list(graph, after, masks, shapes, subsystems=4, params=None):
    """The ``gemms`` records (see docs/model.md) from the operand shapes of one or more runs.

    Parameters
    ----------
    shapes : dict
        op name -> list of ``(shape of input 0, shape of input 1)``, one per run (sentence).
    subsystems : int
        Subsystems the output columns are split over (for ``cycles``).
    params : dict, optional
        Chip parameters (:func:`sparsehw.golden.chip.chip_params`; defaults).
    """
    from sparsehw.golden.chip import chip_params
    params = chip_params(params)
    peak = subsystems * params["macs"] * params["lanes"]
    out = []
    for op in graph.act_ops():
        if op.kind not in ("linear", "matmul") or op.name not in shapes:
            continue
        runs = shapes[op.name]
        if op.kind == "linear":
            w = op.inputs[1]
            s = after[w].sparsity
            k_all, n_all = graph.consts[w].shape
            tokens = [math.prod(a[:-1]) for a, _ in runs]
            rows = sum(tokens)
            k, cols = k_all - len(s.dead_in), n_all - len(s.dead)
            rec = {"name": op.name, "layer": op.label, "kind": "weight", "rows": rows,
                   "k": k, "cols": cols, "n": s.n, "m": s.m,
                   "dense_macs": rows * k_all * n_all,
                   "nonzero_macs": rows * int(masks[w].sum())}
            jobs, dense_k, dense_cols = tokens, k_all, n_all
        else:
            rows = sum(math.prod(a[:-1]) for a, _ in runs)
            k, cols = runs[0][0][-1], max(b[-1] for _, b in runs)
            macs = sum(math.prod(a[:-1]) * a[-1] * b[-1] for a, b in runs)
            rec = {"name": op.name, "layer": op.label, "kind": "activation", "rows": rows,
                   "k": k, "cols": cols, "n": 1, "m": 1, "dense_macs": macs,
                   "nonzero_macs": macs}
            # one SPU job per head: (b[-1] x k) "weights" against a[-2] rows
            jobs = [a[-2] for a, b in runs for _ in range(math.prod(a[:-2]))]
            dense_k, dense_cols = k, cols
        rec["cycles"] = gemm_cycles(rows, k, cols, rec["n"], rec["m"], jobs, subsystems, params)
        rec["dense_cycles"] = gemm_cycles(rows, dense_k, dense_cols, 1, 1, jobs, subsystems,
                                          params)
        rec["utilization"] = rec["nonzero_macs"] / (rec["cycles"] * peak) if rec["cycles"] \
            else 0.0
        out.append(rec)
    return out


def _pow2(v, low):
    return max(low, 1 << max(0, math.ceil(math.log2(max(v, 1)))))


def chip_params_for(job, subsystems, lanes=4, macs=2):
    """Chip parameters (golden.chip) big enough for one recorded SPU job, and the most batch
    columns one compiled chain may take (``bank_rows`` is at most 32768)."""
    from sparsehw.golden.chip import MAX_ROWS
    o, k = job["w"].shape
    rows = max(o, k)
    max_k = _pow2(k, 32)
    chunk = max(1, MAX_ROWS // rows) * lanes
    tiles = -(-min(job["x"].shape[1], chunk) // lanes)
    per_sub = -(-o // subsystems)
    words = per_sub * -(-(k * job["n"] // job["m"]) // macs)
    params = {"subsystems": subsystems, "lanes": lanes, "macs": macs, "max_m": 32,
              "act_rows": 2, "max_k": max_k,
              "bank_rows": _pow2(max(tiles * rows, max_k), max_k),
              "wmem_depth": _pow2(words, 2), "pmem_depth": _pow2(per_sub, 2), "imem_depth": 64}
    return params, chunk


def run_jobs_on_chip(jobs, subsystems=4):
    """Compile every recorded weight GEMM (golden.chip_compile, model-parallel) and run it on the
    golden chip model; returns ``{op name: {"bit_exact": bool, "macs": chip MAC count,
    "cycles": the chip model's cycles (golden.chip cycle model, summed over batch chunks),
    "cycle_parts": summed per part over the subsystems}}``."""
    from sparsehw.golden.chip_compile import run_chain
    from sparsehw.model.quantize import gemm_layer
    out = {}
    for name, job in jobs.items():
        params, chunk = chip_params_for(job, subsystems)
        layer = gemm_layer(job)
        x = job["x"]
        ys, macs, cycles, parts = [], 0, 0, {}
        for start in range(0, x.shape[1], chunk):
            y, chip, _ = run_chain([layer], x[:, start:start + chunk], subsystems, "model",
                                   params)
            ys.append(y)
            macs += sum(chip.stats["macs"])
            cycles += chip.stats["total_cycles"]
            for sub_parts in chip.stats["cycle_parts"][:subsystems]:
                for key, value in sub_parts.items():
                    parts[key] = parts.get(key, 0) + value
        out[name] = {"bit_exact": bool(np.array_equal(np.concatenate(ys, axis=1), job["y"])),
                     "macs": macs, "cycles": cycles, "cycle_parts": parts}
    return out


#: The six weight GEMMs of one BERT layer by the end of their labels, in EncoderLayer order.
LAYER_GEMMS = ("attention.self.query", "attention.self.key", "attention.self.value",
               "attention.output.dense", "intermediate.dense", "output.dense")
#: Chip parameters that hold one MiniLM layer of up to 32 tokens.
LAYER_CHIP = dict(subsystems=4, lanes=4, macs=2, max_k=2048, bank_rows=32768,
                  wmem_depth=1 << 20, pmem_depth=8192, imem_depth=1024, act_engine=True,
                  act_max_row=512)


def layer_setup(graph, jobs, layer=0, heads=12, max_tokens=32):
    """Encoder layer ``layer`` as a chip :class:`golden.chip_compile.EncoderLayer` from the
    integer engine's recorded jobs: ``{"names": the six weight GEMMs' node names, "enc", "xp":
    the layer's int8 input padded to a multiple of ``lanes`` tokens, "x": unpadded}``; ``None``
    when the layer's GEMMs were not recorded, ``{"skipped": why}`` beyond ``max_tokens`` tokens
    (32: the most one layer holds resident in the banks; see :func:`run_layer_on_chip` for the
    formats)."""
    from sparsehw.golden.chip_compile import EncoderLayer
    from sparsehw.model.quantize import gemm_layer
    labels = {op.label: op.name for op in graph.act_ops() if op.kind == "linear"}
    names = []
    for end in LAYER_GEMMS:
        found = [name for label, name in labels.items()
                 if label.endswith(f"layer.{layer}.{end}") and name in jobs]
        if not found:
            return None
        names.append(found[0])
    gemms = [gemm_layer(jobs[name]) for name in names]
    x = jobs[names[0]]["x"]
    lanes = LAYER_CHIP["lanes"]
    tokens = -(-x.shape[1] // lanes) * lanes
    if tokens > max_tokens:
        return {"layer": layer, "skipped": f"{x.shape[1]} tokens: one layer holds at most "
                                           f"{max_tokens}"}
    xp = np.zeros((x.shape[0], tokens), np.int8)
    xp[:, :x.shape[1]] = x
    hidden = gemms[3].o
    ln = (np.full(hidden, 4096), np.zeros(hidden, np.int64), 5, 0)
    enc = EncoderLayer(qkv=gemms[:3], wo=gemms[3], w1=gemms[4], w2=gemms[5], heads=heads,
                       score_post=(1, 10), ctx_post=(1, 7), softmax=(3, 15, 8),
                       add1=(0, 0, 1), ln1=ln, gelu=(5, 5, 0), add2=(0, 0, 1), ln2=ln)
    return {"names": names, "enc": enc, "xp": xp, "x": x}


def run_layer_on_rtl(graph, jobs, subsystems=4, layer=0, heads=12, sim="verilator"):
    """Encoder layer ``layer`` on the chip RTL (:mod:`sparsehw.model.rtl`): the whole layer
    (two phases and the host step) when the RTL has the activation engine, else its six weight
    GEMMs, each compiled alone; every phase compared bit-exactly with the golden chip model,
    the weight GEMMs' outputs also with the integer engine's. JSON-ready dict."""
    from sparsehw.model import rtl
    setup = layer_setup(graph, jobs, layer, heads)
    if setup is None or "skipped" in setup:
        return setup
    out = {"layer": layer, "subsystems": subsystems, "sim": sim}
    if rtl.rtl_available(LAYER_CHIP):
        from sparsehw.golden.chip_compile import reference_encoder_layer
        res = rtl.run_encoder_layer_on_rtl(setup["enc"], setup["xp"], subsystems, LAYER_CHIP,
                                           sim=sim)
        out["whole_layer"] = {
            "bit_exact_vs_golden_chip": res["bit_exact"], "mismatches": res["mismatches"],
            "bit_exact_vs_chip_reference": bool(np.array_equal(
                res["y"], reference_encoder_layer(setup["enc"], setup["xp"]))),
            "rtl_cycles": res["rtl_cycles"], "model_cycles": res["model_cycles"]}
    else:
        out["whole_layer"] = {"skipped": "the chip RTL has no activation engine yet"}
    res = rtl.run_jobs_on_rtl({n: jobs[n] for n in setup["names"]}, subsystems, sim=sim)
    res.pop("params")
    out["weight_gemms"] = res
    return out


def run_layer_on_chip(graph, jobs, subsystems=4, layer=0, heads=12):
    """Encoder layer ``layer`` compiled whole and run on the golden chip model with the model's
    own int8 weights and post-ops (the integer engine's recorded jobs) and the layer's real
    input (the query GEMM's int8 ``x``, tokens padded with zero columns to a multiple of
    ``lanes``): up to 32 tokens every tensor resident (golden.chip_compile.
    compile_encoder_layer), beyond that streamed by chunks of up to 4 tiles
    (golden.chip_compile.compile_encoder_layer_streamed; ``chunk_tiles`` in the result), up to
    ``act_max_row`` (512) tokens.

    What is checked: q, k and v (the first chip GEMMs) equal the integer engine's outputs bit
    for bit; the layer's output equals :func:`golden.chip_compile.reference_encoder_layer` (the
    same layer in numpy). The rest of the layer is **not** the integer engine's: that engine
    keeps an int16 residual stream, per-channel activation scales and scale-folded attention,
    while the chip's banks hold int8; the attention and activation-engine steps here use fixed
    chip-native formats (softmax 2**-7, LayerNorm gamma 1 beta 0, GELU in 2**-5 -> 2**-5).

    Returns a dict (JSON-ready) or ``None`` when the layer's GEMMs were not recorded.
    """
    from sparsehw.golden.chip_compile import (reference_encoder_layer, run_encoder_layer,
                                             run_encoder_layer_streamed)
    setup = layer_setup(graph, jobs, layer, heads, max_tokens=LAYER_CHIP["act_max_row"])
    if setup is None or "skipped" in setup:
        return setup
    names, enc, xp, x = setup["names"], setup["enc"], setup["xp"], setup["x"]
    tokens, hidden = xp.shape[1], enc.wo.o
    lanes = LAYER_CHIP["lanes"]
    got = {}
    if tokens <= 32:
        chunk = None
        y, model, compiled, cycles = run_encoder_layer(enc, xp, subsystems, LAYER_CHIP)
        for tensor in "qkv":
            got[tensor] = compiled._tensor(model.subs[0].banks, tensor, hidden)
    else:
        tiles = tokens // lanes
        chunk = max(c for c in range(1, 5) if tiles % c == 0)
        got["q"] = np.zeros((hidden, tokens), np.int8)

        def keep(phase, model, compiled):
            banks = model.subs[0].banks
            if phase == 1:                       # k and v, overwritten by y later
                got["k"] = compiled._tensor(banks, "k", hidden)
                got["v"] = compiled._tensor(banks, "v", hidden)
            else:                                # this chunk's q (tile-major, chunk-local)
                bank, base = compiled.addr["q"]
                for i in range(chunk):
                    t = (phase - 2) * chunk + i
                    rows = banks[bank, base + i * hidden:base + (i + 1) * hidden]
                    got["q"][:, t * lanes:(t + 1) * lanes] = rows
        y, model, compiled, cycles = run_encoder_layer_streamed(enc, xp, chunk, subsystems,
                                                                LAYER_CHIP, on_phase=keep)
    qkv_exact = True
    for name, tensor in zip(names[:3], "qkv"):
        qkv_exact &= bool(np.array_equal(got[tensor][:, :x.shape[1]], jobs[name]["y"]))
    parts = {}
    for _, phase in compiled.categories:
        for key, value in phase.items():
            parts[key] = parts.get(key, 0) + value
    return {"layer": layer, "tokens": tokens, "subsystems": subsystems, "chunk_tiles": chunk,
            "qkv_bit_exact_vs_integer_engine": qkv_exact,
            "bit_exact_vs_chip_reference": bool(np.array_equal(
                y, reference_encoder_layer(enc, xp))),
            "cycles": int(sum(cycles)), "phases": len(cycles), "cycle_parts": parts,
            "cycles_source": "golden.chip cycle model (docs/chip.md), every phase, the "
                             "critical path's categories (CompiledLayer.cycle_categories); "
                             "the host steps between phases not counted"}


def run_model(model="minilm", texts=(), *, nm=None, config=None, tokenizer=None, seq_len=None,
              calib_texts=CALIBRATION, reference=True, subsystems=4, engine="numpy"):
    """Run the integer encoder on ``texts``; returns the JSON-ready result.

    Returns
    -------
    dict
        ``model``, ``settings``, ``texts``, ``embedding_cosine`` (mean over texts; None without
        reference), ``cosines`` (per text), ``gemms`` (:func:`gemm_list`), totals
        ``weight_macs``, ``nonzero_weight_macs``, ``activation_macs``, ``mac_speedup`` (dense
        MACs / executed MACs: the FLOP-predicted speedup), ``total_cycles``, ``dense_cycles``
        (the same GEMMs at 1:1), ``speedup``: GEMM cycles of the SPU cycle model
        (:func:`gemm_cycles`; ``cycles_source`` says so), ``engine``, and ``chip_gemms`` (engine
        ``"golden"``: every weight GEMM also compiled by golden.chip_compile and run on the
        golden chip model, :func:`run_jobs_on_chip`; whether all were bit-exact), and
        ``chip_layer`` (engine ``"golden"``: encoder layer 0 of the first text compiled whole
        and run on the golden chip model, :func:`run_layer_on_chip`), and ``rtl_layer``
        (engine ``"rtl"``: :func:`run_layer_on_rtl` on the first text, Verilator).
    """
    tok = load_tokenizer(model, tokenizer)
    settings = settings_for(nm, config)
    prep = prepare(model, settings, tok, calib_texts)
    graph = prep.graph
    if engine not in ("numpy", "golden", "rtl"):
        raise ValueError(f"engine must be numpy, golden or rtl, not {engine!r}")
    shapes, cosines, embeddings, chip = {}, [], [], {}
    chip_layer = rtl_layer = None
    for text in texts:
        feeds = encode(tok, text, seq_len)

        def observe(op, value, ins):
            if op.kind in ("linear", "matmul"):
                shapes.setdefault(op.name, []).append((tuple(np.shape(ins[0])),
                                                       tuple(np.shape(ins[1]))))
        prep.engine.keep_jobs = engine in ("golden", "rtl")
        prep.engine.jobs = {}
        hidden = execute(graph, feeds, prep.engine, observe)[graph.outputs[0]]
        if engine == "golden":
            for name, res in run_jobs_on_chip(prep.engine.jobs, subsystems).items():
                chip.setdefault(name, []).append(res)
            if chip_layer is None:
                chip_layer = run_layer_on_chip(graph, prep.engine.jobs, subsystems)
        if engine == "rtl" and rtl_layer is None:
            rtl_layer = run_layer_on_rtl(graph, prep.engine.jobs, subsystems)
        emb = mean_pool(hidden.real(), feeds["attention_mask"])
        embeddings.append(emb)
        if reference:
            ref = mean_pool(reference_hidden(model, feeds), feeds["attention_mask"])
            cosines.append(cosine(emb, ref))
    gemms = gemm_list(graph, prep.after, prep.masks, shapes, subsystems)
    weight = [g for g in gemms if g["kind"] == "weight"]
    acts = [g for g in gemms if g["kind"] == "activation"]
    weight_macs = sum(g["dense_macs"] for g in weight)
    nonzero = sum(g["nonzero_macs"] for g in weight)
    act_macs = sum(g["nonzero_macs"] for g in acts)
    total = sum(g["cycles"] for g in gemms)
    dense = sum(g["dense_cycles"] for g in gemms)
    return {
        "model": str(model), "engine": engine,
        "chip_gemms": None if engine != "golden" else {
            "gemms": len(chip),
            "bit_exact": all(r["bit_exact"] for rs in chip.values() for r in rs),
            "macs": sum(r["macs"] for rs in chip.values() for r in rs),
            "cycles": {name: sum(r["cycles"] for r in rs) for name, rs in chip.items()},
            "total_cycles": sum(r["cycles"] for rs in chip.values() for r in rs),
            "cycles_source": "golden.chip cycle model (docs/chip.md, Cycle model) of each "
                             "weight GEMM compiled alone (one chain per GEMM and sentence, "
                             "run back to back): weight GEMMs only",
            "note": "every weight GEMM compiled by golden.chip_compile and run on the golden "
                    "chip model, compared with the numpy SPU result; attention products and "
                    "the activation engine's work run in numpy (the golden chip has ACT, "
                    "act_engine=True, but the whole-layer compilation is not written yet)"},
        "chip_layer": chip_layer, "rtl_layer": rtl_layer,
        "settings": [s.__dict__ for s in settings],
        "texts": list(texts), "seq_len": seq_len,
        "embedding_cosine": float(np.mean(cosines)) if cosines else None,
        "cosines": cosines, "embeddings": [e.tolist() for e in embeddings],
        "gemms": gemms,
        "weight_macs": weight_macs, "nonzero_weight_macs": nonzero, "activation_macs": act_macs,
        "mac_speedup": (weight_macs + act_macs) / max(nonzero + act_macs, 1),
        "subsystems": subsystems,
        "cycles_source": "SPU cycle model (golden.spu.spu_cycles) per GEMM, output columns "
                         "split over the subsystems; GEMMs only (no ring, activation engine, "
                         "sequencer)",
        "total_cycles": total, "dense_cycles": dense,
        "speedup": dense / total if total else None,
    }


def float_hidden(model, feeds, masks=None):
    """Our float engine's output (checks the import against onnxruntime)."""
    from sparsehw.model.quantize import pruned_weights
    graph = load_graph(model)
    weights = pruned_weights(graph, masks) if masks else None
    return execute(graph, feeds, FloatEngine(graph, weights))[graph.outputs[0]]


def gemm_plan(model="minilm", seq_len=128, nm=None, config=None, subsystems=4, text=None):
    """The ``gemms`` records and totals for one sentence padded to ``seq_len``, without the
    integer run (shapes from one float run; masks from the propagated attributes): what the
    speedup-versus-sparsity table needs."""
    graph = load_graph(model)
    tok = load_tokenizer(model)
    feeds = encode(tok, text or CALIBRATION[0], seq_len)
    after = propagate(graph, initial_attrs(graph, settings_for(nm, config)))
    masks = materialise(graph, after)
    shapes = {}

    def observe(op, value, ins):
        if op.kind in ("linear", "matmul"):
            shapes.setdefault(op.name, []).append((tuple(np.shape(ins[0])),
                                                   tuple(np.shape(ins[1]))))
    from sparsehw.model.quantize import pruned_weights
    execute(graph, feeds, FloatEngine(graph, pruned_weights(graph, masks)), observe)
    gemms = gemm_list(graph, after, masks, shapes, subsystems)
    weight = [g for g in gemms if g["kind"] == "weight"]
    act_macs = sum(g["nonzero_macs"] for g in gemms if g["kind"] == "activation")
    weight_macs = sum(g["dense_macs"] for g in weight)
    nonzero = sum(g["nonzero_macs"] for g in weight)
    total = sum(g["cycles"] for g in gemms)
    dense = sum(g["dense_cycles"] for g in gemms)
    return {"gemms": gemms, "weight_macs": weight_macs, "nonzero_weight_macs": nonzero,
            "activation_macs": act_macs,
            "mac_speedup": (weight_macs + act_macs) / max(nonzero + act_macs, 1),
            "total_cycles": total, "dense_cycles": dense, "speedup": dense / total,
            "attention_cycle_share": sum(g["cycles"] for g in gemms
                                         if g["kind"] == "activation") / total}
