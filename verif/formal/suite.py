"""The formal proofs of every block: ``make formal`` runs them all (``python -m
sparsehw.verif.formal.suite``), ``tests/test_formal.py`` the quick ones.

Each :class:`Proof` names a wrapper, the SymbiYosys mode (``prove``: k-induction of length
``depth``, an unbounded proof; ``bmc``: every input sequence of ``depth`` cycles from reset;
``cover``: every ``Cover`` reached within ``depth`` cycles) and what it shows. ``expect`` is
``"PASS"`` except for a property the design is known to violate (then ``"FAIL"``, with the
reason in ``note``): the suite reports it and does not hide it.
"""

import argparse
import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path


__all__ = ["Proof", "PROOFS", "run_proof", "main"]


_REPO = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Proof:
    name: str
    build: callable          # () -> wrapper component
    mode: str
    depth: int
    shows: str
    quick: bool = False
    expect: str = "PASS"
    note: str = ""
    timeout: float = 900
    cover_depth: int = 16        # of the ``_cover`` twin of a ``_stream`` proof
    cover_expect: str = "PASS"   # and its expected result
    cover_note: str = ""         # why, if not PASS (the twin's ``note``)


def _protocol(factory):
    def build():
        from sparsehw.verif.formal.protocol import StreamProtocolCheck
        return StreamProtocolCheck(factory())
    return build


def _block(path, **params):
    """A builder of the component ``path`` (``module:Class``) at ``params`` (imported when
    the proof runs, so listing the proofs elaborates nothing)."""
    def build():
        import importlib
        module, name = path.split(":")
        return getattr(importlib.import_module(module), name)(**params)
    return build


_fp32 = functools.partial(_block, "sparsehw.hw.fp32:Fp32Mac")
_bfp = functools.partial(_block, "sparsehw.hw.hbfp:BfpConvert")
_dot = functools.partial(_block, "sparsehw.hw.hbfp:HbfpDot")
_spu = functools.partial(_block, "sparsehw.hw.spu:SPU")
_figs = functools.partial(_block, "sparsehw.hw.figs:FigsArray")
_broadcast = functools.partial(_block, "sparsehw.hw.figs:NmBroadcastArray")
_fanout = functools.partial(_block, "sparsehw.hw.figs:NmFanoutArray")
_fixed24 = functools.partial(_block, "sparsehw.hw.figs:NmFixed24Array")
_act = functools.partial(_block, "sparsehw.hw.act_engine:ActEngine")
_ring = functools.partial(_block, "sparsehw.hw.ring:Ring")
_subsystem = functools.partial(_block, "sparsehw.hw.chip:Subsystem")
_chip = functools.partial(_block, "sparsehw.hw.chip:Chip")
_ring_flow = functools.partial(_block, "sparsehw.verif.formal.ring:RingFlowCheck")
_spu_acc = functools.partial(_block, "sparsehw.verif.formal.spu:SpuAccumulatorCheck")


def _text(params):
    return " ".join(f"{k}={v}" for k, v in params.items())


_STREAM = "stream rules: every output valid held and payload stable while stalled (inputs assumed so)"
_SMALL_SPU = dict(lanes=1, macs=1, max_m=4, max_k=8, act_rows=1)
_SMALL_NM = dict(rows=2, cols=1, beta=1, width=2, max_m=4)
_SMALL_ACT = dict(lanes=1, max_row=2)
#: The smallest subsystem: two nodes (one would have no ring traffic), one lane, one MAC,
#: two-word memories.
_SMALL_SUBSYSTEM = dict(subsystems=2, lanes=1, macs=1, max_m=4, act_rows=1, max_k=4,
                        bank_rows=4, imem_depth=2, wmem_depth=2, pmem_depth=2)
_SMALL_RING = dict(nodes=3, width=3, depth=2, eject_depth=2, starve=2, quota=1)
#: k = 4 is the smallest ring with 2-hop paths (at k <= 3 every flow is one hop: no flit passes
#: through a router, ordering and fairness are trivial).
_RING4 = dict(nodes=4, width=3, depth=2, eject_depth=2, starve=2, quota=1)

PROOFS = [
    Proof("fp32_mac_stream", _protocol(_fp32()), "prove", 4, _STREAM + "; fp32_mac", quick=True),
    Proof("bfp_convert_stream", _protocol(_bfp(block_size=2, mant_bits=3)), "prove", 6,
          _STREAM + "; bfp_convert block_size=2 mant_bits=3", quick=True),
    Proof("bfp_convert_stream_default", _protocol(_bfp()), "prove", 6,
          _STREAM + "; bfp_convert at default parameters"),
    Proof("hbfp_dot_stream", _protocol(_dot(block_size=2, mant_bits=3)), "prove", 6,
          _STREAM + "; hbfp_dot block_size=2 mant_bits=3", quick=True),
    Proof("hbfp_dot_stream_default", _protocol(_dot()), "prove", 6,
          _STREAM + "; hbfp_dot at default parameters"),
    Proof("spu_stream", _protocol(_spu(**_SMALL_SPU)), "prove", 6,
          _STREAM + "; spu lanes=1 macs=1 max_m=4 max_k=8 act_rows=1", quick=True),
    Proof("spu_stream_default", _protocol(_spu()), "prove", 6,
          _STREAM + "; spu at default parameters"),
    Proof("figs_stream", _protocol(_figs(rows=2, cols=1, alpha=1, beta=1, ratio=2, width=2,
                                         max_m=4)), "prove", 6,
          _STREAM + "; figs rows=2 cols=1 alpha=1 beta=1 ratio=2 width=2 max_m=4", quick=True),
    Proof("nm_broadcast_stream", _protocol(_broadcast(rows=2, cols=1, beta=1, width=2, max_m=4)),
          "prove", 6, _STREAM + "; nm_broadcast rows=2 cols=1 beta=1 width=2 max_m=4",
          quick=True),
    Proof("nm_fanout_stream", _protocol(_fanout(**_SMALL_NM, ratio=2)), "prove", 6,
          _STREAM + "; nm_fanout rows=2 cols=1 beta=1 width=2 max_m=4 ratio=2", quick=True),
    Proof("nm_fixed24_stream", _protocol(_fixed24(rows=2, cols=1, beta=1, width=2)), "prove", 6,
          _STREAM + "; nm_fixed24 rows=2 cols=1 beta=1 width=2", quick=True),
    Proof("act_engine_stream", _protocol(_act(**_SMALL_ACT)), "prove", 6,
          _STREAM + "; act_engine lanes=1 max_row=2, every op",
          # a command's first output leaves 16 cycles after it (the pipeline's latency)
          cover_depth=32),
    Proof("subsystem_stream", _protocol(_subsystem(**_SMALL_SUBSYSTEM)), "prove", 6,
          _STREAM + "; subsystem " + _text(_SMALL_SUBSYSTEM),
          cover_expect="FAIL",
          cover_note="host, rsp and inject each complete a stalled transfer (inject at step "
               "14); eject's does not within 16 steps, nor 28 (tried, 183 s): the subsystem "
               "refuses a flit only while a GEMM writes its output into the flit's bank"),
    Proof("chip_stream", _protocol(_chip(**_SMALL_SUBSYSTEM)), "prove", 6,
          _STREAM + "; chip " + _text(_SMALL_SUBSYSTEM)),
    Proof("ring_stream", _protocol(_ring(**_SMALL_RING)), "bmc", 8,
          _STREAM + "; ring nodes=3 width=3 depth=2 eject_depth=2 starve=2 quota=1, 8 cycles "
          "from reset (k-induction does not close: unreachable FIFO states)", quick=True,
          note="failed before the ejection arbiter locked its choice while the sink stalls "
               "(eject[i].payload changed while valid & ~ready, counterexample at step 2)"),
    Proof("ring_stream_k4", _protocol(_ring(**_RING4)), "bmc", 12,
          _STREAM + "; ring nodes=4 width=3 depth=2 eject_depth=2 starve=2 quota=1, 12 cycles "
          "from reset"),
    Proof("ring_flow", _ring_flow(**_RING4), "bmc", 9,
          "ring k=4 (2-hop flows): no flit of a flow lost, duplicated or reordered, at most 7 "
          "in flight (any flow, any other traffic and dest, any back-pressure), 9 cycles "
          "from reset", timeout=1800),
    Proof("ring_live", _ring_flow(live=True, wait_bound=7, **_RING4), "bmc", 9,
          "ring k=4, ejection always ready: no injection port waits 7 cycles in a row (and "
          "the flow properties), 9 cycles from reset; wait_bound=5 fails at step 8, so long "
          "waits do occur within the depth", timeout=1800),
    Proof("spu_accumulator", _spu_acc(lanes=1, macs=1, max_m=4, max_k=4, act_rows=1), "bmc",
          12,
          "spu max_k=4: |acc| <= max_k * 2**14 in every lane for 12 cycles from reset (a full "
          "row at K = max_k is reached at step 8, see the cover); no int32 overflow for larger "
          "max_k by the bound argument"),
    Proof("spu_accumulator_cover", _spu_acc(lanes=1, macs=1, max_m=4, max_k=4, act_rows=1),
          "cover", 20,
          "spu max_k=4: the bound is approached (a row of K = max_k products reaches "
          "> (max_k - 1) * 2**14) and every stream completes a stalled transfer", quick=True),
]

# Non-vacuity: in each small stream proof, every stream can stall and then complete a transfer
# (the Cover of verif/formal/protocol.py), so the k-induction above is not passing because a
# stream can never move.
PROOFS += [Proof(f"{proof.name}_cover", proof.build, "cover", proof.cover_depth,
                 "cover: every stream of the wrapper above stalls and then completes a transfer",
                 expect=proof.cover_expect, note=proof.cover_note)
           for proof in list(PROOFS)
           if proof.name.endswith("_stream")]


def run_proof(proof, workdir=None):
    """Run one :class:`Proof`; returns a JSON-able record."""
    from sparsehw.verif.formal.sby import run_sby
    workdir = Path(workdir) if workdir else _REPO / "build" / "formal" / proof.name
    result = run_sby(proof.build(), proof.name, mode=proof.mode, depth=proof.depth,
                     workdir=workdir, timeout=proof.timeout)
    return {"name": proof.name, "mode": proof.mode, "depth": proof.depth,
            "status": result.status, "expect": proof.expect, "ok": result.status == proof.expect,
            "seconds": result.seconds, "shows": proof.shows, "note": proof.note,
            "workdir": str(result.workdir), "log_tail": result.log_tail}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sparsehw.verif.formal.suite",
                                     description="run the formal proofs (SymbiYosys)")
    parser.add_argument("names", nargs="*", help="only these proofs (default: all)")
    parser.add_argument("--quick", action="store_true", help="only the quick subset")
    parser.add_argument("--json", metavar="FILE", help="write the records here")
    args = parser.parse_args(argv)
    known = {proof.name: proof for proof in PROOFS}
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"unknown proof(s) {', '.join(unknown)}; known: {', '.join(known)}")
    selected = [known[n] for n in args.names] if args.names else \
        [p for p in PROOFS if p.quick or not args.quick]
    records = []
    for proof in selected:
        record = run_proof(proof)
        records.append(record)
        flag = "ok" if record["ok"] else "UNEXPECTED"
        print(f"{proof.name:<28} {proof.mode:<6} depth {proof.depth:<3} {record['status']:<8} "
              f"(expected {proof.expect}, {flag}, {record['seconds']} s)", flush=True)
        if not record["ok"]:
            print("    " + record["log_tail"].replace("\n", "\n    "))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    bad = sum(not r["ok"] for r in records)
    print(f"{len(records) - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
