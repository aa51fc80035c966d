"""cocotb testbenches and perf workloads of the HBFP family (bfp_convert, hbfp_dot, fp32_mac)."""

from sparsehw.params import Param, ParamSpec, float_in, int_in


__all__ = ["HBFP_DOT_WORKLOAD"]


#: The knobs of one ``sparsehw perf hbfp_dot`` run (:mod:`verif.hbfp.perf_hbfp_dot`).
HBFP_DOT_WORKLOAD = ParamSpec(
    Param("blocks", 10000, int_in(1, 1000000), doc="block pairs streamed"),
    Param("blocks_per_dot", 16, int_in(1, 1000000), doc="block pairs per dot product"),
    Param("stall", 0.0, float_in(0, 0.99), doc="random valid/ready stall probability"),
    kind="workload knob",
)
