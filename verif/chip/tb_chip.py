"""cocotb regression of the chip (and of one subsystem: ``subsystems=1``) against the golden chip
model (:class:`sparsehw.golden.chip.ChipModel`) and a plain numpy chain of golden SPU GEMMs.

Programs and memory images come from the golden compiler (:mod:`sparsehw.golden.chip_compile`)
and are loaded through the host port with random stalls on the command and response streams.
After each run every row of both banks of every subsystem and every status word are read back
through the host port and compared with the golden model's; the chain's output is compared with
:func:`sparsehw.golden.chip_compile.reference_chain`. Every error code is provoked, each followed
by a host reset and a correct run. ``chip_imem_written_while_running`` rewrites a running
subsystem's next instructions (already prefetched) and checks the new ones run.
``chip_malformed_weight_indices`` puts every kind of malformed weight index (out of its group,
equal in a beat, not ascending across the two beats of a group) between well-formed rows of one
GEMM per subsystem; ``chip_memories_round_trip`` writes random full-width words (every bit,
also those no legal instruction sets) into every memory through the host port and reads them
back. ``chip_wait_cycles`` requires the cycles of programs around a WAIT (satisfied when it
issues; blocked on another subsystem's rows) to equal the golden cycle model's;
``chip_long_run_counters`` runs more than ``2**14`` cycles and reads every subsystem's ``cycles``
register with the response held 1 to 4 cycles; ``chip_ring_back_pressure`` sends rows to a
subsystem whose own GEMM holds its ejection port off, so the ring's ejection buffer and the
sender's injection queue fill; ``chip_gemm_back_pressure`` sends GEMM output rows through a
ring backed up that way, so that the senders' SPU output streams are held off.
``chip_exact_accumulators`` runs GEMMs of multi-beat rows whose
post-op (bias 0, multiplier 1, shift 0, small operands) shows every accumulator bit.
``chip_send_fields`` runs SENDs whose count, source and destination take every bit value a legal
SEND can, on every subsystem at once; ``chip_send_to_no_subsystem`` requires a SEND with mask 0
to take no row time; ``chip_ring_busy_cycles`` has one subsystem send 4096 flits
and more alone and requires ``ring_flits <= ring_busy_cycles <= cycles``. ``chip_ring_symmetry``
checks timing that no result shows by symmetry: node numbers rotated by the ring's symmetry
(:func:`ring_symmetry`), the same SEND traffic (every subsystem to one receiver, each in turn;
every subsystem to every one) must give the same counters, rotated.

With ``act_engine``, ``chip_act_programs`` runs random programs of ACT instructions (every op,
random counts, addresses, formats, in place and into the other bank, layernorm with random
gamma/beta, softmax on all-equal and saturated columns) mixed with GEMM, SEND and WAIT, and the
error test also provokes every ACT error code.

``chip_gemm_cycles`` runs 2-layer chains at every 1:M where the golden cycle model is exact
and requires the chip's ``cycles`` to equal the model's. After every run without an error the
subsystems' ``flits_sent`` and ``rows_received`` and the chip's ``ring_flits`` equal the counts
of the instructions the model executed (:func:`verif.chip.ring_traffic`).

With ``SPARSEHW_FAIL_FAST=1`` (``sparsehw mutate``) the tests after the first failing one
return at once (:func:`verif.common.test`).

Without ``act_engine``, ``chip_programs`` runs the same programs without their ACTs (a GEMM, a
SEND from a random row of bank 0 or 1 turning by program, a WAIT, HALT on every subsystem;
destinations own, one other, several), a host reset before each after the first.

Workload knobs: ``chains`` (random chains in the first test, default 3), ``max_layers``
(default 4), ``stall`` (host stream stall probability, default 0.3), ``reset_chains`` (correct
chains the error test runs after a host reset: after the ``opcode`` and the ``deadlock`` case,
default 2), ``programs`` (random programs of ``chip_programs`` / ``chip_act_programs``, default
3), ``acts`` (ACT instructions per program phase, default 4).

The mutation subset (``sparsehw mutate chip`` runs it on every mutant: the knobs
``verif.chip.MUTATION_WORKLOAD``, the chip's registry ``mutation_workload``): two random chains
of three layers instead of three (still every group size M, every density, the corrupted weight
word, both mappings, the program read-back), no correct chain after the error test's resets
(``chip_programs``' second program runs after a host reset instead), two GEMM/SEND/WAIT programs
instead of three (every destination kind of both), the GEMM cycle chains; every error code,
every instruction kind, the rewrite of a running program, the malformed weight indices, the
memories' round trip, the WAIT cycles, the long-run counters, the ring back-pressure (of
SENDs and of GEMM outputs), the exact accumulators, the SEND fields, the SEND to no subsystem,
the ring's busy cycles, the ring's symmetry and (with ``act_engine``) every ACT test as in the
full regression, with the same checks against the golden model; about four fifths of the full
regression's cycles at the mutation point (docs/chip.md). Its mutation score is a lower bound
of the full regression's.
"""

from dataclasses import replace

import numpy as np

from sparsehw.golden import chip as isa
from sparsehw.golden.chip import Act, ChipModel, Gemm, Halt, Send, Wait
from sparsehw.golden.chip_compile import compile_chain, reference_chain
from sparsehw.golden.ring import route
from sparsehw.hw.chip import CHIP_RTL_PARAMS, REG_NAMES, REGS_MEM
from sparsehw.hw.chip.subsystem import mem_depths
from sparsehw.verif import common
from sparsehw.verif.chip import (Host, compare_state, images, load_images, load_model,
                                 output_of, random_chain, random_layer, read_state, run_to_done)
from sparsehw.verif.chip.cover import ChipCoverage, expected_errors
from sparsehw.verif.stream import start


def _params():
    return CHIP_RTL_PARAMS.validate(**common.params())


def _model_params(p):
    return {k: v for k, v in p.items() if k in isa.MODEL_PARAMS.names}


def _clear_banks(host, p):
    """Zero both banks of every subsystem (a previous test in the same simulation used them),
    so that the RTL starts from the golden model's initial state."""
    for s in range(p["subsystems"]):
        for mem in (isa.MEM_BANK0, isa.MEM_BANK1):
            host.write(s, mem, 0, [0] * p["bank_rows"])


def _knob(name, default):
    return type(default)(common.workload().get(name, default))


def _random_rows(gen, p, n, operands=(-128, 128)):
    """``n`` packed bank rows of ``lanes`` values random in ``operands`` (``[lo, hi)``,
    default every int8)."""
    return [isa.pack_row(r) for r in gen.integers(*operands, (n, p["lanes"]))]


async def _bench(dut, p, *, stream, salt, stall=None):
    """Start the clock and the host's streams; returns the test's random generator (random
    stream ``stream``), the :class:`Host` (stall probability ``stall``, default the ``stall``
    knob; its stalls drawn with ``salt``) and a fresh golden model."""
    await start(dut, sources=("cmd",), sinks=("rsp",))
    gen = np.random.default_rng(common.rng(stream).getrandbits(32))
    host = Host(dut, p, stall=_knob("stall", 0.3) if stall is None else stall, salt=salt)
    return gen, host, ChipModel(_model_params(p))


async def _run_and_check(dut, host, model, p, imgs, what, *, timeout=200000, banks=True):
    """Load ``imgs`` into the chip and the model, run both, compare; returns (state, model)."""
    load_images(host, imgs)
    load_model(model, imgs)
    figures = await run_to_done(dut, host, timeout)
    model.run()
    ChipCoverage.get(p).sample(model)
    state = await read_state(host, p, banks=banks)
    problems = compare_state(state, model, p, banks=banks, chip_regs=figures)
    assert not problems, f"{what}: " + "; ".join(problems[:6])
    return state, figures


async def _check_chain(dut, host, model, p, gen, *, layers, used, mapping, batch, corrupt=False,
                       ms=None):
    cp = _model_params(p)
    for _ in range(50):            # redraw until the images fit the memories
        chain = random_chain(gen, cp, layers=layers, subsystems=used, batch=batch, ms=ms)
        x = gen.integers(-128, 128, size=(chain[0].k, batch), dtype=np.int64).astype(np.int8)
        try:
            compiled = compile_chain(chain, used, mapping, cp, x=x)
            break
        except ValueError as error:
            last = error
    else:
        raise AssertionError(f"no random chain fits the memories: {last}")
    imgs = images(compiled, x)
    what = (f"chain of {layers} ({', '.join(f'{l.k}x{l.o} {l.n}:{l.m}' for l in chain)}), "
            f"{mapping}-parallel on {used} of {p['subsystems']}, batch {batch}")
    if corrupt:
        # a malformed index in subsystem 0's first weight word: its row is zeroed, row_error set
        words = imgs[0][isa.MEM_WMEM]
        values, indices = isa.unpack_w(words[0], cp)
        n, m = chain[0].n, chain[0].m
        if m < p["max_m"]:
            indices[0] = m                     # out of the group
        elif n > 1 and p["macs"] > 1:
            indices[1] = indices[0]            # not ascending
        else:
            corrupt = False
        words[0] = isa.pack_w(values, indices, cp)
        what += ", corrupted weight word 0"
    state, figures = await _run_and_check(dut, host, model, p, imgs, what)
    if not corrupt:
        y_rtl = output_of(compiled, state, p)
        y_ref, _ = reference_chain(chain, x)
        assert np.array_equal(y_rtl, y_ref), f"{what}: output differs from the numpy chain"
    else:
        assert any(model.status(s).row_error for s in range(p["subsystems"])), what
    dut._log.info(f"{what}: ok in {figures['cycles']} cycles, {figures['ring_flits']} flits")
    return figures


def _group_sizes(gen, p):
    """Group sizes M for successive layers: every power of two up to ``max_m`` in a random
    order, then again in another, and so on."""
    sizes = [1 << e for e in range(p["max_m"].bit_length())]
    while True:
        yield from (int(m) for m in gen.permutation(sizes))


@common.test()
async def chip_random_chains(dut):
    """Random chains of 1..max_layers GEMMs, random shapes, every group size M, random N, both
    mappings, random number of subsystems used (the first chain: all, batch one whole tile),
    random batch, random host stalls; final banks, statuses and
    GEMM counters equal the golden model; then the program memories read back as loaded."""
    p = _params()
    gen, host, model = await _bench(dut, p, stream=1, salt=10)
    _clear_banks(host, p)
    group_sizes = _group_sizes(gen, p)
    chains = _knob("chains", 3)
    for c in range(chains):
        used = int(gen.integers(1, p["subsystems"] + 1)) if c else p["subsystems"]
        # the first and the last chain at full length, so that two chains of max_layers
        # layers run every group size M when 2 * max_layers >= log2(max_m) + 1
        layers = _knob("max_layers", 4) if c in (0, chains - 1) else \
            int(gen.integers(1, _knob("max_layers", 4) + 1))
        # every third chain data-parallel; of two chains, the second
        data = c % 3 == 2 or (chains == 2 and c == 1)
        # the first chain one whole tile (batch = lanes): every lane of every X word that
        # every subsystem reads, from either bank, carries data
        batch = p["lanes"] if c == 0 else int(gen.integers(1, 2 * p["lanes"] + 1))
        await _check_chain(dut, host, model, p, gen, layers=layers, used=used,
                           mapping="data" if data else "model", batch=batch,
                           corrupt=(c == 1), ms=[next(group_sizes) for _ in range(layers)])
    # the host's read path of the program memories: the last chain's imem, wmem and pmem words
    state = await read_state(host, p, banks=False, programs=True)
    problems = compare_state(state, model, p, banks=False)
    assert not problems, "program memories read back: " + "; ".join(problems[:6])
    ChipCoverage.get(p).report(host, dut._log)


def _gemm_error_programs(p):
    """(name, program) for every error of the chip without the activation engine."""
    S = p["subsystems"]
    rows = p["bank_rows"]
    R = p["act_rows"]
    k = max(p["max_m"], R)
    ok = dict(x_bank=0, x_addr=0, w_addr=0, p_addr=0, n_log2=0, m_log2=0, k=k, o=1, relu=0,
              d_bank=1, d_addr=0, mask=1)

    def gemm(**kw):
        return Gemm(**{**ok, **kw})
    cases = [
        ("opcode", [0x7]),
        ("act (reserved opcode)", [isa.OP_ACT]),
        ("reserved bit", [isa.encode(Halt()) | 1 << 100]),
        ("n > m", [gemm(n_log2=1, m_log2=0)]),
        ("m > max_m", [gemm(m_log2=isa.idx_bits(p) + (p["max_m"] > 1))]),
        ("k = 0", [gemm(k=0)]),
        ("k > max_k", [gemm(k=2 * p["max_k"])]),
        ("o = 0", [gemm(o=0)]),
        ("x_addr misaligned", [gemm(x_addr=1)] if R > 1 else None),
        ("source rows", [gemm(x_addr=rows - R, k=2 * k)] if 2 * k <= p["max_k"] else None),
        ("weight range", [gemm(w_addr=p["wmem_depth"] - 1, o=2)]),
        ("post range", [gemm(p_addr=p["pmem_depth"] - 1, o=2)]),
        ("destination rows", [gemm(d_addr=rows - 1, o=2)]),
        ("node", [gemm(mask=1 << S)] if S < 16 else None),
        ("send source", [Send(s_addr=rows - 1, count=2, mask=1)]),
        ("send destination", [Send(r_addr=rows - 1, count=2, mask=1)]),
        ("send node", [Send(count=1, mask=1 << S)] if S < 16 else None),
        ("pc", [Wait(bank=0, count=0)] * p["imem_depth"]),
        ("deadlock", [Wait(bank=1, count=1), Halt()]),
    ]
    return [(name, prog) for name, prog in cases if prog is not None]


@common.test()
async def chip_every_error_then_reset(dut):
    """Each error code on a random subsystem (the others run a correct short program or halt):
    state, code and pc as the golden model; then a host reset and a correct chain."""
    p = _params()
    gen, host, model = await _bench(dut, p, stream=2, salt=20)
    _clear_banks(host, p)
    seen = set()
    want = {name: code for name, _, code in _act_errors(p)} if p["act_engine"] else {}
    for name, prog in _error_programs(p):
        bad = int(gen.integers(0, p["subsystems"]))
        words = [w if isinstance(w, int) else isa.encode(w) for w in prog]
        imgs = []
        for s in range(p["subsystems"]):
            if s == bad:
                imgs.append({isa.MEM_IMEM: words + [0] * (p["imem_depth"] - len(words))})
            else:
                imgs.append({isa.MEM_IMEM: [isa.encode(Halt())]})
        await _run_and_check(dut, host, model, p, imgs, f"error case {name!r}", timeout=20000,
                             banks=False)
        code = model.status(bad).error
        assert code != 0, f"case {name!r} provokes no error in the golden model"
        assert code == want.get(name, code), \
            f"case {name!r}: the golden model reports {code}, the case is for {want[name]}"
        seen.add(code)
        host.reset()
        model.reset()
        # after the reset, the statuses read IDLE and every counter 0, and a correct chain runs
        state = await read_state(host, p, banks=False)
        for s, entry in enumerate(state):
            nonzero = {name: value for name, value in entry["regs"].items() if value}
            assert not nonzero, f"after reset: subsystem {s} registers {nonzero} not 0"
        if name in ("opcode", "deadlock")[:_knob("reset_chains", 2)]:
            await _check_chain(dut, host, model, p, gen, layers=2, used=p["subsystems"],
                               mapping="model", batch=p["lanes"])
        if name in ("act op 7", "act overlap"):
            await _run_and_check(dut, host, model, p, _act_program_images(gen, p, acts=2),
                                 f"ACT program after {name!r} and a reset")
    ChipCoverage.get(p).report(host, dut._log)
    expected = expected_errors(p)
    assert seen >= expected, f"codes not provoked: {sorted(expected - seen)}"


@common.test()
async def chip_imem_written_while_running(dut):
    """The host rewrites the next instructions of a subsystem that is running (waiting on a
    WAIT at pc 0; its sequencer has already prefetched the old pc 1): the new instructions
    run, not the prefetched ones. Subsystem 1 keeps subsystem 0 waiting with long SENDs to
    itself before it sends the rows subsystem 0 waits for. Final banks and statuses equal the
    golden model run with the rewritten program."""
    from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
    p = _params()
    assert p["subsystems"] >= 2, "needs two subsystems"
    gen, host, model = await _bench(dut, p, stream=3, salt=30)
    _clear_banks(host, p)
    rows = p["bank_rows"] // 2
    data = _random_rows(gen, p, rows)
    keep_busy = [isa.encode(Send(s_bank=0, s_addr=0, count=rows, mask=0b10, r_bank=0,
                                 r_addr=rows)) for _ in range(4)]
    old = [isa.encode(Wait(bank=1, count=4)), isa.encode(Halt()), isa.encode(Halt())]
    new = [isa.encode(Send(s_bank=0, s_addr=0, count=3, mask=0b01, r_bank=0, r_addr=rows)),
           isa.encode(Halt())]
    imgs = [{isa.MEM_IMEM: old, isa.MEM_BANK0: data},
            {isa.MEM_IMEM: keep_busy + [isa.encode(Send(s_bank=0, s_addr=0, count=4, mask=0b01,
                                                        r_bank=1, r_addr=0)),
                                        isa.encode(Halt())],
             isa.MEM_BANK0: data}]
    imgs += [{isa.MEM_IMEM: [isa.encode(Halt())]} for _ in range(2, p["subsystems"])]
    load_images(host, imgs)
    await host.idle(20000)
    host.start()
    await ClockCycles(dut.clk, 20)
    host.write(0, isa.MEM_IMEM, 1, new)
    status = [word for word, _ in await host.read(0, REGS_MEM, 0)]
    busy = [word for word, _ in await host.read(1, REGS_MEM, 0)]
    assert status[0] & 3 == isa.RUNNING and status[0] >> 16 == 0, \
        f"subsystem 0 not waiting at pc 0 after the rewrite: status {status[0]:#x}"
    assert busy[0] & 3 == isa.RUNNING, "subsystem 1 finished before the rewrite"
    if int(dut.done.value) != 1:
        await First(RisingEdge(dut.done), Timer(200000, unit="ns"))
    assert int(dut.done.value) == 1, "chip not done"
    imgs[0][isa.MEM_IMEM] = old[:1] + new
    load_model(model, imgs)
    model.run()
    ChipCoverage.get(p).sample(model)
    state = await read_state(host, p)
    problems = compare_state(state, model, p)
    assert not problems, "imem rewritten while running: " + "; ".join(problems[:6])
    ChipCoverage.get(p).report(host, dut._log)


def _act_errors(p):
    """(name, program, expected code) of every ACT check (a chip with ``act_engine``)."""
    rows, top = p["bank_rows"], p["act_max_row"]
    cases = [
        ("act op 7", [Act(op=7, count=1)], isa.ERR_ACT_OP),
        ("act op 7 with bad fields", [Act(op=7, count=0, b_addr=3)], isa.ERR_ACT_OP),
        ("act b field on gelu", [Act(op=0, b_addr=1)], isa.ERR_RESERVED),
        ("act b_bank on softmax", [Act(op=4, b_bank=1, d_bank=1)], isa.ERR_RESERVED),
        ("act p field on add", [Act(op=6, p_addr=1, d_bank=1)], isa.ERR_RESERVED),
        ("act count 0", [Act(op=1, count=0)], isa.ERR_K),
        ("act softmax count > act_max_row", [Act(op=4, count=top + 1, d_bank=1)]
         if top < rows else None, isa.ERR_K),
        ("act source range", [Act(op=2, s_addr=rows - 1, count=2, d_bank=1)], isa.ERR_SRC_RANGE),
        ("act add b range", [Act(op=6, b_addr=rows - 1, count=2, d_bank=1)], isa.ERR_SRC_RANGE),
        ("act layernorm post range", [Act(op=5, p_addr=p["pmem_depth"] - 1, count=2,
                                          d_bank=1)], isa.ERR_P_RANGE),
        ("act destination range", [Act(op=3, d_addr=rows - 1, count=2, d_bank=1)],
         isa.ERR_DST_RANGE),
        ("act overlap", [Act(op=0, s_addr=0, d_addr=1, count=2)], isa.ERR_OVERLAP),
        ("act add overlap with b", [Act(op=6, s_bank=1, b_addr=2, d_addr=3, count=2)],
         isa.ERR_OVERLAP),
    ]
    return [(name, prog, code) for name, prog, code in cases if prog is not None]


def _error_programs(p):
    """(name, per-subsystem programs, expected code) for every error the hardware detects."""
    cases = _gemm_error_programs(p)
    if p["act_engine"]:
        cases += [(name, prog) for name, prog, _ in _act_errors(p)]
    return cases


def _random_act(gen, p, *, lo, hi, banks=(0, 1), p_lo=0, op=None):
    """A random legal ACT on rows ``lo..hi-1`` of ``banks``: every op, in place, into the other
    bank, or to a disjoint slice of the same bank; random formats."""
    cp = _model_params(p)
    for _ in range(200):
        code = int(gen.integers(0, 7)) if op is None else op
        rowwise = code in (isa.ACT_OPS["softmax"], isa.ACT_OPS["layernorm"])
        top = min(hi - lo, p["act_max_row"] if rowwise else hi - lo)
        count = int(gen.integers(1, top + 1))
        s_bank = int(gen.choice(banks))
        s_addr = lo + int(gen.integers(0, hi - lo - count + 1))
        mode = gen.integers(0, 3)
        if mode == 0:                       # in place
            d_bank, d_addr = s_bank, s_addr
        else:
            d_bank = int(gen.choice(banks)) if mode == 1 else s_bank
            d_addr = lo + int(gen.integers(0, hi - lo - count + 1))
        fout = int(gen.integers(0, 16))
        kw = dict(op=code, fin=int(gen.integers(0, 8)), fout=fout,
                  oshift=int(np.clip(fout + gen.integers(-4, 5), 0, 15)),
                  s_bank=s_bank, s_addr=s_addr, d_bank=d_bank, d_addr=d_addr, count=count)
        if code == isa.ACT_ADD:
            kw.update(b_bank=int(gen.choice(banks)),
                      b_addr=lo + int(gen.integers(0, hi - lo - count + 1)),
                      fout=int(gen.integers(0, 4)), fin=int(gen.integers(0, 4)),
                      oshift=int(gen.integers(0, 6)))
        if code == isa.ACT_OPS["layernorm"]:
            kw["p_addr"] = p_lo + int(gen.integers(0, p["pmem_depth"] - p_lo - count + 1))
        instr = Act(**kw)
        if isa.check(instr, cp) == 0:
            return instr
    raise AssertionError("no legal random ACT found")


def _destinations(gen, s, S, turn):
    """Destination mask of subsystem ``s``'s GEMM or SEND: by ``turn`` its own node only,
    one other node, or several nodes (random, at least two), so that a few programs send
    every kind from every subsystem."""
    kind = turn % 3 if S > 1 else 0
    if kind == 0:
        return 1 << s
    if kind == 1:
        return 1 << int(gen.choice([d for d in range(S) if d != s]))
    while True:
        mask = int(gen.integers(1, 1 << S))
        if mask & (mask - 1):
            return mask


def _act_program_images(gen, p, *, acts, program=0):
    """Per-subsystem images of one random program: ACTs on the lower half of both banks, a GEMM
    and a SEND into the upper half (each to the own node, one other or several, turning with
    ``program``), a WAIT for every row delivered there, ACTs on the whole banks, HALT. Bank
    contents random with all-equal and saturated (127/-128) columns; post-op words random
    (layernorm gamma/beta). Without ``act_engine``: the same program without its ACTs (GEMM,
    SEND, WAIT, HALT), and only the GEMM's post-op words."""
    act_engine = p["act_engine"]
    S, L, R = p["subsystems"], p["lanes"], p["act_rows"]
    rows, half = p["bank_rows"], p["bank_rows"] // 2
    window = (rows - half) // S                 # rows of the upper half each sender fills
    cp = _model_params(p)
    d_bank = int(gen.integers(0, 2))
    plans = []
    for s in range(S):
        m_log2 = int(gen.integers(0, min(3, isa.idx_bits(p) if p["max_m"] > 1 else 0) + 1))
        unit = max(1 << m_log2, R)
        k = unit * int(gen.integers(1, max(1, min(p["max_k"], half) // unit) + 1))
        o = int(gen.integers(1, window // 2 + 1))
        c = int(gen.integers(1, window - o + 1))
        plans.append(dict(k=k, m_log2=m_log2, o=o, c=c,
                          gmask=_destinations(gen, s, S, program + s + 1),
                          smask=_destinations(gen, s, S, program + s)))
    imgs = []
    for s in range(S):
        pl = plans[s]
        prog = []
        if s == 0 and act_engine:   # softmax down all-equal and saturated columns (rows 0..15, bank 1)
            prog += [Act(op=isa.ACT_OPS["softmax"], fin=int(gen.integers(0, 8)), fout=14,
                         oshift=7, s_bank=1, s_addr=0, d_bank=1, d_addr=0, count=8),
                     Act(op=isa.ACT_OPS["softmax"], fin=0, fout=15, oshift=8, s_bank=1,
                         s_addr=8, d_bank=0, d_addr=8, count=8)]
        prog += [_random_act(gen, p, lo=0, hi=half) for _ in range(acts if act_engine else 0)]
        bpr = isa.beats_per_row(pl["k"], 0, pl["m_log2"], p["macs"])
        x_addr = R * int(gen.integers(0, (half - pl["k"]) // R + 1))
        prog.append(Gemm(relu=int(gen.integers(0, 2)), n_log2=0, m_log2=pl["m_log2"],
                         x_bank=int(gen.integers(0, 2)), d_bank=d_bank, x_addr=x_addr,
                         d_addr=half + window * s, p_addr=0, k=pl["k"], o=pl["o"],
                         mask=pl["gmask"], w_addr=0))
        if pl["c"]:
            src = int(gen.integers(0, half - pl["c"] + 1))
            s_bank = int(gen.integers(0, 2))
            if not act_engine:      # without ACTs: each subsystem sends from bank 0, then 1
                s_bank = (program + s) % 2
            prog.append(Send(s_bank=s_bank, r_bank=d_bank, s_addr=src,
                             r_addr=half + window * s + pl["o"], count=pl["c"],
                             mask=pl["smask"]))
        arriving = sum(q["o"] * (q["gmask"] >> s & 1) + q["c"] * (q["smask"] >> s & 1)
                       for q in plans)
        prog.append(Wait(bank=d_bank, count=arriving))
        if act_engine:
            prog += [_random_act(gen, p, lo=0, hi=rows) for _ in range(acts)]
            prog.append(_random_act(gen, p, lo=half, hi=rows, banks=(d_bank,),
                                    op=isa.ACT_OPS["layernorm"]))
        prog.append(Halt())
        assert len(prog) <= p["imem_depth"], "program longer than imem"
        for instr in prog:
            assert isa.check(instr, cp) == 0, instr
        m = 1 << pl["m_log2"]
        words = []
        for _ in range(pl["o"] * bpr):
            values = gen.integers(-128, 128, size=p["macs"])
            indices = gen.integers(0, m, size=p["macs"])
            words.append(isa.pack_w(values, indices, cp))
        posts = [isa.pack_post(int(gen.integers(-2**31, 2**31)), int(gen.integers(0, 65536)),
                               int(gen.integers(0, 32)))
                 for _ in range(p["pmem_depth"] if act_engine else pl["o"])]
        bank_imgs = []
        for b in range(2):
            data = gen.integers(-128, 128, size=(rows, L))
            sat = gen.random((rows, L)) < 0.1
            data[sat] = gen.choice([-128, 127], size=int(sat.sum()))
            if b == 1:
                data[0:8] = gen.integers(-128, 128, size=L)          # all-equal columns
                data[8:16] = gen.choice([-128, 127], size=(8, L))    # saturated columns
                data[8:16, 0] = 127
            bank_imgs.append([isa.pack_row(r) for r in data])
        imgs.append({isa.MEM_IMEM: [isa.encode(i) for i in prog], isa.MEM_WMEM: words,
                     isa.MEM_PMEM: posts, isa.MEM_BANK0: bank_imgs[0],
                     isa.MEM_BANK1: bank_imgs[1]})
    return imgs


async def _run_programs(dut, p, *, stream, salt, acts, reset_between, label):
    """``programs`` random programs (``acts`` ACT instructions each) under host stalls, each
    checked against the golden model (banks, statuses, counters); a host reset before every
    program after the first when ``reset_between``. ``stream`` picks the random stream of the
    programs, ``salt`` the host's stalls."""
    gen, host, model = await _bench(dut, p, stream=stream, salt=salt)
    for n in range(_knob("programs", 3)):
        if n and reset_between:
            host.reset()
            model.reset()
        imgs = _act_program_images(gen, p, acts=acts, program=n)
        _, figures = await _run_and_check(dut, host, model, p, imgs, f"{label} {n}")
        dut._log.info(f"{label} {n}: ok in {figures['cycles']} cycles, "
                      f"{figures['ring_flits']} flits")
    ChipCoverage.get(p).report(host, dut._log)


@common.test()
async def chip_programs(dut):
    """Without ``act_engine`` (with it, ``chip_act_programs`` runs the same programs with ACTs):
    random programs of a GEMM, a SEND, a WAIT for every row delivered and HALT on every
    subsystem, under host stalls; GEMM and SEND to the own node, one other node or several
    (turning by program), SENDs from bank 0 or 1 (turning by program: two programs send from
    both banks of every subsystem) at random (odd or even) rows; a host reset
    before every program after the first. Final banks, statuses and counters equal the golden
    model's."""
    p = _params()
    if p["act_engine"]:
        dut._log.info("act_engine: chip_act_programs runs these programs with ACTs")
        return
    await _run_programs(dut, p, stream=5, salt=50, acts=0, reset_between=True, label="program")


@common.test()
async def chip_act_programs(dut):
    """Random programs of ACT instructions mixed with GEMM/SEND/WAIT on every subsystem, under
    host stalls: final banks and statuses (row_error included) equal the golden model's."""
    p = _params()
    if not p["act_engine"]:
        dut._log.info("no act_engine: nothing to test")
        return
    await _run_programs(dut, p, stream=3, salt=30, acts=_knob("acts", 4), reset_between=False,
                        label="ACT program")


def gemm_cycle_cases(p):
    """``(used, m, k)`` of ``chip_gemm_cycles``: 2-layer model-parallel chains K = O = ``k`` of
    one tile (batch = lanes) at 1:m, where the golden cycle model is exact (docs/chip.md,
    "Model against measured RTL"): on one subsystem at every M (no ring traffic), and, when the
    chip has exactly two subsystems and a flit carries a whole row, on both at every M but
    1:32 (ring-bound there: the model's fitted port rate is 2-4 cycles above). ``k``: the
    largest power of two up to the calibration chains' 64 whose two layers' weights fit one
    subsystem's ``wmem_depth`` (as long as the memories allow: at K = 32, 1:16 on two
    subsystems is ring-bound too)."""
    from sparsehw.hw.chip.subsystem import flit_format
    cases = []
    one_row_flits = flit_format(p["lanes"], p["bank_rows"], p["flit_width"])["chunks"] == 1
    for used in (1, 2):
        if used == 2 and not (p["subsystems"] == 2 and one_row_flits):
            continue
        for m in (1 << e for e in range(p["max_m"].bit_length())):
            if used == 2 and m == 32:
                continue
            k = min(64, p["max_k"], p["bank_rows"] // 2)
            while k > m and 2 * -(-k // used) * isa.beats_per_row(
                    k, 0, m.bit_length() - 1, p["macs"]) > p["wmem_depth"]:
                k //= 2
            if k >= max(m, p["act_rows"], used):
                cases.append((used, m, k))
    return cases


@common.test()
async def chip_gemm_cycles(dut):
    """Cycles of GEMM chains (``cycles``, start to done) equal the golden cycle model's
    (``ChipModel.stats["total_cycles"]``) exactly at the points where it is exact
    (:func:`gemm_cycle_cases`), statuses and counters equal to the model's (the banks are
    the other tests' job: not read back, which would triple the test's cycles). Catches a
    change of timing that leaves every result right (a lost or added stall cycle, a ring
    ejection picked in another order that delays a row)."""
    p = _params()
    gen, host, model = await _bench(dut, p, stream=5, salt=50)
    cp = _model_params(p)
    for used, m, k in gemm_cycle_cases(p):
        # n = 1: random_layer's draw with its N fixed (cycles depend on n:m only)
        chain = [replace(random_layer(gen, k, k, p["max_m"], m), n=1) for _ in range(2)]
        x = gen.integers(-128, 128, size=(k, p["lanes"]), dtype=np.int64).astype(np.int8)
        compiled = compile_chain(chain, used, "model", cp, x=x)
        what = f"2-layer chain {k}x{k} 1:{m} on {used} of {p['subsystems']}"
        await _run_and_check_cycles(dut, host, model, p, images(compiled, x), what, "GEMM_CYCLES")
    ChipCoverage.get(p).report(host, dut._log)


async def _run_and_check_cycles(dut, host, model, p, imgs, what, tag):
    """:func:`_run_and_check` without the banks, then the chip's ``cycles`` (start to done)
    must equal the golden cycle model's ``total_cycles``; both logged under ``tag``. Returns
    the run's figures."""
    _, figures = await _run_and_check(dut, host, model, p, imgs, what, banks=False)
    predicted = model.stats["total_cycles"]
    dut._log.info(f"{tag} {what}: rtl={figures['cycles']} model={predicted}")
    assert figures["cycles"] == predicted, \
        f"{what}: {figures['cycles']} cycles measured, the model says {predicted}"
    return figures


def act_cycle_cases(p):
    """Single-ACT programs (every op; short and long slices; in place and into the other bank)
    whose cycles ``chip_act_cycles`` measures against the golden cycle model."""
    rows, top = p["bank_rows"], min(p["act_max_row"], p["bank_rows"])
    cases = []
    for name, code in isa.ACT_OPS.items():
        rowwise = name in ("softmax", "layernorm")
        for count in sorted({top // 4, top} if rowwise else {rows // 8, rows // 2}):
            for d_bank in (0, 1):
                kw = dict(op=code, fin=2, fout=8, oshift=6, s_bank=0, s_addr=0, d_bank=d_bank,
                          d_addr=0, count=count)
                if name == "add":
                    kw.update(b_bank=1, b_addr=rows - count, fin=0, fout=0, oshift=1)
                if name == "layernorm":
                    kw.update(fin=0)
                cases.append(Act(**kw))
    return cases


@common.test()
async def chip_act_cycles(dut):
    """Cycles of single ACT instructions (subsystem 0's ``cycles`` register, start to HALT)
    against the golden cycle model (``ChipModel.stats["cycles"]``): within ``tolerance``
    (workload knob, default 0.05) of the model; every figure logged."""
    p = _params()
    if not p["act_engine"]:
        dut._log.info("no act_engine: nothing to measure")
        return
    gen, host, model = await _bench(dut, p, stream=4, salt=40, stall=0.0)
    rows = p["bank_rows"]
    for s in range(p["subsystems"]):
        for mem in (isa.MEM_BANK0, isa.MEM_BANK1):
            host.write(s, mem, 0, _random_rows(gen, p, rows))
        host.write(s, isa.MEM_PMEM, 0, [isa.pack_post(int(b), 0, 0) for b in
                                         gen.integers(-2**31, 2**31, p["pmem_depth"])])
    tolerance = float(common.workload().get("tolerance", 0.05))
    worst = 0.0
    for instr in act_cycle_cases(p):
        imgs = [{isa.MEM_IMEM: [isa.encode(instr), isa.encode(Halt())]}] + \
            [{isa.MEM_IMEM: [isa.encode(Halt())]}] * (p["subsystems"] - 1)
        await _run_and_check(dut, host, model, p, imgs, f"{instr}", banks=False)
        regs = (await read_state(host, p, banks=False))[0]["regs"]
        measured, predicted = regs["cycles"], model.stats["cycles"][0]
        error = (predicted - measured) / measured
        worst = max(worst, abs(error))
        dut._log.info(f"ACT_CYCLES op={instr.op} count={instr.count} d_bank={instr.d_bank} "
                      f"rtl={measured} model={predicted} error={error:+.4f}")
        assert abs(error) <= tolerance, \
            f"{instr}: {measured} cycles measured, the model says {predicted}"
    dut._log.info(f"ACT_CYCLES worst relative error {worst:.4f}")
    ChipCoverage.get(p).report(host, dut._log)


def _random_word(gen, bits):
    """A random word of ``bits`` bits, every bit drawn."""
    return int.from_bytes(gen.bytes((bits + 7) // 8), "little") & ((1 << bits) - 1)


@common.test()
async def chip_memories_round_trip(dut):
    """The host port's write and read paths of every memory: random words of each memory's
    full width (every bit drawn, also the instruction bits no legal instruction sets) written
    to the whole imem and to the first, the last and random words of wmem, pmem and both banks
    of every subsystem, under host stalls; every word reads back as written, not flagged.
    (It leaves random words in the memories: a test after it loads what it uses.)"""
    p = _params()
    gen, host, _ = await _bench(dut, p, stream=7, salt=70)
    depths = mem_depths(p)
    written = {}
    for s in range(p["subsystems"]):
        for mem in isa.MEMORIES:
            depth = depths[mem]
            addrs = range(depth) if mem == isa.MEM_IMEM else \
                sorted({0, depth - 1, *(int(a) for a in gen.integers(0, depth, size=6))})
            for addr in addrs:
                word = _random_word(gen, isa.word_bits(mem, p))
                host.write(s, mem, addr, [word])
                written[s, mem, addr] = word
    for (s, mem, addr), word in written.items():
        (got, bad), = await host.read(s, mem, addr)
        assert not bad and got == word, (
            f"subsystem {s} {isa.MEMORIES[mem]}[{addr}]: read {got:#x} (bad {bad}), "
            f"wrote {word:#x}")
    dut._log.info(f"{len(written)} words read back as written")
    ChipCoverage.get(p).report(host, dut._log)


def _malformed_index_images(gen, p, s, n, m, k):
    """Images of subsystem ``s``: a GEMM at ``n``:``m`` (``n = 2 * macs``: a group spans two
    beats) of 5 output rows over ``k`` inputs, and HALT. Row 0 well formed; row 1 an index out of
    its group (``>= m``), its group's last, so that the order is kept and only the range check
    can flag it; row 2 two equal indices in one beat; row 3 the first index of a
    group's second beat not above the first beat's last (the check across beats); row 4 well
    formed, its second group starting below the first group's last index (legal: the order
    restarts at a group)."""
    P = p["macs"]
    cp = _model_params(p)

    def legal_row():
        return [sorted(int(i) for i in gen.choice(m, size=n, replace=False))
                for _ in range(k // m)]
    rows = [legal_row() for _ in range(5)]
    rows[1][0][-1] = m + int(gen.integers(0, m))               # out of the group, ascending
    rows[2][0][1] = rows[2][0][0]                              # beat 0: equal
    rows[3][0][P] = rows[3][0][P - 1]                          # beat 1's first = beat 0's last
    rows[4][0][-1], rows[4][1][0] = m - 1, 0
    words = []
    for groups in rows:
        entries = [i for group in groups for i in group]
        for b in range(0, len(entries), P):
            values = [int(v) * int(gen.choice([-1, 1])) for v in gen.integers(1, 128, size=P)]
            words.append(isa.pack_w(values, entries[b:b + P], cp))
    gemm = Gemm(relu=0, n_log2=n.bit_length() - 1, m_log2=m.bit_length() - 1, x_bank=0,
                d_bank=1, x_addr=0, d_addr=0, p_addr=0, k=k, o=5, mask=1 << s, w_addr=0)
    posts = [isa.pack_post(int(gen.integers(-1000, 1000)), int(gen.integers(1, 1 << 16)),
                           int(gen.integers(8, 20))) for _ in range(5)]
    x = gen.integers(-128, 128, size=(k, p["lanes"]))
    return {isa.MEM_IMEM: [isa.encode(gemm), isa.encode(Halt())], isa.MEM_WMEM: words,
            isa.MEM_PMEM: posts, isa.MEM_BANK0: [isa.pack_row(r) for r in x]}


@common.test()
async def chip_malformed_weight_indices(dut):
    """Malformed weight indices of every kind, in rows of one GEMM per subsystem (results to
    its own bank 1) at ``n:m = 2*macs : 4*macs`` (a group spans two beats): an index out of its
    group, equal indices in one beat, a beat's first index not above the previous beat's last
    in the same group, and well-formed rows before, between and after them (one where the
    order restarts lower at a group). The golden model zeroes exactly the three malformed rows
    and sets ``row_error``; banks, statuses and counters equal its."""
    p = _params()
    P = p["macs"]
    n, m = 2 * P, 4 * P
    k = max(2 * m, p["act_rows"])
    if 2 * m > p["max_m"] or k > min(p["max_k"], p["bank_rows"]):    # (an index >= m fits)
        dut._log.info(f"n:m = {n}:{m} over k = {k} does not fit these parameters: not run")
        return
    gen, host, model = await _bench(dut, p, stream=8, salt=80)
    _clear_banks(host, p)
    imgs = [_malformed_index_images(gen, p, s, n, m, k) for s in range(p["subsystems"])]
    await _run_and_check(dut, host, model, p, imgs, f"malformed indices at {n}:{m}, k {k}")
    for s in range(p["subsystems"]):
        flagged = [r for r in range(5) if not model.subs[s].banks[1][r].any()]
        assert model.status(s).row_error and flagged == [1, 2, 3], \
            f"subsystem {s}: the golden model zeroes rows {flagged}, the test is for 1, 2, 3"
    ChipCoverage.get(p).report(host, dut._log)


def _dense_gemm_images(gen, p, gemm, *, shift, operands=(-128, 128), post=None):
    """Weights, post-ops and input rows of a 1:1 ``gemm`` (weight and post-op words from 0,
    inputs from bank 0's row 0): weights and inputs random in ``operands`` (``[lo, hi)``,
    default every int8); post-ops random (biases in ``-1000..999``, multipliers in
    ``1..65535``, the ``shift`` given), or every one ``post`` (``(bias, mult, shift)``)."""
    cp = _model_params(p)
    beats = gemm.o * isa.beats_per_row(gemm.k, 0, 0, p["macs"])
    weights = [isa.pack_w(gen.integers(*operands, size=p["macs"]), [0] * p["macs"], cp)
               for _ in range(beats)]
    posts = [isa.pack_post(*post)] * gemm.o if post is not None else \
        [isa.pack_post(int(gen.integers(-1000, 1000)), int(gen.integers(1, 1 << 16)), shift)
         for _ in range(gemm.o)]
    return {isa.MEM_WMEM: weights, isa.MEM_PMEM: posts,
            isa.MEM_BANK0: _random_rows(gen, p, gemm.k, operands)}


def wait_cycle_cases(p):
    """``(label, programs)`` of ``chip_wait_cycles``: per subsystem a list of instructions (a
    GEMM reads 1:1 weights over ``k`` rows). On every subsystem ``s`` alone: a GEMM of 4 rows into
    its own bank 1, then a WAIT already satisfied when it issues (count 0, and count 4: the GEMM's
    rows are in before it releases the sequencer). With two subsystems and a flit carrying a
    whole row (where the golden cycle model is exact): the other subsystem's GEMM of ``o`` rows
    (``o`` = 1..4) into ``s``'s bank 1 while ``s`` is blocked on a WAIT for them, so the WAIT ends
    on a ring row's landing at either parity of cycles."""
    from sparsehw.hw.chip.subsystem import flit_format
    S = p["subsystems"]
    k = max(p["act_rows"], p["macs"], 8)
    one_row_flits = flit_format(p["lanes"], p["bank_rows"], p["flit_width"])["chunks"] == 1
    cases = []
    for s in range(S):
        for count in (0, 4):
            programs = [[Halt()] for _ in range(S)]
            programs[s] = [Gemm(x_bank=0, k=k, o=4, d_bank=1, d_addr=0, mask=1 << s),
                           Wait(bank=1, count=count), Halt()]
            cases.append((f"subsystem {s}: GEMM of 4 rows, then WAIT for {count} of them",
                          programs))
        if S == 2 and one_row_flits:
            for o in range(1, 5):
                programs = [None, None]
                programs[s] = [Wait(bank=1, count=o), Halt()]
                programs[1 - s] = [Gemm(x_bank=0, k=k, o=o, d_bank=1, d_addr=0, mask=1 << s),
                                   Halt()]
                cases.append((f"subsystem {s} blocked on a WAIT for the {o} rows of subsystem "
                              f"{1 - s}'s GEMM", programs))
    return cases


@common.test()
async def chip_wait_cycles(dut):
    """Cycles of programs around a WAIT (:func:`wait_cycle_cases`; ``cycles``, start to done)
    equal the golden cycle model's exactly: a WAIT already satisfied when it issues costs no
    stall cycle, a blocked WAIT resumes ``wait_resume`` cycles after the row it waits for
    lands, whatever the parity of that cycle. Statuses and counters equal the model's."""
    p = _params()
    gen, host, model = await _bench(dut, p, stream=9, salt=90)
    for what, programs in wait_cycle_cases(p):
        imgs = []
        for prog in programs:
            gemm = next((i for i in prog if isinstance(i, Gemm)), None)
            mems = {} if gemm is None else _dense_gemm_images(gen, p, gemm, shift=12)
            imgs.append({**mems, isa.MEM_IMEM: [isa.encode(i) for i in prog]})
        await _run_and_check_cycles(dut, host, model, p, imgs, what, "WAIT_CYCLES")
    ChipCoverage.get(p).report(host, dut._log)


#: Cycles ``chip_long_run_counters`` runs at least: a counter above them has bit 14 set.
LONG_RUN_CYCLES = 1 << 14


def _long_run_images(gen, p, gemms):
    """Per subsystem: ``gemms`` copies of one 1:1 GEMM (``k`` = the largest of 64, ``max_k`` and
    ``bank_rows`` allowed; as many output rows as wmem and the bank hold) into its own bank 1,
    then HALT; random weights, post-ops and inputs."""
    unit = max(p["act_rows"], 1)
    k = min(64, p["max_k"], p["bank_rows"]) // unit * unit
    bpr = isa.beats_per_row(k, 0, 0, p["macs"])
    o = min(p["bank_rows"], p["wmem_depth"] // bpr, p["pmem_depth"])
    imgs = []
    for s in range(p["subsystems"]):
        gemm = Gemm(x_bank=0, k=k, o=o, d_bank=1, d_addr=0, mask=1 << s)
        imgs.append({**_dense_gemm_images(gen, p, gemm, shift=14),
                     isa.MEM_IMEM: [isa.encode(gemm)] * gemms + [isa.encode(Halt())]})
    return imgs


def _long_run_gemms(p, imgs_of):
    """The fewest GEMMs per subsystem (up to what imem holds) whose run takes more than
    :data:`LONG_RUN_CYCLES` cycles with bit 14 of every subsystem's cycle count set, by the
    golden cycle model; None if imem is too small."""
    for gemms in range(1, p["imem_depth"]):
        model = ChipModel(_model_params(p))
        load_model(model, imgs_of(gemms))
        model.run()
        if all(c >> 14 & 1 for c in model.stats["cycles"]):
            return gemms
    return None


@common.test()
async def chip_long_run_counters(dut):
    """A run of more than ``2**14`` cycles (:func:`_long_run_images`: the fewest GEMMs that make
    every subsystem's ``cycles`` count have bit 14 set, by the golden cycle model, exact for
    GEMMs without ring traffic): each subsystem's ``cycles`` register equals the model's, read
    with the response held 1 to 4 cycles after it is offered (the read path holds the value
    while ``rsp`` is stalled: every held cycle must keep every bit, also those only a long run
    sets). Statuses and counters equal the model's."""
    p = _params()
    seed = common.rng(10).getrandbits(32)

    def imgs_of(gemms):
        return _long_run_images(np.random.default_rng(seed), p, gemms)
    gemms = _long_run_gemms(p, imgs_of)
    if gemms is None:
        dut._log.info(f"imem_depth {p['imem_depth']} holds too few GEMMs for a run of "
                      f"{LONG_RUN_CYCLES} cycles: not run")
        return
    _, host, model = await _bench(dut, p, stream=10, salt=100)
    what = f"{gemms} GEMMs on every subsystem"
    await _run_and_check(dut, host, model, p, imgs_of(gemms), what, banks=False,
                         timeout=4 * LONG_RUN_CYCLES)
    cycles_reg = REG_NAMES.index("cycles")
    for s in range(p["subsystems"]):
        want = model.stats["cycles"][s]
        for hold in range(1, 5):
            got, bad = await host.read_held(s, REGS_MEM, cycles_reg, hold)
            assert not bad and got == want, \
                f"{what}: subsystem {s} cycles read {got} (bad {bad}) with the response held " \
                f"{hold} cycles, the model says {want}"
    dut._log.info(f"{what}: cycles {model.stats['cycles']} read back under response holds")
    ChipCoverage.get(p).report(host, dut._log)


def _back_pressure_images(gen, p, r):
    """Images of ``chip_ring_back_pressure`` with receiver ``r``: ``r`` runs a GEMM whose output
    rows (one beat each: ``k = max(act_rows, macs)`` at 1:1) go into its own bank 1, rows
    ``0..half-1``, one per cycle, then a WAIT for all rows and HALT; every other subsystem SENDs
    rows ``0..half-1`` of its bank 0 into ``r``'s bank 1 from row ``half`` (each its own window),
    then HALTs. ``r``'s ejection port does not take a row in a cycle its GEMM writes bank 1,
    so the senders' rows back up in the ring's ejection buffer and injection queues."""
    S, rows = p["subsystems"], p["bank_rows"]
    half = rows // 2
    window = half // (S - 1)
    k = max(p["act_rows"], p["macs"])
    bpr = isa.beats_per_row(k, 0, 0, p["macs"])
    o = min(half, p["wmem_depth"] // bpr, p["pmem_depth"])
    imgs = []
    for s in range(S):
        bank0 = _random_rows(gen, p, rows)
        if s == r:
            gemm = Gemm(x_bank=0, k=k, o=o, d_bank=1, d_addr=0, mask=1 << r)
            prog = [gemm, Wait(bank=1, count=o + window * (S - 1)), Halt()]
            # (bank 0's first k rows are the GEMM's inputs, the rest as drawn)
            mems = _dense_gemm_images(gen, p, gemm, shift=10)
            imgs.append({**mems, isa.MEM_BANK0: mems[isa.MEM_BANK0] + bank0[k:],
                         isa.MEM_IMEM: [isa.encode(i) for i in prog]})
        else:
            slot = s if s < r else s - 1
            prog = [Send(s_bank=0, s_addr=0, count=window, r_bank=1,
                         r_addr=half + window * slot, mask=1 << r), Halt()]
            imgs.append({isa.MEM_BANK0: bank0, isa.MEM_IMEM: [isa.encode(i) for i in prog]})
    return imgs


@common.test()
async def chip_ring_back_pressure(dut):
    """Rows sent to a subsystem whose ejection port is held off by its own GEMM's writes to
    the same bank (:func:`_back_pressure_images`, every subsystem the receiver in turn): the
    ring's ejection buffer fills and the senders' injection queues hold flits (a sender's
    ``inject_stall`` counter must show its port stalled: with two subsystems, each queue of
    the ring that carries traffic is filled). Banks, statuses and counters equal the golden
    model's (every row arrives once, intact, where it was sent)."""
    p = _params()
    if p["subsystems"] < 2:
        dut._log.info("one subsystem: no ring")
        return
    gen, host, model = await _bench(dut, p, stream=11, salt=110)
    _clear_banks(host, p)
    for r in range(p["subsystems"]):
        what = f"rows sent to subsystem {r} while its GEMM writes the same bank"
        state, figures = await _run_and_check(dut, host, model, p,
                                              _back_pressure_images(gen, p, r), what)
        stalls = [state[s]["regs"]["inject_stall"] for s in range(p["subsystems"])]
        # the stimulus reached what the test is for: a full injection queue stalls a sender's
        # port (with two subsystems, the one sender's)
        assert any(n > 0 for s, n in enumerate(stalls) if s != r), \
            f"{what}: inject_stall {stalls}: the ring never backed up to a sender"
        dut._log.info(f"{what}: ok in {figures['cycles']} cycles, inject_stall {stalls}")
    ChipCoverage.get(p).report(host, dut._log)


def gemm_back_pressure_runs(S):
    """The runs of ``chip_gemm_back_pressure``: per run ``{receiver: sender}``, each sender
    the receiver's next node on the ring (one hop), no subsystem in two pairs of a run, every
    subsystem a sender in exactly one run (two runs for an even ``S``, three for an odd one)."""
    runs, left = [], list(range(S))
    while left:
        pairs, used = {}, set()
        for s in left:
            r = (s - 1) % S
            if r not in used and s not in used:
                pairs[r] = s
                used |= {r, s}
        left = [s for s in left if s not in pairs.values()]
        runs.append(pairs)
    return runs


def _gemm_back_pressure_images(gen, p, pairs):
    """Images of a ``chip_gemm_back_pressure`` run (``pairs``: ``{receiver: sender}``): a
    receiver runs a GEMM (:func:`_gemm_back_pressure_shape`) whose ``half = bank_rows / 2``
    output rows (one beat each) go into its own bank 1, rows ``0..half-1``, one per cycle, then
    a WAIT for its bank 1's rows and HALT; its sender runs a GEMM of the same shape whose rows
    go straight from its SPU's output into the receiver's bank 1 from row ``half``, then HALTs;
    a subsystem in no pair HALTs. The receiver's ejection port does not take a row in a cycle
    its GEMM writes bank 1, so the sender's rows back up in the ring (more than its buffers
    hold: the test checks it), the sender's injection queue fills and its SPU's output stream is
    held off."""
    S, half = p["subsystems"], p["bank_rows"] // 2
    k, o = _gemm_back_pressure_shape(p)
    senders = {s: r for r, s in pairs.items()}
    imgs = []
    for s in range(S):
        if s in pairs:
            gemm = Gemm(x_bank=0, k=k, o=o, d_bank=1, d_addr=0, mask=1 << s)
            prog = [gemm, Wait(bank=1, count=2 * o), Halt()]
        elif s in senders:
            gemm = Gemm(x_bank=0, k=k, o=o, d_bank=1, d_addr=half, mask=1 << senders[s])
            prog = [gemm, Halt()]
        else:
            gemm, prog = Gemm(x_bank=0, k=k, o=o, d_bank=1, d_addr=0, mask=1 << s), [Halt()]
        imgs.append({**_dense_gemm_images(gen, p, gemm, shift=10),
                     isa.MEM_IMEM: [isa.encode(i) for i in prog]})
    return imgs


def _gemm_back_pressure_shape(p):
    """``(k, o)`` of every GEMM of ``chip_gemm_back_pressure``: one beat per output row
    (``k = max(act_rows, macs)`` at 1:1), ``o = bank_rows / 2`` rows (as the memories allow)."""
    k = max(p["act_rows"], p["macs"])
    bpr = isa.beats_per_row(k, 0, 0, p["macs"])
    return k, min(p["bank_rows"] // 2, p["wmem_depth"] // bpr, p["pmem_depth"])


def _local_gemm_images(imgs, p):
    """``imgs`` with every subsystem's program a GEMM of the test's shape (the weights and
    post-ops ``imgs`` load) into its own bank 1 from row 0: nothing holds its output off."""
    k, o = _gemm_back_pressure_shape(p)
    return [{**mems, isa.MEM_IMEM: [isa.encode(Gemm(x_bank=0, k=k, o=o, d_bank=1, d_addr=0,
                                                    mask=1 << s)), isa.encode(Halt())]}
            for s, mems in enumerate(imgs)]


@common.test()
async def chip_gemm_back_pressure(dut):
    """GEMM output rows sent through a backed-up ring (:func:`gemm_back_pressure_runs`,
    :func:`_gemm_back_pressure_images`; every subsystem a sender once): the senders' SPU output
    streams are held off by their full injection queues, so each output word waits in its
    SPU's output FIFO, and must arrive once, intact. Banks, statuses and counters equal the
    golden model's (of the banks, the receivers' bank 1, the one the runs write: reading every
    bank back would take most of the test's cycles). The test checks that it held every
    sender's SPU off: its ``gemm_cycles`` (cycles its GEMM was busy) exceed those of the same
    GEMM into its own bank, which nothing holds off (:func:`_local_gemm_images`, every
    subsystem at once, run first)."""
    p = _params()
    if p["subsystems"] < 2:
        dut._log.info("one subsystem: no ring")
        return
    gen, host, model = await _bench(dut, p, stream=15, salt=150)
    runs = gemm_back_pressure_runs(p["subsystems"])
    free, _ = await _run_and_check(
        dut, host, model, p, _local_gemm_images(_gemm_back_pressure_images(gen, p, runs[0]), p),
        "every subsystem's GEMM into its own bank", timeout=20000, banks=False)
    for pairs in runs:
        imgs = _gemm_back_pressure_images(gen, p, pairs)
        what = f"GEMM rows sent by {pairs} (receiver: sender) while the receivers' own GEMMs " \
               "write the same bank"
        state, figures = await _run_and_check(dut, host, model, p, imgs, what, timeout=20000,
                                              banks=False)
        for r in pairs:      # compare_state compares every memory an entry holds
            state[r][isa.MEM_BANK1] = [d for d, _ in await host.read(r, isa.MEM_BANK1, 0,
                                                                     p["bank_rows"])]
        problems = compare_state(state, model, p, banks=False)
        assert not problems, f"{what}: " + "; ".join(problems[:6])
        busy = {s: (free[s]["regs"]["gemm_cycles"], state[s]["regs"]["gemm_cycles"])
                for s in pairs.values()}
        assert all(held > alone for alone, held in busy.values()), \
            f"{what}: gemm_cycles (alone, sending) {busy}: a sender's output was not held off"
        dut._log.info(f"{what}: ok in {figures['cycles']} cycles, senders' gemm_cycles "
                      f"(alone, sending) {busy}")
    ChipCoverage.get(p).report(host, dut._log)


@common.test()
async def chip_exact_accumulators(dut):
    """GEMMs whose post-op shows every bit of the accumulators: bias 0, multiplier 1, shift 0,
    weights and inputs in ``-3..3`` so every sum fits int8 (``|sum| <= 9 k``), rows of several
    beats (``k = 8 macs`` at 1:1: the accumulator carries from beat to beat), one GEMM per
    subsystem into its own bank 1. (The chains' post-ops shift by 8 or more, so a fault in an
    accumulator's low bits shows only when it crosses a rounding boundary.) Banks, statuses and
    counters equal the golden model's, and the test checks that its outputs are the raw sums
    (none saturated)."""
    p = _params()
    k = max(8 * p["macs"], p["act_rows"])
    if k > min(p["max_k"], p["bank_rows"]):
        dut._log.info(f"k = {k} does not fit these parameters: not run")
        return
    gen, host, model = await _bench(dut, p, stream=12, salt=120)
    o = min(8, p["bank_rows"], p["pmem_depth"])
    imgs = []
    for s in range(p["subsystems"]):
        gemm = Gemm(x_bank=0, k=k, o=o, d_bank=1, d_addr=0, mask=1 << s)
        imgs.append({**_dense_gemm_images(gen, p, gemm, shift=0, operands=(-3, 4), post=(0, 1, 0)),
                     isa.MEM_IMEM: [isa.encode(gemm), isa.encode(Halt())]})
    _clear_banks(host, p)
    await _run_and_check(dut, host, model, p, imgs, f"exact accumulators over k = {k}")
    for s in range(p["subsystems"]):
        out = model.subs[s].banks[1][:o]
        assert np.abs(out).max() < 127, f"subsystem {s}: an output saturated, {out.tolist()}"
    ChipCoverage.get(p).report(host, dut._log)


def send_field_programs(p):
    """Per subsystem the SENDs of ``chip_send_fields``: every one to the next subsystem (the
    own one when alone), so each subsystem receives from one sender only (its rows arrive in
    program order, as the model's), from bank ``s_bank`` into bank ``r_bank`` of the receiver,
    which never reads that bank (with an even number of subsystems the banks alternate with
    the sender, else every SEND reads bank 0 and writes bank 1). Counts: the whole bank, one
    row less, and every power of two below the bank's size, so each bit of ``count`` that a
    legal SEND can set is 1 in one SEND and 0 in another; ``s_addr`` and ``r_addr`` differ in
    each SEND (the last rows of the bank and a spread of starts), so each of their bits, too,
    is 1 in some and 0 in others. Then HALT; as many SENDs as imem holds."""
    S, rows = p["subsystems"], p["bank_rows"]
    counts = [rows, rows - 1] + [1 << j for j in range(rows.bit_length() - 1)]
    programs = []
    for s in range(S):
        s_bank = s % 2 if S % 2 == 0 else 0
        r_bank = s_bank if S % 2 == 0 else 1
        prog = []
        for i, count in enumerate(counts):
            room = rows - count
            # the source ends at the bank's last row, the destination starts at a point that
            # moves with i (both 0 only for the whole bank)
            r_addr = (room * (i + 1) // (len(counts) + 1)) if room else 0
            prog.append(Send(s_bank=s_bank, r_bank=r_bank, s_addr=room, r_addr=r_addr,
                             count=count, mask=1 << ((s + 1) % S)))
        programs.append(prog[:p["imem_depth"] - 1] + [Halt()])
    return programs


@common.test()
async def chip_send_fields(dut):
    """SENDs whose fields take every bit value a legal SEND can (:func:`send_field_programs`:
    counts from 1 to the whole bank, sources at the bank's end, destinations spread) on every
    subsystem at once, from banks of random rows: banks, statuses and counters (``flits_sent``,
    ``rows_received``, ``ring_flits``) equal the golden model's, so a count, an address or a
    bank taken wrong anywhere between fetch and injection shows."""
    p = _params()
    gen, host, model = await _bench(dut, p, stream=13, salt=130)
    programs = send_field_programs(p)
    imgs = []
    for prog in programs:
        banks = {mem: _random_rows(gen, p, p["bank_rows"])
                 for mem in (isa.MEM_BANK0, isa.MEM_BANK1)}
        imgs.append({**banks, isa.MEM_IMEM: [isa.encode(i) for i in prog]})
    counts = [sum(i.count for i in prog if isinstance(i, Send)) for prog in programs]
    _, figures = await _run_and_check(dut, host, model, p, imgs, "SENDs of every count bit")
    dut._log.info(f"SENDs of every count bit: ok in {figures['cycles']} cycles, rows sent "
                  f"per subsystem {counts}")
    ChipCoverage.get(p).report(host, dut._log)


@common.test()
async def chip_send_to_no_subsystem(dut):
    """A SEND with ``mask`` 0 (no destination: legal, it moves no row) takes no row time,
    whatever its ``count``: on every subsystem at once, a SEND of every bank row to no
    subsystem, then a GEMM of 4 rows into its own bank 1 and a WAIT for them, must take the
    chip's cycles of the same program with a SEND of 0 rows, and each run the golden cycle
    model's cycles. Banks of the GEMM, statuses and counters (no flit) equal the golden model's
    in both runs."""
    p = _params()
    gen, host, model = await _bench(dut, p, stream=16, salt=160)
    k = max(p["act_rows"], p["macs"], 8)
    cycles = {}
    for count in (0, p["bank_rows"]):
        imgs = []
        for s in range(p["subsystems"]):
            gemm = Gemm(x_bank=0, k=k, o=4, d_bank=1, d_addr=0, mask=1 << s)
            prog = [Send(s_bank=0, s_addr=0, count=count, r_bank=1, r_addr=0, mask=0), gemm,
                    Wait(bank=1, count=4), Halt()]
            imgs.append({**_dense_gemm_images(gen, p, gemm, shift=10),
                         isa.MEM_IMEM: [isa.encode(i) for i in prog]})
        what = f"SEND of {count} rows to no subsystem, then a GEMM and a WAIT, on every subsystem"
        figures = await _run_and_check_cycles(dut, host, model, p, imgs, what, "SEND mask 0")
        cycles[count] = figures["cycles"]
    assert cycles[p["bank_rows"]] == cycles[0], \
        f"a SEND to no subsystem took time: cycles by its count {cycles}"
    dut._log.info(f"SEND to no subsystem: cycles by its count {cycles}")
    ChipCoverage.get(p).report(host, dut._log)


#: ``chip_ring_busy_cycles`` injects at least this many flits (its counts then have bit 12 set).
RING_BUSY_FLITS = 1 << 12


def ring_busy_sends(p):
    """SENDs of ``chip_ring_busy_cycles`` for the last subsystem: the fewest SENDs of its whole
    bank 0 to every subsystem (its own included: a flit per row and destination) that inject
    at least :data:`RING_BUSY_FLITS` flits, into bank 1 from row 0; None if imem cannot hold
    them and HALT."""
    S, rows = p["subsystems"], p["bank_rows"]
    sends = -(-RING_BUSY_FLITS // (rows * S))
    if sends + 1 > p["imem_depth"]:
        return None
    return [Send(s_bank=0, r_bank=1, s_addr=0, r_addr=0, count=rows, mask=(1 << S) - 1)] * sends


@common.test()
async def chip_ring_busy_cycles(dut):
    """One subsystem alone sends at least :data:`RING_BUSY_FLITS` flits (:func:`ring_busy_sends`)
    while the others halt. The chip's ``ring_busy_cycles`` (cycles with a flit in flight) must
    lie between the flits injected and the run's cycles: the one sender's port injects at most
    one flit a cycle, and a flit is in flight from the cycle after its injection until its
    ejection, at least one cycle, so each injection's next cycle is a distinct busy cycle; the
    counter counts only while the chip runs. Banks, statuses and counters (``ring_flits``)
    equal the golden model's."""
    p = _params()
    sends = ring_busy_sends(p)
    if p["subsystems"] < 2 or sends is None:
        dut._log.info("no ring, or imem holds too few SENDs: not run")
        return
    gen, host, model = await _bench(dut, p, stream=14, salt=140)
    _clear_banks(host, p)
    S = p["subsystems"]
    imgs = [{isa.MEM_IMEM: [isa.encode(Halt())]} for _ in range(S - 1)]
    imgs.append({isa.MEM_BANK0: _random_rows(gen, p, p["bank_rows"]),
                 isa.MEM_IMEM: [isa.encode(i) for i in sends + [Halt()]]})
    what = f"{len(sends)} SENDs of subsystem {S - 1} to every subsystem"
    _, figures = await _run_and_check(dut, host, model, p, imgs, what)
    flits, busy, cycles = (figures[n] for n in ("ring_flits", "ring_busy_cycles", "cycles"))
    assert flits >= RING_BUSY_FLITS, f"{what}: only {flits} flits injected"
    assert flits <= busy <= cycles, \
        f"{what}: ring_busy_cycles {busy}, outside [ring_flits {flits}, cycles {cycles}]"
    dut._log.info(f"{what}: ok, {flits} flits, ring busy {busy} of {cycles} cycles")
    ChipCoverage.get(p).report(host, dut._log)


def ring_symmetry(S):
    """The rotation ``d`` of the node numbers under which the chip behaves the same: node ``s``
    of a rotated run does exactly what node ``s - d`` did. Subsystems are identical and the ring
    rules (``golden.ring``) depend on positions only, except the routing tie-break at
    ``dst = src + S/2`` (even ``S``), which goes by the source's parity. So: ``d = 1`` for odd
    ``S`` (no ties), ``d = 2`` for even ``S > 2``; and ``d = 1`` for ``S = 2`` too, where each
    router ejects from one ring direction (node 1 from CW, node 0 from CCW) and its local buffer,
    and the round-robin between two buffers is an alternation whichever they are."""
    d = 2 if S % 2 == 0 and S > 2 else 1
    for src in range(S):
        for dst in range(S):
            a, b = route(src, dst, S), route((src + d) % S, (dst + d) % S, S)
            assert a[1] == b[1] and (S == 2 or a[0] == b[0]), (S, d, src, dst)
    return d


def shared_port_images(gen, p, masks):
    """Every subsystem ``s`` SENDs rows ``0 .. n-1`` of its bank 0 (random) to the subsystems
    of mask ``masks[s]``, into bank 1 from row ``s * n`` (``n = bank_rows // subsystems``, each
    sender its own window), then HALTs; all start in the same cycle."""
    S = p["subsystems"]
    n = p["bank_rows"] // S
    imgs = []
    for s in range(S):
        prog = [Send(s_bank=0, s_addr=0, count=n, r_bank=1, r_addr=n * s, mask=masks[s]), Halt()]
        imgs.append({isa.MEM_BANK0: _random_rows(gen, p, p["bank_rows"]),
                     isa.MEM_IMEM: [isa.encode(i) for i in prog]})
    return imgs


def _rotation_mismatches(a, b, d, S):
    """Counters of run ``a`` that differ from run ``b`` rotated back by ``d``: subsystem ``s`` of
    ``a`` against subsystem ``s + d`` of ``b`` (``a`` and ``b`` as :func:`_run_and_check`
    returns them, ``(state, chip figures)``)."""
    (sa, fa), (sb, fb) = a, b
    diffs = [f"chip {n} {fa[n]} / {fb[n]}" for n in fa if fa[n] != fb[n]]
    for s in range(S):
        ra, rb = sa[s]["regs"], sb[(s + d) % S]["regs"]
        diffs += [f"subsystem {s} / {(s + d) % S} {n} {ra[n]} / {rb[n]}"
                  for n in ra if ra[n] != rb[n]]
    return diffs


@common.test()
async def chip_ring_symmetry(dut):
    """Timing that no result shows, checked by symmetry (:func:`ring_symmetry`): node numbers
    rotated by ``d``, the same traffic must give the same counters, rotated. (A fault in one
    router's ejection arbiter that only reorders flits from different senders leaves every
    bank right; it breaks the symmetry with the routers it is not in.)

    - Every subsystem SENDs ``n`` rows to receiver ``r`` at once, for every ``r``: the
      receiver's ejection port is shared by its local buffer and its ring buffers, which fill.
      Run ``r`` against run ``r + d``: every subsystem's counters and the chip's.
    - Every subsystem SENDs ``n`` rows to every subsystem at once: a traffic pattern the
      rotation maps onto itself, so subsystem ``s`` must count what ``s + d`` counts.

    Banks, statuses and counters also equal the golden model's in every run."""
    p = _params()
    S = p["subsystems"]
    if S < 2:
        dut._log.info("one subsystem: no ring")
        return
    d = ring_symmetry(S)
    gen, host, model = await _bench(dut, p, stream=15, salt=150)
    _clear_banks(host, p)
    runs = []
    for r in range(S):
        what = f"every subsystem SENDs to {r}"
        runs.append(await _run_and_check(dut, host, model, p,
                                         shared_port_images(gen, p, [1 << r] * S), what))
        regs = [runs[r][0][s]["regs"] for s in range(S)]
        # the stimulus reached what the test is for: the shared port refused flits
        assert any(g["inject_stall"] for g in regs), f"{what}: no injection ever stalled"
        dut._log.info(f"{what}: {runs[r][1]['cycles']} cycles, subsystems' cycles "
                      f"{[g['cycles'] for g in regs]}, inject_stall "
                      f"{[g['inject_stall'] for g in regs]}")
    for r in range(S):
        diffs = _rotation_mismatches(runs[r], runs[(r + d) % S], d, S)
        assert not diffs, (f"SENDs to {r} and, rotated by {d}, to {(r + d) % S}: counters "
                           f"differ: " + "; ".join(diffs[:6]))
    what = "every subsystem SENDs to every subsystem"
    run = await _run_and_check(dut, host, model, p,
                               shared_port_images(gen, p, [(1 << S) - 1] * S), what)
    diffs = _rotation_mismatches(run, run, d, S)
    assert not diffs, f"{what}: rotated by {d}, counters differ: " + "; ".join(diffs[:6])
    ChipCoverage.get(p).report(host, dut._log)
