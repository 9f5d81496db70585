"""Benchmarks make the process settings training makes (fast.runtime), before NumPy loads."""
import sys
import warnings

from fast.runtime import configure_process

if "numpy" in sys.modules:
    warnings.warn("NumPy was imported before the benchmarks started: OPENBLAS_THREAD_TIMEOUT is "
                  "not applied; timings will be slower than in training runs")
configure_process()
