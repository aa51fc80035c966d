"""cocotb regression of the chip (and of one subsystem: ``subsystems=1``) against the golden chip
model (:class:`sparsehw.golden.chip.ChipModel`) and a plain numpy chain of golden SPU GEMMs.

Programs and memory images come from the golden compiler (:mod:`sparsehw.golden.chip_compile`)
and are loaded through the host port with random stalls on the command and response streams.
After each run every row of both banks of every subsystem and every status word are read back
through the host port and compared with the golden model's; the chain's output is compared with
:func:`sparsehw.golden.chip_compile.reference_chain`. Every error code is provoked, each followed
by a host reset and a correct run.

Workload knobs: ``chains`` (random chains in the first test, default 3), ``max_layers``
(default 4), ``stall`` (host stream stall probability, default 0.3).
"""

import cocotb
import numpy as np

from sparsehw.golden import chip as isa
from sparsehw.golden.chip import ChipModel, Gemm, Halt, Send, Wait
from sparsehw.golden.chip_compile import compile_chain, reference_chain
from sparsehw.hw.chip import CHIP_RTL_PARAMS
from sparsehw.verif import common
from sparsehw.verif.chip import (Host, compare_state, images, load_images, load_model,
                                 output_of, random_chain, read_state, run_to_done)
from sparsehw.verif.stream import start


def _params():
    return CHIP_RTL_PARAMS.validate(**common.params())


def _model_params(p):
    return {k: v for k, v in p.items() if k in isa.CHIP_PARAMS.names}


def _clear_banks(host, p):
    """Zero both banks of every subsystem (a previous test in the same simulation used them),
    so that the RTL starts from the golden model's initial state."""
    for s in range(p["subsystems"]):
        for mem in (isa.MEM_BANK0, isa.MEM_BANK1):
            host.write(s, mem, 0, [0] * p["bank_rows"])


def _knob(name, default):
    return type(default)(common.workload().get(name, default))


async def _run_and_check(dut, host, model, p, imgs, what, *, timeout=200000, banks=True):
    """Load ``imgs`` into the chip and the model, run both, compare; returns (state, model)."""
    load_images(host, imgs)
    load_model(model, imgs)
    figures = await run_to_done(dut, host, timeout)
    model.run()
    state = await read_state(host, p, banks=banks)
    problems = compare_state(state, model, p, banks=banks)
    assert not problems, f"{what}: " + "; ".join(problems[:6])
    return state, figures


async def _check_chain(dut, host, model, p, gen, *, layers, used, mapping, batch, corrupt=False):
    cp = _model_params(p)
    for _ in range(50):            # redraw until the images fit the memories
        chain = random_chain(gen, cp, layers=layers, subsystems=used, batch=batch)
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


@cocotb.test()
async def chip_random_chains(dut):
    """Random chains of 1..max_layers GEMMs, random shapes and N:M, both mappings, random number of
    subsystems used, random host stalls; final banks and statuses equal the golden model."""
    p = _params()
    await start(dut, sources=("cmd",), sinks=("rsp",))
    gen = np.random.default_rng(common.rng(1).getrandbits(32))
    host = Host(dut, p, stall=_knob("stall", 0.3), salt=10)
    model = ChipModel(_model_params(p))
    _clear_banks(host, p)
    for c in range(_knob("chains", 3)):
        used = int(gen.integers(1, p["subsystems"] + 1)) if c else p["subsystems"]
        await _check_chain(dut, host, model, p, gen,
                           layers=int(gen.integers(1, _knob("max_layers", 4) + 1)), used=used,
                           mapping="model" if c % 3 != 2 else "data",
                           batch=int(gen.integers(1, 2 * p["lanes"] + 1)),
                           corrupt=(c == 1))


def _error_programs(p):
    """(name, per-subsystem programs, expected code) for every error the hardware detects."""
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


@cocotb.test()
async def chip_every_error_then_reset(dut):
    """Each error code on a random subsystem (the others run a correct short program or halt):
    state, code and pc as the golden model; then a host reset and a correct chain."""
    p = _params()
    await start(dut, sources=("cmd",), sinks=("rsp",))
    gen = np.random.default_rng(common.rng(2).getrandbits(32))
    host = Host(dut, p, stall=_knob("stall", 0.3), salt=20)
    model = ChipModel(_model_params(p))
    _clear_banks(host, p)
    seen = set()
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
        seen.add(code)
        host.reset()
        model.reset()
        # after the reset, the statuses read IDLE, and a correct chain runs
        state = await read_state(host, p, banks=False)
        for s, entry in enumerate(state):
            assert entry["regs"]["status"] == 0, f"after reset: subsystem {s} status " \
                f"{entry['regs']['status']:#x}"
        if name in ("opcode", "deadlock"):
            await _check_chain(dut, host, model, p, gen, layers=2, used=p["subsystems"],
                               mapping="model", batch=p["lanes"])
    expected = set(range(1, 14)) - ({isa.ERR_NODE} if p["subsystems"] == 16 else set()) \
        - ({isa.ERR_ALIGN} if p["act_rows"] == 1 else set())
    assert seen >= expected, f"codes not provoked: {sorted(expected - seen)}"
