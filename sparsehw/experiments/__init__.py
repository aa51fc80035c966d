"""Experiments: design-space sweeps, the report and the studies (above the flow, below the CLI)."""
