"""Registry entry of the SPU family: N:M sparse int8 GEMM with fused post-ops."""

from sparsehw.registry import Block, Param


DEFAULTS = {"lanes": 4, "macs": 2, "max_m": 32, "max_k": 128, "act_rows": 2}
#: The reference design point of ``sparsehw perf spu`` without -p (and of the report): the
#: defaults cannot hold the reference workload's K=1024.
REFERENCE_PARAMS = {"lanes": 16, "macs": 4, "max_m": 32, "max_k": 1024, "act_rows": 8}


def _build(**params):
    from sparsehw.hw.spu import SPU
    return SPU(**params)


def _perf(params, workload, *, sim, seed, build_dir):
    from sparsehw.verif.spu.perf_spu import run_perf
    return run_perf(dict(params), dict(workload), sim=sim, seed=seed, build_dir=build_dir)


BLOCKS = [
    Block(
        name="spu",
        summary="N:M sparse int8 GEMM (run-time n:m up to 1:32), int32 accumulation, fused "
                "bias/requantization/ReLU",
        params=(
            Param("lanes", DEFAULTS["lanes"], "1..64 (batch columns in parallel)"),
            Param("macs", DEFAULTS["macs"], "1..16 (nonzero weights per cycle)"),
            Param("max_m", DEFAULTS["max_m"], "power of two 1..32 (largest group size)"),
            Param("max_k", DEFAULTS["max_k"],
                  "power of two, max(max_m, act_rows)..65536 (largest K)"),
            Param("act_rows", DEFAULTS["act_rows"],
                  "power of two 1..16 (activation rows per beat)"),
        ),
        build=_build,
        testbench="sparsehw.verif.spu.tb_spu",
        perf=_perf,
        perf_defaults=REFERENCE_PARAMS,
        workload_params=(
            Param("n", 1, "power of two 1..m (nonzeros per group)"),
            Param("m", 1, "power of two 1..max_m (group size; 1 = dense)"),
            Param("k", 1024, "multiple of max(m, act_rows), up to max_k"),
            Param("o", 256, "1..65535 (output rows)"),
            Param("b", 16, "multiple of lanes (batch columns)"),
        ),
        workload_summary="one n:m GEMM, K=1024 O=256 B=16 by default, streams at full rate; "
                         "without -p runs the reference point lanes=16 macs=4 max_k=1024 "
                         "act_rows=8",
    ),
]
