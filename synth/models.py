"""Closed-form cycle models, set next to the measured cycles in the report.

A model states where the RTL is expected to spend cycles; the report shows model and measurement
side by side, so a difference points at cycles the model does not explain. The FiGS and
broadcast engines' models live with their golden model (:func:`golden.figs.predicted_cycles`).
"""

import math


__all__ = ["SPU_PIPELINE_LATENCY", "spu_cycles"]

#: Cycles from the first input handshake to the first weight beat plus from the last weight beat
#: to the last output beat: S0..S4 and the output FIFO (docs/spu.md), measured once at 1:1.
SPU_PIPELINE_LATENCY = 8


def spu_cycles(params, workload):
    """Predicted cycles of one ``sparsehw perf spu`` run; returns ``(total, parts)``.

    For each of the ``B / lanes`` column tiles the SPU issues ``O * ceil(nz / macs)`` weight
    beats, ``nz = K * n / m`` nonzeros per row, one beat per cycle (the ideal). Row 0 of a tile
    cannot finish before all of ``X`` has arrived (``K / act_rows`` activation beats), so a tile
    loses ``max(0, K / act_rows - ceil(nz / macs))`` cycles when loading ``X`` is slower than
    computing row 0. Add the pipeline latency once.
    """
    n, m, k, o, b = (workload[key] for key in ("n", "m", "k", "o", "b"))
    lanes, macs, act_rows = params["lanes"], params["macs"], params["act_rows"]
    tiles = b // lanes
    beats_per_row = math.ceil(k * n // m / macs)
    compute = tiles * o * beats_per_row
    load_stall = tiles * max(0, k // act_rows - beats_per_row)
    total = compute + load_stall + SPU_PIPELINE_LATENCY
    return total, {"compute": compute, "x_load_stall": load_stall,
                   "pipeline": SPU_PIPELINE_LATENCY}
