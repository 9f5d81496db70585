"""Training: its settings, the optimisers, the loop and its checkpoints, data-parallel training
over MPI, and the trainer that calibrates, chooses the threshold and
scores the test split."""
