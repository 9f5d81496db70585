"""The benchmark network, shared by the speed suite (``bench/test_speed.py``), the step timed in a
process of its own (``bench/step_process.py``) and the levers study (``studies/levers.py``): its
architecture, its batch, the FLOPs of one training step, and a median timer."""
import time

import numpy as np

from fast.nn.model import Architecture

# The benchmark network: 3 conv blocks (1->16->32->64, 3x3, pad 1, ReLU,
# 2x2 max-pool) on (32, 1, 128, 128) float32, affine 16384->128->2 (three poolings of 128x128
# leave 64 x 16 x 16 = 16384 features), one plain SGD step; no batch norm, no dropout.
BENCH_ARCH = Architecture(input_shape=(1, 128, 128), channels=(16, 32, 64), kernel=3, pad=1, pool=2,
                          stem_stride=1, stem_kernel=3,
                          hidden=128, num_classes=2, batchnorm=False, dropout=0.0)
BATCH = 32


def network_flops(arch, batch):
    """Multiply-adds x 2 of one step: forward, weight gradients, and input gradients
    of every layer but the first conv (its input is data)."""
    total, (c, h, w) = 0, arch.input_shape
    for i, f in enumerate(arch.channels):
        oh = (h + 2 * arch.pad - arch.kernel) // arch.stride + 1
        ow = (w + 2 * arch.pad - arch.kernel) // arch.stride + 1
        gemm = 2 * batch * oh * ow * f * c * arch.kernel ** 2
        total += gemm * (2 if i == 0 else 3)
        c, h, w = f, oh // arch.pool, ow // arch.pool
    total += 3 * 2 * batch * (c * h * w * arch.hidden + arch.hidden * arch.num_classes)
    return total


def median_seconds(fn, repeats=7):
    """The median of ``repeats`` timings of fn(), after one untimed call, in seconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
