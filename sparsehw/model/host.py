"""The host's numpy interpreter for control tensors (shapes, token ids, masks) and constant folding.

Each function follows the ONNX operator of the same name (opset 13 and later: axes and shapes are
inputs, not attributes). Only what these tensors need is here; :data:`HOST_OPS` lists it.
"""

import numpy as np


__all__ = ["HOST_OPS", "run_node"]

# ONNX TensorProto element types -> numpy
_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64,
           9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


def _axes(value, ndim):
    return tuple(int(a) % ndim for a in np.asarray(value).ravel())


def _slice(attr, data, starts, ends, axes=None, steps=None):
    starts = np.asarray(starts).ravel()
    ends = np.asarray(ends).ravel()
    axes = range(len(starts)) if axes is None else np.asarray(axes).ravel()
    steps = np.ones(len(starts), np.int64) if steps is None else np.asarray(steps).ravel()
    index = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        size = data.shape[int(a)]
        s, e = int(max(min(s, 2**62), -2**62)), int(max(min(e, 2**62), -2**62))
        index[int(a)] = slice(*slice(s, e, int(st)).indices(size))
    return data[tuple(index)]


def _reshape(attr, data, shape):
    shape = [int(v) for v in np.asarray(shape).ravel()]
    if not attr("allowzero", 0):
        shape = [data.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return data.reshape(shape)


def _unsqueeze(attr, data, axes):
    ndim = data.ndim + np.asarray(axes).size
    out = data
    for a in sorted(_axes(axes, ndim)):
        out = np.expand_dims(out, a)
    return out


def _squeeze(attr, data, axes=None):
    if axes is None:
        return np.squeeze(data)
    return np.squeeze(data, axis=_axes(axes, data.ndim))


def _shape(attr, data):
    shape = np.array(data.shape, dtype=np.int64)
    start, end = attr("start", 0), attr("end", None)
    return shape[start:end]


def _gather_nd(attr, data, indices):
    if attr("batch_dims", 0):
        raise ValueError("GatherND with batch_dims is not supported")
    indices = np.asarray(indices)
    depth = indices.shape[-1]
    flat = indices.reshape(-1, depth)
    out = np.stack([data[tuple(i)] for i in flat]) if flat.size else \
        np.zeros((0,) + data.shape[depth:], data.dtype)
    return out.reshape(indices.shape[:-1] + data.shape[depth:])


def _expand(attr, data, shape):
    shape = tuple(int(v) for v in np.asarray(shape).ravel())
    target = np.broadcast_shapes(data.shape, shape)
    return np.broadcast_to(data, target).copy()


def _constant_of_shape(attr, shape):
    value = attr("value")
    fill = np.zeros(1, np.float32) if value is None else _tensor(value)
    return np.full(tuple(int(v) for v in np.asarray(shape).ravel()), fill.ravel()[0],
                   dtype=fill.dtype)


def _tensor(proto):
    from onnx import numpy_helper
    return numpy_helper.to_array(proto)


def _constant(attr):
    value = attr("value")
    if value is None:
        raise ValueError("Constant without a tensor value is not supported")
    return _tensor(value)


def _binary(f):
    def run(attr, a, b):
        out = f(np.asarray(a), np.asarray(b))
        return out.astype(np.result_type(a, b)) if out.dtype != np.bool_ else out
    return run


def _div(attr, a, b):
    a, b = np.asarray(a), np.asarray(b)
    if np.issubdtype(a.dtype, np.integer):
        return (np.trunc(a / b)).astype(a.dtype)
    return (a / b).astype(np.result_type(a, b))


#: ONNX operators the host runs, with their numpy implementations ``f(attr, *inputs)``.
HOST_OPS = {
    "Shape": _shape,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Slice": _slice,
    "Concat": lambda attr, *xs: np.concatenate(xs, axis=attr("axis")),
    "Range": lambda attr, s, e, d: np.arange(s, e, d, dtype=np.result_type(s, e, d)),
    "Expand": _expand,
    "Max": lambda attr, *xs: np.maximum.reduce(np.broadcast_arrays(*xs)),
    "Min": lambda attr, *xs: np.minimum.reduce(np.broadcast_arrays(*xs)),
    "GreaterOrEqual": _binary(np.greater_equal),
    "Greater": _binary(np.greater),
    "Less": _binary(np.less),
    "Equal": _binary(np.equal),
    "And": _binary(np.logical_and),
    "Or": _binary(np.logical_or),
    "Not": lambda attr, a: np.logical_not(a),
    "Where": lambda attr, c, a, b: np.where(c, a, b).astype(np.result_type(a, b)),
    "Cast": lambda attr, a: np.asarray(a).astype(_DTYPES[attr("to")]),
    "GatherND": _gather_nd,
    "Gather": lambda attr, data, idx: np.take(data, np.asarray(idx), axis=attr("axis", 0)),
    "Reshape": _reshape,
    "Transpose": lambda attr, a: np.transpose(a, attr("perm")),
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _div,
    "Sqrt": lambda attr, a: np.sqrt(a),
    "IsNaN": lambda attr, a: np.isnan(a),
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Identity": lambda attr, a: a,
}


def run_node(node, values, attr):
    """Run one ONNX node on numpy values; returns the list of its outputs.

    Parameters
    ----------
    node : onnx.NodeProto
    values : list of numpy.ndarray or None
        One per input (None for an omitted optional input).
    attr : callable
        ``attr(name, default)``: the node's attribute.
    """
    fn = HOST_OPS.get(node.op_type)
    if fn is None:
        raise ValueError(f"node {node.name!r}: op type {node.op_type} cannot be folded")
    while values and values[-1] is None:
        values = values[:-1]
    out = fn(attr, *values)
    return [np.asarray(out)]
