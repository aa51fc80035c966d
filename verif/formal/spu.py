"""SPU proof wrapper: stream rules on every port and the int32 accumulators' bound.

The accumulators are not ports of :class:`sparsehw.hw.spu.SPU`. The wrapper elaborates the SPU
unchanged into its fragment and looks up the accumulator signals (``acc0`` .. ``acc{lanes-1}``)
in it by name, then asserts on them from outside:

    ``|acc| <= max_k * 2**14``

A product of two int8 values lies in ``-16256 .. 16384`` (``|x*w| <= 2**14``); an output row
accumulates at most ``K <= max_k`` products per lane before the accumulator restarts, so the
bound holds for every legal configuration if the datapath adds at most ``K`` products into one
row, which is what the assertion checks in the proof (a configuration error or a row longer than
``K`` would exceed it). Because ``max_k <= 2**16`` (the parameter check), the bound is at most
``2**30 < 2**31``: the int32 accumulator cannot overflow. The proof is a bounded one (BMC of the
stated depth, from reset, for every input sequence: configurations, weights, activations and
stalls are free apart from the stream rules) at a small ``max_k``, enough cycles for several full
rows at ``K = max_k``; the general ``max_k`` rests on the argument above.
"""

from amaranth.hdl import Assert, Cover, Fragment, Module
from amaranth.hdl import _ast
from amaranth.lib import wiring

from sparsehw.hw.spu import SPU
from sparsehw.verif.formal.protocol import pass_through, stream_rules, streams_of


__all__ = ["SpuAccumulatorCheck", "find_signals"]


def find_signals(fragment, names):
    """Signals named ``names`` that the statements of ``fragment`` (or its subfragments) drive;
    a dict ``name -> Signal``. Raises ``LookupError`` naming any that is missing."""
    found = {}

    def statements(stmts):
        for stmt in stmts:
            if isinstance(stmt, _ast.Assign):
                for signal in stmt.lhs._lhs_signals():
                    if signal.name in names:
                        found.setdefault(signal.name, signal)
            elif isinstance(stmt, _ast.Switch):
                for _, body, _ in stmt.cases:
                    statements(body)

    def walk(frag):
        for stmts in frag.statements.values():
            statements(stmts)
        for sub, _, _ in frag.subfragments:
            if isinstance(sub, Fragment):
                walk(sub)

    walk(fragment)
    missing = sorted(set(names) - set(found))
    if missing:
        raise LookupError(f"signals not found in the design: {', '.join(missing)}")
    return found


class SpuAccumulatorCheck(wiring.Component):
    """Proof wrapper of an :class:`SPU` (see the module docstring).

    Parameters
    ----------
    **params
        Generation parameters of the SPU (small ones: the proof is bounded).

    Attributes
    ----------
    (the SPU's ports, passed through)
    """

    def __init__(self, **params):
        self._spu = SPU(**params)
        self._params = params
        super().__init__(self._spu.signature)

    def elaborate(self, platform):
        m = Module()
        spu = self._spu
        if platform != "formal":
            m.submodules.spu = spu
            pass_through(m, self, spu)
            return m
        fragment = Fragment.get(spu, platform)
        m.submodules.spu = fragment
        pass_through(m, self, spu)
        for name, flow, valid, ready, payload in streams_of(spu):
            stream_rules(m, name, flow, valid, ready, payload)
        lanes = self._params.get("lanes", 4)
        max_k = self._params.get("max_k", 128)
        accs = find_signals(fragment, {f"acc{b}" for b in range(lanes)})
        bound = max_k * 2 ** 14
        for name, acc in sorted(accs.items()):
            m.d.comb += Assert((acc >= -bound) & (acc <= bound),
                               f"spu: {name} beyond max_k * 2**14")
            # Reachability: a full row of K = max_k products comes close to the bound.
            m.d.comb += Cover(acc > (max_k - 1) * 2 ** 14)
        return m
