"""Verification: the cocotb runner, stream drivers and the block testbenches."""
