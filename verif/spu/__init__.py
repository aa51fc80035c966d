"""SPU verification helpers shared by the regression (``tb_spu``) and the perf run (``perf_spu``).

A GEMM job is generated in numpy, its expected output computed with :mod:`golden.spu`, and its
beats packed once into ints, so the cocotb drivers do nothing per cycle but hand them over.
"""

from dataclasses import dataclass, field

import numpy as np

from sparsehw.golden import nm
from sparsehw.golden import spu as golden_spu
from sparsehw.hw.spu import spu_layouts


__all__ = ["Job", "make_job", "exact_post_ops", "EXACT_MAX_SHIFT", "reject_job", "layouts_of", "expected_beats", "run_jobs",
           "PORTS"]


PORTS = ("cfg", "act", "w", "post")


def layouts_of(params):
    return spu_layouts(lanes=params["lanes"], macs=params["macs"], max_m=params["max_m"],
                       max_k=params["max_k"], act_rows=params["act_rows"])


@dataclass
class Job:
    """One GEMM (or one rejected configuration): packed beats per port and expected outputs."""
    beats: dict                      # port -> list of packed ints
    expected: list                   # expected output beats (dicts)
    macs: int = 0                    # nonzero MACs (o * nz * lanes)
    info: dict = field(default_factory=dict)


def _pack_all(layout, items):
    from sparsehw.verif.stream import pack
    return [pack(layout, item) for item in items]


def make_job(rng, params, *, n, m, k, o, relu, corner=False, corrupt_rows=(), post_mode="mix",
             w=None, small=False):
    """A random GEMM on an SPU with generation ``params``.

    ``rng`` is a numpy Generator. ``corner`` fills weights/activations mostly with -128/127,
    ``small`` draws them from -8..7 (so a row's lanes stay close together). ``corrupt_rows`` get
    a malformed index (out of range or not ascending, chosen at random). ``post_mode``: ``"mix"``
    (random post-ops, most results saturate), ``"wide"`` (the same without the small-multiplier
    rows) or ``"exact"`` (:func:`exact_post_ops`: most results inside -128..127, every bit of the
    accumulator visible in ``y``).
    """
    L, P, R = params["lanes"], params["macs"], params["act_rows"]
    lay = layouts_of(params)
    given_w = w
    if corner:
        w = rng.choice(np.array([-128, 127, -128, 0, 1, -1], dtype=np.int8), size=(o, k))
        x = rng.choice(np.array([-128, 127, -128, 127, 0], dtype=np.int8), size=(k, L))
    else:
        lo, hi = (-8, 8) if small else (-128, 128)
        w = rng.integers(lo, hi, size=(o, k), dtype=np.int64).astype(np.int8)
        x = rng.integers(lo, hi, size=(k, L), dtype=np.int64).astype(np.int8)
    if given_w is not None:         # the same weights for several column tiles of X
        w = np.asarray(given_w, dtype=np.int8)
    values, indices = nm.compress(w, n, m)
    indices = indices.astype(np.int64)
    clean = nm.decompress(values, indices, n, m)
    nz = k // m * n
    idx_bits = max(1, params["max_m"].bit_length() - 1)
    corrupt_kinds = []
    for r in corrupt_rows:
        j = int(rng.integers(0, nz))
        kinds = []
        if m < (1 << idx_bits):
            kinds.append("range")
        if n > 1:
            kinds.append("order")
        kind = kinds[int(rng.integers(0, len(kinds)))] if kinds else None
        corrupt_kinds.append(kind)
        at_end = rng.random() < 0.5          # half the time: the row's very last entry
        if kind == "range":
            j = nz - 1 if at_end else j
            indices[r, j] = int(rng.integers(m, 1 << idx_bits))
        elif kind == "order":
            g = j // n
            a = nz - 2 if at_end else g * n + int(rng.integers(0, n - 1))
            indices[r, a + 1] = indices[r, a]  # equal neighbours: not strictly ascending
        if kind is None or nm.check_indices(indices[r], n, m).all():
            raise ValueError(f"cannot corrupt row {r} for {n}:{m} on max_m={params['max_m']}")
    # Post-op parameters: a mix of regimes so that results spread over -128..127 and saturate.
    bias = rng.integers(-2**31, 2**31, size=o, dtype=np.int64)
    bias = np.where(rng.random(o) < 0.7, rng.integers(-20000, 20000, size=o), bias)
    mult = rng.integers(0, 65536, size=o, dtype=np.int64)
    shift = rng.integers(12, 32, size=o, dtype=np.int64)
    if post_mode == "mix":
        tiny = rng.random(o) < 0.2
        mult = np.where(tiny, rng.integers(0, 4, size=o), mult)
        shift = np.where(tiny, rng.integers(0, 12, size=o), shift)
    elif post_mode == "exact":     # from the accumulators of the rows as compressed (unflagged)
        bias, mult, shift = exact_post_ops(rng, nm.gemm_int8(clean, x))
    y, err = golden_spu.spu_gemm(values, indices, n, m, x, bias, mult, shift, relu)

    cfg = {"n_log2": n.bit_length() - 1, "m_log2": m.bit_length() - 1, "k": k, "o": o,
           "relu": int(relu)}
    act = [[[int(v) for v in x[i * R + r]] for r in range(R)] for i in range(k // R)]
    w_beats = []
    for r in range(o):
        for t in range(-(-nz // P)):
            beat = []
            for p in range(P):
                j = t * P + p
                if j < nz:
                    beat.append({"value": int(values[r, j]), "index": int(indices[r, j])})
                else:       # padding: random junk that must be ignored
                    beat.append({"value": int(rng.integers(-128, 128)),
                                 "index": int(rng.integers(0, 1 << idx_bits))})
            w_beats.append(beat)
    post = [{"bias": int(bias[r]), "mult": int(mult[r]), "shift": int(shift[r])}
            for r in range(o)]
    expected = [{"y": [int(v) for v in y[r]], "error": int(err[r]), "cfg_error": 0,
                 "last": int(r == o - 1)} for r in range(o)]
    beats = {"cfg": _pack_all(lay["cfg"], [cfg]), "act": _pack_all(lay["act"], act),
             "w": _pack_all(lay["w"], w_beats), "post": _pack_all(lay["post"], post)}
    return Job(beats=beats, expected=expected, macs=o * nz * L,
               info={"n": n, "m": m, "k": k, "o": o, "relu": relu, "corner": corner,
                     "small": small, "post_mode": post_mode, "shifts": [int(v) for v in shift],
                     "corrupt_rows": list(corrupt_rows), "corrupt_kinds": corrupt_kinds})


#: Largest shift of :func:`exact_post_ops`: a one in bit 12 of ``(acc + bias) * mult`` still
#: moves ``y``.
EXACT_MAX_SHIFT = 12


def exact_post_ops(rng, acc):
    """Post-op parameters ``(bias, mult, shift)`` per row of the accumulators ``acc`` (O x B) that
    keep most results unsaturated and every bit of ``(acc + bias) * mult`` above ``shift``
    visible: ``shift`` runs through 0..:data:`EXACT_MAX_SHIFT` row by row, ``mult / 2**shift`` in about
    ``[scale / 4, scale]`` with ``scale = min(4, 120 / spread)`` (at least ``2**-shift``), ``bias``
    centring the row's lanes on a small random offset (of either sign).

    Stimulus only: the expected outputs still come from :func:`golden.spu.spu_gemm`.
    """
    o = acc.shape[0]
    bias = np.zeros(o, dtype=np.int64)
    mult = np.zeros(o, dtype=np.int64)
    # Every shift in turn (from a random one), so a few rows cover them all.
    shift = (int(rng.integers(0, EXACT_MAX_SHIFT + 1)) + np.arange(o)) % (EXACT_MAX_SHIFT + 1)
    for r in range(o):
        centre = int(np.median(acc[r]))
        spread = int(np.abs(acc[r] - centre).max()) + 1
        # scale at most 4: a row of close lanes (one lane) still gets many output values
        top = max(1, min(65535, (min(120, 4 * spread) << int(shift[r])) // spread))
        mult[r] = int(rng.integers(max(1, top // 4), top + 1))
        offset = int(rng.integers(-40, 41)) << int(shift[r])
        bias[r] = -centre + offset // int(mult[r])
    return bias, mult, shift


def reject_job(params, *, n_log2, m_log2, k, o, relu=0):
    """A configuration the SPU must reject: one cfg beat, one ``cfg_error`` output beat."""
    lay = layouts_of(params)
    assert golden_spu.cfg_error(n_log2, m_log2, k, o, max_m=params["max_m"],
                                max_k=params["max_k"], act_rows=params["act_rows"])
    cfg = {"n_log2": n_log2, "m_log2": m_log2, "k": k, "o": o, "relu": relu}
    expected = [{"y": [0] * params["lanes"], "error": 0, "cfg_error": 1, "last": 1}]
    return Job(beats={"cfg": _pack_all(lay["cfg"], [cfg]), "act": [], "w": [], "post": []},
               expected=expected, info={"reject": cfg})


def expected_beats(jobs):
    return [beat for job in jobs for beat in job.expected]


async def run_jobs(dut, params, jobs, *, stall=0.0, rng=None, timeout_cycles=None,
                   block_output=0):
    """Drive ``jobs`` back to back; return ``(outputs, endpoints)``.

    Each port gets its own source with independent random valid gaps (``stall``); the output
    sink applies random back-pressure with the same probability, after holding ``ready`` low for
    the first ``block_output`` cycles. All endpoints start in the same cycle, so their cycle
    stamps compare directly.
    """
    import random

    import cocotb
    from cocotb.triggers import ClockCycles

    from sparsehw.verif.stream import StreamSink, StreamSource, unpack
    lay = layouts_of(params)
    sources = {}
    for i, port in enumerate(PORTS):
        sources[port] = StreamSource(dut, port, rng=rng and _child(rng, i), stall=stall)
    sink = StreamSink(dut, "o", rng=_child(rng, 9) if rng else random.Random(9), stall=stall)
    if block_output:
        sink.stall = 1.0        # every cycle stalled (the constructor takes probabilities < 1)
        async def unblock():
            await ClockCycles(dut.clk, block_output)
            sink.stall = stall
        cocotb.start_soon(unblock())
    for port in PORTS:
        sources[port].send_nowait(b for job in jobs for b in job.beats[port])
    want = sum(len(job.expected) for job in jobs)
    if timeout_cycles is None:
        work = sum(len(job.beats["w"]) + len(job.beats["act"]) + 20 for job in jobs)
        timeout_cycles = int(work / (1 - stall) ** 2 * 3) + 200 + block_output
    await sink.wait_for(want, timeout_cycles)
    outputs = [unpack(lay["o"], bits) for bits in sink.items]
    for source in sources.values():
        assert source.pending == 0, "a source still holds beats after the last output"
    return outputs, {**sources, "o": sink}


def _child(rng, salt):
    import random
    return random.Random(rng.random() * 1e9 + salt)
