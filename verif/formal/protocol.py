"""Stream-protocol wrapper: the block unchanged, its input streams assumed legal and its output
streams asserted legal.

A stream is legal when, once ``valid`` is high and ``ready`` low, ``valid`` stays high and
``payload`` stays the same in the next cycle (Amaranth's ``lib.stream`` rules: a transfer is not
withdrawn and not changed while it waits). A synchronous reset ends the obligation (the wrapper's
own registers are reset with the block's).
"""

from amaranth.hdl import Assert, Assume, Cover, Module, Signal, Value
from amaranth.lib import wiring


__all__ = ["streams_of", "stream_rules", "pass_through", "StreamProtocolCheck"]


def pass_through(m, outer, dut):
    """Wire every port of ``dut`` to the same-named port of ``outer`` (a component with the same
    signature): inputs of ``dut`` from ``outer``, outputs to it. Leaf by leaf, so port arrays
    work (``wiring.connect`` cannot flip an array of interfaces)."""
    outer_leaves = {path: value for path, _, value in outer.signature.flatten(outer)}
    for path, member, value in dut.signature.flatten(dut):
        if member.flow == wiring.In:
            m.d.comb += value.eq(outer_leaves[path])
        else:
            m.d.comb += outer_leaves[path].eq(value)


def streams_of(component):
    """The stream ports of ``component``: a list of ``(name, flow, valid, ready, payload)``,
    ``flow`` "out" for a stream the block drives, "in" for one it receives. Ports without
    ``ready`` (always-ready) are skipped; other plain signals too."""
    groups = {}
    for path, member, value in component.signature.flatten(component):
        if path and path[-1] in ("valid", "ready", "payload"):
            key = tuple(path[:-1])
            groups.setdefault(key, {})[path[-1]] = (member, value)
    streams = []
    for key, parts in groups.items():
        if not {"valid", "ready", "payload"} <= set(parts):
            continue
        member = parts["valid"][0]
        flow = "out" if member.flow == wiring.Out else "in"
        name = "__".join(str(p) for p in key)
        streams.append((name, flow, parts["valid"][1], parts["ready"][1],
                        Value.cast(parts["payload"][1])))
    return streams


def stream_rules(m, name, flow, valid, ready, payload, *, on_input="assume"):
    """Add the stream rules for one stream to ``m`` (formal platform only).

    Output streams (``flow == "out"``) are asserted; input streams assumed (or asserted, with
    ``on_input="assert"``). Also covers a stall followed by a transfer on every stream, so a
    vacuous proof (a stream that never moves) does not pass unnoticed in cover mode.
    """
    stalled = Signal(name=f"{name}_was_stalled")
    held = Signal(payload.shape(), name=f"{name}_held")
    m.d.sync += [stalled.eq(valid & ~ready), held.eq(payload)]
    check = Assert if flow == "out" or on_input == "assert" else Assume
    with m.If(stalled):
        m.d.comb += [check(valid, f"{name}: valid dropped while stalled"),
                     check(payload == held, f"{name}: payload changed while stalled")]
    m.d.comb += Cover(stalled & valid & ready, f"{name}: a stalled transfer completes")


class StreamProtocolCheck(wiring.Component):
    """Proof wrapper: ``dut`` unchanged, with the stream rules on every stream port.

    Parameters
    ----------
    dut : wiring.Component
        The block. The wrapper has the same ports and passes them straight through.

    Attributes
    ----------
    (the ports of ``dut``, same names and flows)
    """

    def __init__(self, dut):
        self._dut = dut
        super().__init__(dut.signature)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self._dut
        pass_through(m, self, dut)
        if platform == "formal":
            for name, flow, valid, ready, payload in streams_of(dut):
                stream_rules(m, name, flow, valid, ready, payload)
        return m
