"""Chip verification helpers: a host that drives the chip's command/response port, workloads
built with the golden compiler, and the comparison against the golden chip model.

The regression (``tb_chip``) and the perf run (``perf_chip``) share them.
"""

import numpy as np

from sparsehw.golden import chip as isa
from sparsehw.golden.chip_compile import GemmLayer, compile_chain
from sparsehw.hw.chip import CHIP_MEM, CHIP_REG_NAMES, HOST_OPS, REG_NAMES, REGS_MEM
from sparsehw.hw.chip import chip_host_layouts
from sparsehw.params import Param, ParamSpec, Rule, boolean, int_in, one_of, pow2_in


__all__ = ["CHIP_WORKLOAD", "MUTATION_WORKLOAD", "weight_words", "Host", "random_chain", "images", "load_compiled", "read_state", "compare_state", "ring_traffic",
           "run_to_done", "executed"]


def weight_words(params, workload, n, m):
    """Weight words one subsystem needs for the perf chain's tied weights at ``n:m``
    (``verif.chip.perf_chip.tie_weights``): ``ceil(k / subsystems)`` output rows of
    ``beats_per_row(k, n:m, macs)`` words."""
    k, S = workload["k"], params["subsystems"]
    rows = -(-k // S)
    return rows * isa.beats_per_row(k, n.bit_length() - 1, m.bit_length() - 1, params["macs"])


def _k_rule(values):
    """``k`` of the perf chain: in range, and its tied weights fit ``wmem_depth`` at the
    workload's n:m (else the run could not load them: say so before anything is built)."""
    low, high = max(values["m"], values["act_rows"], values["subsystems"]), values["max_k"]
    depth, n, m = values["wmem_depth"], values["n"], values["m"]

    def ok(k):
        return low <= k <= high and weight_words(values, {"k": k}, n, m) <= depth

    fits = [k for k in (1 << e for e in range(high.bit_length())) if ok(k)]
    hint = (f"the largest power of two that fits is {fits[-1]}" if fits
            else "no power of two in range fits: raise wmem_depth or choose a sparser n:m")
    return Rule(f"an integer in {low}..{high} whose weights at n:m = {n}:{m} fit "
                f"wmem_depth = {depth} words per subsystem ({hint})", ok)


#: Knobs of ``sparsehw perf chip`` (the defaults are the reference workload).
CHIP_WORKLOAD = ParamSpec(
    Param("m", 1, lambda v: pow2_in(1, v["max_m"]), doc="group size of every layer",
          allowed="a power of two in 1..max_m"),
    Param("n", 1, lambda v: pow2_in(1, v["m"]), doc="nonzeros per group",
          allowed="a power of two in 1..m"),
    Param("layers", 4, int_in(1, 16), doc="GEMMs in the chain"),
    Param("k", 1024, lambda v: _k_rule(v),
          doc="K = O of every layer (a multiple of m and act_rows)",
          allowed="an integer in max(m, act_rows, subsystems)..max_k whose weights fit "
                  "wmem_depth (ceil(k/subsystems) x beats_per_row words per subsystem)"),
    Param("b", 16, lambda v: int_in(1, v["lanes"]), doc="batch columns (one tile)",
          allowed="an integer in 1..lanes"),
    Param("mapping", "model", one_of("model", "data"), doc="model- or data-parallel mapping"),
    Param("baseline", True, boolean(),
          doc="also run one subsystem (cached) for speedup_vs_1 and scaling_efficiency"),
    kind="workload knob",
)

#: Workload knobs of the chip regression that ``sparsehw mutate chip`` runs on every mutant (the
#: registry's ``mutation_workload``): a subset of the regression (``tb_chip``'s module docstring),
#: so its mutation score is a lower bound of the full regression's.
MUTATION_WORKLOAD = {"chains": 2, "max_layers": 3, "reset_chains": 0, "programs": 2}


class Host:
    """The host side of the chip's ``cmd``/``rsp`` port, with random stalls on both streams."""

    def __init__(self, dut, params, *, stall=0.0, salt=0):
        from sparsehw.verif.stream import endpoints
        self.params = params
        self.lay = chip_host_layouts(params)
        self.src, self.sink = endpoints(dut, "cmd", "rsp", stall=stall, salt=salt)
        self.dut = dut

    def _cmd(self, op, sub=0, mem=0, addr=0, data=0):
        from sparsehw.verif.stream import pack
        return pack(self.lay["cmd"], {"op": op, "sub": sub, "mem": mem, "addr": addr,
                                      "data": data})

    def write(self, sub, mem, addr, words):
        """Queue writes of ``words`` from ``addr`` (no wait)."""
        self.src.send_nowait(self._cmd(HOST_OPS["write"], sub, mem, addr + i, int(w))
                             for i, w in enumerate(words))

    def start(self):
        self.src.send_nowait([self._cmd(HOST_OPS["start"])])

    def reset(self):
        self.src.send_nowait([self._cmd(HOST_OPS["reset"])])

    async def read(self, sub, mem, addr, count=1, timeout=None):
        """Read ``count`` words; returns a list of ``(data, bad)``."""
        from sparsehw.verif.stream import unpack
        first = len(self.sink.items)
        self.src.send_nowait(self._cmd(HOST_OPS["read"], sub, mem, addr + i)
                             for i in range(count))
        await self.sink.wait_for(first + count, timeout or 20 * count + 2000)
        out = [unpack(self.lay["rsp"], bits) for bits in self.sink.items[first:first + count]]
        return [(r["data"], r["bad"]) for r in out]

    async def read_held(self, sub, mem, addr, hold):
        """Read one word with the response held: ``rsp`` not ready in the first ``hold`` (at
        least 1) cycles it is offered, then the sink's random stalls again; returns
        ``(data, bad)``."""
        from cocotb.triggers import ReadOnly, RisingEdge
        from sparsehw.verif.stream import unpack
        first = len(self.sink.items)
        self.sink.stop()
        self.sink.ready.value = 0
        self.src.send_nowait([self._cmd(HOST_OPS["read"], sub, mem, addr)])
        for _ in range(2000):
            await ReadOnly()
            if self.sink.valid.value == 1:
                break
            await RisingEdge(self.sink.clk)
        else:
            raise TimeoutError(f"no response to a read of subsystem {sub}, memory {mem}")
        for _ in range(max(hold, 1)):
            await RisingEdge(self.sink.clk)
        self.sink.start()
        await self.sink.wait_for(first + 1, 2000)
        out = unpack(self.lay["rsp"], self.sink.items[first])
        return out["data"], out["bad"]

    async def idle(self, timeout=None):
        await self.src.wait_idle(timeout)


def random_layer(gen, k, o, max_m, m=None):
    """A random GEMM layer ``k -> o``: group size ``m`` (default: random up to ``max_m``,
    halved until it divides ``k``), N random up to M, random weights and post-ops."""
    if m is None:
        m = 1 << int(gen.integers(0, max_m.bit_length()))
    while k % m:
        m //= 2
    n = 1 << int(gen.integers(0, m.bit_length()))
    w = gen.integers(-128, 128, size=(o, k), dtype=np.int64).astype(np.int8)
    bias = np.where(gen.random(o) < 0.8, gen.integers(-20000, 20000, size=o),
                    gen.integers(-2**31, 2**31, size=o, dtype=np.int64))
    mult = gen.integers(0, 65536, size=o, dtype=np.int64)
    shift = gen.integers(8, 24, size=o, dtype=np.int64)
    return GemmLayer(w=w, n=n, m=m, bias=bias, mult=mult, shift=shift,
                     relu=bool(gen.integers(0, 2)))


def random_chain(gen, params, *, layers, subsystems, batch, ms=None):
    """A random chain of ``layers`` GEMMs fitting ``params`` (shapes multiples of act_rows).
    ``ms``: the group size M of each layer (its input size is then a multiple of it, where
    the memories allow); default random."""
    unit = max(params["act_rows"], 1)
    tiles = -(-batch // params["lanes"])
    top = min(params["max_k"], params["bank_rows"] // tiles)
    ms = [None] * layers if ms is None else list(ms)
    sizes = []
    for l in range(layers + 1):
        step = max(unit, ms[l]) if l < layers and ms[l] and ms[l] <= top else unit
        sizes.append(step * int(gen.integers(max(1, -(-subsystems // step)), top // step + 1)))
    return [random_layer(gen, sizes[l], sizes[l + 1], params["max_m"], ms[l])
            for l in range(layers)]


def images(compiled, x):
    """Per subsystem, ``{mem: (addr, words)}`` host images (program, weights, post-ops, bank 0)."""
    p = compiled.params
    out = []
    inputs = compiled.input_images(x)
    for s, program in enumerate(compiled.programs):
        mems = {isa.MEM_IMEM: [isa.encode(i) if not isinstance(i, int) else i
                               for i in program]}
        if s < compiled.subsystems:
            values, indices = compiled.weights[s]
            mems[isa.MEM_WMEM] = [isa.pack_w(v, i, p) for v, i in zip(values, indices)]
            bias, mult, shift = compiled.posts[s]
            mems[isa.MEM_PMEM] = [isa.pack_post(b, mu, sh) for b, mu, sh in zip(bias, mult, shift)]
            mems[isa.MEM_BANK0] = [isa.pack_row(r) for r in inputs[s]]
        out.append(mems)
    return out


def load_images(host, imgs):
    for s, mems in enumerate(imgs):
        for mem, words in mems.items():
            host.write(s, mem, 0, words)


def load_model(model, imgs):
    for s, mems in enumerate(imgs):
        for mem, words in mems.items():
            if words:
                model.write_words(s, mem, 0, words)


async def run_to_done(dut, host, timeout):
    """Start, then wait for ``done``; returns the chip's registers (cycles from start to done...).

    While the chip runs, the host's stream drivers are paused, so that no Python code runs per
    cycle and the simulator runs at full speed."""
    from cocotb.triggers import First, RisingEdge, Timer
    await host.idle(timeout)
    host.start()
    await host.idle(timeout)
    host.src.stop()
    host.sink.stop()
    if int(dut.done.value) != 1:
        # a single timer, not a per-cycle trigger: no Python runs until done rises
        await First(RisingEdge(dut.done), Timer(timeout * 10, unit="ns"))
    host.src.start()
    host.sink.start()
    if int(dut.done.value) != 1:
        raise TimeoutError(f"chip not done after {timeout} cycles")
    regs = await host.read(0, CHIP_MEM, 0, len(CHIP_REG_NAMES))
    return {name: data for name, (data, _bad) in zip(CHIP_REG_NAMES, regs)}


#: Words of each program memory that ``read_state(programs=True)`` reads back (from 0).
PROGRAM_READBACK = 64


async def read_state(host, params, *, banks=True, programs=False):
    """Per subsystem: status word, counters, (with ``banks``) both banks' rows and (with
    ``programs``) the first :data:`PROGRAM_READBACK` words of imem, wmem and pmem, by memory
    id."""
    state = []
    counts = {}
    if banks:
        counts.update({isa.MEM_BANK0: params["bank_rows"], isa.MEM_BANK1: params["bank_rows"]})
    if programs:
        counts.update({isa.MEM_IMEM: min(params["imem_depth"], PROGRAM_READBACK),
                       isa.MEM_WMEM: min(params["wmem_depth"], PROGRAM_READBACK),
                       isa.MEM_PMEM: min(params["pmem_depth"], PROGRAM_READBACK)})
    for s in range(params["subsystems"]):
        regs = await host.read(s, REGS_MEM, 0, len(REG_NAMES))
        entry = {"regs": {n: d for n, (d, _) in zip(REG_NAMES, regs)}}
        for mem, count in counts.items():
            entry[mem] = [d for d, _ in await host.read(s, mem, 0, count)]
        state.append(entry)
    return state


def executed(model, s):
    """The instructions subsystem ``s`` executed in ``model``'s last run, in order (programs
    have no branches: the first ``stats["instructions"][s]`` words of its imem)."""
    return [isa.decode(int(word), act_engine=model.params["act_engine"])
            for word in model.subs[s].imem[:model.stats["instructions"][s]]]


def ring_traffic(model, params):
    """``(flits, rows)``: per subsystem the flits it injected and the ring rows it received in
    ``model``'s last run, from the instructions each executed. A GEMM's rows go to every other
    subsystem of its mask (its own rows are a local write, no flit), a SEND's rows to every
    subsystem of its mask, its own included (a ring flit like a remote one); a row is
    ``flit_format(...)["chunks"]`` flits. With one subsystem the injection port loops back to
    the ejection port: the same counts."""
    from sparsehw.hw.chip.subsystem import flit_format
    chunks = flit_format(params["lanes"], params["bank_rows"], params["flit_width"])["chunks"]
    count = params["subsystems"]
    flits, rows = [0] * count, [0] * count
    for s in range(count):
        for instr in executed(model, s):
            if isinstance(instr, isa.Gemm):
                n, dests = instr.o, [d for d in range(count) if instr.mask >> d & 1 and d != s]
            elif isinstance(instr, isa.Send):
                n, dests = instr.count, [d for d in range(count) if instr.mask >> d & 1]
            else:
                continue
            for d in dests:
                flits[s] += n * chunks
                rows[d] += n
    return flits, rows


def compare_state(state, model, params, *, banks=True, chip_regs=None):
    """Mismatch messages between the RTL's read-back state and the golden model's: status
    words, the ``gemms`` counter (GEMMs the model executed), after a run without an error the
    ``flits_sent`` and ``rows_received`` counters (:func:`ring_traffic`) and, given the chip's
    registers ``chip_regs`` (:func:`run_to_done`) of a chip with a ring, ``ring_flits``, and
    every memory word read back (``banks``: requires that the state holds both banks)."""
    problems = []
    clean = all(model.status(s).state == isa.HALTED for s in range(len(state)))
    flits, rows = ring_traffic(model, params) if clean else (None, None)
    if flits is not None and chip_regs is not None and params["subsystems"] > 1 \
            and chip_regs["ring_flits"] != sum(flits):
        problems.append(f"chip ring_flits {chip_regs['ring_flits']}, the model's run injected "
                        f"{sum(flits)}")
    for s, entry in enumerate(state):
        for name, want in (("flits_sent", flits), ("rows_received", rows)):
            if want is not None and entry["regs"][name] != want[s]:
                problems.append(f"subsystem {s}: {name} counter {entry['regs'][name]}, the "
                                f"model's run moved {want[s]}")
        want = model.status(s).word
        if entry["regs"]["status"] != want:
            problems.append(f"subsystem {s}: status {entry['regs']['status']:#x} "
                            f"({_status_text(entry['regs']['status'])}), expected {want:#x} "
                            f"({model.status(s)})")
        gemms = sum(isinstance(instr, isa.Gemm) for instr in executed(model, s))
        if entry["regs"]["gemms"] != gemms:
            problems.append(f"subsystem {s}: gemms counter {entry['regs']['gemms']}, the model "
                            f"executed {gemms} GEMMs")
        mems = [mem for mem in entry if mem != "regs"]
        if banks and not {isa.MEM_BANK0, isa.MEM_BANK1} <= set(mems):
            raise ValueError("compare_state(banks=True) needs a state read with banks=True")
        for mem in mems:
            expected = model.read_words(s, mem, 0, len(entry[mem]))
            bad = [a for a, (g, e) in enumerate(zip(entry[mem], expected)) if g != e]
            if bad:
                a = bad[0]
                problems.append(f"subsystem {s} {isa.MEMORIES[mem]}: {len(bad)} words differ, "
                                f"first word {a}: got {entry[mem][a]:#x}, expected "
                                f"{expected[a]:#x}")
    return problems


def _status_text(word):
    return (f"{isa.STATES[word & 3]} error={isa.ERRORS.get((word >> 2) & 15, '?')} "
            f"pc={word >> 16}{' row_error' if word >> 6 & 1 else ''}")


def output_of(compiled, state, params):
    """The chain's output from the RTL's read-back banks (``Compiled.read_output`` layout)."""
    class _Banks:
        pass
    subs = []
    for s in range(params["subsystems"]):
        sub = _Banks()
        sub.banks = np.array([[isa.unpack_row(w, params["lanes"]) for w in state[s][mem]]
                              for mem in (isa.MEM_BANK0, isa.MEM_BANK1)], dtype=np.int8)
        subs.append(sub)

    class _Model:
        pass
    fake = _Model()
    fake.subs = subs
    return compiled.read_output(fake)
