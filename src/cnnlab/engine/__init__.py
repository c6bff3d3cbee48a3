"""Training engine: optimiser/schedule/loss registries, the epoch loop, checkpoints and the Trainer."""
