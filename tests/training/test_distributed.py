"""Data-parallel training: split batches give the whole batch's numbers, on threads standing in
for processes, and over real MPI processes (``mpiexec -n 2 python -m fast.train``)."""
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import fast.nn.layers
import fast.training.loop
from fast import runtime
from fast.data.augment import augment_batch
from fast.nn.model import ConvNet
from fast.nn.model_file import load_model, load_models
from fast.training import distributed
from fast.training.trainer import train

from helpers import quiet, small_architecture, small_config


class ThreadGroup(distributed.Group):
    """``size`` threads standing in for processes: the collectives meet at a barrier and add up
    in rank order, as an all-reduce would."""

    def __init__(self, rank, shared):
        self.rank, self.size, self.shared = rank, shared["size"], shared

    def _exchange(self, value):
        slots, barrier = self.shared["slots"], self.shared["barrier"]
        slots[self.rank] = value
        barrier.wait()
        everyone = list(slots)
        barrier.wait()  # nobody overwrites a slot before all have read them
        return everyone

    def sum(self, buffer):
        buffer[...] = np.sum(self._exchange(buffer.copy()), axis=0)
        return buffer

    def gather(self, array):
        return np.concatenate(self._exchange(np.asarray(array)))

    def broadcast(self, obj):
        return self._exchange(obj)[0]


def on_threads(size, job):
    """job(group) on ``size`` ThreadGroup members at once -> their results, in rank order."""
    shared = {"size": size, "slots": [None] * size, "barrier": threading.Barrier(size, timeout=30)}
    results, errors = [None] * size, []

    def run(rank):
        try:
            results[rank] = job(ThreadGroup(rank, shared))
        except BaseException as err:  # surfaced below, in the test's thread
            errors.append(err)
            shared["barrier"].abort()

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


class _Member(distributed.Group):
    def __init__(self, rank, size):
        self.rank, self.size = rank, size


@given(n=st.integers(0, 100), size=st.integers(1, 9))
def test_the_parts_of_a_batch_cover_it_in_order_and_differ_by_at_most_one(n, size):
    parts = [_Member(rank, size).part(n) for rank in range(size)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(hi == lo for (_, hi), (lo, _) in zip(parts, parts[1:]))  # contiguous, in rank order
    lengths = [hi - lo for lo, hi in parts]
    assert max(lengths) - min(lengths) <= 1


def test_one_process_is_the_identity_group(monkeypatch):
    for variable in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(variable, raising=False)
    group = distributed.world()
    assert type(group) is distributed.Group and group.size == 1 and group.lead
    buffer = np.arange(3.0)
    assert group.sum(buffer) is buffer
    assert_array_equal(buffer, [0, 1, 2])
    assert group.gather(buffer) is buffer and group.broadcast("x") == "x"
    assert group.part(7) == (0, 7)


def test_several_processes_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if not installed
    with pytest.raises(distributed.DataError, match=r"mpi4py is not installed.*\.\[mpi\]"):
        distributed.world()


@pytest.fixture
def restores_blas_threads(monkeypatch):
    """configure_process sets BLAS's threads and the GEMM split for the whole process: put
    both back afterwards."""
    from threadpoolctl import threadpool_limits
    monkeypatch.setattr(runtime, "_own_gemm_threads", runtime._own_gemm_threads)
    with threadpool_limits(limits=None):  # on exit: the limits as they were
        yield


def test_an_mpi4py_of_another_mpi_than_the_launcher_is_a_clear_error(monkeypatch):
    class World:  # what mpi4py built against another MPI sees: a world of one
        def Get_rank(self):
            return 0

        def Get_size(self):
            return 1

    fake = type(sys)("mpi4py")
    fake.MPI = type(sys)("mpi4py.MPI")
    fake.MPI.COMM_WORLD = World()
    monkeypatch.setitem(sys.modules, "mpi4py", fake)
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(distributed.DataError, match="started 2 processes, but MPI sees 1"):
        distributed.world()


def test_processes_started_on_one_machine_share_its_cores(monkeypatch, restores_blas_threads):
    for variable in (runtime.THREADS_VARIABLE, "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMIX_LOCAL_SIZE",
                     "OMPI_COMM_WORLD_LOCAL_SIZE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(runtime, "_cores", lambda: 8)
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")  # 4 processes, 2 of them here
    applied = runtime.configure_process()
    assert applied["threads per process"] == "4" and runtime.cpu_threads() == 4
    # BLAS on one thread, set at run time although NumPy is loaded; the project splits GEMMs
    from threadpoolctl import threadpool_info
    assert runtime.splits_gemms() and "BLAS threads" in applied
    assert {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"} == {1}
    monkeypatch.setenv(runtime.THREADS_VARIABLE, "3")  # the user's own setting is kept
    runtime.configure_process()
    assert runtime.cpu_threads() == 3


# --------------------------------------------------------------------------- the pieces

@pytest.mark.parametrize("n, size", [(6, 2), (7, 3), (1, 2), (5, 4)])
def test_synchronised_batch_norm_is_batch_norm_of_the_whole_batch(n, size):
    rng = np.random.default_rng(n * 10 + size)
    x = rng.normal(3.0, 2.0, (n, 3, 4, 5))
    gamma, beta = rng.normal(1, 0.3, 3), rng.normal(0, 0.3, 3)
    dout = rng.normal(0, 1, x.shape)
    stats = np.zeros(3), np.ones(3)
    whole, cache = fast.nn.layers.batchnorm_forward(x, gamma, beta, *stats, training=True)
    dx, dgamma, dbeta = fast.nn.layers.batchnorm_backward(dout, cache)

    def part(group):
        lo, hi = group.part(n)
        running = np.zeros(3), np.ones(3)
        norm = distributed.sync_batchnorm(group)  # through the layer contract, as the model calls it
        out, c = norm.forward(x[lo:hi], gamma, beta, *running, True)
        return out, running, norm.backward(dout[lo:hi], c)

    results = on_threads(size, part)
    assert_allclose(np.concatenate([r[0] for r in results]), whole, rtol=0, atol=1e-12)
    for _, running, _ in results:  # every process keeps the whole batch's running statistics
        assert_allclose(running[0], stats[0], rtol=1e-12)
        assert_allclose(running[1], stats[1], rtol=1e-12)
    assert_allclose(np.concatenate([r[2][0] for r in results]), dx, rtol=0, atol=1e-12)
    # each part's dgamma, dbeta are its share: the gradient all-reduce adds them up
    assert_allclose(sum(r[2][1] for r in results), dgamma, rtol=1e-12)
    assert_allclose(sum(r[2][2] for r in results), dbeta, rtol=1e-12)


def test_synchronised_batch_norm_refuses_evaluation_mode():
    norm = distributed.sync_batchnorm(distributed.Group())
    with pytest.raises(ValueError, match="training"):
        norm.forward(np.ones((2, 3, 2, 2)), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), False)


def test_shared_draws_give_each_part_its_rows_of_the_whole_batchs_draw():
    whole = np.random.default_rng(5).random((7, 4))
    for size in (1, 2, 3):
        parts = []
        for rank in range(size):
            lo, hi = _Member(rank, size).part(7)
            parts.append(distributed.SharedDraws(np.random.default_rng(5), lo, hi, 7).random((hi - lo, 4)))
        assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("acquisition", [False, True])
def test_augmenting_a_part_gives_its_rows_of_the_augmented_batch(acquisition):
    x = np.random.default_rng(0).normal(size=(5, 1, 12, 12)).astype(np.float32)
    whole = augment_batch(x, np.random.default_rng(9), acquisition=acquisition)
    parts = [augment_batch(x[lo:hi], np.random.default_rng(9), (lo, hi, 5), acquisition=acquisition)
             for lo, hi in ((0, 2), (2, 5))]
    assert_array_equal(np.concatenate(parts), whole)
    with pytest.raises(ValueError, match="rows"):
        augment_batch(x[:2], np.random.default_rng(9), (0, 3, 5))


@pytest.mark.parametrize("size", [2, 3, 7])  # 7 processes for 5 images: two empty parts
def test_a_split_batch_gives_the_whole_batchs_loss_and_gradients(size, monkeypatch):
    monkeypatch.setattr(runtime, "_own_gemm_threads", True)  # the GEMMs split too, as in training
    arch = small_architecture(input_shape=(1, 12, 12), channels=(4, 6), hidden=8, batchnorm=True, dropout=0.5)
    x = np.random.default_rng(1).normal(size=(5, 1, 12, 12))
    y = np.array([0, 1, 1, 0, 1])
    weights = np.array([2.5, 0.7])
    reference = ConvNet(arch, seed=3, dtype=np.float64)
    loss, grads = reference.loss(x, y, weights, rng=np.random.default_rng(4))

    def part(group):
        model = ConvNet(arch, seed=3, dtype=np.float64)
        lo, hi = group.part(len(y))
        shard = distributed.Shard(group, lo, hi, y)
        return (*shard.loss(model, x[lo:hi], y[lo:hi], weights, np.random.default_rng(4)), model.buffers)

    for part_loss, part_grads, buffers in on_threads(size, part):  # the same on every process
        assert part_loss == pytest.approx(loss, rel=1e-12)
        for k in grads:
            assert_allclose(part_grads[k], grads[k], rtol=1e-9, atol=1e-12, err_msg=k)
        for k in buffers:
            assert_allclose(buffers[k], reference.buffers[k], rtol=1e-12, err_msg=k)


# --------------------------------------------------------------------------- real MPI processes

def _mpiexec():
    """The mpiexec of the MPI extra (the ``mpich`` wheel puts it beside the interpreter)."""
    found = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpiexec not found: install the test extra, pip install -e '.[test]' (it brings "
                    "mpi4py and the mpich wheel)")
    return found


def _train_command(config, resume=None):
    if resume is not None:
        return [sys.executable, "-m", "fast.train", "--resume", str(resume)]
    flags = [sys.executable, "-m", "fast.train"]
    for name in ("data", "out", "image_size", "stem_stride", "stem_kernel", "limit", "epochs", "folds",
                 "cache_dir", "batch_size"):
        flags += [f"--{name.replace('_', '-')}", str(getattr(config, name))]
    return flags + ["--channels", ",".join(map(str, config.channels)), "--hidden", str(config.hidden)]


def _run(command, processes):
    full = [_mpiexec(), "-n", str(processes), *command] if processes > 1 else command
    done = subprocess.run(full, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def assert_same_weights(a, b):
    """Within float32 round-off: each array differs by at most 1e-3 of its largest magnitude."""
    for k in a:
        scale = np.abs(a[k]).max()
        assert np.abs(a[k] - b[k]).max() <= 1e-3 * scale, k


@pytest.mark.slow
def test_two_mpi_processes_end_with_the_weights_of_one(xray_root, tmp_path):
    # batch norm, dropout and augmentation on (the defaults), two folds; batches of 13 leave
    # parts of 6 and 7 images, and 75-image folds a last batch of 10
    config = small_config(xray_root, tmp_path / "one", limit=150, epochs=2, folds=2, batch_size=13)
    one = _run(_train_command(config), 1)
    two_config = small_config(xray_root, tmp_path / "two", limit=150, epochs=2, folds=2, batch_size=13,
                         cache_dir=config.cache_dir)
    two = _run(_train_command(two_config), 2)
    assert "data-parallel over 2 processes" in two and "data-parallel" not in one
    members_one, meta_one = load_models(Path(config.out) / "model.npz")
    members_two, meta_two = load_models(Path(two_config.out) / "model.npz")
    assert len(members_one) == len(members_two) == 2
    for a, b in zip(members_one, members_two):
        assert_same_weights(a.state(), b.state())
    assert meta_two["threshold"] == pytest.approx(meta_one["threshold"], abs=1e-3)
    # the lead process alone wrote the run: one set of pictures, one model, no stray files
    assert sorted(p.name for p in Path(two_config.out).iterdir()) == \
        sorted(p.name for p in Path(config.out).iterdir())


@pytest.mark.slow
def test_a_run_interrupted_in_one_process_resumes_under_mpi(xray_root, tmp_path, monkeypatch):
    config = small_config(xray_root, tmp_path / "whole", limit=150, epochs=2)
    whole = train(config, log=quiet, progress_bars=False)
    real_augment, calls = fast.training.loop.augment_batch, []

    def interrupting_augment(x, rng, rows=None, **kwargs):
        calls.append(1)
        if len(calls) == 7:  # 135 training images / 32 = 5 batches an epoch: in the second
            raise KeyboardInterrupt
        return real_augment(x, rng, rows, **kwargs)

    monkeypatch.setattr(fast.training.loop, "augment_batch", interrupting_augment)
    cut = small_config(xray_root, tmp_path / "cut", limit=150, epochs=2, cache_dir=config.cache_dir)
    with pytest.raises(KeyboardInterrupt):
        train(cut, log=quiet, progress_bars=False)
    out = _run(_train_command(cut, resume=cut.out), 2)
    assert "continuing" in out and "after epoch 1" in out
    assert_same_weights(load_model(whole / "model.npz")[0].state(),
                        load_model(Path(cut.out) / "model.npz")[0].state())
