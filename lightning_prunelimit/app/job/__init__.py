"""The run itself: one job's stages, in order, and the time each takes."""
