"""FiGS array versus broadcast N:M baseline, side by side: bandwidth, cycles, area.

Runs ``sparsehw perf`` (sweep mode: every supported ratio, unlimited bandwidth and at the FiGS
budget) and ``sparsehw synth`` (cmos, ecp5) for both engines at equal MAC count, at the default
array and a larger one, plus an area breakdown (MACs, input/swap registers, operand muxes,
weight+index storage, rest). Records are cached as JSON in the output directory, each stamped
with a hash of the sparsehw sources the study depends on and the tool versions
(:func:`sparsehw.experiments.sweep.study_stamp`); a record with another stamp is recomputed.

    python -m sparsehw.experiments.figs_compare [--out build/studies/figs_compare] [--sim verilator] [--jobs 2]
"""

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sparsehw.experiments.sweep import study_stamp
from sparsehw.flow import BUILD_ROOT
from sparsehw.hw.figs import SUPPORTED_RATIOS, FigsArray, NmBroadcastArray
from sparsehw.hw.parts import EnabledRegs, Multiplier, OperandMux
from sparsehw.synth.yosys import synthesize
from sparsehw.verif.figs.perf_figs import run_perf


SIZES = {
    "default": {"rows": 8, "cols": 4, "beta": 2},
    "medium": {"rows": 16, "cols": 4, "beta": 2},
    "large": {"rows": 16, "cols": 8, "beta": 2},
}
#: Sizes whose area is synthesized (the cmos run of the 256-MAC FiGS array ended without a
#: result after ~15 minutes, cause not confirmed; see docs/figs.md).
AREA_SIZES = ("default", "medium")
FIGS_EXTRA = {"alpha": 1, "ratio": 4}
WORKLOAD = {"n": 2, "m": 8, "k": 512, "o": 64, "b": 32, "budget": 0, "mask": "nested",
            "stall": 0.0, "sweep": True}


def _engine_params(engine, size):
    params = {**SIZES[size], "width": 8, "max_m": 32}
    if engine == "figs":
        params.update(FIGS_EXTRA)
    return params


# -- area parts: the pieces of the array, each synthesized alone ------------------------------



def _parts(engine, params):
    """(name, component factory, count) of the area breakdown."""
    rows, cols, beta, width = params["rows"], params["cols"], params["beta"], params["width"]
    macs = rows * cols * beta
    if engine == "figs":
        inputs = (2 * params["alpha"] + 1) * params["ratio"]
        lanes = params["ratio"]
    else:
        inputs = params["max_m"]
        lanes = params["max_m"]
    sel_bits = max(1, (inputs - 1).bit_length())
    return [
        ("macs", lambda: Multiplier(width), macs),
        ("input_regs", lambda: EnabledRegs(lanes * width), rows * cols),
        ("operand_muxes", lambda: OperandMux(width, inputs), macs),
        ("weight_index_storage", lambda: EnabledRegs(width + sel_bits), 2 * macs),
    ]


DEFAULT_OUT = BUILD_ROOT / "studies" / "figs_compare"


def _stamp():
    return study_stamp("sparsehw.experiments.figs_compare")


def _cached(path):
    """The record cached at ``path`` if it was computed from the current sources and tools."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if record.get("stamp") == _stamp() else None


def _store(path, record):
    path.write_text(json.dumps({**record, "stamp": _stamp()}, indent=1, sort_keys=True))
    return record


def area(engine, size, out, target):
    params = _engine_params(engine, size)
    path = out / f"synth-{engine}-{size}-{target}.json"
    cached = _cached(path)
    if cached is not None:
        return cached
    cls = FigsArray if engine == "figs" else NmBroadcastArray
    record = {"block": engine, "params": params, "size": size,
              **synthesize(cls(**params), engine, target=target,
                           build_dir=out / f"synth-{engine}-{size}-{target}")}
    return _store(path, record)


def breakdown(engine, size, out, total):
    """cmos transistors per part (each part synthesized alone, times its count); "rest" is the
    full design minus the parts."""
    params = _engine_params(engine, size)
    path = out / f"parts-{engine}-{size}.json"
    parts = _cached(path)
    if parts is not None:
        parts.pop("stamp")
    else:
        parts = {}
        for name, factory, count in _parts(engine, params):
            one = synthesize(factory(), f"part_{name}", target="cmos",
                             build_dir=out / f"part-{engine}-{size}-{name}")
            parts[name] = {"each": one["transistors"], "count": count,
                           "transistors": one["transistors"] * count}
        _store(path, parts)
    parts = dict(parts)
    parts["rest"] = {"transistors": total - sum(p["transistors"] for p in parts.values())}
    return parts


def perf(engine, size, out, sim):
    params = _engine_params(engine, size)
    path = out / f"perf-{engine}-{size}.json"
    cached = _cached(path)
    if cached is not None:
        return cached
    record = run_perf(engine, params, WORKLOAD, sim=sim, seed=1,
                      build_dir=out / f"perf-{engine}-{size}")
    record = {"block": engine, "params": params, "workload": WORKLOAD, "size": size, **record}
    return _store(path, record)


_OUT = [DEFAULT_OUT]


def table(perfs, areas):
    """Markdown tables from the records."""
    lines = []
    for size in SIZES:
        f, b = perfs[("figs", size)], perfs[("nm_broadcast", size)]
        p = f["params"]
        lines.append(f"\n### {size}: rows={p['rows']} cols={p['cols']} beta={p['beta']} "
                     f"({p['rows'] * p['cols'] * p['beta']} MACs), FiGS alpha={p['alpha']} "
                     f"ratio={p['ratio']}; GEMM K={WORKLOAD['k']} O={WORKLOAD['o']} "
                     f"B={WORKLOAD['b']}, mask={WORKLOAD['mask']}\n")
        lines.append("| N:M | FiGS bits/cycle pred / meas | broadcast bits/cycle pred / meas | "
                     "ratio pred | ratio meas | FiGS util | broadcast util | budget (bits/cycle) | "
                     "FiGS cycles | broadcast cycles | speedup |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for n, m in SUPPORTED_RATIOS:
            key = f"{n}:{m}"
            if key not in f.get("by_ratio", {}) or key not in b.get("by_ratio", {}):
                continue
            ff, bf = f["by_ratio"][key]["full"], b["by_ratio"][key]["full"]
            fl, bl = f["by_ratio"][key]["at_figs_budget"], b["by_ratio"][key]["at_figs_budget"]
            if not ff.get("routable", True):
                lines.append(f"| {key} | not routable (needs alpha {ff['required_alpha']}) |")
                continue
            # Measured: activation bits the testbench delivered per simulated cycle, unthrottled.
            fmeas, bmeas = ff["input_bits_per_cycle"], bf["input_bits_per_cycle"]
            lines.append(
                f"| {key} | {ff['predicted_bits_per_cycle']} / {fmeas:.1f} | "
                f"{bf['predicted_bits_per_cycle']} / {bmeas:.1f} | "
                f"{bf['predicted_bits_per_cycle'] / ff['predicted_bits_per_cycle']:.0f} | "
                f"{bmeas / fmeas:.3f} | {ff['utilization']:.3f} | {bf['utilization']:.3f} | "
                f"{fl['budget']} | {fl['cycles']} (util {fl['utilization']:.3f}) | "
                f"{bl['cycles']} (util {bl['utilization']:.3f}) | "
                f"{bl['cycles'] / fl['cycles']:.2f} |")
    deviations = []
    for (engine, size), rec in perfs.items():
        for runs in rec.get("by_ratio", {}).values():
            for run in runs.values():
                if run.get("routable", True):
                    deviations.append(abs(run["cycles"] / run["predicted_cycles"] - 1))
    if deviations:
        lines.append(f"\nMeasured cycles versus `golden.figs.predicted_cycles`: largest deviation "
                     f"{100 * max(deviations):.2f}% over {len(deviations)} runs.")
    lines.append("\n### Area (Yosys; cmos transistors, ECP5 LUT4/FF)\n")
    lines.append("| size | engine | transistors | MACs | input/swap regs | operand muxes | "
                 "weight+index regs | rest | ECP5 LUT4 | ECP5 FF | ECP5 CCU2C | ECP5 DSP |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in SIZES:
        for engine in ("figs", "nm_broadcast"):
            c = areas.get((engine, size, "cmos"))
            e = areas.get((engine, size, "ecp5"))
            if c is None:
                continue
            br = breakdown(engine, size, _OUT[0], c["transistors"])
            lines.append(
                f"| {size} | {engine} | {c['transistors']} | {br['macs']['transistors']} | "
                f"{br['input_regs']['transistors']} | {br['operand_muxes']['transistors']} | "
                f"{br['weight_index_storage']['transistors']} | {br['rest']['transistors']} | "
                f"{e['luts'] if e else '-'} | {e['ffs'] if e else '-'} | "
                f"{e.get('carry', '-') if e else '-'} | {e['dsps'] if e else '-'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--sim", default="verilator", choices=("icarus", "verilator"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--skip-perf", action="store_true")
    parser.add_argument("--skip-area", action="store_true")
    parser.add_argument("--targets", default="cmos,ecp5")
    args = parser.parse_args(argv)
    out = Path(args.out)
    _OUT[0] = out
    out.mkdir(parents=True, exist_ok=True)
    sizes = args.sizes.split(",")
    engines = ("figs", "nm_broadcast")
    perfs, areas = {}, {}
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {}
        if not args.skip_perf:
            for size in sizes:
                for engine in engines:
                    futures[("perf", engine, size)] = pool.submit(perf, engine, size, out,
                                                                  args.sim)
        if not args.skip_area:
            for size in (s for s in sizes if s in AREA_SIZES):
                for engine in engines:
                    for target in args.targets.split(","):
                        futures[("area", engine, size, target)] = pool.submit(
                            area, engine, size, out, target)
        for key, future in futures.items():
            if key[0] == "perf":
                perfs[key[1:]] = future.result()
            else:
                areas[key[1:]] = future.result()
            print(f"done {key}", file=sys.stderr)
    for size in SIZES:
        for engine in engines:
            cached = _cached(out / f"perf-{engine}-{size}.json")
            if (engine, size) not in perfs and cached is not None:
                perfs[(engine, size)] = cached
            for target in ("cmos", "ecp5"):
                cached = _cached(out / f"synth-{engine}-{size}-{target}.json")
                if (engine, size, target) not in areas and cached is not None:
                    areas[(engine, size, target)] = cached
    text = table({k: v for k, v in perfs.items()}, areas) if all(
        (e, s) in perfs for e in engines for s in SIZES) else _partial(perfs, areas)
    (out / "figs_compare.md").write_text(text)
    print(text)
    return 0


def _partial(perfs, areas):
    global SIZES
    saved = SIZES
    SIZES = {s: v for s, v in saved.items() if ("figs", s) in perfs and ("nm_broadcast", s) in perfs}
    try:
        return table(perfs, areas)
    finally:
        SIZES = saved


if __name__ == "__main__":
    sys.exit(main())
