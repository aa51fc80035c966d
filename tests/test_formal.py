"""Formal proofs (SymbiYosys via yowasp-sby, yices): the quick subset of
sparsehw.verif.formal.suite, and a control that a broken stream is caught.

``make formal`` runs the whole suite (docs/verification.md).
"""

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sparsehw.verif.formal import suite
from sparsehw.verif.formal.protocol import StreamProtocolCheck, streams_of
from sparsehw.verif.formal.sby import run_sby


QUICK = [proof for proof in suite.PROOFS if proof.quick]


@pytest.mark.parametrize("proof", QUICK, ids=[proof.name for proof in QUICK])
def test_quick_proof(proof, tmp_path):
    record = suite.run_proof(proof, workdir=tmp_path)
    assert record["status"] == proof.expect, record["log_tail"]


class _DropsValid(wiring.Component):
    """Registers its input for one cycle whatever ``o.ready`` says: a stalled output transfer
    disappears (breaks the stream rules)."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(4)), "o": Out(stream.Signature(4))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


def test_broken_stream_is_caught(tmp_path):
    result = run_sby(StreamProtocolCheck(_DropsValid()), "drops_valid", mode="bmc", depth=4,
                     workdir=tmp_path)
    assert result.status == "FAIL", result.log_tail


def test_streams_found_with_directions():
    found = {name: flow for name, flow, *_ in streams_of(_DropsValid())}
    assert found == {"i": "in", "o": "out"}


def test_proof_names_unique_and_modes_known():
    names = [proof.name for proof in suite.PROOFS]
    assert len(names) == len(set(names))
    assert {proof.mode for proof in suite.PROOFS} <= {"bmc", "prove", "cover"}


def test_every_block_has_a_stream_proof_and_its_cover():
    """Issue 15: the stream rules are proven on every block's outputs (the registry's blocks)."""
    from sparsehw.registry import all_blocks
    names = {proof.name for proof in suite.PROOFS}
    missing = [name for name in all_blocks() if f"{name}_stream" not in names
               or f"{name}_stream_cover" not in names]
    assert not missing, f"blocks without a stream proof: {missing}"
