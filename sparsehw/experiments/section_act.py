"""Report section of the act family (design points and rendering); None until it has one."""

SECTION = None
