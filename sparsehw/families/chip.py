"""Registry entries of the chip family: the SPU subsystem and the S4-style chip (docs/chip.md)."""

BLOCKS = []
