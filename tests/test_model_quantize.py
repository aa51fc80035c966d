"""Quantization and the integer encoder: helpers against golden rules, a small graph, MiniLM."""

import math

import numpy as np
import pytest

pytest.importorskip("onnx")

from sparsehw.golden import act as gact  # noqa: E402
from sparsehw.golden import nm as gnm  # noqa: E402
from sparsehw.model import quantize as q  # noqa: E402
from sparsehw.model import run  # noqa: E402
from sparsehw.model.attrs import LayerSetting  # noqa: E402
from sparsehw.model.sentences import CALIBRATION, EVALUATION  # noqa: E402


def test_requant_params_fit_the_spu():
    rng = np.random.default_rng(0)
    for m in np.exp(rng.uniform(math.log(1e-9), math.log(6e4), 500)):
        mult, shift = q.requant_params(m)
        assert 0 <= mult <= 2**gnm.MULT_BITS - 1 and 0 <= shift <= gnm.SHIFT_MAX
        if m > 2**-15:       # representable with 16 significant bits
            assert abs(mult / 2**shift - m) <= m * 2**-15
    assert q.requant_params(0.0) == (0, 0)
    with pytest.raises(ValueError):
        q.requant_params(70000.0)


def test_rshift_round_matches_golden_act():
    rng = np.random.default_rng(1)
    v = rng.integers(-2**20, 2**20, 400)
    s = rng.integers(-3, 12, 400)
    got = q._rshift_round(v, s)
    assert got.tolist() == [gact.rshift_round(int(a), int(b)) for a, b in zip(v, s)]
    assert q._rshift_round(np.array([5, -5, 6, -6]), 1).tolist() == [3, -2, 3, -3]


def test_layernorm_row_is_golden_act_on_int8():
    rng = np.random.default_rng(2)
    for n in (8, 64, 384):
        row = rng.integers(-128, 128, n).tolist()
        gamma = rng.integers(-20000, 20000, n).tolist()
        beta = rng.integers(-3000, 3000, n).tolist()
        for fout in (6, 10, 13):
            assert q.layernorm_row(row, gamma, beta, fout) == \
                gact.layernorm(row, gamma, beta, fout)
    with pytest.raises(ValueError):
        q.layernorm_row([40000, 0], [4096, 4096], [0, 0], 8)


def test_pow2_exponent():
    assert q.pow2_exponent(1.0) == 6          # 127 / 1 -> 2**6 = 64 <= 127 < 128
    assert q.pow2_exponent(127.0) == 0
    assert q.pow2_exponent(200.0) == -1
    assert 3.0 / 2.0 ** -q.pow2_exponent(3.0) <= 127


@pytest.fixture(scope="module")
def dense():
    tok = run.load_tokenizer()
    return run.prepare("minilm", [], tok, CALIBRATION[:4]), tok


def test_integer_weights_are_the_files_codes(dense):
    prep, _ = dense
    op = prep.graph.linears()[0]
    codes, scales = prep.engine.weight_codes(op.inputs[1])
    fq, fs = prep.graph.qweights[op.inputs[1]]
    np.testing.assert_array_equal(codes, fq)
    np.testing.assert_array_equal(scales, np.ravel(fs))


def test_integer_values_are_int8_and_close_to_float(dense):
    """Every GEMM input is int8 codes; the integer encoder tracks the float one layer by layer."""
    prep, tok = dense
    feeds = run.encode(tok, EVALUATION[3])
    from sparsehw.model.execute import FloatEngine, execute
    floats, ints = {}, {}
    execute(prep.graph, feeds, FloatEngine(prep.graph),
            lambda op, v, ins: floats.__setitem__(op.outputs[0], v))

    def observe(op, v, ins):
        ints[op.outputs[0]] = v
        if op.kind in ("linear", "matmul"):
            for x in ins[:1] + (ins[1:2] if op.kind == "matmul" else []):
                assert x.q.min() >= -128 and x.q.max() <= 127
    out = execute(prep.graph, feeds, prep.engine, observe)[prep.graph.outputs[0]]
    assert out.q.min() >= -32768 and out.q.max() <= 32767      # the engine's int16 output
    first_ln = next(op for op in prep.graph.act_ops() if op.kind == "layernorm")
    assert run.cosine(ints[first_ln.outputs[0]].real(), floats[first_ln.outputs[0]]) > 0.98
    assert run.cosine(out.real(), floats[prep.graph.outputs[0]]) > 0.9


def test_dense_int8_embedding_close_to_onnxruntime(dense):
    prep, tok = dense
    feeds = run.encode(tok, EVALUATION[0])
    from sparsehw.model.execute import execute
    hidden = execute(prep.graph, feeds, prep.engine)[prep.graph.outputs[0]]
    ours = run.mean_pool(hidden.real(), feeds["attention_mask"])
    ref = run.mean_pool(run.reference_hidden("minilm", feeds), feeds["attention_mask"])
    assert run.cosine(ours, ref) > 0.95


def test_pruned_weights_are_zero_in_the_integer_codes():
    tok = run.load_tokenizer()
    prep = run.prepare("minilm", [LayerSetting("*layer.0.*", nm=(1, 4))], tok, CALIBRATION[:1])
    for op in prep.graph.linears()[:6]:
        codes, _ = prep.engine.weight_codes(op.inputs[1])
        mask = prep.masks[op.inputs[1]]
        assert not codes[~mask].any()
        assert (np.count_nonzero(codes, axis=0) <= codes.shape[0] // 4).all()
