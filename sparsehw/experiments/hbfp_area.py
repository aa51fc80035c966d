"""Area per MAC lane: B lanes of ``fp32_mac`` versus one ``hbfp_dot`` of B lanes.

Same Yosys flow (:func:`synth.yosys.synthesize`), same run, for every design point:

* FP32 per lane = area of one ``fp32_mac`` (a complete IEEE binary32 multiply-then-add);
* HBFP per lane = area of one ``hbfp_dot`` of ``B`` lanes / ``B`` (its exponent logic, block
  FP32 conversion and FP32 accumulator included, amortized over the lanes).

Where the area goes: ``hbfp_dot`` area is fitted as ``shared + B * lane`` over the block sizes
(least squares), ``shared`` being the exponent adder, block-to-FP32 rounding and the FP32
accumulator, ``lane`` a multiplier, its product register and its share of the adder tree; the
``fp32_mac`` is split into its multiplier and adder halves (each synthesized alone, with the same
registers).

Usage: ``python -m sparsehw.experiments.hbfp_area [--quick] [--targets cmos,ecp5] [--out FILE.json]``, or
:func:`run` from Python (returns a dict). Results are cached per design point in
``build/studies/hbfp_area/cache.json``, keyed by the design point, the tool versions and a hash
of every sparsehw source the study depends on (:func:`sparsehw.experiments.sweep.module_fingerprint`),
so an RTL edit recomputes the figures instead of serving stale ones.
"""

import argparse
import json
import sys
from pathlib import Path

from sparsehw.experiments.sweep import study_stamp
from sparsehw.flow import BUILD_ROOT
from sparsehw.hw.fp32 import Fp32Mac
from sparsehw.hw.hbfp import HbfpDot
from sparsehw.hw.parts import Fp32Half
from sparsehw.synth.yosys import synthesize


__all__ = ["run", "main", "table"]

DEFAULT_MANT = (7, 5, 3)
DEFAULT_BLOCKS = (16, 32, 64)




STUDY_DIR = BUILD_ROOT / "studies" / "hbfp_area"


def _stamp():
    """What the cached figures depend on besides the design point: sources and tools."""
    return study_stamp("sparsehw.experiments.hbfp_area")


def _key(name, params, target):
    return f"{name}|{json.dumps(params, sort_keys=True)}|{target}"


def _synth(name, params, target, cache, cache_path, log):
    key = _key(name, params, target)
    if key in cache:
        return cache[key]
    if name == "fp32_mac":
        component = Fp32Mac()
    elif name == "hbfp_dot":
        component = HbfpDot(**params)
    else:
        component = Fp32Half(params["op"])
    build_dir = STUDY_DIR / key.replace("|", "_").replace('"', "") \
        .replace(" ", "").replace("{", "").replace("}", "").replace(":", "").replace(",", "_")
    top = name if name != "fp32_half" else f"fp32_{params['op']}"
    log(f"synthesizing {name} {params} for {target} ...")
    figures = synthesize(component, top, target=target, build_dir=build_dir)
    figures.pop("cell_types", None)
    record = {"block": name, "params": params, **figures}
    cache[key] = record
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_text(json.dumps({"stamp": _stamp(), "records": cache}, indent=1,
                                     sort_keys=True))
    return record


def _load_cache(cache_path):
    """The cached records, if they were computed from the current sources and tools."""
    if not cache_path.exists():
        return {}
    stored = json.loads(cache_path.read_text())
    if stored.get("stamp") != _stamp():
        return {}
    return stored["records"]


def _metrics(target):
    return ("transistors",) if target == "cmos" else ("luts", "carry", "ffs", "dsps")


def _fit(points):
    """Least-squares ``y = shared + B * lane`` over ``[(B, y), ...]``."""
    n = len(points)
    if n < 2:
        return None
    sx = sum(b for b, _ in points)
    sy = sum(y for _, y in points)
    sxx = sum(b * b for b, _ in points)
    sxy = sum(b * y for b, y in points)
    lane = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    return {"shared": (sy - lane * sx) / n, "lane": lane}


def run(*, mant_bits=DEFAULT_MANT, block_sizes=DEFAULT_BLOCKS, targets=("cmos", "ecp5"),
        breakdown=True, mixed=False, cache_path=None, log=print):
    """Synthesize every design point and return ``{"points", "fp32", "ratios", "breakdown"}``.

    ``ratios[target][f"m{m}_B{B}"]`` holds, per metric, FP32-per-lane / HBFP-per-lane. With
    ``mixed``, the run-time HBFP4/6/8 unit (``mixed=True``, m=7 datapath) is added as
    ``ratios[target][f"mixed_B{B}"]``.
    """
    cache_path = Path(cache_path or STUDY_DIR / "cache.json")
    cache = _load_cache(cache_path)
    result = {"points": [], "fp32": {}, "ratios": {}, "breakdown": {}}
    for target in targets:
        fp32 = _synth("fp32_mac", {}, target, cache, cache_path, log)
        result["fp32"][target] = fp32
        result["points"].append(fp32)
        result["ratios"][target] = {}
        per_m = {}
        for m in mant_bits:
            for b in block_sizes:
                params = {"block_size": b, "mant_bits": m, "mixed": False}
                rec = _synth("hbfp_dot", params, target, cache, cache_path, log)
                result["points"].append(rec)
                ratio = {}
                for metric in _metrics(target):
                    per_lane = rec[metric] / b
                    ratio[f"hbfp_{metric}_per_lane"] = per_lane
                    ratio[f"fp32_{metric}_per_lane"] = fp32[metric]
                    ratio[f"{metric}_ratio"] = (fp32[metric] / per_lane) if per_lane else None
                result["ratios"][target][f"m{m}_B{b}"] = ratio
                per_m.setdefault(m, []).append((b, rec))
        if mixed:
            for b in block_sizes:
                params = {"block_size": b, "mant_bits": 7, "mixed": True}
                rec = _synth("hbfp_dot", params, target, cache, cache_path, log)
                result["points"].append(rec)
                result["ratios"][target][f"mixed_B{b}"] = {
                    key: value for metric in _metrics(target) for key, value in (
                        (f"hbfp_{metric}_per_lane", rec[metric] / b),
                        (f"fp32_{metric}_per_lane", fp32[metric]),
                        (f"{metric}_ratio", fp32[metric] * b / rec[metric] if rec[metric] else None))}
        if breakdown:
            parts = {}
            for m, recs in per_m.items():
                parts[f"hbfp_dot_m{m}"] = {metric: _fit([(b, r[metric]) for b, r in recs])
                                          for metric in _metrics(target)}
            for op in ("mul", "add"):
                rec = _synth("fp32_half", {"op": op}, target, cache, cache_path, log)
                parts[f"fp32_{op}_only"] = {metric: rec[metric] for metric in _metrics(target)}
            result["breakdown"][target] = parts
    return result


def table(result):
    """Markdown table of the per-lane ratios (cmos transistors; ECP5 LUTs, FFs, DSPs) and the
    area breakdown."""
    lines = []
    if "cmos" in result["ratios"]:
        fp = result["fp32"]["cmos"]["transistors"]
        lines += [f"FP32 `fp32_mac`: {fp} transistors per lane (Yosys `stat -tech cmos`).", "",
                  "| format | B | HBFP transistors / lane | FP32 / HBFP |", "|---|---|---|---|"]
        for key, r in result["ratios"]["cmos"].items():
            m, b = key[1:].split("_B")
            label = "mixed HBFP4/6/8" if key.startswith("mixed") else f"HBFP{int(m) + 1} (m={m})"
            lines.append(f"| {label} | {b} | "
                         f"{r['hbfp_transistors_per_lane']:.0f} | {r['transistors_ratio']:.2f}x |")
        lines.append("")
    if "ecp5" in result["ratios"]:
        fp = result["fp32"]["ecp5"]
        lines += [f"FP32 `fp32_mac` on ECP5: {fp['luts']} LUT4, {fp['carry']} CCU2C, "
                  f"{fp['ffs']} FF, {fp['dsps']} DSP per lane.", "",
                  "| format | B | LUT4 / lane | CCU2C / lane | FF / lane | DSP / lane | "
                  "LUT4 ratio | FF ratio |", "|---|---|---|---|---|---|---|---|"]
        for key, r in result["ratios"]["ecp5"].items():
            m, b = key[1:].split("_B")
            label = "mixed" if key.startswith("mixed") else f"HBFP{int(m) + 1}"
            lines.append(
                f"| {label} | {b} | {r['hbfp_luts_per_lane']:.1f} | "
                f"{r['hbfp_carry_per_lane']:.1f} | {r['hbfp_ffs_per_lane']:.1f} | "
                f"{r['hbfp_dsps_per_lane']:.2f} | "
                + (f"{r['luts_ratio']:.2f}x" if r['luts_ratio'] else "-") + " | "
                + (f"{r['ffs_ratio']:.2f}x" if r['ffs_ratio'] else "-") + " |")
    for target, parts in result.get("breakdown", {}).items():
        lines += ["", f"Where the area goes ({target}):", ""]
        for name, figures in parts.items():
            text = []
            for metric, value in figures.items():
                if isinstance(value, dict):
                    text.append(f"{metric}: shared {value['shared']:.0f} + "
                                f"{value['lane']:.1f} per lane")
                elif value is not None:
                    text.append(f"{metric}: {value}")
            lines.append(f"- {name}: " + "; ".join(text))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sparsehw.experiments.hbfp_area", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sweep (m=3,7; B=2,4) for a smoke test")
    parser.add_argument("--targets", default="cmos,ecp5")
    parser.add_argument("--mant-bits", default=",".join(map(str, DEFAULT_MANT)))
    parser.add_argument("--block-sizes", default=",".join(map(str, DEFAULT_BLOCKS)))
    parser.add_argument("--mixed", action="store_true",
                        help="also synthesize the run-time mixed HBFP4/6/8 unit")
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--out", default=None, help="write the JSON result here")
    args = parser.parse_args(argv)
    mant = (7, 3) if args.quick else tuple(int(x) for x in args.mant_bits.split(","))
    blocks = (2, 4) if args.quick else tuple(int(x) for x in args.block_sizes.split(","))
    targets = tuple(t for t in args.targets.split(",") if t)
    result = run(mant_bits=mant, block_sizes=blocks, targets=targets, mixed=args.mixed,
                 breakdown=not args.no_breakdown,
                 log=lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    print(table(result))
    return result


if __name__ == "__main__":
    main()
