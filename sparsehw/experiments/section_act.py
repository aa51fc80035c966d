"""Report section of the act family: throughput, latency and RTL accuracy per operation, the
kernels' accuracy next to I-BERT's, area (whole engine and one operation each)."""

from sparsehw.experiments.sections import Section, _area_lines, _cmd, find, table
from sparsehw.golden import act as golden


_QUICK = {"lanes": 4, "max_row": 32}


def _points(quick):
    params = _QUICK if quick else {}
    load = {"n": 16, "rows": 1} if quick else {}
    sim = "icarus" if quick else "verilator"
    ops = ("gelu", "softmax", "layernorm") if quick else golden.OPS
    points = [{"kind": "perf", "block": "act_engine", "params": params, "sim": sim,
               "workload": {"op": op, **load}} for op in ops]
    synth = [{"lanes": 1, "max_row": 8, "ops": "log2"}] if quick else [{}] + [{"ops": op} for op in golden.OPS]
    targets = ("cmos",) if quick else ("cmos", "ecp5")
    points += [{"kind": "synth", "block": "act_engine", "params": p, "target": t}
               for p in synth for t in targets]
    return points


def _render(results, plot_dir, quick):
    rows = []
    for op in golden.OPS:
        result = find(results, "perf", block="act_engine", workload={"op": op})
        if result is None:
            continue
        r = result["record"]
        rows.append([op, r["n"], r["rows"], r["elements_per_cycle"], r["utilization"],
                     r["latency"], r["max_abs_error"], r["rms_error"], _cmd(result)])
    lines = ["Throughput and accuracy of the RTL (outputs in real units against float64; formats "
             "in `verif/act/__init__.py` PERF_FORMATS). Utilization is against `lanes` elements "
             "per cycle (element-wise) or the three-pass (softmax) / two-pass (layernorm) "
             "minimum.", ""]
    lines += table(["op", "n", "rows", "elements/cycle", "utilization", "latency", "max abs",
                    "RMS", "command"], rows)
    measured = golden.measure_errors()
    lines += ["", "Kernel accuracy (golden/act.py, `golden.act.measure_errors()`) next to "
              "I-BERT's published formulas:", ""]
    lines += table(["kernel", "ours", "I-BERT", "range"], [
        ["GELU", f"max {measured['gelu']['max_abs']:.2g}, RMS {measured['gelu']['rms']:.2g}",
         "max 0.018, RMS 0.0082", measured["gelu"]["range"]],
        ["exp", f"max rel {measured['exp']['max_rel']:.2g}", "max rel 0.0031",
         "(-ln 2, 0]"],
        ["log2", f"max {measured['log2']['max_abs']:.2g}", "-", measured["log2"]["range"]],
        ["recip", f"max {measured['recip_op']['max_abs']:.2g}", "-",
         measured["recip_op"]["range"]],
        ["softmax", f"max {measured['softmax']['max_abs']:.2g}, sum {measured['softmax']['sum']:.2g}",
         "-", measured["softmax"]["range"]],
        ["layernorm", f"max {measured['layernorm']['max_abs']:.2g}", "-",
         measured["layernorm"]["range"]],
    ])
    return lines + [""] + _area_lines(results, ("act_engine",)) + [""]


SECTION = Section("act", "Activation engine: integer GELU, exp, log2, recip, softmax, LayerNorm",
                  ("act_engine",), _points, _render)
