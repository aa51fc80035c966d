"""Attribute propagation across operators, forwards and backwards, to a fixed point.

Channels are the last axis of an activation and the output columns (``dead``) or rows
(``dead_in``) of a weight ``W`` (K x N, ``y = x @ W + b``). Pruning an output column removes its
bias entry too, so a dead channel is exactly zero.

Forward rules (what is zero)
    - ``linear``: output channel ``c`` is dead when the weight's column ``c`` is; a dead input
      channel ``c`` kills the weight's row ``c`` (``dead_in``).
    - ``gelu``, ``scale``, ``nan_guard``: element-wise with ``f(0) = 0``, dead channels pass.
    - ``add``: a channel is dead when it is dead in both operands.
    - ``layernorm``, ``softmax``, ``matmul``, ``reshape``, ``transpose``, ``embed``: barriers
      (they mix channels or move them; nothing is inferred, conservatively).
Backward rules (what is unused)
    - A ``linear`` does not use its input channels whose weight rows are dead.
    - ``gelu``, ``scale``, ``nan_guard``, ``add`` do not use the input channels whose outputs are
      dead.
    - A tensor channel unused by **every** consumer (and not a graph output) is dead: "an element
      pruned in every use is pruned"; a linear producing it loses that column (and its bias).
Precision
    A GEMM's ``act_bits`` sets its input activation's precision; ``reshape``, ``transpose``,
    ``scale``, ``nan_guard`` carry the same data, so the precision is equal on both sides; every
    conflict takes the lower precision.

:func:`materialise` turns the propagated attributes of a weight into its element mask: the N:M
magnitude mask (golden.nm rules) computed on the weight with its dead rows and columns removed
(so the compiler's compacted GEMM is an exact N:M matrix), scattered back, AND not dead.
"""

import numpy as np

from sparsehw.golden import nm as gnm
from sparsehw.model.attrs import ConfigError, Precision, Sparsity, TensorAttr


__all__ = ["initial_attrs", "propagate", "materialise"]

_PASS = ("gelu", "scale", "nan_guard")
_SAME_DATA = ("reshape", "transpose", "scale", "nan_guard")


def initial_attrs(graph, settings=()):
    """The user's attributes: every activation and weight tensor, dense int8 unless a setting
    matches.

    Returns
    -------
    dict
        tensor name -> :class:`TensorAttr`.
    """
    attrs = {name: TensorAttr() for name in graph.act_inputs}
    for op in graph.act_ops():
        for t in op.outputs:
            attrs.setdefault(t, TensorAttr())
        if op.kind == "linear":
            attrs.setdefault(op.inputs[1], TensorAttr())
    for op in graph.act_ops():
        if op.kind not in ("linear", "matmul"):
            continue
        for s in settings:
            if not s.matches(op):
                continue
            if op.kind == "linear":
                w = op.inputs[1]
                k, n = graph.consts[w].shape
                for key, values, size in (("prune_out", s.prune_out, n),
                                          ("prune_in", s.prune_in, k)):
                    bad = [v for v in values if v >= size]
                    if bad:
                        raise ConfigError(f"{key} channel {bad[0]} out of range for "
                                          f"{op.label} (0..{size - 1})")
                nm_ = s.nm or (1, 1)
                if k % nm_[1]:
                    raise ConfigError(f"nm {nm_[0]}:{nm_[1]} does not divide K={k} of {op.label}")
                new = TensorAttr(Sparsity(nm_[0], nm_[1], frozenset(s.prune_out),
                                          frozenset(s.prune_in)),
                                 Precision(s.bits or 8))
                attrs[w] = attrs[w].merge(new)
            if s.act_bits is not None:
                x = op.inputs[0]
                attrs[x] = attrs[x].merge(TensorAttr(precision=Precision(s.act_bits)))
                if op.kind == "matmul":
                    y = op.inputs[1]
                    attrs[y] = attrs[y].merge(TensorAttr(precision=Precision(s.act_bits)))
    return attrs


def _set(attrs, name, sparsity=None, precision=None):
    a = attrs[name]
    new = TensorAttr(sparsity or a.sparsity, precision or a.precision)
    if new != a:
        attrs[name] = new
        return True
    return False


def propagate(graph, attrs):
    """Propagate ``attrs`` (from :func:`initial_attrs`) to a fixed point; returns a new dict."""
    attrs = dict(attrs)
    users = graph.consumers()
    outputs = set(graph.outputs)
    ops = graph.act_ops()
    changed = True
    while changed:
        changed = False
        for op in ops:
            out = op.outputs[0]
            so = attrs[out].sparsity
            if op.kind == "linear":
                x, w, b = op.inputs
                sw = attrs[w].sparsity
                sx = attrs[x].sparsity if x in attrs else Sparsity()
                changed |= _set(attrs, w, Sparsity(sw.n, sw.m, sw.dead | so.dead,
                                                   sw.dead_in | sx.dead))
                sw = attrs[w].sparsity
                changed |= _set(attrs, out, Sparsity(so.n, so.m, so.dead | sw.dead,
                                                     so.dead_in))
            elif op.kind in _PASS:
                sx = attrs[op.inputs[0]].sparsity
                changed |= _set(attrs, out, Sparsity(so.n, so.m, so.dead | sx.dead, so.dead_in))
            elif op.kind == "add":
                sa, sb = (attrs[t].sparsity for t in op.inputs)
                changed |= _set(attrs, out, Sparsity(so.n, so.m, so.dead | (sa.dead & sb.dead),
                                                     so.dead_in))
            if op.kind in _SAME_DATA:
                x = op.inputs[0]
                low = attrs[x].precision.lower(attrs[out].precision)
                changed |= _set(attrs, x, precision=low)
                changed |= _set(attrs, out, precision=low)
        # backward: a channel unused by every consumer is dead
        for tensor in list(attrs):
            if tensor in outputs or tensor not in users:
                continue
            unused = None
            for op in users[tensor]:
                if op.kind == "linear" and op.inputs[0] == tensor:
                    u = attrs[op.inputs[1]].sparsity.dead_in
                elif op.kind in _PASS and op.inputs[0] == tensor:
                    u = attrs[op.outputs[0]].sparsity.dead
                elif op.kind == "add":
                    u = attrs[op.outputs[0]].sparsity.dead
                else:
                    u = frozenset()
                unused = u if unused is None else unused & u
            if unused:
                s = attrs[tensor].sparsity
                changed |= _set(attrs, tensor, Sparsity(s.n, s.m, s.dead | unused, s.dead_in))
    return attrs


def materialise(graph, attrs):
    """Element masks of the weights: ``weight name -> bool array (K, N)`` (True = kept)."""
    masks = {}
    for op in graph.linears():
        w = op.inputs[1]
        values = np.asarray(graph.consts[w], np.float64)
        k, n = values.shape
        s = attrs[w].sparsity
        rows = np.array([r for r in range(k) if r not in s.dead_in], dtype=np.int64)
        cols = np.array([c for c in range(n) if c not in s.dead], dtype=np.int64)
        mask = np.zeros((k, n), dtype=bool)
        if rows.size and cols.size:
            live = values[np.ix_(rows, cols)]
            pad = -len(rows) % s.m
            if pad:
                live = np.vstack([live, np.zeros((pad, len(cols)))])
            keep = gnm.mask(live.T, s.n, s.m).T[:len(rows)]
            mask[np.ix_(rows, cols)] = keep
        masks[w] = mask
    return masks
