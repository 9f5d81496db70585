"""The machinery behind ``fast.nn.layers`` (``fast.nn.kernels``): im2col and col2im are adjoint, and
every shortcut that takes over only for some shapes and memory layouts (2x2 pooling over flat
memory, col2im of same-size convolutions by flat runs, the fused pooling + ReLU, the first
layer's products over runs, batch norm row by row, work split between threads) is drawn on
purpose against ``reference``, ties and every layout included."""
import os

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import fast.nn.kernels
import fast.nn.layers
import fast.runtime
import reference.layers

from helpers import (COMPARE, DTYPES, assert_close, assert_matches_reference, assert_same, conv_arrays,
                     conv_cases, fast_and_reference_inputs, in_layout, output_size, pool_arrays,
                     pool_cases, seeds)


@COMPARE
@given(case=conv_cases())
def test_col2im_is_the_adjoint_of_im2col(case):
    # <im2col(x), c> == <x, col2im(c)> for any c: true whatever the column layout is.
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal((case.n, case.c, case.h, case.w))
    cols = fast.nn.kernels.im2col(x, case.kh, case.kw, case.stride, case.pad)
    _, _, oh, ow = case.out_shape
    assert cols.size == case.n * oh * ow * case.c * case.kh * case.kw
    c = rng.standard_normal(cols.shape)
    back = fast.nn.kernels.col2im(c, x.shape, case.kh, case.kw, case.stride, case.pad)
    assert back.shape == x.shape
    assert_close(np.sum(x * back), np.sum(cols * c),
                    rtol=1e-10, atol=1e-12 * np.sum(np.abs(cols * c)))


@DTYPES
def test_im2col_and_col2im_keep_the_dtype(dtype):
    x = np.random.default_rng(8).standard_normal((1, 2, 4, 5)).astype(dtype)
    cols = fast.nn.kernels.im2col(x, 2, 3, 1, 1)
    assert cols.dtype == dtype
    assert fast.nn.kernels.col2im(cols, x.shape, 2, 3, 1, 1).dtype == dtype


class _SplitAcrossCores:
    """Within this block fast.nn.layers splits every job, however small, between three threads,
    GEMMs included (as after ``runtime.configure_process``)."""

    def __enter__(self):
        self.saved = (fast.nn.kernels.PARALLEL_MIN_ELEMENTS, fast.runtime._own_gemm_threads,
                      os.environ.get(fast.runtime.THREADS_VARIABLE))
        fast.nn.kernels.PARALLEL_MIN_ELEMENTS = 0
        fast.runtime._own_gemm_threads = True
        os.environ[fast.runtime.THREADS_VARIABLE] = "3"

    def __exit__(self, *exc):
        fast.nn.kernels.PARALLEL_MIN_ELEMENTS, fast.runtime._own_gemm_threads, threads = self.saved
        if threads is None:
            del os.environ[fast.runtime.THREADS_VARIABLE]
        else:
            os.environ[fast.runtime.THREADS_VARIABLE] = threads


@COMPARE
@given(case=conv_cases(), pool=pool_cases())
def test_fast_layers_split_across_cores_match_reference(case, pool):
    x, w, b, g = conv_arrays(case)
    with _SplitAcrossCores():
        out, cache = fast.nn.layers.conv2d_forward(x, w, b, stride=case.stride, pad=case.pad)
        grads = fast.nn.layers.conv2d_backward(g, cache)
        px, pg = pool_arrays(pool._replace(n=case.n + 2))
        pooled, pool_cache = fast.nn.layers.maxpool2d_forward(px, size=pool.size, stride=pool.stride)
        pool_dx = fast.nn.layers.maxpool2d_backward(pg, pool_cache)
        rectified, relu_cache = fast.nn.layers.relu_forward(out)  # conv's channel-major layout
        relu_dx = fast.nn.layers.relu_backward(g, relu_cache)
        rng = np.random.default_rng(out.size)
        aw, ab = rng.standard_normal((out[0].size, 3)), rng.standard_normal(3)  # the conv output, flattened
        affine, affine_cache = fast.nn.layers.affine_forward(out, aw, ab)
        affine_grads = fast.nn.layers.affine_backward(affine, affine_cache)
    want_affine, want_affine_cache = reference.layers.affine_forward(out, aw, ab)
    assert_matches_reference(affine, want_affine, np.float64)
    for got, want in zip(affine_grads, reference.layers.affine_backward(want_affine, want_affine_cache)):
        assert_matches_reference(got, want, np.float64)
    want_out, want_cache = reference.layers.conv2d_forward(x, w, b, stride=case.stride, pad=case.pad)
    want_rectified, want_relu_cache = reference.layers.relu_forward(want_out)
    assert_matches_reference(rectified, want_rectified, np.float64)
    assert_matches_reference(relu_dx, reference.layers.relu_backward(g, want_relu_cache), np.float64)
    assert_matches_reference(out, want_out, np.float64)
    for got, want in zip(grads, reference.layers.conv2d_backward(g, want_cache)):
        assert_matches_reference(got, want, np.float64)
    want_pooled, want_pool_cache = reference.layers.maxpool2d_forward(px, size=pool.size, stride=pool.stride)
    assert_same(pooled, want_pooled)
    assert_matches_reference(pool_dx, reference.layers.maxpool2d_backward(pg, want_pool_cache), np.float64)


def test_fast_conv_output_feeds_pooling_in_its_channel_major_layout():
    # conv returns an NCHW view of (C, N, H, W) memory; pooling it and sending the
    # gradient back must give the reference's numbers, with ties (zero inputs) included.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 8, 8))
    x[0] = 0  # constant images: every pooling window is a tie
    w, b = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    results = []
    for layers in (fast.nn.layers, reference.layers):
        out, conv_cache = layers.conv2d_forward(x, w, b, 1, 1)
        pooled, pool_cache = layers.maxpool2d_forward(out, 2)
        g = np.arange(pooled.size, dtype=np.float64).reshape(pooled.shape) / pooled.size
        d_out = layers.maxpool2d_backward(g, pool_cache)
        results.append((pooled, d_out, *layers.conv2d_backward(d_out, conv_cache)))
    assert fast.nn.kernels.is_channel_major(fast.nn.layers.conv2d_forward(x, w, b, 1, 1)[0])
    for got, want in zip(*results):
        assert_close(got, want, rtol=1e-10, atol=1e-12)


@COMPARE
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4),
       x_layout=st.sampled_from(["C", "channel-major", "gapped"]),
       g_layout=st.sampled_from(["C", "channel-major"]), split=st.booleans(), seed=seeds)
def test_fast_2x2_pool_matches_reference_with_ties_in_every_layout(n, c, h, w, x_layout, g_layout,
                                                                    split, seed):
    rng = np.random.default_rng(seed)
    # values from {0, 1, 2}: most windows hold ties, in every arrangement
    values = rng.integers(0, 3, size=(n, c, 2 * h, 2 * w)).astype(np.float64)
    g = rng.standard_normal((n, c, h, w))
    x = in_layout(values, x_layout)
    with (_SplitAcrossCores() if split else _NoSplit()):
        out, cache = fast.nn.layers.maxpool2d_forward(x, 2)
        dx = fast.nn.layers.maxpool2d_backward(in_layout(g, g_layout), cache)
    want_out, want_cache = reference.layers.maxpool2d_forward(values, 2)
    assert_same(out, want_out)
    assert_same(dx, reference.layers.maxpool2d_backward(g, want_cache))
    # the output and the gradient keep the input's layout, for the conv next to them (with one
    # image or one channel the two layouts are the same memory)
    if n > 1 and c > 1:
        assert fast.nn.kernels.is_channel_major(out) == fast.nn.kernels.is_channel_major(dx) \
            == (x_layout == "channel-major")


@DTYPES
@COMPARE
@given(n=st.integers(1, 3), c=st.integers(1, 3), f=st.integers(1, 3), h=st.integers(1, 6),
       w=st.integers(1, 6), half_kh=st.integers(0, 2), half_kw=st.integers(0, 2), split=st.booleans(),
       seed=seeds)
def test_fast_same_size_conv_matches_reference(dtype, n, c, f, h, w, half_kh, half_kw, split, seed):
    # Odd kernels with pad = half the kernel keep the size: conv2d_backward's flat col2im. A
    # non-square kernel pads one axis more than the other, so pad = kernel // 2 only for
    # square kernels; the others must fall back to the general col2im and agree as well.
    kh, kw, pad = 2 * half_kh + 1, 2 * half_kw + 1, half_kh
    rng = np.random.default_rng(seed)
    x, wt = rng.standard_normal((n, c, h, w)), rng.standard_normal((f, c, kh, kw))
    b = rng.standard_normal(f)
    assume(output_size(h, kh, 1, pad) >= 1 and output_size(w, kw, 1, pad) >= 1)
    g = rng.standard_normal((n, f, output_size(h, kh, 1, pad), output_size(w, kw, 1, pad)))
    (x, wt, b, g), (x64, w64, b64, g64) = fast_and_reference_inputs(dtype, x, wt, b, g)
    with (_SplitAcrossCores() if split else _NoSplit()):
        out, cache = fast.nn.layers.conv2d_forward(x, wt, b, 1, pad)
        grads = fast.nn.layers.conv2d_backward(g, cache)
    want_out, want_cache = reference.layers.conv2d_forward(x64, w64, b64, 1, pad)
    assert_matches_reference(out, want_out, dtype)
    for got, want in zip(grads, reference.layers.conv2d_backward(g64, want_cache)):
        assert_matches_reference(got, want, dtype)


class _NoSplit:
    def __enter__(self):
        pass

    def __exit__(self, *exc):
        pass


@pytest.mark.parametrize("run", [fast.nn.kernels.RUN, 1000])
@pytest.mark.parametrize("split", [False, True])
def test_fast_first_layer_runs_of_positions_match_reference(monkeypatch, run, split):
    # One input channel and few filters: the output is computed, and the weight gradient summed,
    # over runs of positions (split between threads). 2 * 60 * 60 = 7200 positions, so the runs
    # end part-way and the last one is partial.
    monkeypatch.setattr(fast.nn.kernels, "RUN", run)
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 1, 60, 60)), rng.standard_normal((4, 1, 3, 3)), rng.standard_normal(4)
    assert 10 * 4 <= fast.nn.kernels.SMALL_WEIGHTS  # this case takes the paths by runs
    g = rng.standard_normal((2, 4, 60, 60))
    with (_SplitAcrossCores() if split else _NoSplit()):
        out, cache = fast.nn.layers.conv2d_forward(x, w, b, 1, 1)
        grads = fast.nn.layers.conv2d_backward(g, cache, need_dx=False)[1:]
    want_out, want_cache = reference.layers.conv2d_forward(x, w, b, 1, 1)
    assert_matches_reference(out, want_out, np.float64)
    for got, want in zip(grads, reference.layers.conv2d_backward(g, want_cache)[1:]):
        assert_matches_reference(got, want, np.float64)


@COMPARE
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
       size=st.integers(2, 3), x_layout=st.sampled_from(["C", "channel-major", "gapped"]),
       split=st.booleans(), seed=seeds)
def test_fast_fused_pool_relu_matches_reference_pool_then_relu(n, c, h, w, size, x_layout, split, seed):
    # Values from {-1, 0, 1, 2}: ties inside windows, and pooled values at the ReLU's kink.
    # Odd sizes, size 3 and gapped planes take the path that runs the two layers in turn.
    assume(h >= size and w >= size)
    rng = np.random.default_rng(seed)
    values = rng.integers(-1, 3, size=(n, c, h, w)).astype(np.float64)
    x = in_layout(values, x_layout)
    with (_SplitAcrossCores() if split else _NoSplit()):
        out, cache = fast.nn.layers.maxpool_relu_forward(x, size)
        g = rng.standard_normal(out.shape)
        dx = fast.nn.layers.maxpool_relu_backward(g, cache)
    pooled, pool_cache = reference.layers.maxpool2d_forward(values, size)
    want_out, relu_cache = reference.layers.relu_forward(pooled)
    assert_same(out, want_out)
    assert_same(dx, reference.layers.maxpool2d_backward(
        reference.layers.relu_backward(g, relu_cache), pool_cache))
    # the reference's own pair is the two layers in turn as well
    ref_out, ref_cache = reference.layers.maxpool_relu_forward(values, size)
    assert_same(ref_out, want_out)
    assert_same(reference.layers.maxpool_relu_backward(g, ref_cache), dx)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_batchnorm_rows_split_between_cores_in_blocks_match_reference(monkeypatch, training, dtype):
    # A conv's channel-major output takes the row-by-row path; forced here to split its
    # channels between threads, in blocks of a few channels, on a small array. A large mean
    # (1e3) against a unit spread checks that centring in float32 loses nothing to it.
    monkeypatch.setattr(fast.nn.kernels, "PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(fast.nn.kernels, "BLOCK_ELEMENTS", 2 * 3 * 4 * 5)
    rng = np.random.default_rng(7)
    shape = (3, 7, 4, 5)
    values = 1e3 + rng.standard_normal(shape)
    x = fast.nn.kernels.channel_major(shape, dtype)
    x[...] = values
    g = fast.nn.kernels.channel_major(shape, dtype)
    g[...] = rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 2, 7), rng.standard_normal(7)
    stats = [rng.uniform(999, 1001, 7), rng.uniform(0.5, 2, 7)]
    ours = [a.astype(dtype) for a in stats]
    out, cache = fast.nn.layers.batchnorm_forward(x, gamma.astype(dtype), beta.astype(dtype), *ours,
                                               training)
    grads = fast.nn.layers.batchnorm_backward(g, cache)
    # the reference sees the values x holds (float32 rounds 1e3 + noise to about 6e-5)
    want, want_cache = reference.layers.batchnorm_forward(np.asarray(x, np.float64), gamma, beta,
                                                          *stats, training)
    want_grads = reference.layers.batchnorm_backward(np.asarray(g, np.float64), want_cache)
    tol = dict(rtol=1e-10, atol=1e-9) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    assert_close(out, want, **tol)
    for got, expected in zip(grads, want_grads):
        assert_close(got, expected, rtol=tol["rtol"], atol=tol["atol"] * max(1, np.abs(expected).max()))
    for got, expected in zip(ours, stats):
        assert_close(got, expected, rtol=tol["rtol"], atol=tol["atol"])
    assert fast.nn.kernels.is_channel_major(out) and fast.nn.kernels.is_channel_major(grads[0])
