"""Speed comparisons: ``pytest bench --benchmark-only``.

Groups: per-layer forward/backward for both implementations; the benchmark
network's training step (through the contract functions and through the model);
the float32 GEMM that is the machine's yardstick; the shipped model's prediction
over the test split, on an idle machine and beside a training run
(``pytest bench -k predict --benchmark-only``). Timings are noisy on shared
machines: compare medians, and ratios taken within one run.
"""
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fast.nn.layers
import reference.layers
from bench.network import BATCH, BENCH_ARCH, median_seconds, network_flops
from bench.yardstick import FLOP, Yardstick
from fast.nn.model import Architecture, ConvNet
from fast.runtime import cpu_threads
from fast.training.loop import train_step
from fast.training.optim import SGD

def _bench_batch(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, *BENCH_ARCH.input_shape), dtype=np.float32)
    y = rng.integers(0, 2, BATCH)
    return x, y


def contract_step(params, x, y, lr=1e-3):
    """One training step written with the fast.nn.layers contract functions alone."""
    L, caches, h = fast.nn.layers, [], x
    for i in (1, 2, 3):
        h, conv_cache = L.conv2d_forward(h, params[f"conv{i}_w"], params[f"conv{i}_b"], 1, 1)
        h, pool_cache = L.maxpool2d_forward(h, 2)  # pool, then ReLU: they commute
        h, relu_cache = L.relu_forward(h)
        caches.append((conv_cache, pool_cache, relu_cache))
    h, fc1_cache = L.affine_forward(h, params["fc1_w"], params["fc1_b"])
    h, relu_fc_cache = L.relu_forward(h)
    logits, fc2_cache = L.affine_forward(h, params["fc2_w"], params["fc2_b"])
    loss, d = L.softmax_cross_entropy(logits, y)

    grads = {}
    d, grads["fc2_w"], grads["fc2_b"] = L.affine_backward(d, fc2_cache)
    d = L.relu_backward(d, relu_fc_cache)
    d, grads["fc1_w"], grads["fc1_b"] = L.affine_backward(d, fc1_cache)
    for i in (3, 2, 1):
        conv_cache, pool_cache, relu_cache = caches[i - 1]
        d = L.maxpool2d_backward(L.relu_backward(d, relu_cache), pool_cache)
        d, grads[f"conv{i}_w"], grads[f"conv{i}_b"] = L.conv2d_backward(d, conv_cache, need_dx=i > 1)
    for k in params:
        params[k] -= lr * grads[k]
    return loss


# --- conv forward + backward, both implementations -----------------

@pytest.mark.parametrize("impl", [reference.layers, fast.nn.layers], ids=["reference", "fast"])
def test_conv_forward_backward(benchmark, impl):
    benchmark.group = "conv fwd+bwd (8, 4, 32, 32) * (8, 4, 3, 3), pad 1, float64"
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((8, 4, 32, 32)), rng.standard_normal((8, 4, 3, 3)), rng.standard_normal(8)
    dout = rng.standard_normal((8, 8, 32, 32))

    def step():
        _, cache = impl.conv2d_forward(x, w, b, 1, 1)
        return impl.conv2d_backward(dout, cache)

    benchmark.pedantic(step, rounds=5 if impl is reference.layers else 50, warmup_rounds=1)


def test_fast_conv_is_far_ahead_of_reference(benchmark):
    """The ratio of the two medians, measured in one test so both share the machine's mood."""
    benchmark.group = "conv fwd+bwd ratio reference / fast"
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((8, 4, 32, 32)), rng.standard_normal((8, 4, 3, 3)), rng.standard_normal(8)
    dout = rng.standard_normal((8, 8, 32, 32))

    def step(impl):
        _, cache = impl.conv2d_forward(x, w, b, 1, 1)
        return impl.conv2d_backward(dout, cache)

    ref = median_seconds(lambda: step(reference.layers), repeats=3)
    benchmark.pedantic(step, args=(fast.nn.layers,), rounds=50, warmup_rounds=1)
    ratio = ref / benchmark.stats.stats.median
    benchmark.extra_info["reference_median_s"] = ref
    benchmark.extra_info["reference_over_fast"] = round(ratio, 1)
    print(f"\nconv fwd+bwd: reference {ref * 1e3:.1f} ms, fast {benchmark.stats.stats.median * 1e3:.3f} ms, "
          f"fast is {ratio:.0f}x faster")
    assert ratio > 100, f"fast conv fwd+bwd only {ratio:.0f}x faster than reference (expected > 100x)"


# --- per-layer forward and backward at the benchmark network's shapes ----------------------------

def _layer_case(name, rng):
    """-> (forward: layers module -> (out, cache), name of the backward function)."""
    f32 = np.float32
    if name == "conv 16->32 on (32, 16, 64, 64)":
        x, w = rng.standard_normal((32, 16, 64, 64), dtype=f32), rng.standard_normal((32, 16, 3, 3), dtype=f32)
        return lambda L: L.conv2d_forward(x, w, np.zeros(32, f32), 1, 1), "conv2d_backward"
    if name == "maxpool 2 on (32, 16, 128, 128)":
        x = rng.standard_normal((32, 16, 128, 128), dtype=f32)
        return lambda L: L.maxpool2d_forward(x, 2), "maxpool2d_backward"
    if name == "relu on (32, 16, 64, 64)":
        x = rng.standard_normal((32, 16, 64, 64), dtype=f32)
        return lambda L: L.relu_forward(x), "relu_backward"
    if name == "affine 16384->128, batch 32":
        x, w = rng.standard_normal((32, 16384), dtype=f32), rng.standard_normal((16384, 128), dtype=f32)
        return lambda L: L.affine_forward(x, w, np.zeros(128, f32)), "affine_backward"
    raise KeyError(name)


LAYER_CASES = ["conv 16->32 on (32, 16, 64, 64)", "maxpool 2 on (32, 16, 128, 128)",
               "relu on (32, 16, 64, 64)", "affine 16384->128, batch 32"]


@pytest.mark.parametrize("case", LAYER_CASES)
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_fast_layer(benchmark, case, direction):
    benchmark.group = f"fast layers, {direction} (float32)"
    forward, backward_name = _layer_case(case, np.random.default_rng(0))
    if direction == "forward":
        benchmark(forward, fast.nn.layers)
        return
    out, cache = forward(fast.nn.layers)
    benchmark(getattr(fast.nn.layers, backward_name), np.ones_like(out), cache)


SMALL_CASES = {  # shapes the loop-based layers finish in milliseconds, float64
    "conv (2, 4, 16, 16) * (8, 4, 3, 3), pad 1": "conv",
    "maxpool 2 on (2, 4, 16, 16)": "maxpool",
    "relu on (2, 4, 16, 16)": "relu",
    "affine 1024->64, batch 2": "affine",
}


def _small_case(kind, rng):
    """-> (forward: layers module -> (out, cache), name of the backward function)."""
    x = rng.standard_normal((2, 4, 16, 16))
    if kind == "conv":
        w, b = rng.standard_normal((8, 4, 3, 3)), rng.standard_normal(8)
        return lambda L: L.conv2d_forward(x, w, b, 1, 1), "conv2d_backward"
    if kind == "maxpool":
        return lambda L: L.maxpool2d_forward(x, 2), "maxpool2d_backward"
    if kind == "relu":
        return lambda L: L.relu_forward(x), "relu_backward"
    w, b = rng.standard_normal((1024, 64)), rng.standard_normal(64)
    return lambda L: L.affine_forward(x, w, b), "affine_backward"


@pytest.mark.parametrize("impl", [reference.layers, fast.nn.layers], ids=["reference", "fast"])
@pytest.mark.parametrize("case", SMALL_CASES)
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_layer_both_implementations(benchmark, case, direction, impl):
    """Each layer in both implementations at one small shape: a table per layer and direction."""
    benchmark.group = f"{case}, {direction}, float64: reference vs fast"
    forward, backward_name = _small_case(SMALL_CASES[case], np.random.default_rng(0))
    rounds = 5 if impl is reference.layers else 50
    if direction == "forward":
        benchmark.pedantic(forward, args=(impl,), rounds=rounds, warmup_rounds=1)
        return
    out, cache = forward(impl)
    benchmark.pedantic(getattr(impl, backward_name), args=(np.ones_like(out), cache), rounds=rounds,
                       warmup_rounds=1)


# --- the benchmark network's step, and the GEMM yardstick ---------------------------------------

def test_gemm_2048_float32(benchmark):
    benchmark.group = "benchmark network step vs float32 GEMM"
    yardstick = Yardstick()
    with threadpool_limits(limits=cpu_threads(), user_api="blas"):  # every core, as plain NumPy
        benchmark.pedantic(np.matmul, args=(yardstick.a, yardstick.b), rounds=10, warmup_rounds=2)
    benchmark.extra_info["gflops"] = round(FLOP / benchmark.stats.stats.median / 1e9, 1)


class GemmBetweenRounds:
    """The yardstick, timed between the rounds of a step benchmark.

    Passed as pytest-benchmark's ``setup``, it times a 2048 x 2048 float32 matmul
    (untimed by the benchmark itself) before each round of the step, so that the
    step and the GEMM it is compared with are measured in turn, in the same state
    of a shared machine (its clock speed, its neighbours' load). Then ``warm_up`` (one
    untimed step) runs, so that the timed step follows a step, as in training (see
    ``yardstick``).
    """

    def __init__(self, warm_up):
        self.yardstick, self.warm_up = Yardstick(), warm_up
        self.seconds = []

    def __call__(self):
        self.seconds.append(self.yardstick.seconds())
        self.warm_up()

    def gflops(self):
        return FLOP / float(np.median(self.seconds)) / 1e9


def _bench_step(benchmark, step, args, label):
    gemm = GemmBetweenRounds(lambda: step(*args))
    benchmark.pedantic(step, args=args, setup=gemm, rounds=12, warmup_rounds=2)
    flops = network_flops(BENCH_ARCH, BATCH)
    median = benchmark.stats.stats.median
    achieved = flops / median / 1e9
    fraction = achieved / gemm.gflops()
    benchmark.extra_info.update(step_gflop=round(flops / 1e9, 3), gflops=round(achieved, 1),
                                gemm_gflops=round(gemm.gflops(), 1), fraction_of_gemm=round(fraction, 3))
    print(f"\n{label}: median step {median * 1e3:.1f} ms = {achieved:.1f} GFLOP/s; "
          f"float32 GEMM between rounds {gemm.gflops():.1f} GFLOP/s; fraction of GEMM throughput {fraction:.1%}")


def test_network_step_contract_functions(benchmark):
    benchmark.group = "benchmark network step vs float32 GEMM"
    params = ConvNet(BENCH_ARCH, seed=0).params
    x, y = _bench_batch()
    _bench_step(benchmark, contract_step, (params, x, y), "step from fast.nn.layers contract functions")


def test_network_step_model(benchmark):
    """The trainer's own step (ConvNet.loss, then the optimizer's update), with plain SGD."""
    benchmark.group = "benchmark network step vs float32 GEMM"
    model, optimizer = ConvNet(BENCH_ARCH, seed=0), SGD()
    x, y = _bench_batch()
    _bench_step(benchmark, train_step, (model, optimizer, x, y, 1e-3),
                "step through the trainer's train_step (ConvNet.loss + SGD.update)")


# --- each contender in a process of its own ------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent


def _contenders():
    """The project's step as training runs it, the same in a process that loaded NumPy first,
    and PyTorch's CPU build when it is installed (the optional extra ``compare``)."""
    names = ["fast", "numpy-first"]
    if importlib.util.find_spec("torch") is not None:
        names.append("torch")
    return names


def test_network_step_each_contender_in_its_own_process(benchmark):
    """Alternating rounds, each contender a fresh process timing 12 steps against the GEMM
    measured in that same process; medians over the rounds."""
    benchmark.group = "benchmark network step, each contender in its own process"
    names, results = _contenders(), []

    def one_round():
        for name in names:
            done = subprocess.run([sys.executable, "-m", "bench.step_process", name, "12"], cwd=REPO_ROOT,
                                  capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(one_round, rounds=3, iterations=1)
    flops = network_flops(BENCH_ARCH, BATCH)
    lines, medians = [], {}
    for name in names:
        mine = [r for r in results if r["contender"] == name]
        step = float(np.median([r["step_seconds"] for r in mine]))
        gemm = float(np.median([r["gemm_gflops"] for r in mine]))
        medians[name] = step
        fraction = flops / step / 1e9 / gemm
        benchmark.extra_info[name] = {"step_ms": round(step * 1e3, 1), "gemm_gflops": round(gemm, 1),
                                      "fraction_of_gemm": round(fraction, 3)}
        lines.append(f"{name:12s} median step {step * 1e3:6.1f} ms, GEMM {gemm:5.1f} GFLOP/s, "
                     f"{fraction:.1%} of it")
    ratios = {f"{name}/fast": round(medians[name] / medians["fast"], 3) for name in names[1:]}
    benchmark.extra_info["ratios"] = ratios
    print("\n" + "\n".join(lines) + f"\nratios to the project's step: {ratios}")
    # the process settings work whatever was imported first
    assert medians["numpy-first"] <= 1.05 * medians["fast"]


# --- the normalisation layers' share of a batch-normalised step ---------------------------------

NORMALISED_ARCH = Architecture(input_shape=(1, 128, 128), channels=(16, 32, 64), kernel=3, pad=1, pool=2,
                               stem_stride=1, stem_kernel=3,
                               hidden=128, num_classes=2, batchnorm=True, head="gap", dropout=0.3)
NORMALISATION_LAYERS = ("batchnorm_forward", "batchnorm_backward", "dropout_forward", "dropout_backward",
                        "global_avgpool_forward", "global_avgpool_backward")


def test_normalisation_layers_share_of_a_batch_normalised_step(benchmark, monkeypatch):
    """The benchmark network with batch norm after each conv, global average pooling and
    dropout 0.3: its step, and the share of it spent inside those three layers' functions
    (timed by wrapping each one)."""
    benchmark.group = "batch-normalised benchmark network step"
    model, optimizer = ConvNet(NORMALISED_ARCH, seed=0), SGD()
    x, y = _bench_batch()
    rng = np.random.default_rng(0)
    inside = []

    def timed(function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                inside.append(time.perf_counter() - start)
        return wrapper

    for name in NORMALISATION_LAYERS:
        monkeypatch.setattr(fast.nn.layers, name, timed(getattr(fast.nn.layers, name)))
    steps = []

    def one_step():
        train_step(model, optimizer, x, y, 1e-3, rng=rng)

    def step():
        inside.clear()
        start = time.perf_counter()
        one_step()
        steps.append((time.perf_counter() - start, sum(inside)))

    gemm = GemmBetweenRounds(one_step)
    benchmark.pedantic(step, setup=gemm, rounds=12, warmup_rounds=2)
    timed_steps = steps[-12:]  # the 12 timed rounds, not the warm-up ones
    total = float(np.median([s for s, _ in timed_steps]))
    share = float(np.median([part / s for s, part in timed_steps]))
    benchmark.extra_info.update(step_ms=round(total * 1e3, 1), normalisation_share=round(share, 3),
                                gemm_gflops=round(gemm.gflops(), 1))
    print(f"\nbatch-normalised step: median {total * 1e3:.1f} ms (GEMM {gemm.gflops():.1f} GFLOP/s); "
          f"batch norm, dropout and global average pooling: {share:.1%} of it")


# --- the shipped model's prediction, beside other work ------------------------------------------

# the environment of a user who set no thread variable, and the same holding BLAS to one thread
_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XRAY_THREADS")
_USER_ENV = {k: v for k, v in os.environ.items() if k not in _THREAD_VARIABLES}
PREDICTION_CONTENDERS = {"as started": _USER_ENV, "OPENBLAS_NUM_THREADS=1": {**_USER_ENV, "OPENBLAS_NUM_THREADS": "1"}}


@contextmanager
def training_beside(data_root, folder):
    """A small ``python -m fast.train`` running in a process of its own for as long as the block
    lasts (epochs enough to outlast it), started as a user starts it; the block opens once its
    training loop has begun."""
    command = [sys.executable, "-m", "fast.train", "--data", str(data_root), "--out", str(folder / "run"),
               "--cache-dir", str(folder / "cache"), "--limit", "600", "--folds", "1", "--epochs", "10000",
               "--patience", "10000"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=_USER_ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        for line in process.stdout:  # "data ...: train ..." is printed as the first epoch begins
            if line.startswith("data "):
                break
        else:
            raise RuntimeError(f"the training beside the benchmark ended early ({process.wait()})")
        threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its pipe drained
        time.sleep(2)  # into its first epoch
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("beside", ["idle machine", "training run"])
def test_prediction_of_the_shipped_model_keeps_its_speed(benchmark, beside, tmp_path):
    """X-rays per second of the shipped model's ``predict_proba`` over the test split, each contender
    a fresh process (``bench/predict_process.py``): as a user starts it, and with BLAS held to one
    thread by the environment; alternating rounds, medians. The first may take at most 15 % longer
    than the second, on an idle machine and beside a training run."""
    from fast.data.errors import DataError
    from fast.data.folders import resolve_data_root
    try:
        data_root = resolve_data_root()
    except DataError as err:
        pytest.skip(str(err))
    benchmark.group = f"shipped model, predict_proba over the test split, {beside}"
    results = {name: [] for name in PREDICTION_CONTENDERS}

    def one_round():
        for name, env in PREDICTION_CONTENDERS.items():
            done = subprocess.run([sys.executable, "-m", "bench.predict_process"], cwd=REPO_ROOT, env=env,
                                  capture_output=True, text=True, check=True)
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))

    with (training_beside(data_root, tmp_path) if beside == "training run" else nullcontext()):
        gemm = FLOP / Yardstick().seconds() / 1e9
        benchmark.pedantic(one_round, rounds=3, iterations=1)
    medians = {name: float(np.median([r["seconds"] for r in runs])) for name, runs in results.items()}
    xrays = results["as started"][0]["xrays"]
    ratio = medians["as started"] / medians["OPENBLAS_NUM_THREADS=1"]
    benchmark.extra_info.update({name: {"seconds": round(s, 2), "xrays_per_second": round(xrays / s, 1)}
                                 for name, s in medians.items()})
    benchmark.extra_info.update(xrays=xrays, gemm_gflops=round(gemm, 1), ratio=round(ratio, 3))
    print(f"\n{beside}: {xrays} X-rays; " + "; ".join(f"{name} {s:.2f} s = {xrays / s:.1f} X-rays/s"
                                                     for name, s in medians.items())
          + f"; ratio {ratio:.3f}; float32 GEMM {gemm:.1f} GFLOP/s")
    assert ratio <= 1.15, f"prediction as started took {ratio:.2f}x the time with OPENBLAS_NUM_THREADS=1"


def test_entering_kernel_threads_costs_under_a_percent_of_a_batch(benchmark):
    """``runtime.kernel_threads`` is entered once per pass of a network: its cost (setting BLAS's
    threads and back) against one evaluation-mode forward pass of the default network on 32
    X-rays of its size."""
    from fast.runtime import kernel_threads
    from fast.training.config import TrainConfig
    from fast.training.loop import make_model
    benchmark.group = "entering runtime.kernel_threads, against a batch's forward pass"
    model = make_model(TrainConfig())
    x = np.random.default_rng(0).standard_normal((32, *model.arch.input_shape), dtype=np.float32)

    def enter_and_leave():
        with kernel_threads():
            pass

    batch = median_seconds(lambda: model.forward(x))
    benchmark.pedantic(enter_and_leave, rounds=200, iterations=10, warmup_rounds=10)
    share = benchmark.stats.stats.median / batch
    benchmark.extra_info.update(enter_us=round(benchmark.stats.stats.median * 1e6, 1),
                                batch_ms=round(batch * 1e3, 2), share=round(share, 5))
    print(f"\nentering kernel_threads: {benchmark.stats.stats.median * 1e6:.1f} us; a batch's forward "
          f"{batch * 1e3:.2f} ms; {share:.3%} of it")
    assert share < 0.01
