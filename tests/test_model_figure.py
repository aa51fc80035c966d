"""The S4 Figure 2 sweep (sparsehw/model/figure.py) on a small encoder layer."""

from sparsehw.model import figure

SMALL = dict(subsystems=4, lanes=4, macs=2, max_k=128, bank_rows=2048, wmem_depth=1 << 14,
             pmem_depth=1024, imem_depth=256, act_engine=True, act_max_row=64)


def test_sweep_speedup_stays_under_flops_and_amdahl():
    rows = figure.minilm_sweep(ms=(1, 4, 32), tokens=8, layers=2, hidden=64, heads=2, ffn=128,
                               params=SMALL)
    assert rows[0]["speedup"] == 1.0 and rows[0]["flop_speedup"] == 1.0
    for row in rows[1:]:
        assert 1.0 < row["speedup"] < row["flop_speedup"] < row["m"]
        assert row["speedup"] < row["amdahl_bound"]
    # sparsity shrinks only the weight GEMMs: the other parts are the same at every pattern
    for key in ("attention_gemm", "act"):
        assert len({row["parts"][key] for row in rows}) == 1
    weight = [row["parts"]["weight_gemm"] for row in rows]
    assert weight[2] < weight[1] < weight[0] / 3
