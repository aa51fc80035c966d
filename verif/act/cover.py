"""Functional coverage of the activation-engine regression on :mod:`verif.coverage`.

Coverpoints (one set per simulation process, shared by its tests, created on first use):

- ``op``: every operation built; ``reject``: every kind of rejected command (unknown op code
  6/7, an op code not built, ``n = 0``, a row op with ``n > max_row``; the kinds that cannot
  occur at the parameters are not bins);
- ``domain``: the domain flag of ``log2`` (``x <= 0``) and ``recip`` (``x == 0``), when built;
- ``saturation``: an output element at ``32767`` or ``-32768`` (outside the domain cases);
- ``data``: random, corner and all-equal rows; ``row``: a single element, a partial last beat,
  a full last beat, and (row ops) a row of exactly ``max_row``;
- ``fin``, ``fout``: the extremes of both formats (0 and 7, 0 and 15) and values between;
- the handshake bins of ``cmd``, ``i``, ``p`` (when LayerNorm is built) and ``o``.
"""

from sparsehw.golden import act as golden
from sparsehw.verif.coverage import Coverage, per_process

__all__ = ["ActCoverage", "REJECT_KINDS"]

REJECT_KINDS = ("unknown_op", "op_not_built", "n==0", "n>max_row")


class ActCoverage:
    def __init__(self, params):
        cov = Coverage("act_engine")
        self.cov, self.params = cov, params
        ops = params["op_list"]
        self.ops = ops
        self.op = cov.point("op", list(ops))
        kinds = [k for k in REJECT_KINDS
                 if (k != "op_not_built" or len(ops) < len(golden.OPS))
                 and (k != "n>max_row" or any(op in golden.ROW_OPS for op in ops))]
        self.reject = cov.point("reject", kinds)
        domain_ops = [op for op in ("log2", "recip") if op in ops]
        self.domain = cov.point("domain", domain_ops) if domain_ops else None
        self.saturation = cov.point("saturation", ["+32767", "-32768"])
        self.data = cov.point("data", ["random", "corner", "equal"])
        rows = ["1", "partial_beat", "full_beat"]
        if any(op in golden.ROW_OPS for op in ops):
            rows.append("max_row")
        if params["lanes"] == 1:
            rows.remove("partial_beat")          # every beat is full
        self.row = cov.point("row", rows)
        self.fin = cov.point("fin", ["0", "1..6", "7"])
        self.fout = cov.point("fout", ["0", "1..14", "15"])

    @classmethod
    def get(cls, params):
        return per_process("act_engine", lambda: cls(params))

    def _reject_kind(self, cmd):
        codes = {golden.OP_CODES[op]: op for op in self.ops}
        if cmd["op"] >= len(golden.OPS):
            return "unknown_op"
        if cmd["op"] not in codes:
            return "op_not_built"
        if cmd["n"] == 0:
            return "n==0"
        return "n>max_row"

    def sample(self, jobs):
        lanes = self.params["lanes"]
        for job in jobs:
            if "reject" in job.info:
                self.reject(self._reject_kind(job.info["reject"]))
                continue
            info = job.info
            op, n = info["op"], info["n"]
            self.op(op)
            self.data(info["kind"])
            if n == 1:
                self.row("1")
            self.row("full_beat" if n % lanes == 0 else "partial_beat")
            if op in golden.ROW_OPS and n == self.params["max_row"]:
                self.row("max_row")
            self.fin({0: "0", 7: "7"}.get(info["fin"], "1..6"))
            self.fout({0: "0", 15: "15"}.get(info["fout"], "1..14"))
            flags = [beat["domain"] for beat in job.expected]
            if self.domain is not None and any(flags) and op in ("log2", "recip"):
                self.domain(op)
            for k, y in enumerate(job.ys):
                x = job.xs[k]
                if op == "log2" and x <= 0 or op == "recip" and x == 0:
                    continue
                if y == 32767:
                    self.saturation("+32767")
                elif y == -32768:
                    self.saturation("-32768")

    def report(self, log, ends):
        ports = {p: e for p, e in ends.items() if p != "p" or "layernorm" in self.ops}
        self.cov.ports(**ports)
        return self.cov.report(log)
