"""One contender's training step of the benchmark network, timed in a process of its own.

    python -m bench.step_process fast          # the project's step, process settings made first
    python -m bench.step_process numpy-first   # the same in a process that imported NumPy first
    python -m bench.step_process torch         # PyTorch's CPU build, the same network and step

Prints one JSON line: the contender, the median step in seconds, and the median float32 GEMM
(2048^3, NumPy, every core) timed between the rounds in this same process; each round is the
GEMM, one untimed step, and the timed step. ``bench/test_speed.py`` runs the
three in alternating rounds; PyTorch is an optional extra of the benchmarks only.
"""
import sys

CONTENDER = sys.argv[1] if len(sys.argv) > 1 else "fast"
if CONTENDER == "numpy-first":
    import numpy  # noqa: F401 -- loaded before the project's process settings, as a notebook might

from fast.runtime import configure_process  # noqa: E402

if CONTENDER in ("fast", "numpy-first"):
    configure_process()

import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from bench.yardstick import FLOP, Yardstick  # noqa: E402


def project_step():
    from bench.network import BATCH, BENCH_ARCH
    from fast.nn.model import ConvNet
    from fast.training.loop import train_step
    from fast.training.optim import SGD
    model, optimizer = ConvNet(BENCH_ARCH, seed=0), SGD()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, *BENCH_ARCH.input_shape), dtype=np.float32)
    y = rng.integers(0, 2, BATCH)
    return lambda: train_step(model, optimizer, x, y, 1e-3)


def torch_step():
    """The benchmark network (``bench.network``) written in PyTorch."""
    import torch
    from torch import nn

    from bench.network import BATCH, BENCH_ARCH
    size = BENCH_ARCH.input_shape[-1]
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 16 * 16, 128), nn.ReLU(), nn.Linear(128, 2))
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((BATCH, 1, size, size), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 2, BATCH))

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def main():
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    step = torch_step() if CONTENDER == "torch" else project_step()
    yardstick = Yardstick()
    for _ in range(2):  # warm-up
        step()
    steps, gemms = [], []
    for _ in range(rounds):
        gemms.append(yardstick.seconds())
        step()  # untimed: the timed step follows a step, as in training (see yardstick.py)
        start = time.perf_counter()
        step()
        steps.append(time.perf_counter() - start)
    print(json.dumps({"contender": CONTENDER, "step_seconds": float(np.median(steps)),
                      "gemm_gflops": FLOP / float(np.median(gemms)) / 1e9}))


if __name__ == "__main__":
    main()
