"""The S4-style chip: SPU subsystems with local memories and a sequencer, joined by the ring.

See ``docs/chip.md``; the instruction set, memory map and instruction-level golden model are
:mod:`sparsehw.golden.chip`.
"""

from .subsystem import Subsystem, SUBSYSTEM_PARAMS, REG_NAMES, REGS_MEM, flit_format
from .chip import Chip, CHIP_RTL_PARAMS, HOST_OPS, CHIP_MEM, CHIP_REG_NAMES, chip_host_layouts

__all__ = ["Subsystem", "SUBSYSTEM_PARAMS", "REG_NAMES", "REGS_MEM", "flit_format", "Chip",
           "CHIP_RTL_PARAMS", "HOST_OPS", "CHIP_MEM", "CHIP_REG_NAMES", "chip_host_layouts"]
