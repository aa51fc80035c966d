"""TeSA attributes, settings, propagation and mask materialisation on the real MiniLM graph."""

import numpy as np
import pytest

pytest.importorskip("onnx")

from sparsehw.golden import nm as gnm  # noqa: E402
from sparsehw.model import run  # noqa: E402
from sparsehw.model.attrs import (ConfigError, LayerSetting, Precision, Sparsity,  # noqa: E402
                                  TensorAttr, load_config, parse_nm)
from sparsehw.model.propagate import initial_attrs, materialise, propagate  # noqa: E402


@pytest.fixture(scope="module")
def graph():
    return run.load_graph("minilm")


def _linear(graph, label):
    return next(op for op in graph.linears() if op.label == f"inner.encoder.{label}")


def _op(graph, kind, after_op):
    """The first op of ``kind`` that consumes ``after_op``'s output."""
    return next(op for op in graph.consumers()[after_op.outputs[0]] if op.kind == kind)


def test_parse_nm():
    assert parse_nm("2:4") == (2, 4)
    assert parse_nm("1:1") == (1, 1)
    for bad in ("2-4", "3:3", "5:4", "x:y", "1:64", "3:4"):
        with pytest.raises(ConfigError):
            parse_nm(bad)


def test_precision_and_sparsity_conflicts():
    assert Precision(4).lower(Precision(8)) == Precision(4)
    with pytest.raises(ConfigError, match="bits must be in 2..8, not 9"):
        Precision(9)
    a = Sparsity(2, 4, frozenset({1}), frozenset())
    b = Sparsity(1, 8, frozenset({2}), frozenset({5}))
    u = a.union(b)
    assert (u.n, u.m) == (1, 8) and u.dead == {1, 2} and u.dead_in == {5}
    merged = TensorAttr(a, Precision(8)).merge(TensorAttr(b, Precision(6)))
    assert merged.precision.bits == 6


def test_config_file(tmp_path):
    path = tmp_path / "attrs.toml"
    path.write_text('[[layer]]\nmatch = "*intermediate.dense"\nnm = "2:4"\nbits = 6\n'
                    'prune_out = [1, 2]\n\n[[layer]]\nmatch = "node_MatMul_48"\nact_bits = 4\n')
    settings = load_config(path)
    assert settings[0] == LayerSetting("*intermediate.dense", (2, 4), 6, None, (1, 2), ())
    assert settings[1].act_bits == 4
    path.write_text('[[layer]]\nmatch = "*"\nsparsity = "2:4"\n')
    with pytest.raises(ConfigError, match="unknown key 'sparsity'"):
        load_config(path)
    path.write_text('[[layer]]\nprune_out = [-1]\n')
    with pytest.raises(ConfigError, match="prune_out"):
        load_config(path)
    path.write_text("not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_patterns_match_labels_and_node_names(graph):
    ffn_in = _linear(graph, "layer.3.intermediate.dense")
    assert LayerSetting("*layer.3.intermediate*").matches(ffn_in)
    assert LayerSetting(ffn_in.name).matches(ffn_in)
    assert not LayerSetting("*layer.4.*").matches(ffn_in)


def test_out_of_range_channel_is_rejected(graph):
    with pytest.raises(ConfigError, match="prune_out channel 1536 out of range"):
        initial_attrs(graph, [LayerSetting("*layer.0.intermediate.dense", prune_out=(1536,))])


def test_forward_pruned_column_kills_consumer_rows(graph):
    ffn_in = _linear(graph, "layer.0.intermediate.dense")
    ffn_out = _linear(graph, "layer.0.output.dense")
    before = initial_attrs(graph, [LayerSetting("*layer.0.intermediate.dense",
                                                prune_out=(3, 7))])
    after = propagate(graph, before)
    assert before[ffn_out.inputs[1]].sparsity.dead_in == frozenset()
    assert after[ffn_out.inputs[1]].sparsity.dead_in == {3, 7}
    gelu = _op(graph, "gelu", ffn_in)
    assert after[gelu.outputs[0]].sparsity.dead == {3, 7}
    # nothing else changed: the residual stream and every other weight stay dense
    changed = {t for t in after if after[t] != before[t]}
    assert changed == {ffn_in.outputs[0], gelu.outputs[0], ffn_out.inputs[1]}


def test_backward_unused_input_everywhere_is_pruned(graph):
    ffn_in = _linear(graph, "layer.2.intermediate.dense")
    ffn_out = _linear(graph, "layer.2.output.dense")
    after = propagate(graph, initial_attrs(
        graph, [LayerSetting("*layer.2.output.dense", prune_in=(5, 9))]))
    assert after[ffn_in.inputs[1]].sparsity.dead == {5, 9}
    assert after[ffn_out.inputs[1]].sparsity.dead_in == {5, 9}


def test_backward_needs_every_use(graph):
    """Q, K and V read the same LayerNorm output: a row pruned in Q alone prunes nothing else."""
    query = _linear(graph, "layer.1.attention.self.query")
    before = initial_attrs(graph, [LayerSetting("*layer.1.attention.self.query",
                                                prune_in=(0, 1))])
    after = propagate(graph, before)
    assert after == before
    assert after[query.inputs[1]].sparsity.dead_in == {0, 1}
    # pruned in all three uses, but the LayerNorm output also feeds the residual add: still live
    both = initial_attrs(graph, [LayerSetting(f"*layer.1.attention.self.{x}", prune_in=(0,))
                                 for x in ("query", "key", "value")])
    assert propagate(graph, both)[query.inputs[0]].sparsity.dead == frozenset()


def test_precision_moves_through_reshapes(graph):
    """act_bits on the attention output GEMM reaches the PV product through reshape/transpose."""
    dense = _linear(graph, "layer.4.attention.output.dense")
    after = propagate(graph, initial_attrs(
        graph, [LayerSetting("*layer.4.attention.output.dense", act_bits=4)]))
    producer = graph.producer()
    t = dense.inputs[0]
    seen = []
    while producer[t].kind in ("reshape", "transpose"):
        seen.append(producer[t].kind)
        t = producer[t].inputs[0]
        assert after[t].precision.bits == 4
    assert producer[t].kind == "matmul" and seen == ["reshape", "transpose"]
    # the attention probabilities feeding that product keep 8 bits
    assert after[producer[t].inputs[0]].precision.bits == 8


def test_conflicting_settings(graph):
    w = _linear(graph, "layer.5.intermediate.dense").inputs[1]
    attrs = initial_attrs(graph, [LayerSetting("*intermediate.dense", nm=(2, 4), bits=8,
                                               prune_out=(1,)),
                                  LayerSetting("*layer.5.*", nm=(1, 4), bits=5,
                                               prune_out=(2,))])
    s = attrs[w].sparsity
    assert (s.n, s.m, s.dead) == (1, 4, {1, 2})
    assert attrs[w].precision.bits == 5


def test_materialised_masks(graph):
    ffn_in = _linear(graph, "layer.0.intermediate.dense")
    ffn_out = _linear(graph, "layer.0.output.dense")
    after = propagate(graph, initial_attrs(graph, [
        LayerSetting("*layer.0.*", nm=(2, 4)),
        LayerSetting("*layer.0.intermediate.dense", prune_out=(0, 1, 2, 100))]))
    masks = materialise(graph, after)
    m_in, m_out = masks[ffn_in.inputs[1]], masks[ffn_out.inputs[1]]
    assert not m_in[:, [0, 1, 2, 100]].any()
    assert not m_out[[0, 1, 2, 100], :].any()
    # the compacted GEMM (live rows only) is exactly 2:4 along K, by golden.nm's rule
    live = np.delete(np.asarray(graph.consts[ffn_out.inputs[1]]), [0, 1, 2, 100], axis=0)
    kept = np.delete(m_out, [0, 1, 2, 100], axis=0)
    np.testing.assert_array_equal(kept, gnm.mask(live.T, 2, 4).T)
    # every live column of the first GEMM keeps half of its 384 inputs
    live_cols = np.delete(m_in, [0, 1, 2, 100], axis=1)
    assert (live_cols.sum(axis=0) == 192).all()
    # untouched layers stay dense
    assert masks[_linear(graph, "layer.1.intermediate.dense").inputs[1]].all()


def test_inspect_text(graph):
    before = initial_attrs(graph, [LayerSetting("*layer.0.intermediate.dense", prune_out=(3,),
                                                nm=(2, 4))])
    after = propagate(graph, before)
    text = run.inspect_text(graph, before, after, changed_only=True)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["kind", "layer", "tensor"]
    assert len(lines) == 4
    assert any("1/1536 input rows pruned" in line for line in lines)
    full = run.inspect_text(graph, before, after)
    assert "2:4, 1/1536 channels pruned, int8" in full
