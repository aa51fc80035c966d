"""Chip performance run: a chain of GEMMs (K = O, batch B, the same N:M in every layer) compiled
by the golden compiler, loaded through the host port, then run by the chip's own sequencers.

Cycles are the chip's hardware counter from the start command to ``done`` (every subsystem
halted, no flit in flight). Ideal cycles = nonzero MACs / (subsystems x lanes x macs) with the
batch in one tile of ``lanes`` columns, i.e. ``layers * O * (K/m*n) / (subsystems * macs)``.
``ring_flits``, ``ring_wait_cycles`` (summed over the subsystems: cycles spent in an unsatisfied
WAIT), ``ring_busy_cycles`` (cycles with a flit in flight) come from hardware counters read
through the host port. The output is checked against the numpy chain of golden SPU GEMMs.
"""

import hashlib
import json
import time
from pathlib import Path

import cocotb
import numpy as np

from sparsehw.golden import chip as isa
from sparsehw.golden.chip_compile import GemmLayer, compile_chain, reference_chain
from sparsehw.verif import common
from sparsehw.verif.chip import (CHIP_WORKLOAD, Host, images, load_images, output_of, read_state,
                                 run_to_done, weight_words)
from sparsehw.verif.stream import start


__all__ = ["CHIP_WORKLOAD", "run_perf"]


def _model_params(p):
    return {k: v for k, v in p.items() if k in isa.CHIP_PARAMS.names}


def _chain(gen, load):
    k, n, m = load["k"], load["n"], load["m"]
    w = gen.integers(-128, 128, size=(k, k), dtype=np.int64).astype(np.int8)
    # requantization that keeps activations spread over int8 (|acc| ~ 128*64*sqrt(K*n/m))
    bias = gen.integers(-2000, 2000, size=k)
    mult = np.full(k, 1 << 10)
    shift = np.full(k, 14 + max(0, (k * n // m).bit_length() // 2))
    layer = GemmLayer(w=w, n=n, m=m, bias=bias, mult=mult, shift=shift, relu=False)
    return [layer] * load["layers"]          # tied weights: see tie_weights


def tie_weights(compiled):
    """Point every layer's GEMMs at layer 0's weight and post-op words (the perf chain's layers
    share one weight matrix and post-ops: a 4-layer MLP with tied weights), and cut the images to
    layer 0's words, so that the weight image of K = O = 1024 fits the memory. Cycles do not
    depend on the weight values."""
    from dataclasses import replace
    for s in range(compiled.subsystems):
        program = compiled.programs[s]
        gemms = [i for i in program if isinstance(i, isa.Gemm)]
        if not gemms:
            continue
        first = gemms[0]
        bpr = isa.beats_per_row(first.k, first.n_log2, first.m_log2, compiled.params["macs"])
        words, rows = first.o * bpr, first.o
        compiled.programs[s] = [replace(i, w_addr=i.w_addr % words, p_addr=i.p_addr % rows)
                                if isinstance(i, isa.Gemm) else i for i in program]
        values, indices = compiled.weights[s]
        compiled.weights[s] = (values[:words], indices[:words])
        compiled.posts[s] = tuple(a[:rows] for a in compiled.posts[s])
    return compiled


async def _measure(dut, host, p, load, gen):
    cp = _model_params(p)
    chain = _chain(gen, load)
    x = gen.integers(-128, 128, size=(load["k"], load["b"]), dtype=np.int64).astype(np.int8)
    # compiled against unbounded weight and post-op memories, then tied (the tied images are
    # checked against the real depths below)
    compiled = tie_weights(compile_chain(chain, p["subsystems"], load["mapping"],
                                         {**cp, "wmem_depth": 1 << isa.W_ADDR_BITS,
                                          "pmem_depth": isa.MAX_ROWS}, x=x))
    compiled.params = cp
    for (values, _), (bias, _, _) in zip(compiled.weights, compiled.posts):
        assert len(values) <= p["wmem_depth"], "tied weight image exceeds wmem_depth"
        assert len(bias) <= p["pmem_depth"], "tied post-op image exceeds pmem_depth"
    imgs = images(compiled, x)
    t0 = time.time()
    load_images(host, imgs)
    await host.idle()
    t1 = time.time()
    figures = await run_to_done(dut, host, timeout=50 * load["layers"] * load["k"] ** 2 + 100000)
    t2 = time.time()
    state = await read_state(host, p)
    y_rtl = output_of(compiled, state, p)
    y_ref, _ = reference_chain(chain, x)
    mismatches = int(np.count_nonzero(y_rtl != y_ref))
    S, L, P = p["subsystems"], p["lanes"], p["macs"]
    nz = load["k"] // load["m"] * load["n"]
    ideal = load["layers"] * load["k"] * nz / (S * P)     # all the chip's MACs busy
    cycles = figures["cycles"]
    per_sub = [entry["regs"] for entry in state]
    return dict(
        n=load["n"], m=load["m"],
        cycles=cycles, ideal_cycles=ideal, utilization=round(ideal / cycles, 4),
        subsystems=S, ring_flits=figures["ring_flits"],
        ring_wait_cycles=figures["ring_wait_cycles"],
        ring_busy_fraction=round(figures["ring_busy_cycles"] / cycles, 4),
        gemm_cycles=[r["gemm_cycles"] for r in per_sub],
        wait_cycles=[r["wait_cycles"] for r in per_sub],
        inject_stall_cycles=[r["inject_stall"] for r in per_sub],
        sim_cycles_per_second=round(cycles / max(t2 - t1, 1e-9)),
        load_seconds=round(t1 - t0, 1), run_seconds=round(t2 - t1, 1),
        outputs_checked=int(y_ref.size), mismatches=mismatches,
        statuses=[r["status"] for r in per_sub])


@cocotb.test()
async def chip_perf(dut):
    """One run per n:m of the workload (``ratios``, a list of [n, m], runs several in one
    simulation; internal to the sweep script), each checked against the numpy chain."""
    p = dict(common.params())
    raw = common.workload()
    ratios = raw.pop("ratios", None) or [[raw.get("n", 1), raw.get("m", 1)]]
    gen = np.random.default_rng(common.rng(7).getrandbits(32))
    await start(dut, sources=("cmd",), sinks=("rsp",))
    host = Host(dut, p, stall=0.0, salt=3)
    runs = []
    for n, m in ratios:
        load = CHIP_WORKLOAD.validate(p, **{**raw, "n": n, "m": m})
        runs.append(await _measure(dut, host, p, load, gen))
    bad = sum(r["mismatches"] for r in runs)
    if len(runs) == 1:
        common.record(**runs[0], passed=bad == 0)
    else:
        common.record(runs=runs, passed=bad == 0)
    assert bad == 0, f"{bad} output values differ from the numpy chain"


def _cache_path(params, workload, verilog):
    """The cached record of a run: keyed by the point, the chip's Verilog and the sources of the
    stimulus and its checks (this harness, ``verif.chip``, the golden chip model and compiler),
    so that an RTL or testbench change is measured again."""
    from sparsehw.golden import chip as golden_chip, chip_compile
    from sparsehw.verif.runner import REPO_ROOT
    digest = hashlib.sha256(json.dumps([params, workload], sort_keys=True).encode())
    digest.update(verilog.encode())
    for module in (__file__, Path(__file__).with_name("__init__.py"), golden_chip.__file__,
                   chip_compile.__file__):
        digest.update(Path(module).read_bytes())
    path = REPO_ROOT / "build" / "cache" / "chip_perf" / f"{digest.hexdigest()[:16]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _run_one(params, workload, *, sim, seed, build_dir):
    from sparsehw.hw.chip import Chip
    from sparsehw.hw.export import to_verilog
    from sparsehw.verif.runner import perf_record, run_cocotb
    # Verilator starts the memories at zero: leave out their all-zero initialisation (fast
    # export of the 2**16-word weight memories); Icarus would start them at X
    verilog = to_verilog(Chip(**params), "chip", zero_init=sim != "verilator")
    cache = _cache_path(params, {**workload, "seed": seed, "sim": sim}, verilog)
    if cache.exists():
        return json.loads(cache.read_text())
    result = run_cocotb(verilog, "chip", "sparsehw.verif.chip.perf_chip", build_dir=build_dir,
                        sim=sim, seed=seed, params=params, workload=workload)
    record = perf_record(result, sim=sim)
    if record["passed"]:
        cache.write_text(json.dumps(record, sort_keys=True))
    return record


#: N:M ratios of the chip sweep (docs/chip.md).
RATIOS = ((1, 1), (1, 2), (1, 4), (1, 8), (1, 16), (1, 32))


def sweep(params, workload, ratios=RATIOS, *, sim="verilator", seed=1, build_dir=None):
    """Measure every ratio that fits ``params['wmem_depth']`` in ONE simulation (one build);
    returns ``{(n, m): record}`` (each record as a single ``sparsehw perf chip`` run, without the
    baseline fields). Cached in ``build/cache/chip_perf``."""
    from sparsehw.verif.runner import new_build_dir
    fit = [[n, m] for n, m in ratios if weight_words(params, workload, n, m)
           <= params["wmem_depth"]]
    if not fit:
        return {}
    load = CHIP_WORKLOAD.validate(params, **{**workload, "n": fit[0][0], "m": fit[0][1]})
    record = _run_one(params, {**load, "ratios": fit}, sim=sim, seed=seed,
                      build_dir=build_dir or new_build_dir("perf-chip-sweep"))
    if not record.get("passed"):
        raise RuntimeError(record.get("error", "chip sweep failed"))
    return {(r["n"], r["m"]): {**r, "sim": sim, "params": params} for r in record["runs"]} \
        if "runs" in record else {(fit[0][0], fit[0][1]): record}


def run_perf(params, workload, *, sim, seed, build_dir):
    """Entry point of ``sparsehw perf chip``.

    One simulation measures every ratio of :data:`RATIOS` whose tied weights fit
    ``wmem_depth`` (the requested one included), so that a sweep over n:m costs one build; the
    records are cached. With ``baseline`` and more than one subsystem, the same workload on one
    subsystem (``wmem_depth`` raised to fit; it does not change the cycles) gives
    ``speedup_vs_1`` and ``scaling_efficiency``.
    """
    load = CHIP_WORKLOAD.validate(params, **workload)
    key = (load["n"], load["m"])

    def measure(p, subdir):
        ratios = [r for r in RATIOS if weight_words(p, load, *r) <= p["wmem_depth"]]
        if key not in ratios:
            ratios = [key]
        try:
            return sweep(p, load, ratios, sim=sim, seed=seed,
                         build_dir=Path(build_dir) / subdir)[key]
        except (RuntimeError, ValueError, KeyError) as error:
            return {"passed": False, "error": f"{type(error).__name__}: {error}"}

    record = measure(params, "run")
    record = {k: v for k, v in record.items() if k != "params"}
    if "error" in record:
        return record
    record["passed"] = record.get("mismatches", 1) == 0
    if params["subsystems"] == 1:
        record.update(speedup_vs_1=1.0, scaling_efficiency=1.0)
    elif load["baseline"]:
        need = weight_words({**params, "subsystems": 1}, load, *key)
        depth = max(params["wmem_depth"], 1 << max(1, (need - 1).bit_length()))
        one = measure({**params, "subsystems": 1, "wmem_depth": depth}, "baseline")
        if one.get("cycles"):
            speedup = one["cycles"] / record["cycles"]
            record.update(speedup_vs_1=round(speedup, 4), cycles_1=one["cycles"],
                          scaling_efficiency=round(speedup / params["subsystems"], 4))
    return record
