"""Activation-engine verification helpers shared by the regression (``tb_act``) and the perf run
(``perf_act``).

A command (job) is generated in numpy, its expected output beats computed with
:func:`golden.act.run`, and its beats packed once into ints, so the cocotb drivers only hand
them over.
"""

from dataclasses import dataclass, field

import numpy as np

from sparsehw.golden import act as golden
from sparsehw.hw.act_engine import act_layouts


__all__ = ["Job", "make_job", "reject_job", "layouts_of", "expected_beats", "run_jobs",
           "compare", "PORTS", "CORNERS", "PERF_FORMATS"]


PORTS = ("cmd", "i", "p")
#: Input corners: saturated int8, zero, +-1, the codes around the exponents' extremes.
CORNERS = np.array([-128, 127, 0, 1, -1, -127, 126, 64, -64], dtype=np.int64)


#: Formats and input ranges of the perf runs (those of golden.act.measure_errors):
#: op -> (fin, fout, low, high) with inputs uniform in low..high.
PERF_FORMATS = {"gelu": (5, 12, -128, 127), "exp": (5, 14, -128, 0), "log2": (4, 12, 1, 127),
                "recip": (0, 8, -128, 127), "softmax": (4, 15, -128, 127),
                "layernorm": (0, 10, -128, 127)}


def layouts_of(params):
    return act_layouts(lanes=params["lanes"], max_row=params["max_row"])


@dataclass
class Job:
    """One command: packed beats per port and the expected output beats (dicts)."""
    beats: dict
    expected: list
    n: int = 0
    info: dict = field(default_factory=dict)
    xs: list = None
    ys: list = None
    gamma: list = None
    beta: list = None


def _pack_all(layout, items):
    from sparsehw.verif.stream import pack
    return [pack(layout, item) for item in items]


def make_job(rng, params, op, n, *, fin=None, fout=None, kind="random", xs=None, gamma=None,
             beta=None):
    """A command of ``op`` on ``n`` elements.

    ``kind``: ``"random"`` (uniform int8), ``"corner"`` (mostly :data:`CORNERS`), ``"equal"``
    (one value repeated: all-equal softmax rows, zero-variance LayerNorm rows). ``xs`` overrides
    the data; ``gamma``, ``beta`` (lists) the LayerNorm parameters (random by default). ``rng`` is
    a numpy Generator.
    """
    L = params["lanes"]
    lay = layouts_of(params)
    fin = int(rng.integers(0, 8)) if fin is None else fin
    fout = int(rng.integers(0, 16)) if fout is None else fout
    if xs is None:
        if kind == "corner":
            xs = np.where(rng.random(n) < 0.8, rng.choice(CORNERS, size=n),
                          rng.integers(-128, 128, size=n))
        elif kind == "equal":
            xs = np.full(n, rng.choice(CORNERS))
        else:
            xs = rng.integers(-128, 128, size=n)
    xs = [int(v) for v in xs]
    if op == "layernorm" and gamma is not None:
        gamma, beta = [int(v) for v in gamma], [int(v) for v in beta]
    elif op == "layernorm":
        gamma = rng.integers(-32768, 32768, size=n)
        gamma = np.where(rng.random(n) < 0.5, rng.integers(-8192, 8193, size=n), gamma)
        beta = rng.integers(-32768, 32768, size=n)
        beta = np.where(rng.random(n) < 0.5, rng.integers(-256, 257, size=n), beta)
        gamma, beta = [int(v) for v in gamma], [int(v) for v in beta]
    else:
        gamma = beta = None
    ys, dom = golden.run(op, xs, fin=fin, fout=fout, gamma=gamma, beta=beta)
    nb = -(-n // L)
    pad = nb * L - n
    xp = xs + [int(v) for v in rng.integers(-128, 128, size=pad)]   # junk the engine ignores
    cmd = {"op": golden.OP_CODES[op], "n": n, "fin": fin, "fout": fout}
    i_beats = [{"x": xp[b * L:(b + 1) * L]} for b in range(nb)]
    p_beats = []
    if op == "layernorm":
        gp = gamma + [int(v) for v in rng.integers(-32768, 32768, size=pad)]
        bp = beta + [int(v) for v in rng.integers(-32768, 32768, size=pad)]
        p_beats = [{"gamma": gp[b * L:(b + 1) * L], "beta": bp[b * L:(b + 1) * L]}
                   for b in range(nb)]
    yp, dp = ys + [0] * pad, dom + [0] * pad
    expected = [{"y": yp[b * L:(b + 1) * L],
                 "domain": sum(dp[b * L + j] << j for j in range(L)),
                 "error": 0, "last": int(b == nb - 1)} for b in range(nb)]
    beats = {"cmd": _pack_all(lay["cmd"], [cmd]), "i": _pack_all(lay["i"], i_beats),
             "p": _pack_all(lay["p"], p_beats)}
    return Job(beats=beats, expected=expected, n=n, xs=xs, ys=ys, gamma=gamma, beta=beta,
               info={"op": op, "n": n, "fin": fin, "fout": fout, "kind": kind})


def reject_job(params, *, op, n, fin=0, fout=0):
    """A command the engine must reject: one cmd beat, one error beat out, nothing consumed."""
    lay = layouts_of(params)
    cmd = {"op": op, "n": n, "fin": fin, "fout": fout}
    expected = [{"y": [0] * params["lanes"], "domain": 0, "error": 1, "last": 1}]
    return Job(beats={"cmd": _pack_all(lay["cmd"], [cmd]), "i": [], "p": []},
               expected=expected, info={"reject": cmd})


def expected_beats(jobs):
    return [beat for job in jobs for beat in job.expected]


async def run_jobs(dut, params, jobs, *, stall=0.0, rng=None, timeout_cycles=None,
                   out_stall=None):
    """Drive ``jobs`` back to back; return ``(outputs, endpoints)``.

    Every input port gets its own source with independent random valid gaps (``stall``); the
    output sink applies random back-pressure with probability ``out_stall`` (default: the same
    as ``stall``).
    """
    from sparsehw.verif.stream import StreamSink, StreamSource, unpack
    lay = layouts_of(params)
    sources = {}
    for k, port in enumerate(PORTS):
        sources[port] = StreamSource(dut, port, rng=rng and _child(rng, k), stall=stall)
    out_stall = stall if out_stall is None else out_stall
    sink = StreamSink(dut, "o", rng=rng and _child(rng, 9), stall=out_stall)
    for port in PORTS:
        sources[port].send_nowait(b for job in jobs for b in job.beats[port])
    want = sum(len(job.expected) for job in jobs)
    if timeout_cycles is None:
        work = sum(3 * len(job.beats["i"]) + 30 for job in jobs)
        timeout_cycles = int(work / (1 - max(stall, out_stall)) ** 2 * 3) + 200
    await sink.wait_for(want, timeout_cycles)
    outputs = [unpack(lay["o"], bits) for bits in sink.items]
    for source in sources.values():
        assert source.pending == 0, "a source still holds beats after the last output"
    return outputs, {**sources, "o": sink}


def compare(got, jobs):
    """Assert the output beats equal the golden beats, naming the first difference."""
    want = expected_beats(jobs)
    assert len(got) == len(want), f"{len(got)} output beats, expected {len(want)}"
    i = 0
    for j, job in enumerate(jobs):
        for b, expected in enumerate(job.expected):
            assert got[i] == expected, (f"job {j} ({job.info}) beat {b}: got {got[i]}, "
                                        f"expected {expected}")
            i += 1


def _child(rng, salt):
    import random
    return random.Random(rng.random() * 1e9 + salt)
