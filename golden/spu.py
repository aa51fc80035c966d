"""Golden model of the SPU block: one N:M sparse GEMM with fused post-ops, as the hardware sees it.

Numeric rules
-------------
- ``acc[o, b] = sum_j values[o, j] * x[group(j)*m + indices[o, j], b]`` exactly in int32
  (the bound ``|acc| <= K * 2**14 <= 2**30`` for ``K <= 65536`` means it never overflows).
- Post-ops are :func:`golden.nm.spu_post`: ``y = sat8(round_half_up(((acc + bias) * mult) /
  2**shift))``, then ReLU when enabled.
- A row whose indices are malformed (an index ``>= m``, or indices not strictly ascending inside a
  group of ``n``) produces ``y = 0`` and ``error = 1``; the other rows are unaffected.
- A configuration the block does not accept (:func:`cfg_error`) produces one output beat with
  ``cfg_error = 1`` and consumes no activations, weights or post-op parameters.
"""

import math

import numpy as np

from sparsehw.golden import nm
from sparsehw.params import Param, ParamSpec, int_in, multiple_of, pow2_in


__all__ = ["cfg_error", "spu_gemm", "beats_per_row", "SPU_PIPELINE_LATENCY", "spu_cycles",
           "SPU_WORKLOAD"]


#: The knobs of one ``sparsehw perf spu`` run (an n:m GEMM K x O x B); the defaults are the
#: reference workload. The ranges depend on the generation parameters (the ``context`` of
#: ``SPU_WORKLOAD.validate(params, **workload)``).
SPU_WORKLOAD = ParamSpec(
    Param("m", 1, lambda v: pow2_in(1, v["max_m"]), doc="group size; 1 = dense",
          allowed="a power of two in 1..max_m"),
    Param("n", 1, lambda v: pow2_in(1, v["m"]), doc="nonzeros per group",
          allowed="a power of two in 1..m"),
    Param("k", 1024, lambda v: multiple_of(max(v["m"], v["act_rows"]), v["max_k"]),
          doc="reduction length", allowed="a multiple of max(m, act_rows) up to max_k"),
    Param("o", 256, int_in(1, 65535), doc="output rows"),
    Param("b", 16, lambda v: multiple_of(v["lanes"]), doc="batch columns",
          allowed="a positive multiple of lanes"),
    kind="workload knob",
)


def cfg_error(n_log2, m_log2, k, o, *, max_m, max_k, act_rows):
    """True when the SPU rejects the run-time configuration (see the hardware docstring)."""
    m_ok = (1 << m_log2) <= max_m if m_log2 < 8 else False
    return not (m_ok and n_log2 <= m_log2 and 0 < k <= max_k and k % (1 << m_log2) == 0
                and k % act_rows == 0 and o > 0)


def beats_per_row(k, n, m, macs):
    """Weight beats per output row: ``ceil(k/m*n / macs)`` (the last beat may be partial)."""
    nonzeros = k // m * n
    return -(-nonzeros // macs)


def spu_gemm(values, indices, n, m, x, bias, mult, shift, relu):
    """Expected SPU output of one GEMM.

    Parameters
    ----------
    values : int array (O, K//m*n)
        Kept weights (int8), as :func:`golden.nm.compress` gives them.
    indices : int array (O, K//m*n)
        Positions inside each group (may be malformed: such rows are flagged).
    n, m : int
    x : int array (K, B)
        int8 activations.
    bias, mult, shift : int arrays (O,)
    relu : bool

    Returns
    -------
    y : numpy.ndarray of int8, shape (O, B)
    error : numpy.ndarray of bool, shape (O,)
    """
    values = np.asarray(values).astype(np.int64)
    indices = np.asarray(indices).astype(np.int64)
    good = nm.check_indices(indices, n, m).all(axis=-1)
    safe_idx = np.where(good[:, None], indices, np.arange(indices.shape[1]) % n)
    dense = nm.decompress(np.where(good[:, None], values, 0), safe_idx, n, m)
    acc = nm.gemm_int8(dense, x)
    y = nm.spu_post(acc, bias, mult, shift, relu)
    y[~good] = 0
    return y, ~good


# -- cycle model (closed form, set next to the measured cycles in the report) -------------------
#: Cycles from the first input handshake to the first weight beat plus from the last weight beat
#: to the last output beat: S0..S9 and the output FIFO (docs/spu.md). Was 8 before the pipeline
#: registers of issue #14 (eight more stages, for ECP5 timing), re-measured at 1:32 with two
#: X buffers (tests/test_spu.py::test_perf_double_buffer_cycles).
SPU_PIPELINE_LATENCY = 16


def spu_cycles(params, workload):
    """Predicted cycles of one ``sparsehw perf spu`` run; returns ``(total, parts)``.

    For each of the ``T = B / lanes`` column tiles the SPU issues ``O * ceil(nz / macs)`` weight
    beats, ``nz = K * n / m`` nonzeros per row, one beat per cycle (the ideal). Row 0 of a tile
    cannot finish before all of its ``X`` has arrived (``K / act_rows`` activation beats):

    - ``x_buffers = 1``: every tile loads its ``X`` after the previous one has finished, so each
      tile loses ``max(0, K / act_rows - ceil(nz / macs))`` cycles when loading ``X`` is slower
      than computing row 0;
    - ``x_buffers = 2``: a tile's ``X`` loads into the other bank while the previous tile
      computes, so only the first tile loses ``max(0, K / act_rows - ceil(nz / macs))``; a later
      tile loses ``max(0, K / act_rows + 1 - O * ceil(nz / macs))`` (its load, plus the cycle the
      loader takes to see it complete, against the whole previous tile's compute: zero once
      ``O * ceil(nz / macs) > K / act_rows``).

    Add the pipeline latency once.
    """
    n, m, k, o, b = (workload[key] for key in ("n", "m", "k", "o", "b"))
    lanes, macs, act_rows = params["lanes"], params["macs"], params["act_rows"]
    x_buffers = params.get("x_buffers", 1)
    tiles = b // lanes
    beats_per_row = math.ceil(k * n // m / macs)
    compute = tiles * o * beats_per_row
    first_stall = max(0, k // act_rows - beats_per_row)
    if x_buffers == 1:
        load_stall = tiles * first_stall
    else:
        load_stall = first_stall + (tiles - 1) * max(0, k // act_rows + 1 - o * beats_per_row)
    total = compute + load_stall + SPU_PIPELINE_LATENCY
    return total, {"compute": compute, "x_load_stall": load_stall,
                   "pipeline": SPU_PIPELINE_LATENCY}
