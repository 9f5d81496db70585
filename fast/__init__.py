"""Vectorised (im2col) CNN, data pipeline, trainer and tools for the chest X-ray classifier."""
