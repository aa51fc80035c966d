"""Verilator lint of generated Verilog, with the project's waivers in one place.

Every registered block's Verilog must pass ``verilator --lint-only -Wall`` with only the waivers
below (tests/test_lint.py checks it). Each waiver says why it is safe.
"""

import subprocess
from pathlib import Path

from sparsehw.verif.runner import verilator_env


__all__ = ["WAIVERS", "lint_verilog", "LintError"]


#: (rule, match pattern or None for the whole rule, reason).
WAIVERS = (
    ("DECLFILENAME", None,
     "Amaranth writes the whole hierarchy into one file and names submodules 'top.sub'."),
    ("UNUSEDSIGNAL", None,
     "Amaranth keeps named signals as wires for debugging: a wire per struct/array view field "
     "('o__payload.a'), aliases of submodule ports in the parent ('r_data'), internal temporaries "
     "('$12') whose top bits are unused. They are not logic; Yosys removes them. Undriven, "
     "multi-driven and width problems stay errors."),
    ("WIDTHEXPAND", None,
     "Yosys' write_verilog relies on Verilog's context-determined expression widths (a 9-bit "
     "compare of an 8-bit signal, a constant narrower than the other operand). Amaranth has "
     "already fixed every operation's width and signedness, and the RTL is checked bit-exact "
     "against the golden models in simulation."),
    ("WIDTHTRUNC", None,
     "Same origin: Amaranth's reductions/logical operators on multi-bit values are emitted as "
     "'!x' and similar, which Verilator reports as truncation; the semantics are Amaranth's."),
    ("CASEINCOMPLETE", None,
     "Yosys emits a case without default where Amaranth assigned the default before the case; "
     "unlisted values keep it, no latch is inferred (processes are fully assigned)."),
    ("PROCASSINIT", None,
     "Amaranth gives registers their reset value as an initializer and also assigns them in "
     "always blocks; the initializer is the power-up value, which is intended."),
)


class LintError(RuntimeError):
    """Verilator found something the waivers do not cover; the message holds its output."""


def _config_text():
    lines = ["`verilator_config"]
    for rule, pattern, _reason in WAIVERS:
        if pattern is None:
            lines.append(f"lint_off -rule {rule}")
        else:
            lines.append(f'lint_off -rule {rule} -file "*" -match "{pattern}"')
    return "\n".join(lines) + "\n"


def lint_verilog(verilog, top, build_dir):
    """Lint ``verilog`` (text defining module ``top``) in ``build_dir``; raise :class:`LintError`
    with Verilator's messages when anything is reported."""
    import os
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{top}.v"
    source.write_text(verilog)
    config = build_dir / "waivers.vlt"
    config.write_text(_config_text())
    env = {**os.environ, **verilator_env()}
    result = subprocess.run(["verilator", "--lint-only", "-Wall", "--top-module", top,
                             str(config), str(source)],
                            cwd=build_dir, env=env, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "%Warning" in output or "%Error" in output:
        raise LintError(output)
    return output
