"""Per-operator calibration of the golden chip cycle model against the chip RTL.

Each operator kind runs as its own phase of ONE RTL simulation (:func:`sparsehw.model.rtl.
run_phases`; every phase is also checked bit-exact against the golden chip model): the RTL's
cycle counter (start command to ``done``) next to the model's ``total_cycles``
(:data:`sparsehw.golden.chip.CYCLE_COSTS`).

Kinds
    ``weight_gemm``: one subsystem, one N:M GEMM per tile of ``lanes`` tokens, local write
    (the weight GEMMs of a layer); ``activation_gemm``: the same instruction dense (1:1) at the
    attention's small shapes (K = head dimension; the scores and context products read their
    "weights" from the weight memory); ``ring``: a two-GEMM chain on every subsystem,
    model-parallel (every output row all-gathered over the ring, WAIT between the layers);
    ``send``: one subsystem SENDs rows to the three others, which WAIT for them.
    ``act_*``: one ACT instruction (gelu, exp, softmax, layernorm, the residual add) on one
    subsystem (chips with ``act_engine``).

>>> rows = calibrate()          # doctest: +SKIP
"""

import numpy as np

from sparsehw.golden import chip as isa
from sparsehw.golden.chip_compile import GemmLayer, compile_chain


__all__ = ["CALIB_PARAMS", "CALIB_PARAMS_L16", "calibration_cases", "calibrate"]


#: A small chip (Icarus-friendly) with the reference SPU shape (lanes 4, macs 2, act_rows 2).
CALIB_PARAMS = dict(subsystems=4, lanes=4, macs=2, max_m=32, act_rows=2, max_k=256,
                    bank_rows=1024, imem_depth=64, wmem_depth=4096, pmem_depth=512,
                    act_engine=True, act_max_row=64)
#: The same small chip at the S4 figure's ``lanes`` 16 (:data:`sparsehw.model.figure.
#: MINILM_CHIP`): 16 tokens per bank row, the activation engine's row ops one engine command per
#: lane (16 per ACT).
CALIB_PARAMS_L16 = dict(CALIB_PARAMS, lanes=16)


def _layer(gen, k, o, n, m):
    w = gen.integers(-128, 128, size=(o, k)).astype(np.int8)
    return GemmLayer(w=w, n=n, m=m, bias=gen.integers(-2000, 2000, size=o),
                     mult=np.full(o, 1 << 10), shift=np.full(o, 16), relu=False)


def _chain_case(gen, p, kind, layers, batch, used, mapping="model"):
    x = gen.integers(-128, 128, size=(layers[0].k, batch)).astype(np.int8)
    compiled = compile_chain(layers, used, mapping, p, x=x)
    what = " -> ".join(f"{l.k}x{l.o} {l.n}:{l.m}" for l in layers)
    return {"kind": kind, "shape": f"{what}, {batch} tokens, {used} subsystem(s)",
            "images": [[(mem, 0, words) for mem, words in mems.items()]
                       for mems in compiled.host_images(x)]}


def _send_case(gen, p, count):
    S = p["subsystems"]
    rows = gen.integers(-128, 128, size=(count, p["lanes"])).astype(np.int8)
    images = [[(isa.MEM_IMEM, 0, [isa.encode(isa.Send(s_bank=0, s_addr=0, count=count,
                                                      mask=((1 << S) - 1) & ~1, r_bank=1,
                                                      r_addr=0)), isa.encode(isa.Halt())]),
               (isa.MEM_BANK0, 0, [isa.pack_row(r) for r in rows])]]
    for _ in range(1, S):
        images.append([(isa.MEM_IMEM, 0, [isa.encode(isa.Wait(bank=1, count=count)),
                                          isa.encode(isa.Halt())])])
    return {"kind": "send", "shape": f"{count} rows from subsystem 0 to {S - 1} others",
            "images": images}


def _act_case(gen, p, name, count, *, same_bank=False, low=-128, **fields):
    """One ACT on subsystem 0 (the others halt): source rows in bank 0 from row 0 (int8 codes
    from ``low``), the result in bank 1 from row 0; ``add``'s second operand from row 512 of
    bank 1 (bank 0 with ``same_bank``); layernorm's gamma/beta from post-op word 0."""
    S, lanes = p["subsystems"], p["lanes"]
    a = gen.integers(low, 128, size=(count, lanes)).astype(np.int8)
    if low == -127:                  # recip: no zero code (its domain error)
        a[a == 0] = 1
    b = gen.integers(-128, 128, size=(count, lanes)).astype(np.int8)
    b_bank, b_addr = ((0, 512) if same_bank else (1, 512)) if name == "add" else (0, 0)
    instr = isa.Act(op=isa.ACT_OPS[name], s_bank=0, s_addr=0, d_bank=1, d_addr=0, count=count,
                    b_bank=b_bank, b_addr=b_addr, **fields)
    mems = [(isa.MEM_IMEM, 0, [isa.encode(instr), isa.encode(isa.Halt())]),
            (isa.MEM_BANK0, 0, [isa.pack_row(r) for r in a])]
    if name == "add":
        mems.append((isa.MEM_BANK0 if same_bank else isa.MEM_BANK1, b_addr,
                     [isa.pack_row(r) for r in b]))
    if name == "layernorm":
        gamma = gen.integers(2048, 6144, size=count)
        beta = gen.integers(-200, 200, size=count)
        mems.append((isa.MEM_PMEM, 0, [isa.pack_post(int(g) & 0xFFFF | (int(be) & 0xFFFF) << 16,
                                                     0, 0) for g, be in zip(gamma, beta)]))
    images = [mems] + [[(isa.MEM_IMEM, 0, [isa.encode(isa.Halt())])] for _ in range(1, S)]
    return {"kind": f"act_{name}", "shape": f"{count} rows{' (both operands in one bank)' if same_bank else ''}",
            "images": images}


def calibration_cases(params=CALIB_PARAMS, seed=13):
    """The operator cases: ``[{"kind", "shape", "images"}]`` (see the module docstring)."""
    gen = np.random.default_rng(seed)
    p = isa.chip_params(params)
    cases = []
    for n, m in ((1, 1), (1, 4), (1, 16)):
        cases.append(_chain_case(gen, p, "weight_gemm", [_layer(gen, 128, 64, n, m)], 16, 1))
    for k, o in ((32, 32), (32, 64), (64, 32)):
        cases.append(_chain_case(gen, p, "activation_gemm", [_layer(gen, k, o, 1, 1)], 16, 1))
    for n, m in ((1, 1), (1, 8)):
        cases.append(_chain_case(gen, p, "ring", [_layer(gen, 128, 128, n, m),
                                                  _layer(gen, 128, 64, n, m)], 16, 4))
    for count in (64, 256):
        cases.append(_send_case(gen, p, count))
    if p["act_engine"]:
        for count in (64, 256):
            cases.append(_act_case(gen, p, "gelu", count, fin=5, fout=8, oshift=3))
        cases.append(_act_case(gen, p, "exp", 256, fin=5, fout=8, oshift=3))
        for count in (32, 64):
            cases.append(_act_case(gen, p, "softmax", count, fin=3, fout=15, oshift=8))
            cases.append(_act_case(gen, p, "layernorm", count, fout=8, oshift=3))
        cases.append(_act_case(gen, p, "add", 256, oshift=1))
        cases.append(_act_case(gen, p, "add", 256, oshift=1, same_bank=True))
        # after the others (the seed's earlier cases unchanged): log2 of positive codes, recip
        # of nonzero codes (no domain errors)
        cases.append(_act_case(gen, p, "log2", 256, low=1, fin=5, fout=8, oshift=3))
        cases.append(_act_case(gen, p, "recip", 256, low=-127, fin=5, fout=8, oshift=3))
    return cases


def calibrate(params=CALIB_PARAMS, *, sim="icarus", seed=13, build_dir=None, kinds=None):
    """Run :func:`calibration_cases` (only those whose kind is in ``kinds``, if given) on the
    RTL and the golden model.

    Returns
    -------
    dict
        ``rows``: per case ``kind``, ``shape``, ``rtl_cycles``, ``model_cycles``, ``error``
        (model / RTL - 1); ``bit_exact`` (every phase); ``mismatches``; ``passed``.
    """
    from sparsehw.model.rtl import run_phases
    cases = [c for c in calibration_cases(params, seed) if kinds is None or c["kind"] in kinds]
    result = run_phases(params, [{"images": c["images"], "host": None, "reset": True}
                                  for c in cases],
                        512, sim=sim, build_dir=build_dir)
    if not result.get("passed"):
        return {"passed": False, "error": result.get("error"), "rows": []}
    rows = [{"kind": c["kind"], "shape": c["shape"], "rtl_cycles": r, "model_cycles": mo,
             "error": round(mo / r - 1, 4)}
            for c, r, mo in zip(cases, result["rtl_cycles"], result["model_cycles"])]
    return {"passed": True, "bit_exact": result["bit_exact"],
            "mismatches": result["mismatches"], "rows": rows}


def main(argv=None):
    """``python -m sparsehw.model.calibrate [--lanes 4|16] [--json FILE]``: one Icarus
    simulation, the table rows as JSON."""
    import argparse
    import json
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, choices=(4, 16), default=4)
    parser.add_argument("--json")
    parser.add_argument("--kinds", nargs="*", help="only these kinds (e.g. act_log2 act_recip)")
    args = parser.parse_args(argv)
    result = calibrate(CALIB_PARAMS if args.lanes == 4 else CALIB_PARAMS_L16, kinds=args.kinds)
    result = {k: v for k, v in result.items() if k != "model"}
    text = json.dumps(result, indent=1, default=str)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    print(text)
    return 0 if result.get("passed") else 1


if __name__ == "__main__":
    raise SystemExit(main())
