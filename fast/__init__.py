"""Vectorised (im2col) CNN, data pipeline, trainer and tools for the chest X-ray classifier.

Importing the package changes nothing global; see ``fast.runtime`` for the process settings
that training and the benchmarks make where they start.
"""
