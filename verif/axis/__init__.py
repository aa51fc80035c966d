"""Verification of the AXI4-Stream tops (:class:`hw.axis.AxisTop`) through cocotbext-axi.

The testbenches drive and check an AXIS top only with cocotbext-axi's ``AxiStreamSource``,
``AxiStreamSink`` and ``AxiStreamMonitor`` (no access to the block's own ports), with random
pauses on both sides. Beats are converted to and from ``tdata`` with the top's own bit table
(:attr:`hw.axis.AxisTop.interfaces`), so the table a user integrates against is what is
tested. Each endpoint works with ``byte_lanes=1``: one frame element is one whole beat.
"""

import random

from sparsehw.hw.axis import expand_table


__all__ = ["flatten", "to_tdata", "from_tdata", "pause_generator", "AxisPorts", "start",
           "run_job_frames"]


def flatten(value, name=""):
    """A nested payload value (dicts for structs, lists for arrays, as
    :func:`verif.stream.unpack` returns) as ``{field path: int}`` with the bit table's names
    (``y[2]``, ``[1][3]``, ``entries[0].value``; ``""`` for a plain payload)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f"{name}.{key}" if name else key))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{name}[{index}]"))
        return out
    return {name: int(value)}


def to_tdata(fields, values):
    """Pack ``values`` (``{field path: int}``, every field of the table exactly once) into a
    ``tdata`` integer by the bit table ``fields`` (:func:`hw.axis.field_table` rows)."""
    values = dict(values)
    word = 0
    for name, lsb, width, signed in expand_table(fields):
        value = values.pop(name)
        low, high = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else \
            (0, (1 << width) - 1)
        if not low <= value <= high:
            raise ValueError(f"{name} = {value} does not fit {width} bits")
        word |= (value & ((1 << width) - 1)) << lsb
    if values:
        raise ValueError(f"fields not in the bit table: {sorted(values)}")
    return word


def from_tdata(fields, word, tdata_width):
    """Unpack a ``tdata`` integer by the bit table: ``{field path: int}``. Raises
    ``AssertionError`` when a bit outside every field (byte padding) is set."""
    values, used = {}, 0
    for name, lsb, width, signed in expand_table(fields):
        raw = (word >> lsb) & ((1 << width) - 1)
        used |= ((1 << width) - 1) << lsb
        values[name] = raw - (1 << width) if signed and raw >> (width - 1) else raw
    stray = word & ((1 << tdata_width) - 1) & ~used
    assert stray == 0, f"padding bits of tdata are not zero: {stray:#x}"
    return values


def pause_generator(rng, probability):
    """Endless booleans, True (pause) with ``probability``: for ``set_pause_generator``."""
    while True:
        yield rng.random() < probability


class AxisPorts:
    """cocotbext-axi endpoints for every AXIS interface of a top.

    ``sources[name]`` (``AxiStreamSource``) and ``monitors[name]`` (``AxiStreamMonitor``) for
    every slave interface, ``sinks[name]`` (``AxiStreamSink``) for every master interface, all
    with ``byte_lanes=1``; pauses with probability ``pause`` on every source and sink, from
    independent generators derived from ``rng`` (a :class:`random.Random`).
    """

    def __init__(self, dut, interfaces, *, rng, pause):
        from cocotbext.axi import (AxiStreamBus, AxiStreamMonitor, AxiStreamSink,
                                   AxiStreamSource)
        self.interfaces = {i["name"]: i for i in interfaces}
        self.sources, self.monitors, self.sinks = {}, {}, {}
        for n, (name, interface) in enumerate(sorted(self.interfaces.items())):
            kwargs = dict(reset=dut.aresetn, reset_active_level=False, byte_lanes=1)
            bus = AxiStreamBus.from_prefix(dut, name)
            if interface["role"] == "slave":
                self.sources[name] = endpoint = AxiStreamSource(bus, dut.aclk, **kwargs)
                self.monitors[name] = AxiStreamMonitor(AxiStreamBus.from_prefix(dut, name),
                                                       dut.aclk, **kwargs)
            else:
                self.sinks[name] = endpoint = AxiStreamSink(bus, dut.aclk, **kwargs)
            if pause:
                endpoint.set_pause_generator(
                    pause_generator(random.Random(rng.random() * 1e9 + n), pause))

    def frame(self, name, beats):
        """An ``AxiStreamFrame`` of ``beats`` (each ``{field path: int}``) for interface
        ``name``: ``tlast`` is set on its last beat."""
        from cocotbext.axi import AxiStreamFrame
        fields = self.interfaces[name]["fields"]
        return AxiStreamFrame([to_tdata(fields, beat) for beat in beats])

    def beats(self, name, frame):
        """The beats of a received frame as ``{field path: int}`` dicts."""
        interface = self.interfaces[name]
        return [from_tdata(interface["fields"], word, interface["tdata_width"])
                for word in frame.tdata]


async def run_job_frames(dut, axis, jobs, layouts, inputs, output, *, cycles_per_job=40,
                         pause=0.0):
    """Drive job-structured work (``job.beats[port]``: packed beats in the block's payload
    layout, ``job.expected``: output beat dicts whose ``last`` marks the job's end, as
    :mod:`verif.spu` and :mod:`verif.act` make them) through the AXIS top.

    Each job's beats of each input port go as one frame (``tlast`` on its last beat; empty
    ports send nothing); each job's output must arrive as one frame on ``m_axis_<output>``:
    exactly the expected beats, ``tlast`` on the last (the payload's ``last``). Then every
    input monitor must have seen exactly the frames sent, and no output may follow. Returns
    the number of output beats checked.
    """
    from cocotb.triggers import RisingEdge, with_timeout

    from sparsehw.verif.stream import unpack
    sent = {port: [] for port in inputs}
    for job in jobs:
        for port in inputs:
            if job.beats[port]:
                beats = [flatten(unpack(layouts[port], word)) for word in job.beats[port]]
                frame = axis.frame(f"s_axis_{port}", beats)
                sent[port].append(list(frame.tdata))
                axis.sources[f"s_axis_{port}"].send_nowait(frame)
    budget = int((200 + cycles_per_job * len(jobs)
                  + 3 * sum(len(b) for job in jobs for b in job.beats.values()))
                 / (1 - pause) ** 2)
    sink = axis.sinks[f"m_axis_{output}"]
    rows = 0
    for j, job in enumerate(jobs):
        frame = await with_timeout(sink.recv(), budget * 10, "ns")
        got = axis.beats(f"m_axis_{output}", frame)
        want = [flatten({k: v for k, v in beat.items() if k != "last"}) for beat in job.expected]
        assert [beat["last"] for beat in job.expected][-1:] == [1]
        assert len(got) == len(want), (f"job {j} ({job.info}): frame of {len(got)} beats (tlast "
                                       f"on the last), expected {len(want)}")
        for r, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"job {j} ({job.info}) beat {r}: got {g}, expected {w}"
        rows += len(got)
    for port in inputs:
        name = f"s_axis_{port}"
        assert axis.sources[name].empty() and not axis.sources[name].active, \
            f"{name}: the source still holds beats after the last output"
        accepted = []
        while not axis.monitors[name].empty():
            accepted.append(list(axis.monitors[name].recv_nowait().tdata))
        assert accepted == sent[port], f"{name}: the beats the top accepted differ from those sent"
    for _ in range(20):
        await RisingEdge(dut.aclk)
    assert sink.empty(), f"m_axis_{output}: beats after the last expected one"
    return rows


async def start(dut, interfaces, *, rng, pause, reset_cycles=4):
    """Start ``aclk`` (10 ns), create the :class:`AxisPorts` and hold ``aresetn`` low for
    ``reset_cycles`` rising edges; return the ports."""
    from cocotb.clock import Clock
    from cocotb.triggers import RisingEdge
    Clock(dut.aclk, 10, unit="ns").start()
    dut.aresetn.value = 0
    axis = AxisPorts(dut, interfaces, rng=rng, pause=pause)
    for _ in range(reset_cycles):
        await RisingEdge(dut.aclk)
    dut.aresetn.value = 1
    await RisingEdge(dut.aclk)
    return axis
