"""Generic chip program run: load memory images through the host port, start, wait for ``done``,
read back the chip's counters, every subsystem's registers and bank rows; phase after phase.

The job is a pickle named by the workload knob ``job`` (written by the caller, for instance
:func:`sparsehw.model.rtl.run_phases`)::

    {"phases": [phase, ...], "read_rows": rows read back from each bank}
    phase = {"images": [per subsystem: [(mem, addr, words), ...]],
             "host": None or a callable(banks) -> images, "reset": bool (default False),
             "read_rows": rows read back after this phase (default: the job's)}

Before a phase starts, with ``reset`` the host resets the chip (sequencers, counters, ring;
memories keep their contents), then its ``images`` are written, then, when ``host`` is given, the words it
returns from the banks read back after the previous phase (per subsystem an int8 array
``(2, rows, lanes)``: the RTL's own results, not the golden model's) are written too: the
host step between the two phases of a compiled encoder layer. After each phase the read-back
state is pickled to the path named by the workload knob ``out``: per phase ``{"chip": chip
registers (cycles from start to done, ring counters), "regs": per subsystem registers,
"banks": per subsystem the two banks' first rows as words}``.

No comparison happens here: the caller compares with the golden chip model, so that the same
test serves any program.
"""

import pickle

import cocotb
import numpy as np

from sparsehw.golden import chip as isa
from sparsehw.hw.chip import REG_NAMES, REGS_MEM
from sparsehw.verif import common
from sparsehw.verif.chip import Host, run_to_done
from sparsehw.verif.stream import start


def _write(host, images):
    for s, entries in enumerate(images or []):
        for mem, addr, words in entries:
            if len(words):
                host.write(s, mem, addr, [int(w) for w in words])


async def _read_back(host, p, rows):
    regs, banks = [], []
    for s in range(p["subsystems"]):
        got = await host.read(s, REGS_MEM, 0, len(REG_NAMES))
        regs.append({n: d for n, (d, _) in zip(REG_NAMES, got)})
        banks.append([[d for d, _ in await host.read(s, mem, 0, rows)] if rows else []
                      for mem in (isa.MEM_BANK0, isa.MEM_BANK1)])
    return regs, banks


@cocotb.test()
async def chip_program(dut):
    """Run the job's phases; record how many ran and the path of the read-back state."""
    p = dict(common.params())
    knobs = common.workload()
    with open(knobs["job"], "rb") as f:
        job = pickle.load(f)
    await start(dut, sources=("cmd",), sinks=("rsp",))
    host = Host(dut, p, stall=float(knobs.get("stall", 0.0)), salt=5)
    timeout = int(knobs.get("timeout", 10_000_000))
    results, banks = [], None
    for phase in job["phases"]:
        if phase.get("reset"):
            host.reset()
        _write(host, phase["images"])
        if phase.get("host") is not None:
            rows = [np.array([[isa.unpack_row(w, p["lanes"]) for w in bank] for bank in sub],
                             dtype=np.int8).reshape(2, -1, p["lanes"]) for sub in banks]
            _write(host, phase["host"](rows))
        chip = await run_to_done(dut, host, timeout)
        regs, banks = await _read_back(host, p, phase.get("read_rows", job["read_rows"]))
        results.append({"chip": chip, "regs": regs, "banks": banks})
        dut._log.info(f"phase {len(results)}: {chip['cycles']} cycles")
    with open(knobs["out"], "wb") as f:
        pickle.dump(results, f)
    common.record(phases=len(results), cycles=[r["chip"]["cycles"] for r in results])
