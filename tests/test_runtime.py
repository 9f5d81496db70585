"""Thread settings: BLAS on one thread around the network's work, and nothing set on import."""
import subprocess
import sys
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fast.nn.layers
from fast import runtime
from fast.nn import kernels
from fast.nn.model import ConvNet

from helpers import REPO_ROOT, small_architecture


def blas_threads():
    """The thread counts of the loaded BLAS libraries, as a set."""
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.fixture
def two_blas_threads(monkeypatch):
    """BLAS on two threads, and no process-wide GEMM split (as in a process that never called
    configure_process), whatever the session did before; put back afterwards."""
    monkeypatch.setattr(runtime, "_own_gemm_threads", False)
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        yield


def test_kernel_threads_holds_blas_to_one_thread_and_splits_gemms_then_gives_them_back(two_blas_threads):
    assert not runtime.splits_gemms()
    with runtime.kernel_threads():
        assert blas_threads() == {1} and runtime.splits_gemms()
    assert blas_threads() == {2} and not runtime.splits_gemms()


def test_kernel_threads_is_re_entrant_the_outer_block_gives_the_threads_back(two_blas_threads):
    with runtime.kernel_threads():
        with runtime.kernel_threads():
            assert blas_threads() == {1}
        assert blas_threads() == {1} and runtime.splits_gemms()  # the inner exit left it
    assert blas_threads() == {2}


def test_kernel_threads_gives_the_threads_back_after_an_exception(two_blas_threads):
    with pytest.raises(KeyError):
        with runtime.kernel_threads():
            raise KeyError("inside")
    assert blas_threads() == {2} and not runtime.splits_gemms()


def test_kernel_threads_holds_while_any_thread_is_inside(two_blas_threads):
    """Thread A enters, thread B enters and leaves: the limit stays until A leaves too."""
    a_inside, b_done, a_may_leave = threading.Event(), threading.Event(), threading.Event()

    def a():
        with runtime.kernel_threads():
            a_inside.set()
            a_may_leave.wait(10)

    worker = threading.Thread(target=a)
    worker.start()
    assert a_inside.wait(10)

    def b():
        with runtime.kernel_threads():
            pass
        b_done.set()

    threading.Thread(target=b).start()
    assert b_done.wait(10)
    assert blas_threads() == {1} and runtime.splits_gemms()
    a_may_leave.set()
    worker.join(10)
    assert blas_threads() == {2} and not runtime.splits_gemms()


def test_every_pass_of_the_network_runs_with_blas_on_one_thread(two_blas_threads, monkeypatch):
    """Forward, backward (training loss), prediction, Grad-CAM's gradient and saliency: each
    layer finds BLAS on one thread and the GEMMs split by the kernels."""
    seen = []

    def recording(function):
        def wrapper(*args, **kwargs):
            seen.append((function.__name__, blas_threads(), runtime.splits_gemms()))
            return function(*args, **kwargs)
        return wrapper

    for name in ("conv2d_forward", "conv2d_backward", "affine_forward", "affine_backward"):
        monkeypatch.setattr(fast.nn.layers, name, recording(getattr(fast.nn.layers, name)))
    model = ConvNet(small_architecture(input_shape=(1, 16, 16), channels=(4, 6), hidden=8), seed=0)
    x = np.random.default_rng(0).normal(size=(3, 1, 16, 16)).astype(np.float32)
    model.loss(x, np.array([0, 1, 1]), rng=np.random.default_rng(1))
    model.predict_proba(x, batch_size=2)
    model.last_conv_gradient(x, (-1.0, 1.0))
    model.input_gradient(x, 1)
    names = {name for name, _, _ in seen}
    assert names == {"conv2d_forward", "conv2d_backward", "affine_forward", "affine_backward"}
    assert all(threads == {1} and splits for _, threads, splits in seen), seen
    assert blas_threads() == {2} and not runtime.splits_gemms()  # and given back afterwards


def test_a_layer_called_on_its_own_leaves_the_first_layers_products_to_blas(two_blas_threads, monkeypatch):
    """Outside kernel_threads BLAS has its threads, so the project's threads must not split its
    products too (each would start BLAS's threads of its own); inside, they do."""
    splits = []
    real_split_work = kernels.split_work
    monkeypatch.setattr(kernels, "split_work", lambda job, n, elements: (splits.append(n),
                                                                        real_split_work(job, n, elements)))
    rng = np.random.default_rng(2)
    w, cols = rng.normal(size=(4, 10)).astype(np.float32), rng.normal(size=(10, 3 * kernels.RUN)).astype(np.float32)
    outside = kernels.thin_product(w, cols)
    assert splits == []
    with runtime.kernel_threads():
        inside = kernels.thin_product(w, cols)
    assert splits == [3]
    np.testing.assert_array_equal(inside, outside)  # the same products, on other threads


def test_importing_the_package_leaves_blas_threads_as_they_were():
    # NumPy and OpenCV first: each brings a BLAS of its own
    code = ("import numpy, cv2; from threadpoolctl import threadpool_info; "
            "count = lambda: [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']; "
            "before = count(); "
            "import fast, fast.nn.layers, fast.nn.model, fast.inference, fast.training.trainer, fast.predict, "
            "fast.evaluate, fast.report; "
            "assert count() == before, (before, count()); "
            "from fast import runtime; assert not runtime.splits_gemms(); print(before)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() not in ("", "[]")  # BLAS was seen, so the check meant something


def test_without_a_blas_that_threadpoolctl_sees_kernel_threads_changes_nothing(two_blas_threads, monkeypatch):
    from threadpoolctl import ThreadpoolController
    monkeypatch.setattr(runtime, "_blas_controller", ThreadpoolController().select(user_api="no such api"))
    with runtime.kernel_threads():
        assert blas_threads() == {2} and not runtime.splits_gemms()  # the GEMMs stay whole, to BLAS
    assert blas_threads() == {2}
