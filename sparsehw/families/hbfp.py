"""Registry entries of the HBFP family (issue 3): bfp_convert, hbfp_dot, fp32_mac."""

from sparsehw.hw.fp32 import Fp32Mac
from sparsehw.hw.hbfp import BFP_CONVERT_PARAMS, HBFP_DOT_PARAMS, BfpConvert, HbfpDot
from sparsehw.params import ParamSpec
from sparsehw.registry import Block
from sparsehw.verif.hbfp import HBFP_DOT_WORKLOAD


def _dot_perf(params, workload, *, sim, seed, build_dir):
    from sparsehw.verif.hbfp.perf_hbfp_dot import run_perf
    return run_perf(params, workload, sim=sim, seed=seed, build_dir=build_dir)


BLOCKS = [
    Block(
        name="bfp_convert",
        summary="FP32 block -> HBFP (shared exponent, sign-magnitude mantissas, invalid flag), "
                "bit-exact with HBFPEmulator's _float_to_bfp except a block maximum just above "
                "a power of two (exact exponent)",
        params=BFP_CONVERT_PARAMS,
        build=BfpConvert,
        testbench="sparsehw.verif.hbfp.tb_bfp_convert",
    ),
    Block(
        name="hbfp_dot",
        summary="HBFP block dot product, one block pair per cycle, FP32 accumulation in "
                "add_stages+1 interleaved partial sums (pipelined adder) combined by a "
                "pairwise tree; mixed=1 selects HBFP4/6/8 per beat at run time",
        params=HBFP_DOT_PARAMS,
        build=HbfpDot,
        testbench="sparsehw.verif.hbfp.tb_hbfp_dot",
        perf=_dot_perf,
        workload_params=HBFP_DOT_WORKLOAD,
        workload_summary="random HBFP dot products back to back; utilization = blocks / cycles "
                         "of the input window",
    ),
    Block(
        name="fp32_mac",
        summary="IEEE-754 binary32 multiply then add (two RNE roundings, subnormals, Inf/NaN, "
                "canonical NaN), pipelined (16 cycles); the FP32 reference of the HBFP area "
                "comparison",
        params=ParamSpec(),
        build=Fp32Mac,
        testbench="sparsehw.verif.hbfp.tb_fp32_mac",
    ),
]
