"""Amaranth 0.5 generators for sparsehw's blocks, one module per block family."""
