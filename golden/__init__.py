"""numpy golden models, bit-exact; each docstring states its numeric rules."""
