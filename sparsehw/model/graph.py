"""ONNX import: an ONNX graph becomes our own small graph of operators.

Every ONNX tensor is classed while the nodes are read in order (ONNX nodes are topologically
sorted):

- **const**: an initializer, a ``Constant`` node, or a node whose inputs are all constants (folded
  here with :mod:`sparsehw.model.host`). The int8 weight pattern ``Cast(int8) -> Mul(scale)`` is
  folded too, and the int8 values and their scales are kept (:attr:`Graph.qweights`).
- **ctrl**: the integer graph inputs (token ids, attention mask) and everything computed only from them and
  from tensor shapes: sequence lengths, reshape targets, the additive attention mask. These run on
  the host, in numpy, with the operators of :data:`sparsehw.model.host.HOST_OPS`.
- **act**: activations, everything that depends on the embedded tokens (or on a floating-point
  graph input). Each ONNX node producing
  one becomes an :class:`Op` of one of the kinds of :data:`ACT_KINDS`, recognising the patterns
  ``MatMul(x, W) [+ Add(bias)]`` (``linear``), ``x * 0.5 * (1 + erf(x / sqrt(2)))`` (``gelu``),
  ``Softmax`` followed by its ``IsNaN``/``Where`` guard, the additive mask before a ``Softmax``.

A node the importer cannot place (an unknown operator, an operator on activations outside the
patterns above) raises :class:`UnsupportedOperator` naming the node, its op type and what is
supported, before anything runs.
"""

from dataclasses import dataclass, field

import numpy as np

from sparsehw.model import host
from sparsehw.model.files import ModelFileError


__all__ = ["Op", "Graph", "UnsupportedOperator", "import_onnx", "ACT_KINDS"]

#: Operator kinds of the activation graph and the ONNX patterns they come from.
ACT_KINDS = {
    "embed": "Gather(constant table, token ids)",
    "linear": "MatMul(x, constant 2-D weight), optionally followed by Add(constant bias)",
    "matmul": "MatMul(x, y) of two activations (attention's QK^T and PV)",
    "add": "Add(x, y) of two activations (residual, embedding sums)",
    "scale": "Mul or Div of an activation by a positive constant scalar",
    "layernorm": "LayerNormalization over the last axis, or its decomposition ReduceMean, Sub, "
                 "Pow 2 (or Mul), ReduceMean, Add eps, Sqrt, Div [, Mul gamma] [, Add beta]",
    "gelu": "the Erf pattern x * 0.5 * (1 + erf(x / sqrt(2))) (any operand order)",
    "softmax": "Softmax over the last axis, with an optional additive mask Add before it and the "
               "IsNaN/Where guard after it",
    "reshape": "Reshape of an activation", "transpose": "Transpose of an activation",
    "nan_guard": "Where(IsNaN(x), c, x) after a softmax (integers are never NaN)",
}


class UnsupportedOperator(ValueError):
    """An ONNX node the model runner cannot run; the message names the node and its op type."""


@dataclass
class Op:
    """One operator of our graph.

    Attributes
    ----------
    name : str
        The ONNX node name (the first node of a fused pattern: the MatMul of a linear, the Erf's
        input node of a GELU).
    kind : str
        One of :data:`ACT_KINDS`, or ``"host"`` (an ONNX node run in numpy on control tensors).
    inputs, outputs : list of str
        Tensor names. For ``linear`` the inputs are ``[x, weight, bias or None]``; for ``softmax``
        ``[x, mask or None]``.
    attrs : dict
        Kind-specific: ``perm`` (transpose), ``epsilon`` (layernorm), ``value`` (scale), ``label``
        (linear: the bias name without ``.bias``, a readable layer name), ``onnx`` (host: the
        ONNX node), ``fused`` (the ONNX node names folded into this op).
    """

    name: str
    kind: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)

    @property
    def label(self):
        """A readable name: the layer name for a linear, else the node name."""
        return self.attrs.get("label") or self.name


@dataclass
class Graph:
    """Our operator graph.

    Attributes
    ----------
    ops : list of Op
        In execution order.
    consts : dict
        Constant tensors (float32 after dequantization, or integer) by name.
    qweights : dict
        ``name -> (q, scale)`` for weights shipped as int8 with per-channel scales:
        ``consts[name] == q * scale`` exactly as the ONNX graph computes it.
    inputs, outputs : list of str
        Graph inputs and outputs (activations).
    act_inputs : list of str
        The graph inputs of floating-point type: activations (the others are control tensors,
        e.g. token ids).
    """

    ops: list
    consts: dict
    qweights: dict
    inputs: list
    outputs: list
    act_inputs: list = field(default_factory=list)

    def producer(self):
        """``tensor name -> Op`` producing it."""
        return {t: op for op in self.ops for t in op.outputs}

    def consumers(self):
        """``tensor name -> list of Op`` reading it."""
        users = {}
        for op in self.ops:
            for t in op.inputs:
                if t is not None:
                    users.setdefault(t, []).append(op)
        return users

    def act_ops(self):
        """The operators that are not host operators."""
        return [op for op in self.ops if op.kind != "host"]

    def linears(self):
        """The weight GEMMs, in order."""
        return [op for op in self.ops if op.kind == "linear"]


def _supported_text():
    acts = "; ".join(f"{k}: {v}" for k, v in ACT_KINDS.items())
    return (f"supported on activations: {acts}. Supported on the host (shapes, masks): "
            f"{', '.join(sorted(host.HOST_OPS))}")


def _unsupported(node, why):
    return UnsupportedOperator(
        f"node {node.name!r} (op type {node.op_type}) is not supported: {why}. "
        f"{_supported_text()}")


def _scalar(value):
    if value is None:
        return None
    value = np.asarray(value)
    return float(value.reshape(())) if value.size == 1 else None


def import_onnx(path_or_model):
    """Read an ONNX model into a :class:`Graph`.

    Parameters
    ----------
    path_or_model : str, pathlib.Path or onnx.ModelProto

    Returns
    -------
    Graph

    Raises
    ------
    UnsupportedOperator
        On the first node that cannot be placed; nothing is returned half-imported.
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
    else:
        try:
            model = onnx.load(str(path_or_model))
        except Exception as exc:       # protobuf's DecodeError, OSError: one line for the user
            raise ModelFileError(f"{path_or_model} is not a readable ONNX file "
                                 f"({type(exc).__name__})") from None
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    qweights = {}
    init_names = set(consts)
    inputs = [i.name for i in g.input if i.name not in init_names]
    cls = {name: "const" for name in consts}
    float_types = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE,
                   TensorProto.BFLOAT16)
    act_inputs = [i.name for i in g.input if i.name not in init_names
                  and i.type.tensor_type.elem_type in float_types]
    for name in inputs:
        cls[name] = "act" if name in act_inputs else "ctrl"
    nodes = list(g.node)
    for node in nodes:
        if not node.name:
            node.name = node.output[0]
    users = {}
    for node in nodes:
        for t in node.input:
            users.setdefault(t, []).append(node)
    producer_node = {t: node for node in nodes for t in node.output}
    ops = []
    consumed = set()

    def attr(node, key, default=None):
        for a in node.attribute:
            if a.name == key:
                return onnx.helper.get_attribute_value(a)
        return default

    def only_user(tensor):
        us = users.get(tensor, [])
        return us[0] if len(us) == 1 else None

    def other(node, tensor):
        ins = [t for t in node.input if t != tensor]
        return ins[0] if len(ins) == 1 else None

    def match_gelu(first):
        """``first`` is Div(x, sqrt2) or Mul(x, 1/sqrt2) feeding an Erf; returns the pattern."""
        x = first.input[0] if cls.get(first.input[0]) == "act" else first.input[1]
        c = _scalar(consts.get(other(first, x)))
        if c is None:
            return None
        if not np.isclose(c if first.op_type == "Div" else 1.0 / c, np.sqrt(2.0), rtol=1e-5):
            return None
        erf = only_user(first.output[0])
        if erf is None or erf.op_type != "Erf":
            return None
        add = only_user(erf.output[0])
        if add is None or add.op_type != "Add" or \
                _scalar(consts.get(other(add, erf.output[0]))) != 1.0:
            return None
        chain = [first, erf, add]
        t = add.output[0]
        need_half, need_x = True, True
        for _ in range(2):
            mul = only_user(t)
            if mul is None or mul.op_type != "Mul":
                return None
            o = other(mul, t)
            if need_x and o == x:
                need_x = False
            elif need_half and _scalar(consts.get(o)) == 0.5:
                need_half = False
            else:
                return None
            chain.append(mul)
            t = mul.output[0]
        return x, chain, t

    def match_layernorm(first):
        """``first`` is ReduceMean(x) of the decomposed LayerNorm ``(x - mean) / sqrt(var +
        eps) [* gamma] [+ beta]`` with ``var = ReduceMean((x - mean)**2)``, over the last axis."""
        def last_axis(n):
            axes = attr(n, "axes")
            if axes is None and len(n.input) > 1:
                axes = consts.get(n.input[1])
            return axes is not None and [int(a) for a in np.ravel(axes)] == [-1] and \
                attr(n, "keepdims", 1) == 1
        x = first.input[0]
        if not last_axis(first):
            return None
        sub = only_user(first.output[0])
        if sub is None or sub.op_type != "Sub" or list(sub.input) != [x, first.output[0]]:
            return None
        d = sub.output[0]
        sq = [u for u in users.get(d, []) if u.op_type == "Pow" or
              (u.op_type == "Mul" and list(u.input) == [d, d])]
        div = [u for u in users.get(d, []) if u.op_type == "Div" and u.input[0] == d]
        if len(sq) != 1 or len(div) != 1 or len(users[d]) != 2:
            return None
        sq, div = sq[0], div[0]
        if sq.op_type == "Pow" and _scalar(consts.get(sq.input[1])) != 2.0:
            return None
        mean2 = only_user(sq.output[0])
        if mean2 is None or mean2.op_type != "ReduceMean" or not last_axis(mean2):
            return None
        add = only_user(mean2.output[0])
        eps = _scalar(consts.get(other(add, mean2.output[0]))) if add is not None and \
            add.op_type == "Add" else None
        if eps is None:
            return None
        sqrt = only_user(add.output[0])
        if sqrt is None or sqrt.op_type != "Sqrt" or only_user(sqrt.output[0]) is not div or \
                div.input[1] != sqrt.output[0]:
            return None
        chain = [first, sub, sq, mean2, add, sqrt, div]
        out, gamma, beta = div.output[0], None, None
        nxt = only_user(out)
        if nxt is not None and nxt.op_type == "Mul" and other(nxt, out) in consts and \
                np.ndim(consts[other(nxt, out)]) == 1:
            gamma, out = other(nxt, out), nxt.output[0]
            chain.append(nxt)
            nxt = only_user(out)
        if nxt is not None and nxt.op_type == "Add" and other(nxt, out) in consts and \
                np.ndim(consts[other(nxt, out)]) == 1:
            beta, out = other(nxt, out), nxt.output[0]
            chain.append(nxt)
        return x, chain, out, gamma, beta, eps

    for node in nodes:
        if id(node) in consumed:
            continue
        op_type = node.op_type
        kinds = [cls.get(t, "const") if t else "none" for t in node.input]
        if op_type == "ReduceMean" and kinds[:1] == ["act"]:
            ln = match_layernorm(node)
            if ln is None:
                raise _unsupported(node, "ReduceMean on activations outside the decomposed "
                                         "LayerNorm pattern")
            x, chain, out, gamma, beta, eps = ln
            consumed.update(id(n) for n in chain)
            ops.append(Op(node.name, "layernorm", [x, gamma, beta], [out],
                          {"epsilon": eps, "fused": [n.name for n in chain]}))
            cls[out] = "act"
            continue
        for t in node.input:
            if t and t not in cls:
                raise _unsupported(node, f"input {t!r} is produced by no node")
        if op_type not in host.HOST_OPS and op_type not in (
                "MatMul", "Gemm", "Add", "Mul", "Div", "LayerNormalization", "Erf", "Softmax",
                "Reshape", "Transpose", "Gather", "IsNaN", "Where"):
            raise _unsupported(node, "unknown operator")
        # -- constant folding (the int8 dequantization pattern keeps its int8 values) ----------
        if all(k in ("const", "none") for k in kinds) and op_type != "Shape":
            values = host.run_node(node, [consts[t] if t else None for t in node.input],
                                   attr=lambda key, d=None: attr(node, key, d))
            for t, v in zip(node.output, values):
                consts[t] = v
                cls[t] = "const"
            if op_type == "Mul":
                a, b = node.input
                for q, s in ((a, b), (b, a)):
                    src = producer_node.get(q)
                    if src is not None and src.op_type == "Cast" and \
                            consts[src.input[0]].dtype == np.int8:
                        qweights[node.output[0]] = (consts[src.input[0]], consts[s])
            continue
        has_act = "act" in kinds
        # -- host (control) operators ----------------------------------------------------------
        if op_type == "Gather" and kinds[0] == "const" and kinds[1] == "ctrl":
            ops.append(Op(node.name, "embed", [node.input[1], node.input[0]], [node.output[0]]))
            cls[node.output[0]] = "act"
            continue
        if not has_act or op_type == "Shape":
            if op_type not in host.HOST_OPS:
                raise _unsupported(node, "operator on control tensors not supported")
            ops.append(Op(node.name, "host", list(node.input), list(node.output),
                          {"onnx": node}))
            for t in node.output:
                cls[t] = "ctrl"
            continue
        out = node.output[0]
        # -- activation operators --------------------------------------------------------------
        if op_type in ("MatMul", "Gemm"):
            if op_type == "Gemm" and (attr(node, "transA", 0) or attr(node, "alpha", 1.0) != 1.0
                                      or attr(node, "beta", 1.0) != 1.0):
                raise _unsupported(node, "Gemm with transA, alpha or beta other than 1")
            a, w = node.input[0], node.input[1]
            if kinds[0] == "act" and kinds[1] == "const":
                weight = consts[w]
                if op_type == "Gemm" and attr(node, "transB", 0):
                    weight = weight.T
                    consts[w] = weight
                    if w in qweights:
                        q, s = qweights[w]
                        qweights[w] = (q.T, np.reshape(s, (1, -1)) if np.size(s) > 1 else s)
                if weight.ndim != 2:
                    raise _unsupported(node, "a constant weight must be 2-D")
                bias, fused, label = None, [node.name], None
                if op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
                    bias = node.input[2]
                else:
                    nxt = only_user(out)
                    if nxt is not None and nxt.op_type == "Add":
                        b = other(nxt, out)
                        if b in consts and consts[b].shape == (weight.shape[1],):
                            bias = b
                            fused.append(nxt.name)
                            consumed.add(id(nxt))
                            out = nxt.output[0]
                if bias is not None and bias.endswith(".bias"):
                    label = bias[:-len(".bias")]
                ops.append(Op(node.name, "linear", [a, w, bias], [out],
                              {"label": label, "fused": fused}))
            elif kinds[0] == "act" and kinds[1] == "act":
                ops.append(Op(node.name, "matmul", [a, w], [out]))
            else:
                raise _unsupported(node, "MatMul of a constant by an activation")
        elif op_type == "Add":
            if kinds == ["act", "act"]:
                ops.append(Op(node.name, "add", list(node.input), [out]))
            elif "ctrl" in kinds and only_user(out) is not None and \
                    only_user(out).op_type == "Softmax":
                x = node.input[kinds.index("act")]
                mask = node.input[kinds.index("ctrl")]
                sm = only_user(out)
                consumed.add(id(sm))
                out = sm.output[0]
                if attr(sm, "axis", -1) not in (-1,):
                    raise _unsupported(sm, "Softmax over an axis other than the last")
                ops.append(Op(sm.name, "softmax", [x, mask], [out],
                              {"fused": [node.name, sm.name]}))
            else:
                raise _unsupported(node, "Add of an activation and a constant outside a "
                                         "linear's bias")
        elif op_type in ("Mul", "Div"):
            act_in = node.input[kinds.index("act")]
            c_in = other(node, act_in)
            gelu = None
            if c_in in consts and only_user(out) is not None and \
                    only_user(out).op_type == "Erf":
                gelu = match_gelu(node)
            if gelu is not None:
                x, chain, gout = gelu
                consumed.update(id(n) for n in chain)
                ops.append(Op(node.name, "gelu", [x], [gout],
                              {"fused": [n.name for n in chain]}))
                cls[gout] = "act"
                continue
            c = _scalar(consts.get(c_in)) if c_in in consts else None
            if c is None or c <= 0 or kinds.count("act") != 1 or \
                    (op_type == "Div" and node.input[1] != c_in):
                raise _unsupported(node, "Mul/Div of an activation by anything but a positive "
                                         "constant scalar (outside the GELU pattern)")
            ops.append(Op(node.name, "scale", [act_in], [out],
                          {"value": c if op_type == "Mul" else 1.0 / c}))
        elif op_type == "LayerNormalization":
            if attr(node, "axis", -1) != -1 or kinds[1:] != ["const"] * (len(kinds) - 1):
                raise _unsupported(node, "LayerNormalization must be over the last axis with "
                                         "constant scale and bias")
            ops.append(Op(node.name, "layernorm", list(node.input) + [None] * (3 - len(node.input)),
                          [out], {"epsilon": float(attr(node, "epsilon", 1e-5))}))
        elif op_type == "Softmax":
            if attr(node, "axis", -1) != -1:
                raise _unsupported(node, "Softmax over an axis other than the last")
            ops.append(Op(node.name, "softmax", [node.input[0], None], [out]))
        elif op_type == "IsNaN":
            # The guard after a softmax: NaN-free by construction, kept as a host op on act.
            ops.append(Op(node.name, "host", list(node.input), [out], {"onnx": node}))
            cls[out] = "ctrl"
            continue
        elif op_type == "Where":
            cond, a, b = node.input
            if kinds[0] != "ctrl" or kinds[1] != "const" or kinds[2] != "act" or \
                    producer_node.get(cond) is None or producer_node[cond].op_type != "IsNaN" \
                    or producer_node[cond].input[0] != b:
                raise _unsupported(node, "Where on activations other than the IsNaN guard "
                                         "Where(IsNaN(x), c, x)")
            ops.append(Op(node.name, "nan_guard", [b, cond, a], [out]))
        elif op_type in ("Reshape", "Transpose"):
            if kinds[0] != "act" or "act" in kinds[1:]:
                raise _unsupported(node, "shape operands must not be activations")
            perm = attr(node, "perm")
            ops.append(Op(node.name, op_type.lower(), list(node.input), [out],
                          {"perm": tuple(perm) if perm is not None else None,
                           "allowzero": attr(node, "allowzero", 0)}))
        else:
            raise _unsupported(node, "operator on activations not supported")
        cls[out] = "act"

    outputs = [o.name for o in g.output]
    for name in outputs:
        if cls.get(name) != "act":
            raise UnsupportedOperator(f"graph output {name!r} is not an activation")
    used = {t for op in ops for t in op.inputs if t}
    consts = {k: v for k, v in consts.items() if k in used}
    qweights = {k: v for k, v in qweights.items() if k in used}
    return Graph(ops=ops, consts=consts, qweights=qweights, inputs=inputs, outputs=outputs,
                 act_inputs=act_inputs)
