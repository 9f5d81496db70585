"""Speed: the pytest-benchmark suite (``pytest bench --benchmark-only``) and its measurement
scripts, run as modules from the checkout (``python -m bench.memory``)."""
