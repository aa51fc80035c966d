"""Registry entry of the activation engine (docs/act_engine.md)."""

BLOCKS = []
