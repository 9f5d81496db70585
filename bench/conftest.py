"""Benchmarks make the process settings training makes (fast.runtime) before anything runs."""
from fast.runtime import configure_process

configure_process()
