"""cocotb testbenches and perf workloads of the HBFP family (bfp_convert, hbfp_dot, fp32_mac)."""
