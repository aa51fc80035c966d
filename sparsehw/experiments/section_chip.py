"""Report section of the chip family (design points and rendering); None until it has one."""

SECTION = None
