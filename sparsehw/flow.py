"""The flow: generate, simulate, measure and synthesize one design point of a registered block.

What the command line (:mod:`sparsehw.cli`) and the experiments (:mod:`sparsehw.experiments`)
share. It sits above the registry and the block families and below the experiments, so neither
the CLI nor the sweep imports the other. Every function takes a :class:`~sparsehw.registry.Block`
and its resolved parameters (:func:`sparsehw.registry.resolve_params`) and raises
:class:`~sparsehw.registry.UserError` for a user mistake (one line, no traceback in the CLI).

Build directories: every run gets a fresh directory under :data:`BUILD_ROOT` ``/runs`` unless the
caller gives one (the sweep gives each design point its own); studies keep theirs under
``BUILD_ROOT/studies``. :data:`BUILD_ROOT` is the one place that decides where ``build/`` is.
"""

import hashlib
import json
from pathlib import Path

from sparsehw import registry
from sparsehw.hw.axis import AxisTop
from sparsehw.hw.export import ports_of, to_verilog, tool_versions
from sparsehw.registry import UserError
from sparsehw.synth.fmax import ROUTER, place_and_route
from sparsehw.synth.fusesoc import CoreTop, core_name, write_core
from sparsehw.synth.yosys import synthesize
from sparsehw.verif.lint import AXIS_SUFFIX, waiver_config, waivers_for
from sparsehw.verif.runner import REPO_ROOT, new_build_dir, run_cocotb


__all__ = ["BUILD_ROOT", "PNR_BUDGET_S", "run_dir", "params_key", "generate", "simulate", "measure",
           "synthesize_block"]


#: Root of every generated file (runs, studies, ``sparsehw gen`` output): ``build/`` at the
#: repository root.
BUILD_ROOT = REPO_ROOT / "build"


def run_dir(label):
    """A fresh directory ``BUILD_ROOT/runs/<label>-XXXX`` for one run."""
    return new_build_dir(label, base=BUILD_ROOT / "runs")


def params_key(block, params):
    """``<block>-<hash of the parameters>``: a short, stable label for a design point."""
    text = json.dumps(params, sort_keys=True)
    return f"{block.name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def generate(block, params, out_dir, *, axis=False):
    """Write ``out_dir/<block>.v`` and ``<block>.json`` (ports, parameters, tool versions and
    the Verilog's SHA-256), the FuseSoC core ``<block>.core`` and its lint waivers
    ``<block>.vlt``; with ``axis`` also the AXI4-Stream top ``<block>_axis.v`` (module
    ``<block>_axis``, :class:`~sparsehw.hw.axis.AxisTop`) with its waivers, and its bit table
    under ``axis`` in the JSON (docs/integration.md). Return the paths of the Verilog and the
    JSON; the JSON's ``files`` lists every file written."""
    component = registry.build(block, params)
    verilog = to_verilog(component, block.name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    v_path, j_path = out_dir / f"{block.name}.v", out_dir / f"{block.name}.json"
    v_path.write_text(verilog)
    meta = {"block": block.name, "params": params,
            "ports": [{"name": "clk", "direction": "input", "width": 1},
                      {"name": "rst", "direction": "input", "width": 1}] + ports_of(component),
            "tools": tool_versions(), "verilog_sha256": hashlib.sha256(verilog.encode()).hexdigest()}
    files = [v_path.name]
    tops = [CoreTop(block.name, v_path.name, _write_waivers(out_dir, block.name, files))]
    if axis:
        module = block.name + AXIS_SUFFIX
        top = AxisTop(registry.build(block, params), module)
        axis_verilog = to_verilog(top, module)
        (out_dir / f"{module}.v").write_text(axis_verilog)
        files.append(f"{module}.v")
        tops.insert(0, CoreTop(module, f"{module}.v", _write_waivers(out_dir, module, files)))
        meta["axis"] = {"module": module, "clock": "aclk", "reset": "aresetn (active low, "
                        "synchronous)", "interfaces": top.interfaces,
                        "plain_ports": top.plain_ports,
                        "verilog_sha256": hashlib.sha256(axis_verilog.encode()).hexdigest()}
    version = tool_versions()["sparsehw"]
    core = write_core(out_dir, block.name, version, tops,
                      description=f"sparsehw {block.name}: {block.summary}")
    files += [core.name, j_path.name]
    meta["core"] = core_name(block.name, version)
    meta["files"] = files
    j_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return v_path, j_path


def _write_waivers(out_dir, module, files):
    """Write ``<module>.vlt`` with the module's lint waivers (verif/lint.py) if it has any
    entry; return its name or None."""
    if waivers_for(module) is None:
        return None
    (out_dir / f"{module}.vlt").write_text(waiver_config(module))
    files.append(f"{module}.vlt")
    return f"{module}.vlt"


def simulate(block, params, *, sim="icarus", seed=None, waves=False, build_dir=None):
    """Run the block's cocotb regression on its generated Verilog; return the
    :class:`~sparsehw.verif.runner.RunResult`."""
    if block.testbench is None:
        raise UserError(f"block {block.name!r} has no testbench")
    component = registry.build(block, params)
    build_dir = build_dir or run_dir(f"sim-{params_key(block, params)}-{sim}")
    return run_cocotb(component, block.name, block.testbench, build_dir=build_dir, sim=sim,
                      seed=seed, waves=waves, params=params)


def measure(block, params, workload, *, sim, seed, build_dir=None):
    """Run the block's perf workload in simulation; return its record (``passed`` says whether
    the outputs matched the golden model).

    Raises
    ------
    UserError
        The block has no perf workload, or a parameter or workload knob is illegal (one line).
    """
    if block.perf is None:
        raise UserError(f"block {block.name!r} has no perf workload")
    registry.check_params(block, params)    # validate before any simulation starts
    build_dir = build_dir or run_dir(f"perf-{params_key(block, params)}-{sim}")
    try:
        record = block.perf(params, workload, sim=sim, seed=seed, build_dir=Path(build_dir))
    except (ValueError, TypeError) as error:
        raise UserError(f"{block.name}: {error}") from None
    return {"block": block.name, "params": params, "workload": workload, **record}


#: Wall-clock bound of one nextpnr run (one seed), seconds: the report's time budget. A run that
#: exceeds it is stopped and its point reported as not finished (with the step it reached). A
#: block may set its own (:attr:`Block.pnr_budget_s`: the chip); its record and row say so.
PNR_BUDGET_S = 1800


def synthesize_block(block, params, target, build_dir=None, place_seeds=None,
                     budget_s=None, pack_dsp_registers=None, router=None):
    """Synthesis record of one design point; with ``place_seeds`` (ECP5 only) also the
    post-place-and-route Fmax (median over the seeds), its critical path per seed, the router
    and the run times (``pnr_seconds``: Yosys wall seconds and, per seed, nextpnr's wall
    seconds and its own placer/router times). The placed netlist is the one of the synthesis
    that gave the resource counts (one Yosys run, not two); a split run (subsystem, chip:
    hierarchy kept for the area split) places that mapped design flattened
    (:func:`sparsehw.synth.yosys.synthesize`'s ``netlist``).
    ``pack_dsp_registers`` (None: the block's own choice, :attr:`Block.pack_dsp_registers`)
    moves the registers around each multiplier into the DSP before placement. ``router`` and
    ``budget_s`` (None: the block's :attr:`Block.pnr_router` / :attr:`Block.pnr_budget_s`,
    else :data:`~sparsehw.synth.fmax.ROUTER` / :data:`PNR_BUDGET_S`) are recorded as
    ``pnr_router`` and ``pnr_budget_s``.

    Raises
    ------
    UserError
        An illegal parameter.
    sparsehw.synth.fmax.PnrTimeout
        A nextpnr run exceeded ``budget_s`` seconds.
    sparsehw.synth.yosys.SynthError
        Yosys or nextpnr failed (the message names the log).
    """
    component = registry.build(block, params, for_synth=True)
    build_dir = build_dir or run_dir(f"synth-{params_key(block, params)}-{target}")
    figures = synthesize(component, block.name, target=target, build_dir=build_dir,
                         netlist=bool(place_seeds and target == "ecp5"))
    netlist = figures.pop("netlist", None)
    record = {"block": block.name, "params": params, **figures}
    if place_seeds:
        if pack_dsp_registers is None:
            pack_dsp_registers = block.pack_dsp_registers
        router = router or block.pnr_router or ROUTER
        budget_s = budget_s or block.pnr_budget_s or PNR_BUDGET_S
        pnr = place_and_route(component, block.name, build_dir=Path(build_dir) / "pnr",
                              seeds=place_seeds, budget_s=budget_s, netlist=netlist,
                              router=router, pack_dsp_registers=pack_dsp_registers)
        record.update(fmax_mhz=pnr["fmax_mhz"], fmax_by_seed=pnr["fmax_by_seed"],
                      critical_path_by_seed=pnr.get("critical_path_by_seed", {}),
                      pnr_device=pnr["device"], pnr_router=pnr.get("router"),
                      pnr_budget_s=budget_s,
                      pnr_pack_dsp_registers=pack_dsp_registers,
                      pnr_dsp_registers=pnr.get("dsp_registers"),
                      pnr_seconds={"yosys_s": pnr.get("yosys_s"),
                                   "by_seed": pnr.get("seconds_by_seed", {})})
    return record
