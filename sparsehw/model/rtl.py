"""Compiled chip programs on the chip RTL (``--engine rtl``), checked against the golden chip model.

:func:`run_phases` runs a list of phases (host images, an optional host step computed from the
banks read back after the previous phase, start, wait for ``done``) in ONE simulation of
:class:`sparsehw.hw.chip.Chip` (cocotb test :mod:`sparsehw.verif.chip.tb_program`), and the same
phases on a fresh :class:`sparsehw.golden.chip.ChipModel`; after every phase, the status word
of every subsystem and the first ``read_rows`` rows of both banks of every subsystem must be
equal (bit-exact), and the RTL's cycle counter (start to ``done``) is reported next to the
model's ``total_cycles``.

The host step of phase ``i`` is computed on each side from that side's own banks (the RTL's
read-back rows for the RTL, the model's for the model), so a wrong RTL result cannot be masked
by the model's.
"""

import pickle

import numpy as np

from sparsehw.golden import chip as isa


__all__ = ["rtl_available", "chain_phase", "run_phases", "rtl_params", "run_jobs_on_rtl",
           "run_encoder_layer_on_rtl"]


def rtl_params(params, flit_width=64):
    """The RTL's parameter dict for chip model ``params`` (ValueError when the RTL cannot build
    them: ``act_engine`` before the RTL's activation engine exists)."""
    from sparsehw.hw.chip import CHIP_RTL_PARAMS
    p = isa.chip_params(params)
    out = {k: v for k, v in p.items() if k in CHIP_RTL_PARAMS.names}
    if p.get("act_engine"):
        if "act_engine" not in CHIP_RTL_PARAMS.names:
            raise ValueError("act_engine: the chip RTL has no activation engine yet "
                             "(hw/chip builds CHIP_PARAMS only)")
        out["act_engine"] = True
    if "act_max_row" in CHIP_RTL_PARAMS.names and "act_max_row" in p:
        out["act_max_row"] = p["act_max_row"]
    out["flit_width"] = flit_width
    return CHIP_RTL_PARAMS.validate(**out)


def rtl_available(params):
    """Whether the chip RTL can build ``params`` (see :func:`rtl_params`)."""
    try:
        rtl_params(params)
    except ValueError:
        return False
    return True


def chain_phase(compiled, x):
    """One phase from a :class:`golden.chip_compile.Compiled` chain: its host images (programs,
    weights, post-ops, ``x`` into bank 0) as ``(mem, addr, words)`` entries."""
    return {"images": [[(mem, 0, words) for mem, words in mems.items()]
                       for mems in compiled.host_images(x)], "host": None}


def _model_phase(model, phase, banks):
    if phase.get("reset"):
        model.reset()
    for s, entries in enumerate(phase["images"]):
        for mem, addr, words in entries:
            if len(words):
                model.write_words(s, mem, addr, [int(w) for w in words])
    if phase.get("host") is not None:
        for s, entries in enumerate(phase["host"](banks)):
            for mem, addr, words in entries:
                model.write_words(s, mem, addr, [int(w) for w in words])
    model.run()


def run_phases(params, phases, read_rows, *, sim="verilator", seed=1, build_dir=None,
               flit_width=64, stall=0.0):
    """Run ``phases`` on the RTL and on the golden chip model; compare after every phase.

    Parameters
    ----------
    params : dict
        Chip model parameters (:data:`golden.chip.MODEL_PARAMS`).
    phases : list of dict
        ``{"images": per subsystem [(mem, addr, words)], "host": None or callable(banks) ->
        images, "reset": bool, "read_rows": int}`` (``reset``: a host reset before the phase;
        ``read_rows``: this phase's rows to compare, default ``read_rows``) (``banks``: per subsystem an int8 array ``(2, read_rows, lanes)``).
    read_rows : int
        Rows of each bank read back and compared (the rows the programs use).
    sim : {"verilator", "icarus"}

    Returns
    -------
    dict
        ``bit_exact`` (every compared row and status equal in every phase), ``mismatches``
        (messages), ``rtl_cycles`` and ``model_cycles`` per phase, ``model`` (the golden
        :class:`ChipModel` after the last phase), ``rtl_banks`` (per phase, per subsystem the
        read-back int8 banks ``(2, rows, lanes)``), ``passed`` and ``error`` of the simulation.
    """
    from sparsehw.hw.chip import Chip
    from sparsehw.hw.export import to_verilog
    from sparsehw.verif.runner import new_build_dir, run_cocotb
    p = isa.chip_params(params)
    rp = rtl_params(p, flit_width)
    lanes = p["lanes"]
    build_dir = build_dir or new_build_dir("chip-program")
    job_file = build_dir / "job.pkl"
    out_file = build_dir / "out.pkl"
    job_file.write_bytes(pickle.dumps({"phases": phases, "read_rows": read_rows}))
    # Verilator starts the memories at zero: leave out their all-zero initialisation (the
    # 2**20-word weight memories' would take minutes to export); Icarus would start them at X
    verilog = to_verilog(Chip(**rp), "chip", zero_init=sim != "verilator")
    result = run_cocotb(verilog, "chip", "sparsehw.verif.chip.tb_program", build_dir=build_dir,
                        sim=sim, seed=seed, params=rp,
                        workload={"job": str(job_file), "out": str(out_file), "stall": stall})
    if not result.passed or not out_file.exists():
        return {"passed": False, "bit_exact": False,
                "error": "; ".join(result.errors) or f"simulation failed (see {result.log})"}
    rtl = pickle.loads(out_file.read_bytes())
    model = isa.ChipModel(p)
    mismatches, model_cycles, model_banks = [], [], None
    for i, (phase, got) in enumerate(zip(phases, rtl)):
        _model_phase(model, phase, model_banks)
        model_cycles.append(int(model.stats["total_cycles"]))
        rows = phase.get("read_rows", read_rows)
        model_banks = [sub.banks[:, :rows].copy() for sub in model.subs]
        rtl_banks = _banks(got["banks"], lanes, rows)
        for s in range(p["subsystems"]):
            want = model.status(s).word
            if got["regs"][s]["status"] != want:
                mismatches.append(f"phase {i + 1} subsystem {s}: status {got['regs'][s]['status']:#x}, "
                                  f"model {want:#x} ({model.status(s)})")
            diff = np.argwhere(rtl_banks[s] != model_banks[s])
            if len(diff):
                b, r, _ = diff[0]
                mismatches.append(f"phase {i + 1} subsystem {s}: {len(diff)} bytes differ, first "
                                  f"bank {b} row {r}")
        # the next host step reads the model's own banks on the model side (see module docstring)
    return {"passed": True, "bit_exact": not mismatches, "mismatches": mismatches,
            "rtl_cycles": [int(r["chip"]["cycles"]) for r in rtl], "model_cycles": model_cycles,
            "rtl_chip": [r["chip"] for r in rtl], "rtl_regs": [r["regs"] for r in rtl],
            "model": model, "rtl_banks": [_banks(r["banks"], lanes, phase.get("read_rows", read_rows))
                                          for r, phase in zip(rtl, phases)],
            "sim": sim, "build_dir": str(build_dir)}


def _banks(words, lanes, rows):
    out = []
    for sub in words:
        arr = np.zeros((2, rows, lanes), np.int8)
        for b, bank in enumerate(sub):
            if bank:
                arr[b] = np.array([isa.unpack_row(w, lanes) for w in bank], np.int8)
        out.append(arr)
    return out


def run_jobs_on_rtl(jobs, subsystems=4, *, sim="verilator", build_dir=None):
    """Recorded weight GEMMs (the integer engine's jobs: int8 ``w``, ``x``, post-ops, ``y``),
    each compiled alone (golden.chip_compile, model-parallel over ``subsystems``) and run as one
    phase (after a host reset) of ONE RTL simulation of a chip big enough for all of them.

    Returns ``{"bit_exact_vs_golden_chip", "bit_exact_vs_integer_engine", "gemms": {name:
    {"rtl_cycles", "model_cycles", "bit_exact"}}, "params", "sim"}``; raises ValueError when a
    job has more tokens than one compiled chain holds.
    """
    from sparsehw.golden.chip_compile import compile_chain
    from sparsehw.model.quantize import gemm_layer
    from sparsehw.model.run import chip_params_for
    params = {}
    for job in jobs.values():
        p, chunk = chip_params_for(job, subsystems)
        if job["x"].shape[1] > chunk:
            raise ValueError(f"{job['x'].shape[1]} tokens: one chain holds at most {chunk}")
        params = {k: max(v, params.get(k, v)) for k, v in p.items()}
    phases, compiled_of = [], {}
    for name, job in jobs.items():
        compiled = compile_chain([gemm_layer(job)], subsystems, "model", params, x=job["x"])
        o, k = job["w"].shape
        phase = chain_phase(compiled, job["x"])
        phase.update(reset=True, read_rows=compiled.tiles * max(o, k))
        phases.append(phase)
        compiled_of[name] = compiled
    result = run_phases(params, phases, 0, sim=sim, build_dir=build_dir)
    if not result.get("passed"):
        raise RuntimeError(f"RTL run failed: {result.get('error')}")
    gemms = {}
    for i, (name, compiled) in enumerate(compiled_of.items()):
        y = compiled.read_output(result["rtl_banks"][i])
        gemms[name] = {"rtl_cycles": result["rtl_cycles"][i],
                       "model_cycles": result["model_cycles"][i],
                       "bit_exact": bool(np.array_equal(y, jobs[name]["y"]))}
    return {"bit_exact_vs_golden_chip": result["bit_exact"],
            "mismatches": result["mismatches"][:6],
            "bit_exact_vs_integer_engine": all(g["bit_exact"] for g in gemms.values()),
            "gemms": gemms, "params": params, "sim": sim}


def used_rows(programs):
    """One past the highest bank row any instruction of ``programs`` (lists of instructions)
    reads or writes: the rows worth reading back."""
    top = 0
    for program in programs:
        for i in program:
            if isinstance(i, isa.Gemm):
                top = max(top, i.x_addr + i.k, i.d_addr + i.o)
            elif isinstance(i, isa.Act):
                top = max(top, i.s_addr + i.count, i.d_addr + i.count, i.b_addr + i.count)
            elif isinstance(i, isa.Send):
                top = max(top, i.s_addr + i.count, i.r_addr + i.count)
    return top


def _pow2(v, low=2):
    return max(low, 1 << max(0, (int(v) - 1).bit_length()))


def fitted_params(params, programs):
    """``params`` with the memories cut to what ``programs`` touch (powers of two): the RTL's
    Verilog and simulation shrink (MiniLM's layer compiles against 2**20-word weight memories
    but touches far fewer); the golden model runs with the same parameters."""
    p = isa.chip_params(params)
    wtop = ptop = 0
    for program in programs:
        for i in program:
            if isinstance(i, isa.Gemm):
                bpr = isa.beats_per_row(i.k, i.n_log2, i.m_log2, p["macs"])
                wtop = max(wtop, i.w_addr + i.o * bpr)
                ptop = max(ptop, i.p_addr + i.o)
            elif isinstance(i, isa.Act) and i.op == isa.ACT_OPS["layernorm"]:
                ptop = max(ptop, i.p_addr + i.count)
    return {**p, "wmem_depth": min(p["wmem_depth"], _pow2(wtop)),
            "pmem_depth": min(p["pmem_depth"], _pow2(ptop)),
            "imem_depth": min(p["imem_depth"], _pow2(max(len(prog) for prog in programs))),
            "bank_rows": min(p["bank_rows"], _pow2(used_rows(programs), p["max_k"]))}


def run_encoder_layer_on_rtl(enc, x, subsystems=4, params=None, *, sim="verilator",
                             build_dir=None):
    """An :class:`golden.chip_compile.EncoderLayer` compiled whole and run on the chip RTL in two
    phases (the host step between them computed from the RTL's own read-back banks), each
    compared bit-exactly with the golden chip model; needs the RTL's activation engine
    (:func:`rtl_available`). Returns ``{"bit_exact", "y", "rtl_cycles", "model_cycles",
    "mismatches"}`` (``y``: the layer's output as read back from subsystem 0 of the RTL)."""
    from sparsehw.golden.chip_compile import compile_encoder_layer
    x = np.asarray(x)
    compiled = compile_encoder_layer(enc, x.shape[1], subsystems, params)
    rows = min(compiled.params["bank_rows"], used_rows(compiled.phase1 + compiled.phase2))
    phases = [{"images": compiled.phase_images(1, x), "host": None},
              {"images": compiled.phase_images(2), "host": compiled.host_images}]
    fitted = fitted_params(compiled.params, compiled.phase1 + compiled.phase2)
    result = run_phases(fitted, phases, rows, sim=sim, build_dir=build_dir)
    if not result.get("passed"):
        raise RuntimeError(f"RTL run failed: {result.get('error')}")
    y = compiled._tensor(result["rtl_banks"][-1][0], "y", compiled.addr["h"])
    return {"bit_exact": result["bit_exact"], "y": y, "rtl_cycles": result["rtl_cycles"],
            "model_cycles": result["model_cycles"], "mismatches": result["mismatches"][:6]}
