"""The S4 Figure 2 sweep (sparsehw/model/figure.py) on a small encoder layer and ResNet-50."""

from sparsehw.golden.chip import CYCLE_COSTS
from sparsehw.model import figure

SMALL = dict(subsystems=4, lanes=4, macs=2, max_k=128, bank_rows=2048, wmem_depth=1 << 14,
             pmem_depth=1024, imem_depth=256, act_engine=True, act_max_row=64)


def test_sweep_speedup_stays_under_flops_and_amdahl():
    rows = figure.minilm_sweep(ms=(1, 4, 32), tokens=8, layers=2, hidden=64, heads=4, ffn=128,
                               params=SMALL)
    assert rows[0]["speedup"] == 1.0 and rows[0]["flop_speedup"] == 1.0
    assert all(row["bit_exact"] for row in rows)           # the chip's layer = numpy's
    for row in rows[1:]:
        assert 1.0 < row["speedup"] < row["flop_speedup"] < row["m"]
        assert row["speedup"] < row["amdahl_bound"]
        assert row["speedup"] < row["xload_bound"] <= row["amdahl_bound"]
    # sparsity shrinks only the weight GEMMs: attention and the activation engine are the same
    # at every pattern (every subsystem holds one head: the critical path has attention work)
    for key in ("attention_gemm", "act_softmax", "act_layernorm", "act_gelu", "act_add"):
        assert len({row["parts"][key] for row in rows}) == 1 and rows[0]["parts"][key] > 0
    weight = [row["parts"]["weight_beats"] for row in rows]
    assert weight[2] < weight[1] < weight[0] / 3
    assert rows[0]["parts"]["weight_xload"] == 0 < rows[2]["parts"]["weight_xload"]
    # the categories are the whole critical path: they add up to the layers' cycles
    for row in rows:
        assert sum(row["parts"].values()) == row["cycles"]


def test_the_figure_chips_hold_a_minilm_layer_of_128_tokens():
    """At lanes 4 the 128-token layer does not fit resident (49,152 rows for the FFN alone) and
    compiles streamed in chunks of 4 tiles (8 chunk phases); at lanes 16 it fits resident."""
    import numpy as np
    import pytest
    from sparsehw.golden.chip_compile import (compile_encoder_layer,
                                             compile_encoder_layer_streamed,
                                             random_encoder_layer)
    layer = random_encoder_layer(np.random.default_rng(0), 384, 12, 1536, (1, 4))
    with pytest.raises(ValueError, match="bank rows"):
        compile_encoder_layer(layer, figure.TOKENS, 4, figure.MINILM_CHIP)
    streamed = compile_encoder_layer_streamed(layer, figure.TOKENS, figure.CHUNK_TILES, 4,
                                              figure.MINILM_CHIP)
    assert streamed.tiles == 32 and len(streamed.chunks) == 8
    with pytest.raises(ValueError, match="bank rows"):          # 8 tiles per chunk: too many
        compile_encoder_layer_streamed(layer, figure.TOKENS, 8, 4, figure.MINILM_CHIP)
    assert compile_encoder_layer(layer, figure.TOKENS, 4, figure.WIDE_CHIP).tiles == 8


def test_streamed_sweep_matches_the_resident_layer_where_both_fit():
    """A small layer both ways: bit-exact, and streaming by chunks costs the same weight beats
    and activation-engine cycles (the same work, cut differently)."""
    kw = dict(ms=(1, 8), tokens=16, layers=1, hidden=64, heads=4, ffn=128, params=SMALL)
    whole = figure.minilm_sweep(**kw)
    streamed = figure.minilm_sweep(chunk_tiles=2, **kw)
    for a, b in zip(whole, streamed):
        assert a["bit_exact"] and b["bit_exact"] and b["phases"] == 3 and a["phases"] == 2
        for key in ("weight_beats", "weight_xload", "act_layernorm", "act_softmax",
                    "attention_gemm"):
            assert a["parts"][key] == b["parts"][key], key
        # element-wise ACTs: one instruction per chunk, each with its fixed start cost
        c = CYCLE_COSTS
        assert b["parts"]["act_gelu"] - a["parts"]["act_gelu"] == c["act_start"] + c["act_cmd"]
        assert b["parts"]["act_add"] - a["parts"]["act_add"] == 2 * (c["act_start"]
                                                                     + c["act_add"])


def test_resnet_sweep_bounds():
    rows = figure.resnet_sweep(ms=(1, 8, 32))
    assert rows[0]["parts"]["weight_xload"] == 0
    for row in rows[1:]:
        assert row["speedup"] < row["xload_bound"] < row["amdahl_bound"]
        assert row["speedup"] < row["m"]
