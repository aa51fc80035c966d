"""Running our graph: the host operators in numpy, the activation operators on an engine.

Two engines share one walk over :attr:`Graph.ops` (:func:`execute`):

- :class:`FloatEngine`: float64 numpy, the ONNX semantics; it checks the import against
  onnxruntime and calibrates the activation scales.
- :class:`sparsehw.model.quantize.IntEngine`: the integer encoder (int8 codes, SPU post-ops, the
  activation engine's kernels).
"""

import math

import numpy as np

from sparsehw.model import host


__all__ = ["execute", "FloatEngine", "feeds_for"]

_ERF = np.vectorize(math.erf, otypes=[np.float64])


def feeds_for(ids, type_ids=None):
    """The three BERT inputs for one sentence: ``input_ids``, ``attention_mask``,
    ``token_type_ids`` as int64 arrays of shape (1, T)."""
    ids = np.asarray(ids, dtype=np.int64).reshape(1, -1)
    type_ids = np.zeros_like(ids) if type_ids is None else \
        np.asarray(type_ids, dtype=np.int64).reshape(1, -1)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": type_ids}


def execute(graph, feeds, engine, observe=None):
    """Run ``graph`` on ``feeds`` (graph input name -> numpy array) with ``engine``.

    Parameters
    ----------
    observe : callable, optional
        ``observe(op, value, inputs)`` after every activation operator (calibration and the
        GEMM shapes use it).

    Returns
    -------
    dict
        Graph output name -> the engine's value.
    """
    missing = [name for name in graph.inputs if name not in feeds]
    if missing:
        raise ValueError(f"missing graph inputs: {', '.join(missing)}")
    env = dict(feeds)
    for name in graph.act_inputs:
        env[name] = engine.input(name, feeds[name])
        if observe is not None:
            observe(_InputOp(name), env[name], [])
    consts = graph.consts

    def value(name):
        if name is None:
            return None
        return env[name] if name in env else consts[name]

    for op in graph.ops:
        if op.kind == "host":
            node = op.attrs["onnx"]
            ins = [engine.host_view(value(t)) if t else None for t in op.inputs]

            def attr(key, default=None, node=node):
                import onnx
                for a in node.attribute:
                    if a.name == key:
                        return onnx.helper.get_attribute_value(a)
                return default
            outs = host.run_node(node, ins, attr)
            for t, v in zip(op.outputs, outs):
                env[t] = v
            continue
        ins = [value(t) for t in op.inputs]
        out = getattr(engine, op.kind)(op, *ins)
        env[op.outputs[0]] = out
        if observe is not None:
            observe(op, out, ins)
    return {name: env[name] for name in graph.outputs}


class _InputOp:
    """Stands for a graph input in ``observe`` calls."""

    kind = "input"

    def __init__(self, name):
        self.name = name
        self.outputs = [name]
        self.inputs = []
        self.attrs = {}


class FloatEngine:
    """float64 numpy implementation of every activation operator (the ONNX semantics)."""

    def __init__(self, graph, weights=None):
        self.graph = graph
        #: Optional replacement weights (name -> float array), e.g. pruned ones.
        self.weights = weights or {}
        self._f64 = {}

    def host_view(self, value):
        return value

    def input(self, name, value):
        return np.asarray(value, np.float64)

    def embed(self, op, ids, table):
        return np.take(table, ids, axis=0).astype(np.float64)

    def linear(self, op, x, w, b):
        name = op.inputs[1]
        if name not in self._f64:
            self._f64[name] = np.asarray(self.weights.get(name, w), np.float64)
        y = np.asarray(x, np.float64) @ self._f64[name]
        return y if b is None else y + b

    def matmul(self, op, a, b):
        return np.matmul(a, b)

    def add(self, op, a, b):
        return a + b

    def scale(self, op, x):
        return x * op.attrs["value"]

    def layernorm(self, op, x, gamma, beta):
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        y = (x - mean) / np.sqrt(var + op.attrs["epsilon"])
        if gamma is not None:
            y = y * gamma
        return y if beta is None else y + beta

    def gelu(self, op, x):
        return x * 0.5 * (1.0 + _ERF(x / math.sqrt(2.0)))

    def softmax(self, op, x, mask):
        if mask is not None:
            x = x + np.asarray(mask, np.float64)
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def nan_guard(self, op, x, cond, c):
        return np.where(np.isnan(x), c, x)

    def reshape(self, op, x, shape):
        return host.HOST_OPS["Reshape"](lambda k, d=None: op.attrs.get(k, d), x, shape)

    def transpose(self, op, x):
        return np.transpose(x, op.attrs["perm"])
