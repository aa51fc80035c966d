"""Registry entries of the HBFP family (issue 3): bfp_convert, hbfp_dot, fp32_mac."""

from sparsehw.registry import Block, Param


def _bfp_convert(**params):
    from sparsehw.hw.hbfp import BfpConvert
    return BfpConvert(**params)


def _hbfp_dot(**params):
    from sparsehw.hw.hbfp import HbfpDot
    return HbfpDot(**params)


def _fp32_mac(**params):
    from sparsehw.hw.fp32 import Fp32Mac
    return Fp32Mac(**params)


def _dot_perf(params, workload, *, sim, seed, build_dir):
    from sparsehw.verif.hbfp.perf_hbfp_dot import run_perf
    return run_perf(params, workload, sim=sim, seed=seed, build_dir=build_dir)


BLOCKS = [
    Block(
        name="bfp_convert",
        summary="FP32 block -> HBFP (shared exponent, sign-magnitude mantissas, invalid flag), "
                "bit-exact with HBFPEmulator's _float_to_bfp",
        params=(
            Param("block_size", 8, "power of two in 1..64"),
            Param("mant_bits", 7, "2..16 (HBFP8: 7, HBFP6: 5, HBFP4: 3)"),
        ),
        build=_bfp_convert,
        testbench="sparsehw.verif.hbfp.tb_bfp_convert",
    ),
    Block(
        name="hbfp_dot",
        summary="HBFP block dot product, one block pair per cycle, FP32 accumulator; "
                "mixed=1 selects HBFP4/6/8 per beat at run time",
        params=(
            Param("block_size", 8, "power of two in 1..64"),
            Param("mant_bits", 7, "2..16 (must be 7 with mixed=1)"),
            Param("mixed", False, "0/1: run-time mode HBFP4/6/8 (Accuracy Boosters)", type=bool),
        ),
        build=_hbfp_dot,
        testbench="sparsehw.verif.hbfp.tb_hbfp_dot",
        perf=_dot_perf,
        workload_params=(
            Param("blocks", 10000, "block pairs streamed, 1..1000000"),
            Param("blocks_per_dot", 16, "block pairs per dot product, 1..1000000"),
            Param("stall", 0.0, "random valid/ready stall probability, 0..0.99", type=float),
        ),
        workload_summary="random HBFP dot products back to back; utilization = blocks / cycles "
                         "of the input window",
    ),
    Block(
        name="fp32_mac",
        summary="IEEE-754 binary32 multiply then add (two RNE roundings, subnormals, Inf/NaN); "
                "the FP32 reference of the HBFP area comparison",
        params=(),
        build=_fp32_mac,
        testbench="sparsehw.verif.hbfp.tb_fp32_mac",
    ),
]
