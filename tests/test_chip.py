"""The chip RTL (hw/chip): parameters, helpers, and the cocotb regression against the golden chip
model at 1, 2 and 4 subsystems (quick cases on Icarus, long ones on Verilator, marked slow)."""

import random
from pathlib import Path

import pytest

from sparsehw.hw.chip import CHIP_RTL_PARAMS, Chip, Subsystem, flit_format
from sparsehw.hw.chip.subsystem import div_const
from sparsehw.verif.runner import new_build_dir, run_cocotb


#: Small memories: quick to simulate, still every N:M up to 1:32 and chunked flits.
SMALL = {"lanes": 4, "macs": 2, "max_m": 32, "act_rows": 2, "max_k": 64, "bank_rows": 128,
         "imem_depth": 32, "wmem_depth": 1024, "pmem_depth": 256}


@pytest.mark.parametrize("params, exc, words", [
    ({"subsystems": 0}, ValueError, "subsystems must be an integer in 1..16, not 0"),
    ({"subsystems": 17}, ValueError, "subsystems must be an integer in 1..16"),
    ({"subsystems": "4"}, TypeError, "subsystems must be"),
    ({"flit_width": 8}, ValueError, "flit_width must be"),
    ({"flit_width": 1025}, ValueError, "flit_width must be"),
    ({"bank_rows": 64, "max_k": 128}, ValueError, "bank_rows must be a power of two in 128"),
    ({"lanes": 0}, ValueError, "lanes must be an integer in 1..64"),
    ({"wmem_depth": 1000}, ValueError, "wmem_depth must be a power of two"),
])
def test_chip_parameter_errors(params, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(".", r"\.")):
        Chip(**params)


def test_subsystem_index_must_name_a_node():
    with pytest.raises(ValueError, match="index must be an integer in 0..1, not 2"):
        Subsystem(subsystems=2, index=2)
    with pytest.raises(TypeError, match="unknown parameter"):
        Subsystem(nodes=2)


def test_spec_is_the_golden_spec_plus_flit_width():
    from sparsehw.golden.chip import MODEL_PARAMS
    assert CHIP_RTL_PARAMS.names == MODEL_PARAMS.names + ("flit_width",)


def test_div_const_is_exact():
    rng = random.Random(5)
    for divisor in range(1, 17):
        values = [0, 1, divisor - 1, divisor, (1 << 25) - 1] + \
                 [rng.randrange(1 << 25) for _ in range(2000)]
        for value in values:
            assert div_const(value, divisor, 25) == value // divisor, (value, divisor)


def test_flit_format():
    # 16 lanes (128 bits per row), 1024 rows: 11 header bits; 256-bit flits carry a whole row.
    assert flit_format(16, 1024, 256) == {"header": 11, "row_bits": 10, "chunk_bits": 0,
                                          "bytes": 16, "chunks": 1}
    # 64-bit flits: 6 data bytes after a 12-bit header (3 chunks, 2 chunk bits: 13 bits).
    f = flit_format(16, 1024, 64)
    assert f["chunks"] * f["bytes"] >= 16 and f["header"] + 8 * f["bytes"] <= 64
    assert f["chunks"] == -(-16 // f["bytes"]) and f["chunk_bits"] == 2


def _run(params, sim="icarus", testcase=None, workload=None, seed=1, covers=()):
    """Run ``testcase``; ``covers``: the coverpoints (verif/chip/cover.py) its stimulus is for,
    which must have no hole; every hole is printed."""
    from sparsehw.verif.coverage import holes
    result = run_cocotb(Chip(**params), "chip", "sparsehw.verif.chip.tb_chip",
                        build_dir=new_build_dir("chip"), sim=sim, seed=seed, params=params,
                        testcase=testcase, workload=workload)
    assert result.passed, f"{result.errors}; see {result.log}"
    found = holes(result.record, "chip")
    print("chip coverage holes:", found)
    missed = {point: found[point] for point in covers if point in found}
    assert not missed, f"coverage holes: {missed}"
    return result


#: Coverpoints of the random chains: every group size M (up to 32 here), dense, 1:M and
#: in-between N, a malformed weight index flagged.
CHAIN_POINTS = ("m", "density", "row_error")


def test_chip_one_subsystem_chains():
    _run({**SMALL, "subsystems": 1}, testcase="chip_random_chains",
         workload={"chains": 3, "max_layers": 3}, covers=CHAIN_POINTS)


def test_chip_two_subsystems_chunked_flits_chains():
    # 32-bit flits: a 4-byte row takes two flits
    _run({**SMALL, "subsystems": 2, "flit_width": 32}, testcase="chip_random_chains",
         workload={"chains": 3, "max_layers": 3}, covers=CHAIN_POINTS)


def test_chip_errors_then_reset():
    _run({**SMALL, "subsystems": 2}, testcase="chip_every_error_then_reset", covers=("error",))


def test_chip_imem_written_while_running():
    _run({**SMALL, "subsystems": 2}, testcase="chip_imem_written_while_running")


def test_chip_programs():
    """GEMM/SEND/WAIT programs without the activation engine (SENDs from either bank, to own,
    other and several nodes; a host reset before each program after the first), Icarus."""
    _run({**SMALL, "subsystems": 2}, testcase="chip_programs",
         covers=("instr", "gemm_dest", "send_dest"))


def test_chip_gemm_cycles_match_the_model():
    """GEMM chains on one and on both subsystems at every 1:M the cycle model is exact at:
    the chip's cycles equal the model's, Icarus (``chip_gemm_cycles``)."""
    _run({**SMALL, "subsystems": 2}, testcase="chip_gemm_cycles")


def test_chip_memories_round_trip():
    """Random full-width words through the host port into every memory of both subsystems
    read back as written, Icarus (``chip_memories_round_trip``)."""
    _run({**SMALL, "subsystems": 2}, testcase="chip_memories_round_trip")


def test_chip_malformed_weight_indices():
    """Every kind of malformed weight index (out of group, equal in a beat, not ascending
    across two beats of a group) between well-formed rows: banks and row_error as the golden
    model's, Icarus (``chip_malformed_weight_indices``)."""
    _run({**SMALL, "subsystems": 2}, testcase="chip_malformed_weight_indices")


def test_chip_wait_cycles_match_the_model():
    """WAITs satisfied when they issue and WAITs blocked on the other subsystem's rows, on
    every subsystem: cycles equal the golden cycle model's, Icarus (``chip_wait_cycles``)."""
    _run({**SMALL, "subsystems": 2}, testcase="chip_wait_cycles")


def test_chip_long_run_counters():
    """A run of more than 2**14 cycles: every subsystem's cycles register equals the model's
    when read with the response held 1 to 4 cycles, Icarus (``chip_long_run_counters``)."""
    _run({**SMALL, "subsystems": 2}, testcase="chip_long_run_counters")


def test_chip_ring_back_pressure():
    """Rows sent to a subsystem whose own GEMM holds its ejection port off: the ring's buffers
    and the sender's injection queue fill, banks as the golden model's, Icarus
    (``chip_ring_back_pressure``)."""
    _run({**SMALL, "subsystems": 2}, testcase="chip_ring_back_pressure")


@pytest.mark.parametrize("subsystems", [2, 3])
def test_chip_gemm_back_pressure(subsystems):
    """GEMM output rows sent through a backed-up ring: the senders' SPU output streams are
    held off (their ``gemm_cycles`` exceed the same GEMM's into their own bank) and every row
    lands as the golden model's, Icarus (``chip_gemm_back_pressure``)."""
    _run({**SMALL, "subsystems": subsystems}, testcase="chip_gemm_back_pressure")


def test_chip_exact_accumulators():
    """Multi-beat GEMM rows whose post-op (bias 0, multiplier 1, shift 0) shows every bit of
    the accumulators: banks as the golden model's, Icarus (``chip_exact_accumulators``)."""
    _run({**SMALL, "subsystems": 2}, testcase="chip_exact_accumulators")


def test_chip_send_fields():
    """SENDs of every count from one row to the whole bank, sources and destinations spread
    over the bank, on both subsystems at once: banks and counters as the golden model's,
    Icarus (``chip_send_fields``)."""
    _run({**SMALL, "subsystems": 2}, testcase="chip_send_fields")


def test_chip_send_to_no_subsystem():
    """A SEND with mask 0 takes no row time, whatever its count (``chip_send_to_no_subsystem``):
    the chip's cycles equal those of the same program with a SEND of 0 rows, and the golden
    cycle model's, Icarus."""
    _run({**SMALL, "subsystems": 2}, testcase="chip_send_to_no_subsystem")


def test_chip_ring_busy_cycles():
    """One subsystem sends 4096 flits and more alone: the chip's ring_busy_cycles lies between
    the flits injected and the run's cycles, Icarus (``chip_ring_busy_cycles``)."""
    _run({**SMALL, "subsystems": 2}, testcase="chip_ring_busy_cycles")


@pytest.mark.parametrize("subsystems", [2, 3, 4])
def test_chip_ring_symmetry(subsystems):
    """Node numbers rotated by the ring's symmetry, the same SEND traffic gives the same
    counters rotated (every subsystem to one receiver, each in turn; every subsystem to every
    subsystem), at 2 (swap), 3 (any rotation) and 4 (rotation by 2) subsystems, Icarus
    (``chip_ring_symmetry``)."""
    _run({**SMALL, "subsystems": subsystems}, testcase="chip_ring_symmetry")


@pytest.mark.parametrize("subsystems", range(2, 17))
def test_gemm_back_pressure_runs_make_every_subsystem_a_sender_once(subsystems):
    """Each run pairs a receiver with the node after it on the ring (one hop), no subsystem
    in two pairs of a run, every subsystem a sender in exactly one run, in 2 or 3 runs."""
    from sparsehw.verif.chip.tb_chip import gemm_back_pressure_runs
    runs = gemm_back_pressure_runs(subsystems)
    senders = [s for pairs in runs for s in pairs.values()]
    assert sorted(senders) == list(range(subsystems))
    for pairs in runs:
        assert all(s == (r + 1) % subsystems for r, s in pairs.items())
        members = list(pairs) + list(pairs.values())
        assert len(members) == len(set(members))
    assert len(runs) == (2 if subsystems % 2 == 0 else 3)


def test_ring_symmetry_is_a_rotation_the_routes_keep():
    from sparsehw.verif.chip.tb_chip import ring_symmetry
    assert [ring_symmetry(S) for S in range(2, 9)] == [1, 1, 2, 1, 2, 1, 2]


def test_gemm_cycle_cases_skip_the_points_the_model_does_not_fit():
    # one subsystem at every M; two only on a 2-subsystem chip with whole-row flits, not 1:32
    from sparsehw.verif.chip.tb_chip import gemm_cycle_cases
    two = CHIP_RTL_PARAMS.validate(**SMALL, subsystems=2)
    assert [(u, m) for u, m, _ in gemm_cycle_cases(two)] == \
        [(1, 1 << e) for e in range(6)] + [(2, 1 << e) for e in range(5)]
    for other in ({**two, "flit_width": 32}, {**two, "subsystems": 4}):
        assert {u for u, _, _ in gemm_cycle_cases(other)} == {1}
    # K = 64 (the calibration chains') where both layers' weights fit one subsystem's memory,
    # else halved: 1:1 and 1:2 on one subsystem, 1:1 on two at 1024 words
    sizes = {(u, m): k for u, m, k in gemm_cycle_cases(two)}
    assert {key for key, k in sizes.items() if k != 64} == {(1, 1), (1, 2), (2, 1)}
    assert sizes[(1, 1)] == sizes[(1, 2)] == sizes[(2, 1)] == 32


def test_compare_state_checks_the_ring_counters():
    # A 2-layer model-parallel chain 16 -> 16 -> 16 on two subsystems: each sends its 8 rows
    # of layer 0 to the other (a GEMM's own rows are a local write; the last layer's rows stay
    # where they are computed), a 64-bit flit carries a whole row. The
    # counters read back are checked against those counts; one off in any of them is reported.
    import numpy as np
    from sparsehw.golden import chip as isa
    from sparsehw.golden.chip_compile import GemmLayer, run_chain
    from sparsehw.verif.chip import compare_state, executed
    params = CHIP_RTL_PARAMS.validate(**SMALL, subsystems=2)
    rng = np.random.default_rng(1)
    chain = [GemmLayer(rng.integers(-128, 128, (16, 16)).astype(np.int8), 1, 1,
                       np.zeros(16, int), np.ones(16, int), np.full(16, 8), False)
             for _ in range(2)]
    _, model, _ = run_chain(chain, rng.integers(-128, 128, (16, 4)), 2, "model",
                            {k: v for k, v in params.items() if k in isa.MODEL_PARAMS.names})
    gemms = [sum(isinstance(i, isa.Gemm) for i in executed(model, s)) for s in range(2)]
    right = [{"regs": {"status": model.status(s).word, "gemms": gemms[s], "flits_sent": 8,
                       "rows_received": 8}} for s in range(2)]
    chip_regs = {"ring_flits": 16}
    assert compare_state(right, model, params, banks=False, chip_regs=chip_regs) == []
    for s, name in ((0, "flits_sent"), (1, "rows_received")):
        wrong = [{"regs": dict(e["regs"])} for e in right]
        wrong[s]["regs"][name] += 1
        assert any(name in msg for msg in compare_state(wrong, model, params, banks=False))
    assert compare_state(right, model, params, banks=False,
                         chip_regs={"ring_flits": 15}) != []


def test_mutation_subset_is_the_registrys():
    """``sparsehw mutate chip`` runs the documented subset (tb_chip's docstring): the registry
    hands it every mutant; its knobs are knobs tb_chip reads."""
    from sparsehw import registry
    from sparsehw.verif.chip import MUTATION_WORKLOAD
    import sparsehw.verif.chip.tb_chip as tb
    assert registry.get_block("chip").mutation_workload == MUTATION_WORKLOAD
    source = Path(tb.__file__).read_text()
    for knob in MUTATION_WORKLOAD:
        assert f'_knob("{knob}"' in source, knob


@pytest.mark.slow
@pytest.mark.parametrize("subsystems, flit_width, seed", [(4, 64, 1), (4, 32, 2), (2, 64, 3),
                                                           (1, 64, 4)])
def test_chip_long_regression_verilator(subsystems, flit_width, seed):
    _run({**SMALL, "subsystems": subsystems, "flit_width": flit_width}, sim="verilator",
         workload={"chains": 12, "max_layers": 6}, seed=seed)


def test_chip_perf_record_small():
    """The perf entry at a small point (Icarus): the keys the report reads, outputs checked,
    speedup against the one-subsystem run of the same chain."""
    from sparsehw.verif.chip.perf_chip import run_perf
    params = CHIP_RTL_PARAMS.validate(**{**SMALL, "subsystems": 2, "wmem_depth": 2048})
    record = run_perf(params, {"k": 64, "b": 4, "layers": 2, "n": 1, "m": 4}, sim="icarus",
                      seed=3, build_dir=new_build_dir("perf-chip-test"))
    assert record["passed"], record.get("error")
    for key in ("cycles", "ideal_cycles", "utilization", "subsystems", "speedup_vs_1",
                "scaling_efficiency", "ring_flits", "ring_wait_cycles",
                "sim_cycles_per_second"):
        assert key in record, key
    # two layers, the first gathered: each subsystem sends its 32 rows to the other one
    assert record["ring_flits"] == 2 * 32
    assert record["ideal_cycles"] == 2 * 64 * (64 // 4) / (2 * 2)
    assert 0 < record["utilization"] <= 1 and record["speedup_vs_1"] > 1


#: The small point with an activation engine per subsystem (ACT rows up to 64).
ACT = {**SMALL, "act_engine": True, "act_max_row": 64}


def test_act_engine_parameters():
    from sparsehw.golden.chip import MODEL_PARAMS
    assert CHIP_RTL_PARAMS.names == MODEL_PARAMS.names + ("flit_width",)
    assert CHIP_RTL_PARAMS.defaults()["act_engine"] is False
    with pytest.raises(ValueError, match="act_engine must be False unless lanes is a power of "
                                         "two <= 16"):
        Chip(lanes=32, act_engine=True)
    with pytest.raises(ValueError, match="act_engine must be False unless lanes"):
        Subsystem(lanes=6, act_engine=True)
    with pytest.raises(ValueError, match="act_max_row must be a power of two in 8..4096"):
        Chip(act_engine=True, act_max_row=4)
    with pytest.raises(TypeError, match="act_engine must be a boolean"):
        Chip(act_engine="yes")


def test_chip_act_programs():
    """Random ACT programs mixed with GEMM/SEND/WAIT on two subsystems (Icarus)."""
    _run({**ACT, "subsystems": 2}, testcase="chip_act_programs",
         workload={"programs": 2, "acts": 3},
         covers=("instr", "act_op", "act_dest", "gemm_dest", "send_dest"))


@pytest.mark.slow
def test_chip_act_errors_then_reset():
    """Every error code, the ACT ones included, each followed by a reset and a correct run
    (Icarus, about 40 s; also in the Verilator regression below)."""
    _run({**ACT, "subsystems": 2}, testcase="chip_every_error_then_reset", covers=("error",))


@pytest.mark.slow
@pytest.mark.parametrize("subsystems, flit_width, seed", [(1, 64, 5), (2, 32, 6), (4, 64, 7)])
def test_chip_act_long_regression_verilator(subsystems, flit_width, seed):
    """Every test of tb_chip with act_engine: random chains, every error code then reset, many
    random ACT programs, ACT cycles against the model."""
    _run({**ACT, "subsystems": subsystems, "flit_width": flit_width}, sim="verilator",
         workload={"chains": 4, "max_layers": 4, "programs": 10, "acts": 6, "tolerance": 0.05},
         seed=seed)


def test_subsystem_with_act_engine_lints(tmp_path):
    """The act_engine point lints with exactly its waived warnings (verif/lint.py,
    ``subsystem_act``; the registry's lint test covers the default point only). Its counts
    follow hw/spu.py and hw/act_engine.py: a change there updates them too (a mismatch prints
    the counts)."""
    from sparsehw.hw.export import to_verilog
    from sparsehw.verif.lint import lint_verilog
    lint_verilog(to_verilog(Subsystem(act_engine=True), "subsystem_act"), "subsystem_act",
                 tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("lanes, act_rows", [(4, 2), (2, 1)])
def test_chip_act_cycles_match_the_model(lanes, act_rows):
    """Single ACT instructions (every op) on one subsystem: cycles within 5% of the golden
    cycle model (the figures are in the log: ACT_CYCLES lines). The model's ACT costs were
    fitted at lanes 4; lanes 2 is an independent check."""
    result = _run({**ACT, "subsystems": 1, "lanes": lanes, "act_rows": act_rows},
                  testcase="chip_act_cycles", workload={"tolerance": 0.05})
    print(result.log)


@pytest.mark.slow
@pytest.mark.parametrize("lanes, act_rows", [(1, 4), (2, 1)])
def test_chip_act_programs_other_lanes(lanes, act_rows):
    """The ACT unit at one lane (one engine command per ACT row op, no gather), two lanes with
    one row per bank word (Icarus, one subsystem)."""
    _run({**ACT, "subsystems": 1, "lanes": lanes, "act_rows": act_rows, "act_max_row": 32},
         testcase="chip_act_programs", workload={"programs": 2, "acts": 4}, seed=3)


def test_chip_perf_cache_follows_the_sources():
    """A cached perf record is keyed by the chip's Verilog: an RTL change is measured again,
    not answered from a record of the old RTL."""
    from sparsehw.verif.chip import perf_chip
    params, workload = {"subsystems": 2}, {"k": 64}
    before = perf_chip._cache_path(params, workload, "module chip(); endmodule\n")
    after = perf_chip._cache_path(params, workload, "module chip(); wire a; endmodule\n")
    assert after != before
    assert perf_chip._cache_path(params, workload, "module chip(); endmodule\n") == before
