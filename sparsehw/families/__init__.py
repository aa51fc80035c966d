"""Registry entries of the block families, one module per family (``BLOCKS = [...]``)."""
