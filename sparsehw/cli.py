"""The ``sparsehw`` command line: list, gen, sim, synth, perf, regress, report, study, model and
mutate.

This module only parses arguments and prints; the work is done by :mod:`sparsehw.flow` (one
design point) and :mod:`sparsehw.experiments` (sweeps, the report, the studies). User mistakes
(unknown block or parameter, illegal value) end with one line on stderr and exit status 2, never
a traceback; a failing tool or perf run ends with one line and exit status 1.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from sparsehw import flow, registry
from sparsehw.experiments import figs_compare, hbfp_area, mutate, sparsity_quant
from sparsehw.experiments.report import build_report
from sparsehw.model import commands as model_commands
from sparsehw.registry import UserError
from sparsehw.synth.yosys import SynthError


EXIT_FAILED = 1     # the design failed its test, or a tool failed
EXIT_USAGE = 2      # the user asked for something illegal


def _params_argument(parser):
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="generation parameter (repeatable); see 'sparsehw list'")


def _block_and_params(args):
    block = registry.get_block(args.block)
    params = registry.resolve_params(block, registry.parse_assignments(args.param))
    return block, params


def _write_json(data, path):
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if path is None or path == "-":
        sys.stdout.write(text)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)


# -- list -----------------------------------------------------------------------------------------

def cmd_list(args):
    blocks = registry.all_blocks()
    if args.json:
        _write_json([block.describe() for block in blocks.values()], None)
        return 0
    for block in blocks.values():
        print(f"{block.name}: {block.summary}")
        for param in block.params:
            doc = f" ({param.doc})" if param.doc else ""
            print(f"    -p {param.name}={param.default!s:<8} {param.text}{doc}")
        for param in block.workload_params:
            doc = f" ({param.doc})" if param.doc else ""
            print(f"    -w {param.name}={param.default!s:<8} {param.text}{doc}  (perf workload)")
    return 0


# -- gen ------------------------------------------------------------------------------------------

def cmd_gen(args):
    block, params = _block_and_params(args)
    v_path, j_path = flow.generate(block, params, args.out, axis=args.axis)
    for name in json.loads(j_path.read_text())["files"]:
        print(v_path.parent / name)
    return 0


# -- sim ------------------------------------------------------------------------------------------

def _print_run(block, result):
    status = "PASS" if result.passed else "FAIL"
    cycles = result.record.get("cycles")
    cycles_text = f", {cycles} cycles" if cycles is not None else ""
    print(f"{status} {block.name}: {result.tests - result.failures}/{result.tests} tests"
          f"{cycles_text} ({result.build_dir})")
    for error in result.errors:
        print(f"    {error}")
    if not result.passed:
        print(f"    log: {result.log}")


def cmd_sim(args):
    block, params = _block_and_params(args)
    result = flow.simulate(block, params, sim=args.sim, seed=args.seed, waves=args.waves)
    _print_run(block, result)
    if args.waves:
        print(f"waves: {result.waves}" if result.waves else "waves: none written")
    return 0 if result.passed else EXIT_FAILED


# -- synth ----------------------------------------------------------------------------------------

def cmd_synth(args):
    block, params = _block_and_params(args)
    seeds = _parse_seeds(args.seeds) if args.place else None
    if args.place and args.target != "ecp5":
        raise UserError(f"--place needs --target ecp5, not --target {args.target}")
    if args.dsp_registers is not None and not args.place:
        raise UserError("--dsp-registers/--no-dsp-registers needs --place")
    try:
        record = flow.synthesize_block(block, params, args.target, place_seeds=seeds,
                                       pack_dsp_registers=args.dsp_registers)
    except SynthError as error:
        print(f"sparsehw: {error}", file=sys.stderr)
        return EXIT_FAILED
    _write_json(record, args.json)
    if args.json and args.json != "-":
        _summary_line(record)
    return 0


def _parse_seeds(text):
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--seeds must be a comma-separated list of integers, not {text!r}") \
            from None
    if not seeds:
        raise UserError("--seeds must name at least one seed")
    return seeds


def _summary_line(record):
    figures = {k: record[k] for k in ("cells", "transistors", "luts", "ffs", "dsps", "fmax_mhz")
               if k in record}
    print(f"{record['block']} ({record['target']}): "
          + ", ".join(f"{k}={v}" for k, v in figures.items()))


# -- perf -----------------------------------------------------------------------------------------

def cmd_perf(args):
    # The reference design point of the block's perf workload, overlaid with -p: the block
    # defaults are sized for quick tests and often cannot hold the reference workload.
    block = registry.get_block(args.block)
    given = registry.parse_assignments(args.param)
    params = registry.resolve_params(block, {**(block.perf_defaults or {}), **given})
    workload = registry.resolve_workload(
        block, registry.parse_assignments(args.workload, "workload"), params)
    try:
        record = flow.measure(block, params, workload, sim=args.sim, seed=args.seed)
    except (RuntimeError, AssertionError) as error:     # a tool or the run failed: one line
        print(f"sparsehw: {block.name}: perf run failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    _write_json(record, args.json)
    if args.json and args.json != "-":
        keys = ("cycles", "ideal_cycles", "utilization", "input_bits_per_cycle")
        print(f"{block.name}: " + ", ".join(f"{k}={record[k]}" for k in keys if k in record))
    if not record.get("passed", True):
        print(f"sparsehw: {block.name}: perf run failed: "
              f"{record.get('error') or 'outputs differ from the golden model'}", file=sys.stderr)
        return EXIT_FAILED
    return 0


# -- regress (make sim) ---------------------------------------------------------------------------

def cmd_regress(args):
    """Generate every block at default parameters and run its cocotb regression."""
    blocks = registry.all_blocks()
    selected = args.blocks or list(blocks)
    for name in selected:
        registry.get_block(name)
    out = Path(args.out)
    results = []
    for name in selected:
        block = blocks[name]
        params = block.defaults()
        flow.generate(block, params, out)
        if block.testbench is None:
            print(f"SKIP {name}: no testbench")
            continue
        result = flow.simulate(block, params, sim=args.sim, seed=args.seed)
        _print_run(block, result)
        results.append((name, result))
    passed = sum(result.passed for _, result in results)
    print(f"\nsummary ({args.sim}, Verilog in {out}/):")
    for name, result in results:
        cycles = result.record.get("cycles", "-")
        print(f"  {name:<16} {'PASS' if result.passed else 'FAIL'}  "
              f"tests {result.tests - result.failures}/{result.tests}  cycles {cycles}")
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else EXIT_FAILED


# -- report -------------------------------------------------------------------------------------

def cmd_report(args):
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, not {args.jobs}")
    report = build_report(args.out, quick=args.quick, jobs=args.jobs, dask_address=args.dask,
                          force=args.force, families=args.only or None)
    print(report)
    return 0


# -- mutate -------------------------------------------------------------------------------------

def cmd_mutate(args):
    return mutate.run_from_args(args)


# -- study --------------------------------------------------------------------------------------

#: The measured-claim studies behind the README tables (each module has ``main(argv)``).
STUDIES = {
    "hbfp-area": hbfp_area,         # FP32 vs HBFP area per lane, with breakdown
    "prune-quant": sparsity_quant,  # error of prune-then-quantize vs the reverse
    "figs-compare": figs_compare,   # FiGS vs broadcast side by side
}


def cmd_study(args):
    result = STUDIES[args.name].main(args.args)
    return result if isinstance(result, int) else 0


# -- model ----------------------------------------------------------------------------------------

def cmd_model(args):
    if args.model_command == "inspect":
        print(model_commands.inspect(args.model, nm=args.nm, config=args.config,
                                     changed_only=args.changed))
        return 0
    record = model_commands.run_command(
        args.model, tokenizer=args.tokenizer, text=args.text, texts_file=args.texts, nm=args.nm,
        config=args.config, seq_len=args.seq_len, subsystems=args.subsystems,
        engine=args.engine, json_path=args.json)
    print(model_commands.summary_text(record), file=sys.stderr if args.json == "-" else sys.stdout)
    return 0


def _model_attr_arguments(parser):
    parser.add_argument("model", help="'minilm' (the installed all-MiniLM-L6-v2) or an ONNX file")
    parser.add_argument("--nm", metavar="N:M", help="N:M for every weight GEMM")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML [[layer]] attributes by node-name pattern (docs/model.md)")


# -- main -----------------------------------------------------------------------------------------

def make_parser():
    parser = argparse.ArgumentParser(
        prog="sparsehw",
        description="RTL generators and verification for sparse and low-precision DNN blocks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="blocks, their parameters, defaults and allowed ranges")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("gen", help="write BLOCK.v, BLOCK.json, the FuseSoC core BLOCK.core "
                                   "and lint waivers BLOCK.vlt")
    p.add_argument("block")
    _params_argument(p)
    p.add_argument("--axis", action="store_true",
                   help="also write the AXI4-Stream top BLOCK_axis.v (docs/integration.md)")
    p.add_argument("-o", "--out", default="build/gen", metavar="DIR")
    p.set_defaults(func=cmd_gen)

    p = sub.add_parser("sim", help="run the block's cocotb testbench")
    p.add_argument("block")
    _params_argument(p)
    p.add_argument("--sim", choices=("icarus", "verilator"), default="icarus")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--waves", action="store_true", help="keep an FST trace and print its path")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("synth", help="Yosys synthesis: transistors (cmos) or FPGA resources")
    p.add_argument("block")
    _params_argument(p)
    p.add_argument("--target", choices=("cmos", "ecp5", "ice40"), default="cmos")
    p.add_argument("--place", action="store_true",
                   help="ECP5 only: also place and route (nextpnr) and report Fmax")
    p.add_argument("--seeds", default="1,2,3", help="placement seeds for --place (median)")
    p.add_argument("--dsp-registers", action=argparse.BooleanOptionalAction, default=None,
                   help="with --place: move the registers around each multiplier into the DSP "
                        "before nextpnr (default: the block's choice; off for the SPU, where "
                        "it was measured to lower Fmax)")
    p.add_argument("--json", metavar="FILE", help="write the record here (default: stdout)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("perf", help="run a workload in simulation and report measured figures")
    p.add_argument("block")
    _params_argument(p)
    p.add_argument("-w", "--workload", action="append", default=[], metavar="NAME=VALUE",
                   help="workload knob (repeatable); see 'sparsehw list'")
    p.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="FILE", help="write the record here (default: stdout)")
    p.set_defaults(func=cmd_perf)

    p = sub.add_parser("regress", help="generate every block at default parameters and run "
                                       "its cocotb regression (what 'make sim' runs)")
    p.add_argument("blocks", nargs="*", help="only these blocks")
    p.add_argument("--sim", choices=("icarus", "verilator"), default="icarus")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-o", "--out", default="build/gen", metavar="DIR")
    p.set_defaults(func=cmd_regress)
    p = sub.add_parser("report", help="sweep every block and write report.md, results.json/"
                                      "csv and plots (what 'make report' runs)")
    p.add_argument("--out", default="report", metavar="DIR")
    p.add_argument("--quick", action="store_true", help="small grid (minutes on 2 cores)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="local worker processes")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="send design points to this Dask scheduler (tcp://host:8786)")
    p.add_argument("--force", action="store_true", help="recompute cached design points")
    p.add_argument("--only", action="append", metavar="FAMILY",
                   help="only this block family's section (repeatable)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("study", help="a measured-claim study: " + ", ".join(STUDIES),
                       description="Run a study; arguments after NAME go to the study "
                                   "(sparsehw study NAME --help).")
    p.add_argument("name", choices=sorted(STUDIES))
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("mutate", help="mutation score of the block's regression: Yosys mutants "
                                      "through the cocotb testbench (docs/verification.md)")
    mutate.add_arguments(p)
    p.set_defaults(func=cmd_mutate)

    p = sub.add_parser("model", help="the model runner: ONNX import, sparsity/precision "
                                     "attributes, integer run, accuracy (docs/model.md)")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    q = msub.add_parser("inspect", help="each tensor's attributes before and after propagation")
    _model_attr_arguments(q)
    q.add_argument("--changed", action="store_true", help="only what propagation changed")
    q.set_defaults(func=cmd_model)
    q = msub.add_parser("run", help="run the integer encoder, compare with onnxruntime")
    _model_attr_arguments(q)
    q.add_argument("--tokenizer", metavar="FILE", help="tokenizer.json (default: the model's)")
    q.add_argument("--text", action="append", help="a sentence (repeatable; default: the 36 "
                                                   "evaluation sentences)")
    q.add_argument("--texts", metavar="FILE", help="sentences, one per line")
    q.add_argument("--seq-len", type=int, metavar="T", help="pad/truncate every sentence to T")
    q.add_argument("--subsystems", type=int, default=4, help="for the GEMM cycle counts")
    q.add_argument("--engine", choices=model_commands.ENGINES, default="numpy")
    q.add_argument("--json", metavar="FILE", help="write the record (gemms, totals, cosines)")
    q.set_defaults(func=cmd_model)
    return parser


def main(argv=None):
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as error:
        print(f"sparsehw: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
