"""Functional coverage of the chip regression (``tb_chip``) on :mod:`verif.coverage`.

Every run is sampled from what the golden model executed (the RTL matched it, or the test
failed): the chip has no branches, so subsystem ``s`` executed the first
``model.stats["instructions"][s]`` words of its imem, and a subsystem that stopped on an error
stopped at the word after them. Coverpoints (one set per simulation process, shared by its
tests, created on first use; bins that cannot occur at the parameters are left out):

- ``instr``: every instruction kind executed (``ACT`` with ``act_engine``);
- ``m``: every group size M of the GEMMs run (``1 .. max_m``); ``density``: ``n=m`` (dense),
  ``1:m`` and ``between`` (``1 < n < m``);
- ``gemm_dest``, ``send_dest``: where the rows of a GEMM / SEND went: ``own`` (only the
  issuing subsystem), ``remote`` (one other subsystem), ``multicast`` (several);
- ``error``: every error code a status reported, by name; ``row_error``: a malformed weight
  index flagged (the run going on);
- with ``act_engine``: ``act_op`` (every ACT op) and ``act_dest`` (``in_place``,
  ``other_bank``, ``same_bank`` at another address);
- the handshake bins of the host's ``cmd`` and ``rsp`` streams.

Each test of ``tests/test_chip.py`` requires the points its stimulus is for to have no hole.
"""

from sparsehw.golden import chip as isa
from sparsehw.verif.chip import executed
from sparsehw.verif.coverage import Coverage, per_process

__all__ = ["ChipCoverage", "expected_errors"]


def expected_errors(p):
    """Error codes the hardware can report at parameters ``p`` (every one must be provoked)."""
    codes = set(range(isa.ERR_OPCODE, isa.ERR_DEADLOCK + 1))
    if p["subsystems"] == 16:
        codes.discard(isa.ERR_NODE)            # every 4-bit node exists
    if p["act_rows"] == 1:
        codes.discard(isa.ERR_ALIGN)           # every row address is aligned
    if p["act_engine"]:
        codes |= {isa.ERR_ACT_OP, isa.ERR_OVERLAP}
    return codes


def _destination(mask, own):
    if mask & (mask - 1):
        return "multicast"
    return "own" if mask == 1 << own else "remote"


class ChipCoverage:
    def __init__(self, p):
        cov = Coverage("chip")
        self.cov, self.params = cov, p
        kinds = ["GEMM", "SEND", "WAIT", "HALT"] + (["ACT"] if p["act_engine"] else [])
        self.instr = cov.point("instr", kinds)
        self.m = cov.point("m", [1 << e for e in range(p["max_m"].bit_length())])
        self.density = cov.point("density", ["n=m", "1:m"]
                                 + (["between"] if p["max_m"] >= 4 else []))
        dests = ["own"] + (["remote", "multicast"] if p["subsystems"] > 1 else [])
        self.gemm_dest = cov.point("gemm_dest", dests)
        self.send_dest = cov.point("send_dest", dests)
        errors = sorted(expected_errors(p))
        self.error = cov.point("error", errors, labels=[isa.ERRORS[c] for c in errors])
        self.row_error = cov.point("row_error", ["flagged"])
        if p["act_engine"]:
            self.act_op = cov.point("act_op", list(isa.ACT_OPS.values()),
                                    labels=list(isa.ACT_OPS))
            self.act_dest = cov.point("act_dest", ["in_place", "other_bank", "same_bank"])

    @classmethod
    def get(cls, p):
        return per_process("chip", lambda: cls(p))

    def _instruction(self, s, instr):
        self.instr(type(instr).__name__.upper())
        if isinstance(instr, isa.Gemm):
            n, m = 1 << instr.n_log2, 1 << instr.m_log2
            self.m(m)
            self.density("n=m" if n == m else "1:m" if n == 1 else "between")
            self.gemm_dest(_destination(instr.mask, s))
        elif isinstance(instr, isa.Send):
            self.send_dest(_destination(instr.mask, s))
        elif isinstance(instr, isa.Act):
            self.act_op(instr.op)
            self.act_dest("in_place" if (instr.d_bank, instr.d_addr) == (instr.s_bank,
                                                                          instr.s_addr)
                          else "other_bank" if instr.d_bank != instr.s_bank else "same_bank")

    def sample(self, model):
        """Sample the instructions ``model`` executed in its last run and its statuses."""
        for s in range(len(model.subs)):
            for instr in executed(model, s):
                self._instruction(s, instr)
            status = model.status(s)
            if status.error:
                self.error(status.error)
            if status.row_error:
                self.row_error("flagged")

    def report(self, host, log):
        self.cov.ports(cmd=host.src, rsp=host.sink)
        return self.cov.report(log)
