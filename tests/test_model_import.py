"""ONNX import (sparsehw.model.graph): the real MiniLM file, small hand-built graphs, errors."""

import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sparsehw.model import run  # noqa: E402
from sparsehw.model.execute import FloatEngine, execute, feeds_for  # noqa: E402
from sparsehw.model.graph import UnsupportedOperator, import_onnx  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    return run.load_graph("minilm")


def test_minilm_operators(minilm):
    kinds = [op.kind for op in minilm.act_ops()]
    # 6 layers: Q, K, V, attention output, FFN in, FFN out; QK^T and PV; 12 + 1 LayerNorms
    assert kinds.count("linear") == 36
    assert kinds.count("matmul") == 12
    assert kinds.count("gelu") == 6
    assert kinds.count("softmax") == 6
    assert kinds.count("layernorm") == 13
    assert kinds.count("embed") == 3
    labels = [op.label for op in minilm.linears()]
    assert "inner.encoder.layer.0.intermediate.dense" in labels
    assert "inner.encoder.layer.5.output.dense" in labels


def test_minilm_int8_weights_kept(minilm):
    """Every weight GEMM keeps the file's int8 values and per-output-channel scales."""
    for op in minilm.linears():
        w = op.inputs[1]
        q, s = minilm.qweights[w]
        assert q.dtype == np.int8
        assert np.shape(s) == (1, q.shape[1])
        np.testing.assert_array_equal(minilm.consts[w], q.astype(np.float32) * s)


def test_float_engine_matches_onnxruntime(minilm):
    tok = run.load_tokenizer()
    feeds = run.encode(tok, "Our float engine must agree with onnxruntime.")
    ours = execute(minilm, feeds, FloatEngine(minilm))[minilm.outputs[0]]
    ref = run.reference_hidden("minilm", feeds)
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) < 1e-3


def test_padded_input_matches_onnxruntime(minilm):
    tok = run.load_tokenizer()
    feeds = run.encode(tok, "Padding is masked.", seq_len=12)
    assert feeds["attention_mask"].sum() < 12
    ours = execute(minilm, feeds, FloatEngine(minilm))[minilm.outputs[0]]
    ref = run.reference_hidden("minilm", feeds)
    assert np.max(np.abs(ours - ref)) < 1e-3


# -- small hand-built graphs ---------------------------------------------------------------------

def _model(nodes, inits, out_shape=(1, 3, 8)):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _ffn(gelu_nodes, rng):
    """x -> Gemm(transB) -> GELU (given nodes, from 'h' to 'g') -> MatMul+bias -> LayerNorm."""
    inits = {
        "w1": rng.standard_normal((16, 8)).astype(np.float32),     # transB: (N, K)
        "b1": rng.standard_normal(16).astype(np.float32),
        "w2q": rng.integers(-127, 128, (16, 8)).astype(np.int8),
        "w2s": (rng.random((1, 8)) * 0.02 + 0.01).astype(np.float32),
        "b2": rng.standard_normal(8).astype(np.float32),
        "gamma": rng.random(8).astype(np.float32) + 0.5,
        "beta": rng.standard_normal(8).astype(np.float32),
        "sqrt2": np.array(math.sqrt(2.0), np.float32),
        "inv_sqrt2": np.array(1.0 / math.sqrt(2.0), np.float32),
        "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32),
    }
    nodes = [
        helper.make_node("Reshape", ["x", "shape2d"], ["x2"], name="flatten"),
        helper.make_node("Gemm", ["x2", "w1", "b1"], ["h2"], name="fc1", transB=1),
        helper.make_node("Reshape", ["h2", "shape3d"], ["h"], name="unflatten"),
        *gelu_nodes,
        helper.make_node("Cast", ["w2q"], ["w2f"], name="w2_cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["w2f", "w2s"], ["w2"], name="w2_mul"),
        helper.make_node("MatMul", ["g", "w2"], ["f"], name="fc2"),
        helper.make_node("Add", ["f", "b2"], ["fb"], name="fc2_bias"),
        helper.make_node("Add", ["fb", "x"], ["r"], name="residual"),
        helper.make_node("LayerNormalization", ["r", "gamma", "beta"], ["y"], name="ln",
                         axis=-1, epsilon=1e-5),
    ]
    inits["shape2d"] = np.array([3, 8], np.int64)
    inits["shape3d"] = np.array([1, 3, 16], np.int64)
    return _model(nodes, inits)


GELU_DIV = [
    helper.make_node("Div", ["h", "sqrt2"], ["t"], name="gelu_div"),
    helper.make_node("Erf", ["t"], ["e"], name="gelu_erf"),
    helper.make_node("Add", ["e", "one"], ["a"], name="gelu_add"),
    helper.make_node("Mul", ["half", "a"], ["p"], name="gelu_half"),
    helper.make_node("Mul", ["h", "p"], ["g"], name="gelu_x"),
]
GELU_MUL = [   # x * (1/sqrt2), then x first and 0.5 last
    helper.make_node("Mul", ["inv_sqrt2", "h"], ["t"], name="gelu_scale"),
    helper.make_node("Erf", ["t"], ["e"], name="gelu_erf"),
    helper.make_node("Add", ["one", "e"], ["a"], name="gelu_add"),
    helper.make_node("Mul", ["a", "h"], ["p"], name="gelu_x"),
    helper.make_node("Mul", ["p", "half"], ["g"], name="gelu_half"),
]


@pytest.mark.parametrize("gelu", [GELU_DIV, GELU_MUL], ids=["div", "mul"])
def test_small_ffn_patterns(gelu):
    rng = np.random.default_rng(1)
    model = _ffn(gelu, rng)
    graph = import_onnx(model)
    assert [op.kind for op in graph.act_ops()] == \
        ["reshape", "linear", "reshape", "gelu", "linear", "add", "layernorm"]
    fc1, fc2 = graph.linears()
    assert fc1.inputs[2] == "b1" and fc2.inputs[2] == "b2"
    assert graph.qweights["w2"][0].dtype == np.int8
    x = rng.standard_normal((1, 3, 8)).astype(np.float32)
    ours = execute(graph, {"x": x}, FloatEngine(graph))["y"]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": x})[0]
    assert np.max(np.abs(ours - ref)) < 1e-4


def test_unsupported_operator_is_one_clear_error():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
             helper.make_node("Relu", ["h"], ["y"], name="my_relu")]
    model = _model(nodes, {"w": np.ones((8, 8), np.float32)})
    with pytest.raises(UnsupportedOperator) as info:
        import_onnx(model)
    text = str(info.value)
    assert "'my_relu'" in text and "op type Relu" in text
    assert "supported on activations" in text and "gelu" in text


def test_activation_by_constant_outside_patterns_is_rejected():
    nodes = [helper.make_node("Mul", ["x", "c"], ["y"], name="neg_scale")]
    model = _model(nodes, {"c": np.array(-2.0, np.float32)})
    with pytest.raises(UnsupportedOperator, match="'neg_scale' \\(op type Mul\\)"):
        import_onnx(model)


def test_unknown_host_operator_is_rejected():
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Mod", ["s", "s"], ["m"], name="weird_mod", fmod=0),
             helper.make_node("Reshape", ["x", "m"], ["y"], name="reshape")]
    with pytest.raises(UnsupportedOperator, match="'weird_mod' \\(op type Mod\\)"):
        import_onnx(_model(nodes, {}))


def test_feeds_for_defaults():
    feeds = feeds_for([101, 7, 102])
    assert feeds["input_ids"].shape == (1, 3)
    assert feeds["attention_mask"].tolist() == [[1, 1, 1]]
    assert feeds["token_type_ids"].tolist() == [[0, 0, 0]]


def test_decomposed_layernorm_is_recognised():
    rng = np.random.default_rng(4)
    inits = {"axes": np.array([-1], np.int64), "two": np.array(2.0, np.float32),
             "eps": np.array(1e-5, np.float32),
             "gamma": (rng.random(8) + 0.5).astype(np.float32),
             "beta": rng.standard_normal(8).astype(np.float32)}
    nodes = [  # opset 17: ReduceMean takes axes as an attribute
        helper.make_node("ReduceMean", ["x"], ["mu"], name="ln_mean", axes=[-1]),
        helper.make_node("Sub", ["x", "mu"], ["d"], name="ln_sub"),
        helper.make_node("Pow", ["d", "two"], ["d2"], name="ln_pow"),
        helper.make_node("ReduceMean", ["d2"], ["var"], name="ln_var", axes=[-1]),
        helper.make_node("Add", ["var", "eps"], ["ve"], name="ln_eps"),
        helper.make_node("Sqrt", ["ve"], ["sd"], name="ln_sqrt"),
        helper.make_node("Div", ["d", "sd"], ["n"], name="ln_div"),
        helper.make_node("Mul", ["n", "gamma"], ["ng"], name="ln_gamma"),
        helper.make_node("Add", ["ng", "beta"], ["y"], name="ln_beta"),
    ]
    model = _model(nodes, inits)
    graph = import_onnx(model)
    [op] = graph.act_ops()
    assert op.kind == "layernorm" and op.inputs == ["x", "gamma", "beta"]
    assert op.attrs["epsilon"] == pytest.approx(1e-5)
    x = rng.standard_normal((1, 3, 8)).astype(np.float32)
    ours = execute(graph, {"x": x}, FloatEngine(graph))["y"]
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.max(np.abs(ours - sess.run(None, {"x": x})[0])) < 1e-4
    # a ReduceMean that is not a LayerNorm is refused by name
    broken = _model(nodes[:1] + [helper.make_node("Sub", ["x", "mu"], ["y"], name="centre")],
                    inits)
    with pytest.raises(UnsupportedOperator, match="'ln_mean' \\(op type ReduceMean\\)"):
        import_onnx(broken)


def test_small_ffn_in_integers():
    """The hand-built FFN (float graph input, Gemm with transB, GELU, int8 weight pattern,
    residual, LayerNorm) runs in integers close to its float run."""
    from sparsehw.model.propagate import initial_attrs, materialise, propagate
    from sparsehw.model.quantize import IntEngine, calibrate
    rng = np.random.default_rng(5)
    graph = import_onnx(_ffn(GELU_DIV, rng))
    attrs = propagate(graph, initial_attrs(graph))
    masks = materialise(graph, attrs)
    xs = [rng.standard_normal((1, 3, 8)).astype(np.float32) for _ in range(8)]
    amax = calibrate(graph, [{"x": x} for x in xs], masks)
    engine = IntEngine(graph, attrs, masks, amax)
    for x in xs[:3]:
        ours = execute(graph, {"x": x}, engine)["y"]
        ref = execute(graph, {"x": x}, FloatEngine(graph))["y"]
        assert run.cosine(ours.real(), ref) > 0.99
