"""FiGS array versus its three baselines, side by side: port bandwidth, cycles, area, Fmax.

The four engines (``figs``, ``nm_broadcast``, ``nm_fanout``, ``nm_fixed24``) at equal MAC count
(rows=8, cols=4, beta=2: 64 MACs; FiGS alpha=1, ratio=4; fan-out ratio=4) run the same GEMM
(K x O x B, FiGS nested masks and random magnitude masks, the same matrices on every engine) at
1:2, 2:4, 1:4, 2:8, 4:8, 4:16, 8:32 and a grid of input bandwidth budgets (Verilator,
:mod:`sparsehw.verif.figs.budget_figs`, every run bit-exact against the golden GEMM), and are
synthesized (Yosys cmos and ECP5) and placed and routed (nextpnr-ecp5, one seed, out of context)
at the same size. Records are cached as JSON in the output directory: perf records stamped with
a hash of the RTL, testbench and runner sources, area and Fmax records with a hash of the RTL and synthesis
sources only (:func:`sparsehw.experiments.sweep.module_fingerprint`); a record with another
stamp is recomputed.

    sparsehw study figs-compare [--out build/studies/figs_compare] [--sim verilator] [--jobs 2]
        [--skip-perf] [--skip-area] [--skip-fmax]
"""

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sparsehw.experiments.sweep import module_fingerprint, tool_versions
from sparsehw.flow import BUILD_ROOT
from sparsehw.golden import figs as gf
from sparsehw.hw.export import to_verilog
from sparsehw.hw.figs import FigsArray, NmBroadcastArray, NmFanoutArray, NmFixed24Array
from sparsehw.hw.parts import EnabledRegs, Multiplier, OperandMux
from sparsehw.synth.fmax import place_and_route
from sparsehw.synth.yosys import synthesize
from sparsehw.verif.figs import perf_figs  # noqa: F401  (the `sparsehw perf` path, same drivers)


ENGINES = ("figs", "nm_broadcast", "nm_fanout", "nm_fixed24")
CLASSES = {"figs": FigsArray, "nm_broadcast": NmBroadcastArray, "nm_fanout": NmFanoutArray,
           "nm_fixed24": NmFixed24Array}
LABELS = {"figs": "FiGS", "nm_broadcast": "broadcast", "nm_fanout": "fan-out",
          "nm_fixed24": "fixed 2:4"}
SIZE = {"rows": 8, "cols": 4, "beta": 2, "width": 8}
RATIOS = ((1, 2), (2, 4), (1, 4), (2, 8), (4, 8), (4, 16), (8, 32))
MASKS = ("nested", "random")
#: Activation bits per cycle the testbench may deliver (0 = unlimited).
BUDGETS = (64, 128, 256, 512, 1024, 2048, 0)
WORKLOAD = {"k": 256, "o": 16, "b": 32}

DEFAULT_OUT = BUILD_ROOT / "studies" / "figs_compare"


def engine_params(engine):
    """Generation parameters of ``engine`` in this study (64 MACs each)."""
    extra = {"figs": {"max_m": 32, "alpha": 1, "ratio": 4}, "nm_broadcast": {"max_m": 32},
             "nm_fanout": {"max_m": 32, "ratio": 4}, "nm_fixed24": {}}[engine]
    return {**SIZE, **extra}


# -- caches ----------------------------------------------------------------------------------

def _sources_stamp(*modules):
    text = json.dumps({"sources": module_fingerprint(*modules), "tools": tool_versions()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _stamp():
    """Stamp of the perf records: the RTL, the testbench and its drivers, the simulator runner
    (editing the tables of this module does not recompute the simulations)."""
    return _sources_stamp("sparsehw.hw.figs", "sparsehw.verif.figs.budget_figs",
                          "sparsehw.verif.runner")


_VERILOG_HASH = {}


def _hw_stamp(engine, kind="area"):
    """Stamp of an area (``kind="area"``) or Fmax (``"fmax"``) record: the engine's generated
    Verilog at the study's parameters, the synthesis wrapper and the tool versions (so an edit
    elsewhere in hw/ does not resynthesize an unchanged design)."""
    if engine not in _VERILOG_HASH:
        verilog = to_verilog(CLASSES[engine](**engine_params(engine)), engine)
        _VERILOG_HASH[engine] = hashlib.sha256(verilog.encode()).hexdigest()
    module = "sparsehw.synth.yosys" if kind == "area" else "sparsehw.synth.fmax"
    text = json.dumps({"verilog": _VERILOG_HASH[engine], "sources": module_fingerprint(module),
                       "tools": tool_versions()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _cached(path, stamp=None):
    """The record cached at ``path`` if it was computed from the current sources and tools."""
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if record.get("stamp") == (stamp or _stamp()) else None


def _store(path, record, stamp=None):
    path.write_text(json.dumps({**record, "stamp": stamp or _stamp()}, indent=1,
                               sort_keys=True))
    return record


# -- measurements ------------------------------------------------------------------------------

def perf(engine, out, sim):
    """The budget sweep of one engine (both masks, every ratio, every budget)."""
    path = out / f"perf-{engine}.json"
    cached = _cached(path)
    if cached is not None:
        return cached
    from sparsehw.verif.runner import run_cocotb
    params = engine_params(engine)
    workload = {**WORKLOAD, "engine": engine, "masks": list(MASKS),
                "ratios": [list(r) for r in RATIOS], "budgets": list(BUDGETS)}
    start = time.monotonic()
    result = run_cocotb(CLASSES[engine](**params), engine, "sparsehw.verif.figs.budget_figs",
                        build_dir=out / f"perf-{engine}", sim=sim, seed=1, params=params,
                        workload=workload)
    if not result.passed:
        raise RuntimeError(f"{engine}: budget sweep failed: {result.errors}; see {result.log}")
    record = {"block": engine, "params": params, "workload": workload, "sim": sim,
              "seconds": round(time.monotonic() - start, 1), **result.record}
    return _store(path, record)


def area(engine, out, target):
    path = out / f"synth-{engine}-{target}.json"
    cached = _cached(path, _hw_stamp(engine))
    if cached is not None:
        return cached
    params = engine_params(engine)
    start = time.monotonic()
    record = {"block": engine, "params": params,
              **synthesize(CLASSES[engine](**params), engine, target=target,
                           build_dir=out / f"synth-{engine}-{target}"),
              "seconds": round(time.monotonic() - start, 1)}
    return _store(path, record, _hw_stamp(engine))


def fmax(engine, out):
    """Post-place-and-route Fmax on ECP5 85k, seed 1 (out of context)."""
    path = out / f"fmax-{engine}.json"
    cached = _cached(path, _hw_stamp(engine, "fmax"))
    if cached is not None:
        return cached
    params = engine_params(engine)
    start = time.monotonic()
    record = {"block": engine, "params": params,
              **place_and_route(CLASSES[engine](**params), engine,
                                build_dir=out / f"fmax-{engine}", seeds=(1,)),
              "seconds": round(time.monotonic() - start, 1)}
    return _store(path, record, _hw_stamp(engine, "fmax"))


def _parts(engine, params):
    """(name, component factory, count) of the area breakdown."""
    rows, cols, beta, width = params["rows"], params["cols"], params["beta"], params["width"]
    macs = rows * cols * beta
    max_m = params.get("max_m", 4)
    if engine == "figs":
        inputs, lanes = (2 * params["alpha"] + 1) * params["ratio"], params["ratio"]
    else:
        inputs = lanes = max_m
    sel_bits = max(1, (inputs - 1).bit_length())
    return [
        ("macs", lambda: Multiplier(width), macs),
        ("input_regs", lambda: EnabledRegs(lanes * width), rows * cols),
        ("operand_muxes", lambda: OperandMux(width, inputs), macs),
        ("weight_index_storage", lambda: EnabledRegs(width + sel_bits), 2 * macs),
    ]


def breakdown(engine, out, total, compute=True):
    """cmos transistors per part (each part synthesized alone, times its count); "rest" is the
    full design minus the parts (control, fan-out network, column adders, output pipeline).
    None when not cached and ``compute`` is false."""
    params = engine_params(engine)
    path = out / f"parts-{engine}.json"
    stamp = _sources_stamp("sparsehw.hw.parts", "sparsehw.synth.yosys")
    parts = _cached(path, stamp)
    if parts is None and not compute:
        return None
    if parts is not None:
        parts.pop("stamp")
    else:
        parts = {}
        for name, factory, count in _parts(engine, params):
            one = synthesize(factory(), f"part_{name}", target="cmos",
                             build_dir=out / f"part-{engine}-{name}")
            parts[name] = {"each": one["transistors"], "count": count,
                           "transistors": one["transistors"] * count}
        _store(path, parts, stamp)
    parts = dict(parts)
    parts["rest"] = {"transistors": total - sum(p["transistors"] for p in parts.values())}
    return parts


# -- report ------------------------------------------------------------------------------------

def _runs(perfs):
    """``{(engine, mask, n, m, budget): run}``."""
    return {(e, r["mask"], r["n"], r["m"], r["budget"]): r
            for e, rec in perfs.items() for r in rec.get("runs", [])}


def tables(perfs, areas, fmaxes):
    """Markdown tables from the records."""
    runs = _runs(perfs)
    p = engine_params("figs")
    lines = [f"Engines at {p['rows']}x{p['cols']}x{p['beta']} = "
             f"{p['rows'] * p['cols'] * p['beta']} MACs (FiGS alpha={p['alpha']} "
             f"ratio={p['ratio']}, fan-out ratio=4, broadcast max_m=32, fixed 2:4); GEMM "
             f"K={WORKLOAD['k']} O={WORKLOAD['o']} B={WORKLOAD['b']}, int8; Verilator, every run "
             f"bit-exact. Port = activation port width (bits). Need = activation bits per cycle "
             f"measured at unlimited bandwidth (activations counted in the delivered payloads / "
             f"cycles). Speedup = baseline cycles / FiGS cycles at the same budget.\n"]
    for mask in MASKS:
        lines.append(f"\n#### {mask} masks\n")
        lines.append("| N:M | engine | port | need (bits/cycle) | cycles unlimited | util "
                     "unlimited | cycles at FiGS's need | util there | FiGS speedup unlimited | "
                     "FiGS speedup at FiGS's need |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for n, m in RATIOS:
            need = gf.input_bits_per_cycle("figs", n, m, rows=p["rows"], width=p["width"])
            f_full = runs.get(("figs", mask, n, m, 0))
            f_need = runs.get(("figs", mask, n, m, need))
            for engine in ENGINES:
                full = runs.get((engine, mask, n, m, 0))
                lim = runs.get((engine, mask, n, m, need))
                if full is None:
                    continue
                port = gf.port_bits(engine, rows=p["rows"], width=p["width"])
                cells = [f"{n}:{m}", LABELS[engine], port, f"{full['input_bits_per_cycle']:.1f}",
                         full["cycles"], f"{full['utilization']:.3f}",
                         lim["cycles"] if lim else "-",
                         f"{lim['utilization']:.3f}" if lim else "-",
                         f"{full['cycles'] / f_full['cycles']:.2f}" if f_full else "-",
                         f"{lim['cycles'] / f_need['cycles']:.2f}" if lim and f_need else "-"]
                lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += headline(runs)
    deviations = [abs(r["cycles"] / r["predicted_cycles"] - 1) for r in runs.values()]
    if deviations:
        lines.append(f"\nMeasured cycles versus `golden.figs.predicted_cycles`: largest deviation "
                     f"{100 * max(deviations):.2f}% over {len(deviations)} runs.")
    lines.append("\n#### Area and Fmax (Yosys cmos transistors; ECP5 LUT4/FF; nextpnr-ecp5 85k, "
                 "seed 1, out of context)\n")
    lines.append("| engine | transistors | MACs | input regs | operand muxes | weight+index regs "
                 "| rest | ECP5 LUT4 | ECP5 FF | Fmax (MHz) | P&R time (s) |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    out = _OUT[0]
    for engine in ENGINES:
        c, e, f = (areas.get((engine, "cmos")), areas.get((engine, "ecp5")),
                   fmaxes.get(engine))
        if c is None and e is None and f is None:
            continue
        br = breakdown(engine, out, c["transistors"], compute=_BREAKDOWN[0]) if c else None
        part = (lambda k: br[k]["transistors"]) if br else (lambda k: "-")
        lines.append("| " + " | ".join(str(x) for x in [
            LABELS[engine], c["transistors"] if c else "-", part("macs"), part("input_regs"),
            part("operand_muxes"), part("weight_index_storage"), part("rest"),
            e["luts"] if e else "-", e["ffs"] if e else "-",
            f"{f['fmax_mhz']:.1f}" if f else "-", f["seconds"] if f else "-"]) + " |")
    return "\n".join(lines) + "\n"


#: The seed's headline: a model trained to 1:2 (1:4), FiGS running it natively; the patterns of
#: the same density a baseline may run it as instead.
HEADLINE = {(1, 2): ((1, 2), (2, 4), (4, 8)), (1, 4): ((1, 4), (2, 8), (4, 16), (8, 32))}


def headline(runs):
    """Lines of the seed-headline table: FiGS at 1:2 (1:4) against every baseline running the
    same model as each pattern of that density, per budget (random masks: a 1:2 (1:4) mask is a
    valid 2:4, 4:8 (2:8, 4:16, 8:32) mask; the baselines' cycles do not depend on the mask
    content except fixed 2:4's passes, which are 1 for any density <= 1/2 spread this way).
    Speedup = baseline cycles / FiGS cycles, both measured with the same K, O, B and budget."""
    lines = ["\n#### The seed's headline: FiGS at 1:2 and 1:4 against each baseline running the "
             "same model as a pattern of the same density (random masks; speedup per input "
             "budget in bits/cycle, 0 = unlimited)\n",
             "| model | baseline runs it as | " + " | ".join(str(b) for b in BUDGETS) + " |",
             "|---|---|" + "---|" * len(BUDGETS)]
    for (n, m), as_patterns in HEADLINE.items():
        for engine in ENGINES[1:]:
            # fixed 2:4 compiles the model itself (one 2:4 pass at these densities)
            for an, am in (as_patterns if engine != "nm_fixed24" else ((n, m),)):
                cells = []
                for budget in BUDGETS:
                    f = runs.get(("figs", "random", n, m, budget))
                    b = runs.get((engine, "random", an, am, budget))
                    cells.append(f"{b['cycles'] / f['cycles']:.2f}" if f and b else "-")
                how = "2:4 (compiled)" if engine == "nm_fixed24" else f"{an}:{am}"
                lines.append(f"| {n}:{m} | {LABELS[engine]} as {how} | " + " | ".join(cells)
                             + " |")
    return lines


def plots(perfs, plot_dir):
    """One plot per N:M: FiGS's speedup over each baseline versus the input bandwidth budget
    (nested masks solid, random dashed). Returns the Markdown image lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = _runs(perfs)
    plot_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for n, m in RATIOS:
        fig, ax = plt.subplots(figsize=(4.6, 3.4))
        for engine, color in zip(ENGINES[1:], ("C0", "C1", "C2")):
            for mask, style in zip(MASKS, ("-", "--")):
                xs, ys = [], []
                for budget in BUDGETS:
                    f, b = runs.get(("figs", mask, n, m, budget)), runs.get(
                        (engine, mask, n, m, budget))
                    if f and b:
                        xs.append(budget or 4096)
                        ys.append(b["cycles"] / f["cycles"])
                if xs:
                    ax.plot(xs, ys, style, marker="o", color=color,
                            label=f"vs {LABELS[engine]} ({mask})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("input budget (bits/cycle; 4096 = unlimited)")
        ax.set_ylabel("FiGS speedup")
        ax.set_title(f"{n}:{m}")
        ax.axhline(1, color="grey", linewidth=0.5)
        ax.legend(fontsize=6)
        name = f"figs_speedup_{n}_{m}"
        for ext in ("png", "svg"):
            fig.savefig(plot_dir / f"{name}.{ext}", dpi=100, bbox_inches="tight",
                        metadata={"Date": None} if ext == "svg" else None)
        plt.close(fig)
        images.append(f"![{name}](plots/{name}.png)")
    return images


_OUT = [DEFAULT_OUT]
_BREAKDOWN = [False]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--sim", default="verilator", choices=("icarus", "verilator"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--skip-perf", action="store_true")
    parser.add_argument("--skip-area", action="store_true")
    parser.add_argument("--skip-fmax", action="store_true")
    parser.add_argument("--targets", default="cmos,ecp5")
    parser.add_argument("--breakdown", action="store_true",
                        help="synthesize the area parts (MACs, registers, muxes) alone too")
    args = parser.parse_args(argv)
    out = Path(args.out)
    _OUT[0] = out
    _BREAKDOWN[0] = args.breakdown
    out.mkdir(parents=True, exist_ok=True)
    engines = args.engines.split(",")
    perfs, areas, fmaxes = {}, {}, {}
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {}
        for engine in engines:
            if not args.skip_perf:
                futures[("perf", engine)] = pool.submit(perf, engine, out, args.sim)
            if not args.skip_area:
                for target in args.targets.split(","):
                    futures[("area", engine, target)] = pool.submit(area, engine, out, target)
            if not args.skip_fmax:
                futures[("fmax", engine)] = pool.submit(fmax, engine, out)
        for key, future in futures.items():
            result = future.result()
            if key[0] == "perf":
                perfs[key[1]] = result
            elif key[0] == "area":
                areas[key[1:]] = result
            else:
                fmaxes[key[1]] = result
            print(f"done {key}", file=sys.stderr)
    for engine in ENGINES:         # whatever else the cache holds for the current sources
        if engine not in perfs and (rec := _cached(out / f"perf-{engine}.json")):
            perfs[engine] = rec
        for target in ("cmos", "ecp5"):
            if (engine, target) not in areas and (
                    rec := _cached(out / f"synth-{engine}-{target}.json", _hw_stamp(engine))):
                areas[(engine, target)] = rec
        if engine not in fmaxes and (rec := _cached(out / f"fmax-{engine}.json",
                                                    _hw_stamp(engine, "fmax"))):
            fmaxes[engine] = rec
    text = tables(perfs, areas, fmaxes)
    if "figs" in perfs:
        text += "\n" + "\n".join(plots(perfs, out / "plots")) + "\n"
    (out / "figs_compare.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
