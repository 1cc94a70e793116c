"""Training runs: configuration, curriculum, slice cache, the loop, checkpoints, distributed."""
