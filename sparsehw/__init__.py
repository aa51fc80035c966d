"""sparsehw: RTL generators and verification for sparse and low-precision DNN accelerator blocks."""

__version__ = "0.1.0"
