"""AXI4-Stream top level for any block: every ``stream.Signature`` port as an AXIS interface.

See ``docs/integration.md`` for how to drop the result into an FPGA design.
"""

import itertools
import re

from amaranth.hdl import ClockDomain, Module, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["AxisTop", "field_table", "expand_table", "tdata_width"]


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def tdata_width(bits):
    """Width of ``tdata`` for a payload of ``bits`` bits: whole bytes, at least one."""
    return max(8, -(-bits // 8) * 8)


def _width(shape):
    return shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width


def _signed(shape):
    return (not isinstance(shape, data.Layout)) and Shape.cast(shape).signed


def field_table(layout):
    """Map every field of ``layout`` to its bit range, as a list of dicts (JSON-ready).

    Each row is ``{"field", "lsb", "msb", "width", "signed", "repeat", "bits"}``. ``field`` is the
    path of the field (``y[i]``, ``entries[i].value``; ``""`` for a plain payload), ``repeat`` a
    list ``[count, stride]`` per index variable (``i``, ``j``, ...): element ``(i, j, ...)`` of
    the field occupies bits ``lsb + i*stride_i + j*stride_j ...`` up to that plus ``width - 1``
    (``lsb``/``msb`` are those of element 0). ``bits`` says the same as text (``"8*i+7:8*i"``).
    Bit 0 is bit 0 of ``tdata``.
    """
    rows = []
    _leaves(layout, "", 0, [], rows)
    return rows


_VARS = "ijklmn"


def _leaves(shape, name, offset, repeat, rows):
    if isinstance(shape, data.ArrayLayout):
        var = _VARS[len(repeat)]
        elem = shape.elem_shape
        _leaves(elem, f"{name}[{var}]", offset, repeat + [[shape.length, _width(elem)]], rows)
    elif isinstance(shape, data.StructLayout):
        for field_name, field in shape:
            _leaves(field.shape, f"{name}.{field_name}" if name else field_name,
                    offset + field.offset, repeat, rows)
    elif isinstance(shape, data.Layout):
        raise TypeError(f"payload layout {shape!r} is not supported (struct/array/plain only)")
    else:
        width = _width(shape)
        terms = "+".join(f"{stride}*{_VARS[n]}" for n, (_count, stride) in enumerate(repeat))

        def at(bit):
            return terms if terms and bit == 0 else f"{terms}+{bit}" if terms else f"{bit}"
        low, high = at(offset), at(offset + width - 1)
        rows.append({"field": name, "lsb": offset, "msb": offset + width - 1, "width": width,
                     "signed": _signed(shape), "repeat": [list(r) for r in repeat],
                     "bits": high if width == 1 else f"{high}:{low}"})


def expand_table(rows):
    """Every element of a :func:`field_table`: ``(name, lsb, width, signed)`` with the index
    variables replaced by their values (``y[2]``)."""
    result = []
    for row in rows:
        counts = [count for count, _stride in row["repeat"]]
        for index in itertools.product(*(range(count) for count in counts)):
            name, lsb = row["field"], row["lsb"]
            for n, value in enumerate(index):
                name = name.replace(f"[{_VARS[n]}]", f"[{value}]", 1)
                lsb += value * row["repeat"][n][1]
            result.append((name, lsb, row["width"], row["signed"]))
    return result


def _last_field(layout):
    """True when ``layout`` is a struct with a 1-bit top-level field ``last``."""
    return (isinstance(layout, data.StructLayout) and "last" in layout.members
            and _width(layout.members["last"]) == 1)


class AxisTop(wiring.Component):
    """``component`` with every stream port exposed as AXI4-Stream, ``aclk`` and ``aresetn``.

    Port naming (Verilog): an input stream ``p`` becomes the slave interface ``s_axis_p_tdata``,
    ``s_axis_p_tvalid``, ``s_axis_p_tready``, ``s_axis_p_tlast``; an output stream becomes the
    master interface ``m_axis_p_tdata/tvalid/tready`` (``m_axis_p_tlast`` when it has one). A
    port array ``inject[4]`` gives ``s_axis_inject_0`` .. ``s_axis_inject_3``. Other ports
    (``bad_dest``, ``fault``) keep their name and width. There are no ``clk``/``rst`` ports.

    Payload mapping: ``tdata`` holds the payload from bit 0, padded with zeros to whole bytes
    (the padding of an input's ``tdata`` is ignored). A payload struct whose top-level 1-bit
    field is called ``last`` travels in ``tlast`` instead of ``tdata`` (the remaining fields keep
    their order, packed from bit 0): on an output that is the end of a transfer (the SPU's
    last row of a GEMM), on an input the end the block expects (a dot product's last block
    pair). An input without such a field has a ``tlast`` that is accepted and ignored; an
    output without one has no ``tlast``. :attr:`interfaces` gives the bit table of each port.

    Parameters
    ----------
    component : wiring.Component
        The block (unelaborated); becomes submodule ``core``. Its ``sync`` domain is driven by
        ``aclk`` and ``~aresetn``.
    name : str
        Verilog module name the top will be written as (a Verilog identifier); recorded in
        :attr:`interfaces` metadata only.

    Attributes
    ----------
    aclk : In(1)
        Clock of the block (rising edge).
    aresetn : In(1)
        Active-low reset, synchronous to ``aclk`` (held low for at least one rising edge).
    s_axis_<p>_tdata : In(tdata_width(payload bits)), s_axis_<p>_tvalid : In(1), s_axis_<p>_tready : Out(1), s_axis_<p>_tlast : In(1)
        Slave interface of input stream ``p``; latency and back-pressure are those of the
        block's port (the wrapper adds no register and no buffering).
    m_axis_<p>_tdata : Out(tdata_width(payload bits)), m_axis_<p>_tvalid : Out(1), m_axis_<p>_tready : In(1), m_axis_<p>_tlast : Out(1)
        Master interface of output stream ``p`` (``tlast`` only when the payload has ``last``).
    core : wiring.Component
        The wrapped block.
    interfaces : list of dict
        One entry per AXIS interface: ``name`` (``s_axis_cfg``), ``port`` (block port path),
        ``role`` (``slave``/``master``), ``tdata_width``, ``payload_bits``, ``tlast`` (how it
        is used), ``fields`` (:func:`field_table` of ``tdata``).
    plain_ports : list of dict
        Non-stream ports passed through: ``name``, ``direction``, ``width``.

    Raises
    ------
    TypeError
        ``component`` is not a :class:`wiring.Component`, ``name`` not a string, or a port is
        a non-stream sub-interface.
    ValueError
        ``name`` is not a Verilog identifier, or two ports would get the same AXIS name.
    """

    def __init__(self, component, name):
        if not isinstance(component, wiring.Component):
            raise TypeError(f"component must be a wiring.Component, not {component!r}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {name!r}")
        if not _IDENT.match(name):
            raise ValueError(f"name must be a Verilog identifier, not {name!r}")
        self._core = component
        self._name = name
        self._streams = []          # (axis name, core path, role, payload layout, has_last)
        self._plain = []            # (name, member)
        members = {"aclk": In(1), "aresetn": In(1)}

        def add(key, member):
            if key in members:
                raise ValueError(f"two ports of the block map to the same name {key!r}")
            members[key] = member

        for port, member in component.signature.members.items():
            if member.is_port:
                add(port, member)
                self._plain.append((port, member))
                continue
            if not isinstance(member.signature, stream.Signature):
                raise TypeError(f"port {port!r} is a {member.signature!r}; only stream.Signature "
                                f"sub-interfaces can be exposed as AXI4-Stream")
            role = "slave" if member.flow == In else "master"
            for index in itertools.product(*(range(d) for d in member.dimensions)):
                suffix = "".join(f"_{i}" for i in index)
                axis = f"{'s' if role == 'slave' else 'm'}_axis_{port}{suffix}"
                layout = member.signature.members["payload"].shape
                has_last = _last_field(layout)
                data_bits = _width(self._tdata_layout(layout)) if has_last else _width(layout)
                width = tdata_width(data_bits)
                if role == "slave":
                    add(f"{axis}_tdata", In(width))
                    add(f"{axis}_tvalid", In(1))
                    add(f"{axis}_tready", Out(1))
                    add(f"{axis}_tlast", In(1))
                else:
                    add(f"{axis}_tdata", Out(width))
                    add(f"{axis}_tvalid", Out(1))
                    add(f"{axis}_tready", In(1))
                    if has_last:
                        add(f"{axis}_tlast", Out(1))
                self._streams.append((axis, (port, *index), role, layout, has_last))
        super().__init__(members)

    @staticmethod
    def _tdata_layout(layout):
        if _last_field(layout):
            return data.StructLayout({k: v for k, v in layout.members.items() if k != "last"})
        return layout

    @property
    def core(self):
        """The wrapped block."""
        return self._core

    @property
    def interfaces(self):
        result = []
        for axis, path, role, layout, has_last in self._streams:
            tdata_layout = self._tdata_layout(layout)
            if has_last:
                tlast = "payload field 'last'"
            else:
                tlast = "accepted, ignored" if role == "slave" else None
            result.append({"name": axis, "port": ".".join(map(str, path)), "role": role,
                           "tdata_width": tdata_width(_width(tdata_layout)),
                           "payload_bits": _width(tdata_layout), "tlast": tlast,
                           "fields": field_table(tdata_layout)})
        return result

    @property
    def plain_ports(self):
        return [{"name": name, "direction": "input" if member.flow == In else "output",
                 "width": Shape.cast(member.shape).width if not isinstance(member.shape,
                                                                            data.Layout)
                 else member.shape.size, "dimensions": list(member.dimensions)}
                for name, member in self._plain]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd_sync = ClockDomain("sync")
        m.d.comb += [cd_sync.clk.eq(self.aclk), cd_sync.rst.eq(~self.aresetn)]
        m.submodules.core = core = self._core

        for name, member in self._plain:
            outer, inner = getattr(self, name), getattr(core, name)
            for index in itertools.product(*(range(d) for d in member.dimensions)):
                o, i = outer, inner
                for n in index:
                    o, i = o[n], i[n]
                m.d.comb += (o.eq(i) if member.flow == Out else i.eq(o))

        for axis, path, role, layout, has_last in self._streams:
            port = getattr(core, path[0])
            for n in path[1:]:
                port = port[n]
            tdata = getattr(self, f"{axis}_tdata")
            tdata_layout = self._tdata_layout(layout)
            bits = tdata[:_width(tdata_layout)]
            if role == "slave":
                m.d.comb += [port.valid.eq(getattr(self, f"{axis}_tvalid")),
                             getattr(self, f"{axis}_tready").eq(port.ready)]
                if has_last:
                    view = data.View(tdata_layout, bits)
                    for field in tdata_layout.members:
                        m.d.comb += port.payload[field].eq(view[field])
                    m.d.comb += port.payload.last.eq(getattr(self, f"{axis}_tlast"))
                else:
                    m.d.comb += port.payload.eq(bits)
            else:
                m.d.comb += [getattr(self, f"{axis}_tvalid").eq(port.valid),
                             port.ready.eq(getattr(self, f"{axis}_tready"))]
                if has_last:
                    view = data.View(tdata_layout, bits)
                    for field in tdata_layout.members:
                        m.d.comb += view[field].eq(port.payload[field])
                    m.d.comb += getattr(self, f"{axis}_tlast").eq(port.payload.last)
                else:
                    m.d.comb += bits.eq(port.payload)
        return m
