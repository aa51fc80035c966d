"""The chain compiler (golden/chip_compile.py) on the instruction-level chip model: random chains
of 1..6 GEMMs, every N:M the SPU supports, 1/2/4 subsystems, both mappings, reference and random
schedules; the output must equal the plain numpy chain of golden.spu GEMMs."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sparsehw.golden import chip
from sparsehw.golden.chip import ChipModel, Gemm, Halt, Wait
from sparsehw.golden.chip_compile import (GemmLayer, compile_chain, random_encoder_layer,
                                         reference_chain, run_chain)


#: Every N:M pattern the SPU runs: n and m powers of two, n <= m <= 32.
PATTERNS = [(1 << a, 1 << b) for b in range(6) for a in range(b + 1)]

#: Model parameters big enough for every random chain below.
BIG = dict(max_k=128, bank_rows=2048, wmem_depth=1 << 17, pmem_depth=1024, imem_depth=128)


def random_layer(rng, o, k, n, m):
    w = rng.integers(-128, 128, (o, k))
    w[rng.random((o, k)) < 0.05] = rng.choice([-128, 127])        # corner values
    # Scale the requantization to the accumulator's spread so outputs are neither all zero nor
    # all saturated (some are, on purpose: shift is random around the right value).
    spread = 128 * 60 * math.sqrt(max(1, k * n // m))
    mult = rng.integers(1, 1 << 16, o)
    shift = np.clip(np.round(np.log2(spread * mult / 64)).astype(int)
                    + rng.integers(-2, 3, o), 0, 31)
    bias = rng.integers(-int(spread), int(spread) + 1, o)
    return GemmLayer(w, n, m, bias, mult, shift, relu=bool(rng.integers(2)))


def random_chain(rng, layers, *, act_rows, subsystems, lanes):
    patterns = [PATTERNS[i] for i in rng.integers(0, len(PATTERNS), layers)]
    dims = []
    for n, m in patterns:       # K of each layer: a multiple of m and act_rows, >= subsystems
        unit = math.lcm(m, act_rows)
        low = -(-subsystems // unit)
        dims.append(unit * int(rng.integers(low, max(low, 128 // unit) + 1)))
    dims.append(int(rng.integers(1, 40)))
    gemms = [random_layer(rng, dims[l + 1], dims[l], n, m) for l, (n, m) in enumerate(patterns)]
    batch = int(rng.integers(1, 3 * lanes + 1))
    x = rng.integers(-128, 128, (dims[0], batch))
    return gemms, x


def expected_ring_rows(gemms, tiles, subsystems, mapping):
    if mapping == "data":
        return 0
    return sum(tiles * g.o * (subsystems - 1) for g in gemms[:-1])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), layers=st.integers(1, 6),
       subsystems=st.sampled_from([1, 2, 4]), mapping=st.sampled_from(["model", "data"]),
       lanes=st.integers(1, 6), macs=st.integers(1, 5), act_rows=st.sampled_from([1, 2, 4]))
def test_random_chains_equal_the_numpy_chain(seed, layers, subsystems, mapping, lanes, macs,
                                             act_rows):
    rng = np.random.default_rng(seed)
    params = dict(BIG, subsystems=4, lanes=lanes, macs=macs, act_rows=act_rows)
    gemms, x = random_chain(rng, layers, act_rows=act_rows, subsystems=subsystems, lanes=lanes)
    ref, errors = reference_chain(gemms, x)
    assert not any(e.any() for e in errors)
    y, model, compiled = run_chain(gemms, x, subsystems, mapping, params)
    assert all(s.state == chip.HALTED and s.error == 0 and not s.row_error
               for s in (model.status(i) for i in range(4)))
    np.testing.assert_array_equal(y, ref)
    assert sum(model.stats["ring_rows"]) == expected_ring_rows(gemms, compiled.tiles, subsystems,
                                                                mapping)
    work = compiled.work()
    assert work["ring_rows"] == sum(model.stats["ring_rows"])
    # The GEMMs the model executed did exactly the chain's nonzero work, once per tile column.
    assert sum(model.stats["macs"]) * x.shape[1] == work["nonzero_macs"] * compiled.tiles * lanes
    # The same programs under a random schedule with delayed deliveries: same result.
    model = ChipModel(compiled.params)
    compiled.load(model)
    compiled.load_input(model, x)
    status = model.run(seed=seed, max_delay=3)
    assert all(s.state == chip.HALTED for s in status)
    assert model.stats["hazards"] == 0
    np.testing.assert_array_equal(compiled.read_output(model), ref)


@pytest.mark.parametrize("n, m", PATTERNS)
def test_every_nm_pattern_both_mappings(n, m):
    rng = np.random.default_rng(n * 100 + m)
    k = max(m, 8)
    gemms = [random_layer(rng, 2 * k, k, n, m), random_layer(rng, 16, 2 * k, n, m),
             random_layer(rng, 5, 16, 1, 1)]
    x = rng.integers(-128, 128, (k, 9))
    ref, _ = reference_chain(gemms, x)
    assert len(np.unique(ref)) > 3                   # a result that could not be guessed
    for mapping in ("model", "data"):
        for subsystems in (1, 2, 4):
            y, model, _ = run_chain(gemms, x, subsystems, mapping, BIG)
            np.testing.assert_array_equal(y, ref)


def test_model_mapping_splits_rows_and_gathers_over_the_ring():
    rng = np.random.default_rng(7)
    gemms = [random_layer(rng, 10, 8, 1, 2), random_layer(rng, 7, 10, 1, 1)]
    compiled = compile_chain(gemms, 4, "model", BIG, batch=4)
    assert compiled.row_slices == [[(0, 3), (3, 3), (6, 2), (8, 2)],
                                   [(0, 2), (2, 2), (4, 2), (6, 1)]]
    prog = compiled.programs[2]
    assert prog[0] == Gemm(x_bank=0, x_addr=0, w_addr=0, p_addr=0, n_log2=0, m_log2=1, k=8,
                           o=2, relu=int(gemms[0].relu), d_bank=1, d_addr=6, mask=0b1111)
    assert prog[1] == Wait(1, 10)
    assert prog[2].mask == 0b0100 and prog[2].d_addr == 4 and prog[2].x_bank == 1
    assert prog[-1] == Halt() and len(prog) == 4
    y, model, _ = run_chain(gemms, rng.integers(-128, 128, (8, 4)), 4, "model", BIG)
    assert model.stats["ring_rows"] == [9, 9, 6, 6]    # own rows x 3 others, first layer only


def test_data_mapping_splits_tiles_without_ring_traffic():
    rng = np.random.default_rng(8)
    gemms = [random_layer(rng, 8, 8, 2, 4), random_layer(rng, 4, 8, 1, 8)]
    x = rng.integers(-128, 128, (8, 4 * 3 + 1))       # 4 tiles of 4 lanes, the last 1 wide
    ref, _ = reference_chain(gemms, x)
    y, model, compiled = run_chain(gemms, x, 3, "data", BIG)
    np.testing.assert_array_equal(y, ref)
    assert compiled.tiles_of == [[0, 1], [2], [3]]
    assert model.stats["ring_rows"] == [0, 0, 0, 0]
    assert compiled.programs[3] == [Halt()]          # the unused subsystem
    assert model.stats["macs"][0] == 2 * model.stats["macs"][1]


def test_waits_are_what_makes_the_programs_schedule_independent():
    """Without its WAITs a model-parallel program still passes the reference schedule (rows
    land at once) but some delayed schedule reads rows that have not arrived: the random
    schedules are a real check of the hazard rule."""
    rng = np.random.default_rng(9)
    gemms = [random_layer(rng, 16, 16, 1, 4), random_layer(rng, 16, 16, 2, 4),
             random_layer(rng, 8, 16, 1, 2)]
    x = rng.integers(-128, 128, (16, 4))
    ref, _ = reference_chain(gemms, x)
    compiled = compile_chain(gemms, 4, "model", BIG, x=x)
    compiled.programs = [[i for i in p if not isinstance(i, Wait)] for p in compiled.programs]
    outcomes, hazards = [], []
    for seed in [None] + list(range(10)):
        model = ChipModel(compiled.params)
        compiled.load(model)
        compiled.load_input(model, x)
        model.run(seed=seed, max_delay=4)
        outcomes.append(np.array_equal(compiled.read_output(model), ref))
        hazards.append(model.stats["hazards"])
    assert outcomes[0] and hazards[0] == 0
    assert not all(outcomes[1:])
    # Every wrong result was flagged as a hazard (a flagged run may still be right by luck).
    assert all(h > 0 for ok, h in zip(outcomes[1:], hazards[1:]) if not ok)


def test_host_word_images_reproduce_the_run():
    """Loading the compiled host word images (as the RTL testbench does) gives the same memories
    as loading the numpy arrays, and the output read from bare bank arrays is the chain's."""
    rng = np.random.default_rng(10)
    gemms = [random_layer(rng, 8, 16, 1, 4), random_layer(rng, 6, 8, 2, 2)]
    x = rng.integers(-128, 128, (16, 5))
    ref, _ = reference_chain(gemms, x)
    small = dict(wmem_depth=128, pmem_depth=32, imem_depth=8, bank_rows=128)
    compiled = compile_chain(gemms, 2, "model", small, x=x)
    staged = ChipModel(compiled.params)
    compiled.load(staged)
    compiled.load_input(staged, x)
    model = ChipModel(compiled.params)
    images = compiled.host_images(x)
    assert len(images) == 4 and set(images[3]) == {chip.MEM_IMEM}
    for s, mems in enumerate(images):
        for mem, words in mems.items():
            model.write_words(s, mem, 0, words)
    for s in range(4):
        for mem in chip.MEMORIES:
            assert model.read_words(s, mem) == staged.read_words(s, mem)
    model.run()
    np.testing.assert_array_equal(compiled.read_output(model), ref)
    np.testing.assert_array_equal(compiled.read_output([sub.banks.copy() for sub in model.subs]),
                                  ref)


def test_compiler_rejects_what_does_not_fit():
    rng = np.random.default_rng(11)
    a = random_layer(rng, 8, 16, 1, 4)
    with pytest.raises(ValueError, match="layer 1 has K=16 but layer 0 has O=8"):
        compile_chain([a, random_layer(rng, 4, 16, 1, 4)], batch=1)
    with pytest.raises(ValueError, match="m=32 exceeds max_m=8"):
        compile_chain([random_layer(rng, 8, 32, 1, 32)], params=dict(max_m=8, max_k=32),
                      batch=1)
    with pytest.raises(ValueError, match="K=256 must be <= max_k=128"):
        compile_chain([random_layer(rng, 8, 256, 1, 4)], batch=1)
    with pytest.raises(ValueError, match="multiple of m=4 and act_rows=8"):
        compile_chain([random_layer(rng, 8, 12, 1, 4)], params=dict(act_rows=8), batch=1)
    with pytest.raises(ValueError, match="O=2 < subsystems=4"):
        compile_chain([random_layer(rng, 2, 16, 1, 4), random_layer(rng, 2, 2, 1, 1)],
                      batch=1)
    compile_chain([random_layer(rng, 2, 16, 1, 4), random_layer(rng, 2, 2, 1, 1)],
                  mapping="data", batch=1)
    with pytest.raises(ValueError, match="exceed wmem_depth=64"):
        compile_chain([random_layer(rng, 64, 64, 1, 1)], 1, params=dict(wmem_depth=64),
                      batch=1)
    with pytest.raises(ValueError, match="17 tiles of 16 rows exceed bank_rows=256"):
        compile_chain([a], 1, batch=17 * 4)
    with pytest.raises(ValueError, match="exceed imem_depth=8"):
        compile_chain([a], 1, params=dict(imem_depth=8), batch=8 * 4)
    with pytest.raises(ValueError, match="mapping must be one of"):
        compile_chain([a], mapping="pipeline", batch=1)
    with pytest.raises(ValueError, match="subsystems must be an integer in 1..4"):
        compile_chain([a], 5, batch=1)
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        compile_chain([a])
    with pytest.raises(TypeError, match="GemmLayer"):
        compile_chain([np.zeros((4, 4))], batch=1)
    with pytest.raises(ValueError, match="n must be a power of two"):
        GemmLayer(np.zeros((4, 8), int), 3, 4, 0, 1, 0)
    with pytest.raises(ValueError, match="w values must be in -128..127"):
        GemmLayer(np.full((4, 8), 128), 1, 4, 0, 1, 0)
    with pytest.raises(ValueError, match="mult must be in 0..65535"):
        GemmLayer(np.zeros((4, 8), int), 1, 4, 0, 65536, 0)
    with pytest.raises(ValueError, match="shift must be in 0..31"):
        GemmLayer(np.zeros((4, 8), int), 1, 4, 0, 1, [0, 1, 2, 32])
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        GemmLayer(np.zeros((4, 8), int), 1, 4, [1, 2], 1, 0)
    with pytest.raises(TypeError, match="mult must be an integer array"):
        GemmLayer(np.zeros((4, 8), int), 1, 4, 0, 1.5, 0)
    assert GemmLayer(np.zeros((4, 8), int), np.int64(2), np.int32(4), 0, 1, 0).n == 2
    with pytest.raises(TypeError, match="m must be an integer"):
        GemmLayer(np.zeros((4, 8), int), 1, 4.0, 0, 1, 0)
    with pytest.raises(ValueError, match="x must have shape"):
        compile_chain([a], batch=2).input_images(np.zeros((16, 3), np.int8))


# -- a whole encoder layer --------------------------------------------------------------------------


LAYER_CHIP = dict(subsystems=4, lanes=4, macs=2, max_k=128, bank_rows=2048, wmem_depth=1 << 14,
                  pmem_depth=1024, imem_depth=256, act_engine=True, act_max_row=64)


@pytest.mark.parametrize("subsystems", [1, 2, 4])
def test_encoder_layer_on_the_chip_equals_the_numpy_layer(subsystems):
    """A small encoder layer (H=32, 2 heads, FFN 64, 8 tokens, 2:4 weights) compiled onto 1, 2
    and 4 subsystems: every subsystem ends with the numpy layer's output, under the reference
    schedule and random delayed schedules, without a hazard."""
    from sparsehw.golden.chip_compile import reference_encoder_layer, run_encoder_layer
    rng = np.random.default_rng(subsystems)
    layer = random_encoder_layer(rng, 32, 2, 64, (2, 4))
    x = rng.integers(-128, 128, (32, 8)).astype(np.int8)
    ref = reference_encoder_layer(layer, x)
    assert np.unique(ref).size > 50                    # not a saturated or constant output
    for seed in (None, 1, 2):
        y, model, compiled, cycles = run_encoder_layer(layer, x, subsystems, LAYER_CHIP,
                                                       seed=seed, max_delay=4)
        for s in range(subsystems):
            assert (compiled.read_output(model, s) == ref).all()
        assert model.stats["hazards"] == 0
        assert all(sub.state == chip.HALTED for sub in model.subs)
    assert cycles[0] > 0 and cycles[1] > 0


def test_encoder_layer_through_host_word_images_equals_the_numpy_layer():
    """The path the chip RTL takes (sparsehw.model.rtl): phase 1's packed host images, the host
    step as packed weight words computed from the banks alone, phase 2's images, all written
    with ChipModel.write_words into a fresh model: the numpy layer's output, and the host step's
    words equal CompiledLayer.host_step's."""
    from sparsehw.golden.chip_compile import compile_encoder_layer, reference_encoder_layer
    rng = np.random.default_rng(11)
    layer = random_encoder_layer(rng, 32, 2, 64, (1, 2))
    x = rng.integers(-128, 128, (32, 8)).astype(np.int8)
    compiled = compile_encoder_layer(layer, 8, 2, LAYER_CHIP)
    model = chip.ChipModel(compiled.params)

    def write(images):
        for s, entries in enumerate(images):
            for mem, addr, words in entries:
                model.write_words(s, mem, addr, words)
    write(compiled.phase_images(1, x))
    model.run()
    banks = [sub.banks.copy() for sub in model.subs]
    host = compiled.host_images(banks)
    assert sum(len(w) for entries in host for _, _, w in entries) > 0
    write(host)
    after_images = [sub.w_value.copy() for sub in model.subs]
    compiled.host_step(model)                        # the in-model host step: nothing changes
    assert all((a == sub.w_value).all() for a, sub in zip(after_images, model.subs))
    write(compiled.phase_images(2))
    model.run()
    assert (compiled.read_output(model) == reference_encoder_layer(layer, x)).all()


def test_encoder_layer_check_can_fail_and_refuses_what_does_not_fit():
    from sparsehw.golden.chip_compile import (compile_encoder_layer, reference_encoder_layer,
                                              run_encoder_layer)
    rng = np.random.default_rng(7)
    layer = random_encoder_layer(rng, 32, 2, 64)
    x = rng.integers(-128, 128, (32, 8)).astype(np.int8)
    ref = reference_encoder_layer(layer, x)
    layer.ln2[1][0] += 40                               # another beta: another output row 0
    y, _, _, _ = run_encoder_layer(layer, x, 2, LAYER_CHIP)
    assert not (y == ref).all() and (y[1:] == ref[1:]).all()
    with pytest.raises(ValueError, match="act_engine"):
        compile_encoder_layer(layer, 8, 2, {**LAYER_CHIP, "act_engine": False})
    with pytest.raises(ValueError, match="multiple of lanes"):
        compile_encoder_layer(layer, 6, 2, LAYER_CHIP)
    with pytest.raises(ValueError, match="bank rows"):
        compile_encoder_layer(layer, 64, 2, {**LAYER_CHIP, "bank_rows": 256})


@pytest.mark.slow
def test_minilm_sized_encoder_layer_on_1_2_4_subsystems():
    """All-MiniLM-L6 shapes (H=384, 12 heads, FFN 1536), 8 tokens, dense and 1:4 weights."""
    from sparsehw.golden.chip_compile import reference_encoder_layer, run_encoder_layer
    rng = np.random.default_rng(11)
    params = dict(subsystems=4, lanes=4, macs=2, max_k=2048, bank_rows=32768,
                  wmem_depth=1 << 20, pmem_depth=8192, imem_depth=1024, act_engine=True,
                  act_max_row=512)
    for nm_ in ((1, 1), (1, 4)):
        layer = random_encoder_layer(rng, 384, 12, 1536, nm_)
        x = rng.integers(-128, 128, (384, 8)).astype(np.int8)
        ref = reference_encoder_layer(layer, x)
        for s in (1, 2, 4):
            y, model, _, _ = run_encoder_layer(layer, x, s, params)
            assert (y == ref).all()


def test_encoder_layer_cycle_categories_from_the_shapes():
    """The critical path's cycle categories of a small layer (H=32, 2 heads, FFN 64, 8 tokens,
    4 subsystems): phase 1 is three weight GEMMs of H/S rows per tile with no attention and no
    activation engine; the weight beats are O/S rows x ceil(K n/m / macs) beats per tile; at 1:8
    the X-load stall is K/act_rows - bpr per tile and GEMM; dense there is none; the ACT ops of
    phase 2: 2 LayerNorms, 2 adds and a GELU per run; the categories add up to the cycles."""
    from sparsehw.golden.chip_compile import run_encoder_layer
    h, f, tokens, s_count, macs, ar = 32, 64, 8, 4, 2, 2
    tiles = tokens // LAYER_CHIP["lanes"]
    for m in (1, 8):
        rng = np.random.default_rng(m)
        layer = random_encoder_layer(rng, h, 2, f, (1, m))
        x = rng.integers(-128, 128, (h, tokens)).astype(np.int8)
        _, model, compiled, cycles = run_encoder_layer(layer, x, s_count, LAYER_CHIP)
        (s1, one), (s2, two) = compiled.categories
        assert sum(one.values()) == cycles[0] and sum(two.values()) == cycles[1]
        bpr_h, bpr_f = -(-h // m // macs), -(-f // m // macs)
        rows = h // s_count
        assert one["weight_beats"] == tiles * 3 * rows * bpr_h
        assert one["attention_gemm"] == 0
        assert all(v == 0 for k, v in one.items() if k.startswith("act_"))
        # phase 2: Wo (K=h) and W2 (K=f) give h/S rows each, W1 (K=h) gives f/S rows
        assert two["weight_beats"] == tiles * (rows * bpr_h + f // s_count * bpr_h
                                               + rows * bpr_f)
        stall_h, stall_f = max(0, h // ar - bpr_h), max(0, f // ar - bpr_f)
        assert one["weight_xload"] == tiles * 3 * stall_h
        assert two["weight_xload"] == tiles * (2 * stall_h + stall_f)
        assert (one["weight_xload"] == 0) == (m == 1)
        assert two["act_layernorm"] == 2 * tiles * chip.act_cycles(
            chip.Act(op=chip.ACT_OPS["layernorm"], count=h), compiled.params)
        assert two["act_gelu"] > 0 and two["act_add"] > 0
        # heads 0 and 1 sit on subsystems 0 and 1: a subsystem with a head has attention work
        if s2 in (0, 1):
            assert two["attention_gemm"] > 0 and two["act_softmax"] > 0
        else:
            assert two["attention_gemm"] == 0 and two["act_softmax"] == 0
        assert cycles[1] == max(model.stats["cycles"])


def test_streamed_encoder_layer_equals_the_numpy_layer():
    """The layer streamed by token chunks (a k/v phase, the host step, one phase per chunk of 1
    or 2 tiles) on 1, 2 and 4 subsystems, under the reference schedule and random delayed
    schedules: every subsystem ends with the numpy layer's output, no hazard; its bank needs
    shrink with the chunk; a chunk that does not divide the tiles is refused."""
    from sparsehw.golden.chip_compile import (compile_encoder_layer_streamed,
                                             reference_encoder_layer, run_encoder_layer_streamed)
    rng = np.random.default_rng(7)
    layer = random_encoder_layer(rng, 32, 2, 64, (2, 4))
    x = rng.integers(-128, 128, (32, 16)).astype(np.int8)
    ref = reference_encoder_layer(layer, x)
    assert np.unique(ref).size > 50
    for chunk, subsystems, seed in ((1, 4, None), (1, 2, 3), (2, 4, 5), (2, 1, None)):
        y, model, compiled, cycles = run_encoder_layer_streamed(layer, x, chunk, subsystems,
                                                                LAYER_CHIP, seed=seed,
                                                                max_delay=4)
        assert len(cycles) == 1 + 4 // chunk and len(compiled.categories) == len(cycles)
        for s in range(subsystems):
            assert (compiled.read_output(model, s) == ref).all()
        assert model.stats["hazards"] == 0
    with pytest.raises(ValueError, match="must divide"):
        compile_encoder_layer_streamed(layer, 16, 3, 2, LAYER_CHIP)
    # chunks of 1 tile hold the FFN's intermediate of 4 tokens, not of all 16
    with pytest.raises(ValueError, match="bank rows"):
        compile_encoder_layer_streamed(layer, 16, 4, 2, {**LAYER_CHIP, "bank_rows": 512})
    compile_encoder_layer_streamed(layer, 16, 1, 2, {**LAYER_CHIP, "bank_rows": 512})
