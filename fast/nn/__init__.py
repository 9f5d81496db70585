"""The networks: the fast layers and their kernels, the model built from either implementation's
layers, and its files."""
