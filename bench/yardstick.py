"""The machine's yardstick: a 2048 x 2048 float32 GEMM through NumPy, on every core.

Training runs BLAS on one thread (``fast.runtime.configure_process``: the project splits GEMMs
itself), so the yardstick lifts that limit while it runs: it is the GEMM a plain NumPy program
gets on this machine, whatever the process around it has set.

What is compared with it must not be timed right after it: BLAS's worker threads spin for about
2**28 cycles after a GEMM on several cores, taking a core from whatever runs next, and a pause
instead lets this machine's cores slow down (a step timed after 0.3 s of sleep took 20 % longer
than one in a row of steps). So the benchmarks run one untimed step after the yardstick, as
training runs its steps back to back, and time the next.
"""
import time

import numpy as np
from threadpoolctl import threadpool_limits

from fast.runtime import cpu_threads

SIZE = 2048
FLOP = 2 * SIZE ** 3


class Yardstick:
    def __init__(self):
        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((SIZE, SIZE), dtype=np.float32)
        self.b = rng.standard_normal((SIZE, SIZE), dtype=np.float32)

    def seconds(self):
        """One timed product, after an untimed one that brings the operands back into cache
        (right after a step, the first is up to a tenth slower, which would flatter the step)."""
        with threadpool_limits(limits=cpu_threads(), user_api="blas"):
            np.matmul(self.a, self.b)
            start = time.perf_counter()
            np.matmul(self.a, self.b)
            return time.perf_counter() - start
