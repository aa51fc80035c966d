"""Registry entry of the activation engine (docs/act_engine.md)."""

from sparsehw.hw.act_engine import ACT_PARAMS, ActEngine
from sparsehw.registry import Block
from sparsehw.golden.act import ACT_WORKLOAD


def _perf(params, workload, *, sim, seed, build_dir):
    from sparsehw.verif.act.perf_act import run_perf
    return run_perf(dict(params), dict(workload), sim=sim, seed=seed, build_dir=build_dir)


BLOCKS = [
    Block(
        name="act_engine",
        summary="integer GELU, exp, log2, reciprocal (lanes/cycle) and row-wise softmax, "
                "LayerNorm (row buffer), op chosen per command, bit-exact with golden/act.py",
        params=ACT_PARAMS,
        build=ActEngine,
        testbench="sparsehw.verif.act.tb_act",
        perf=_perf,
        workload_params=ACT_WORKLOAD,
        workload_summary="rows=8 commands of one op (-w op=gelu|exp|log2|recip|softmax|"
                         "layernorm), n=1024 elements (max_row for row-wise ops), full rate",
    ),
]
