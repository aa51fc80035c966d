"""End to end on MiniLM, small: the integer run, its accuracy record and the GEMM list."""

import pytest

pytest.importorskip("onnx")

from sparsehw.model import run  # noqa: E402
from sparsehw.model.sentences import CALIBRATION, EVALUATION  # noqa: E402

TEXT = EVALUATION[1]


@pytest.fixture(scope="module")
def dense():
    return run.run_model("minilm", [TEXT], seq_len=16, calib_texts=CALIBRATION[:4])


@pytest.fixture(scope="module")
def sparse():
    return run.run_model("minilm", [TEXT], nm=(2, 4), calib_texts=CALIBRATION[:2],
                         engine="golden")


def test_sentences_are_fixed_and_disjoint():
    assert len(EVALUATION) >= 32 and len(set(EVALUATION)) == len(EVALUATION)
    assert not set(EVALUATION) & set(CALIBRATION)


def test_dense_run_with_padding(dense):
    tok = run.load_tokenizer()
    assert len(tok.encode(TEXT).ids) < 16          # the run padded it
    assert dense["embedding_cosine"] > 0.95
    assert len(dense["embeddings"][0]) == 384
    assert dense["engine"] == "numpy" and dense["chip_gemms"] is None


def test_gemm_list(dense):
    gemms = dense["gemms"]
    weight = [g for g in gemms if g["kind"] == "weight"]
    act = [g for g in gemms if g["kind"] == "activation"]
    assert len(weight) == 36 and len(act) == 12
    keys = {"name", "kind", "rows", "k", "cols", "n", "m", "nonzero_macs", "cycles",
            "utilization"}
    assert all(keys <= set(g) for g in gemms)
    assert {"gemms", "weight_macs", "nonzero_weight_macs", "total_cycles", "dense_cycles",
            "speedup", "embedding_cosine"} <= set(dense)              # issue 13's JSON totals
    assert dense["total_cycles"] == sum(g["cycles"] for g in gemms) > 0
    ffn = next(g for g in weight if g["layer"].endswith("layer.0.intermediate.dense"))
    assert (ffn["rows"], ffn["k"], ffn["cols"], ffn["n"], ffn["m"]) == (16, 384, 1536, 1, 1)
    assert ffn["nonzero_macs"] == 16 * 384 * 1536
    qk, pv = act[0], act[1]
    assert (qk["rows"], qk["k"], qk["cols"]) == (12 * 16, 32, 16)     # 12 heads of QK^T
    assert (pv["rows"], pv["k"], pv["cols"]) == (12 * 16, 16, 32)     # 12 heads of PV
    assert dense["weight_macs"] == 16 * 6 * (4 * 384 * 384 + 2 * 384 * 1536)
    assert dense["nonzero_weight_macs"] == dense["weight_macs"]
    assert dense["mac_speedup"] == 1.0


def test_two_four_halves_the_weight_macs(dense, sparse):
    rows = len(run.load_tokenizer().encode(TEXT).ids)
    assert sparse["weight_macs"] == rows * 6 * (4 * 384 * 384 + 2 * 384 * 1536)
    assert 2 * sparse["nonzero_weight_macs"] == sparse["weight_macs"]
    assert all((g["n"], g["m"]) == (2, 4) for g in sparse["gemms"] if g["kind"] == "weight")
    assert 1.0 < sparse["mac_speedup"] < 2.0           # attention's products stay dense
    # one-shot magnitude pruning of a model trained dense costs accuracy (docs/model.md)
    assert sparse["embedding_cosine"] < dense["embedding_cosine"]


def test_cycles_follow_the_spu_model(dense, sparse):
    from sparsehw.golden.chip import chip_params
    from sparsehw.golden.spu import spu_cycles
    p = chip_params()
    ffn = next(g for g in dense["gemms"] if g["layer"].endswith("layer.0.intermediate.dense"))
    # 16 tokens = 4 tiles of 4 lanes; 1536 outputs over 4 subsystems = 384 rows each
    assert ffn["cycles"] == spu_cycles(p, {"n": 1, "m": 1, "k": 384, "o": 384, "b": 16})[0]
    assert 0 < ffn["utilization"] <= 1
    assert dense["speedup"] == 1.0
    assert dense["total_cycles"] == sum(g["cycles"] for g in dense["gemms"])
    # 2:4 halves the SPU's weight beats: the GEMM-only speedup is between 1 and 2
    assert 1.0 < sparse["speedup"] < 2.0
    for g in sparse["gemms"]:
        assert g["cycles"] <= g["dense_cycles"]


def test_weight_gemms_bit_exact_on_the_golden_chip(sparse):
    """Every 2:4 weight GEMM, compiled by golden.chip_compile over 4 subsystems and run on the
    golden chip model, gives the integer engine's int8 output bit for bit."""
    chip = sparse["chip_gemms"]
    assert chip["gemms"] == 36 and chip["bit_exact"]
    assert chip["macs"] >= sparse["nonzero_weight_macs"]      # padded lane columns included
    # the chip model's cycles: never below the ideal (nonzero MACs over the 4 x 2 x 4 MACs per
    # cycle of the chip), and the gather/pipeline cost something on top of it
    for g in sparse["gemms"]:
        if g["kind"] == "weight":
            assert chip["cycles"][g["name"]] > g["nonzero_macs"] / (4 * 2 * 4)
    assert chip["total_cycles"] == sum(chip["cycles"].values())


def test_chip_check_can_fail():
    """A small job with its expected output from golden.spu passes; one flipped bit fails."""
    import numpy as np
    from sparsehw.golden import nm as gnm
    from sparsehw.golden.spu import spu_gemm
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, (16, 64)).astype(np.int8)
    w = np.where(gnm.mask(w, 1, 4), w, 0).astype(np.int8)
    x = rng.integers(-128, 128, (64, 6)).astype(np.int8)
    bias = rng.integers(-1000, 1000, 16)
    mult = rng.integers(1, 60000, 16)
    shift = rng.integers(10, 20, 16)
    values, indices = gnm.compress(w, 1, 4)
    y, _ = spu_gemm(values, indices, 1, 4, x, bias, mult, shift, False)
    job = {"w": w, "n": 1, "m": 4, "bias": bias, "mult": mult, "shift": shift, "x": x, "y": y}
    assert run.run_jobs_on_chip({"g": job})["g"]["bit_exact"] is True
    job["y"] = y.copy()
    job["y"][5, 0] ^= 1
    assert run.run_jobs_on_chip({"g": job})["g"]["bit_exact"] is False


def test_layer_0_compiled_whole_on_the_golden_chip(sparse):
    """Encoder layer 0 with MiniLM's own 2:4 int8 weights and its real input, compiled whole
    onto 4 subsystems: q, k, v bit-exact with the integer engine, the layer bit-exact with the
    chip's numpy layer, and cycles from the chip cycle model."""
    layer = sparse["chip_layer"]
    assert layer["qkv_bit_exact_vs_integer_engine"] and layer["bit_exact_vs_chip_reference"]
    assert layer["tokens"] % 4 == 0 and layer["subsystems"] == 4
    parts = layer["cycle_parts"]
    assert layer["chunk_tiles"] is None and layer["phases"] == 2
    assert layer["cycles"] == sum(parts.values())
    assert parts["weight_beats"] > 0 and parts["act_layernorm"] > 0 and parts["act_softmax"] > 0


def test_layer_0_streamed_on_the_golden_chip_beyond_32_tokens():
    """Beyond 32 tokens (here 40, padded to 40: 10 tiles, chunks of 2) the layer runs streamed
    with MiniLM's own dense int8 weights and real input: q (from every chunk), k and v
    bit-exact with the integer engine, the layer with the numpy layer."""
    from sparsehw.model.execute import execute
    tok = run.load_tokenizer()
    prep = run.prepare("minilm", [], tok, CALIBRATION[:1])
    feeds = run.encode(tok, TEXT, 40)
    prep.engine.keep_jobs, prep.engine.jobs = True, {}
    execute(prep.graph, feeds, prep.engine)
    layer = run.run_layer_on_chip(prep.graph, prep.engine.jobs, 4)
    assert layer["tokens"] == 40 and layer["chunk_tiles"] == 2 and layer["phases"] == 6
    assert layer["qkv_bit_exact_vs_integer_engine"] and layer["bit_exact_vs_chip_reference"]
    assert layer["cycles"] == sum(layer["cycle_parts"].values())
