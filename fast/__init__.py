"""The fast implementation and everything built on it, one folder per layer: the networks
(``fast.nn``), the images (``fast.data``), the scoring of predictions (``fast.scoring``), the
trained classifier (``fast.inference``), training (``fast.training``), and the commands at the top
(``python -m fast.train|predict|evaluate|report``). docs/architecture.md has the layering.

Importing the package changes nothing global; see ``fast.runtime`` for the process settings
that training and the benchmarks make where they start.
"""
