"""Training: its settings, the optimisers, the loop and its checkpoints, data-parallel training
over MPI, the framing stress study, and the trainer that calibrates, chooses the threshold and
scores the test split."""
