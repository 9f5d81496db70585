"""Benchmarks import ``fast`` before NumPy, so its OpenBLAS setting takes effect (see fast/__init__.py)."""
import sys
import warnings

if "numpy" in sys.modules:
    warnings.warn("NumPy was imported before fast: OPENBLAS_THREAD_TIMEOUT is not applied; "
                  "timings will be slower than in training runs")
import fast  # noqa: E402,F401
