"""The run directory: one per job, claimed atomically, and the atomic writes of its files."""
