"""The layers of the contract, both implementations: conv, max-pool, ReLU, affine, softmax
cross-entropy, and max-pool + ReLU.

Three oracles: centred-difference gradients in float64 on shapes hypothesis draws (the output
size drawn, the input size derived), ``fast`` equal to ``reference`` in float64 and float32, and
hand-worked tiny cases; then dtypes kept, inputs untouched, the tie rule, numerical stability.
Batch norm, dropout and global average pooling are in ``test_norm_layers.py``; the fast paths
themselves in ``test_kernels.py``."""
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import fast.nn.kernels
import fast.nn.layers
import fast.runtime
import reference.layers

from helpers import (COMPARE, ConvCase, DTYPES, GRADCHECK, GRAD_TOL, IMPLS, assert_close,
                     assert_matches_reference, assert_same, conv_arrays, conv_cases, distinct_values,
                     fast_and_reference_inputs, numerical_gradient, pool_arrays, pool_cases, rel_error,
                     seeds)


@st.composite
def relu_arrays(draw):
    """x away from the kink (|x| >= 0.1) and an upstream gradient g of its shape."""
    shape = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 4))))
    rng = np.random.default_rng(draw(seeds))
    x = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 1.0, size=shape)
    return x, rng.standard_normal(shape)


@st.composite
def affine_arrays(draw):
    """x (N, d1[, d2[, d3]]), w (D, M), b (M,) and an upstream gradient g (N, M)."""
    n, m = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    features = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(1, 3))))
    rng = np.random.default_rng(draw(seeds))
    x = rng.standard_normal((n, *features))
    w = rng.standard_normal((int(np.prod(features)), m))
    return x, w, rng.standard_normal(m), rng.standard_normal((n, m))


@st.composite
def cross_entropy_cases(draw, spread=10.0):
    """logits (N, K) uniform in [-spread, spread], labels y (N,), class weights (K,) or None."""
    n, k = draw(st.integers(1, 5)), draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(seeds))
    logits = rng.uniform(-spread, spread, size=(n, k))
    y = rng.integers(0, k, size=n)
    weights = rng.uniform(0.5, 3.0, size=k) if draw(st.booleans()) else None
    return logits, y, weights


@IMPLS
@GRADCHECK
@example(case=ConvCase(n=2, c=1, f=1, h=1, w=1, kh=1, kw=1, stride=1, pad=2, seed=343))
@given(case=conv_cases())
def test_conv_backward_matches_numerical_gradient(impl, case):
    x, w, b, g = conv_arrays(case)
    out, cache = impl.conv2d_forward(x, w, b, stride=case.stride, pad=case.pad)
    assert out.shape == case.out_shape
    dx, dw, db = impl.conv2d_backward(g, cache)

    def loss(x_, w_, b_):
        return np.sum(impl.conv2d_forward(x_, w_, b_, stride=case.stride, pad=case.pad)[0] * g)

    # Each gradient is differentiated on the loss without the term it does not depend on (dx and
    # dw do not depend on b, db not on x): the same derivative, but a loss whose rounding (about
    # 1e-16 of it, divided by h) scales with that gradient. Otherwise a gradient made small by
    # cancellation (dw = x0 g0 + x1 g1 over two images, say) sits below the rounding of a loss
    # the other term keeps near 1 (hypothesis found one: ConvCase(n=2, c=1, f=1, h=1, w=1,
    # kh=1, kw=1, stride=1, pad=2, seed=343), dw = -3.4e-4, relative error 1.4e-7).
    zero_b, zero_x = np.zeros_like(b), np.zeros_like(x)
    assert rel_error(dx, numerical_gradient(lambda x_: loss(x_, w, zero_b), x)) < GRAD_TOL
    assert rel_error(dw, numerical_gradient(lambda w_: loss(x, w_, zero_b), w)) < GRAD_TOL
    assert rel_error(db, numerical_gradient(lambda b_: loss(zero_x, w, b_), b)) < GRAD_TOL


@IMPLS
def test_conv_backward_without_dx_gives_the_same_dw_and_db(impl):
    # need_dx=False (a first layer, whose input is data) skips dx; dw and db must not change.
    x, w, b, g = conv_arrays(ConvCase(n=2, c=3, f=2, h=6, w=5, kh=3, kw=2, stride=2, pad=1,
                                       seed=9))
    _, cache = impl.conv2d_forward(x, w, b, stride=2, pad=1)
    _, dw, db = impl.conv2d_backward(g, cache)
    no_dx, dw_only, db_only = impl.conv2d_backward(g, cache, need_dx=False)
    assert no_dx is None
    assert_same(dw_only, dw)
    assert_same(db_only, db)


@IMPLS
@GRADCHECK
@given(case=pool_cases())
def test_maxpool_backward_matches_numerical_gradient(impl, case):
    x, g = pool_arrays(case)
    out, cache = impl.maxpool2d_forward(x, size=case.size, stride=case.stride)
    assert out.shape == case.out_shape
    dx = impl.maxpool2d_backward(g, cache)

    def loss(x_):
        return np.sum(impl.maxpool2d_forward(x_, size=case.size, stride=case.stride)[0] * g)

    assert rel_error(dx, numerical_gradient(loss, x)) < GRAD_TOL


@IMPLS
@GRADCHECK
@given(arrays=relu_arrays())
def test_relu_backward_matches_numerical_gradient(impl, arrays):
    x, g = arrays
    _, cache = impl.relu_forward(x)
    dx = impl.relu_backward(g, cache)
    numeric = numerical_gradient(lambda x_: np.sum(impl.relu_forward(x_)[0] * g), x)
    assert rel_error(dx, numeric) < GRAD_TOL


@IMPLS
@GRADCHECK
@given(arrays=affine_arrays())
def test_affine_backward_matches_numerical_gradient(impl, arrays):
    x, w, b, g = arrays
    out, cache = impl.affine_forward(x, w, b)
    assert out.shape == (x.shape[0], w.shape[1])
    dx, dw, db = impl.affine_backward(g, cache)
    assert dx.shape == x.shape

    def loss(x_, w_, b_):
        return np.sum(impl.affine_forward(x_, w_, b_)[0] * g)

    # as for the conv: each gradient on the loss without the term it does not depend on
    zero_b, zero_x = np.zeros_like(b), np.zeros_like(x)
    assert rel_error(dx, numerical_gradient(lambda x_: loss(x_, w, zero_b), x)) < GRAD_TOL
    assert rel_error(dw, numerical_gradient(lambda w_: loss(x, w_, zero_b), w)) < GRAD_TOL
    assert rel_error(db, numerical_gradient(lambda b_: loss(zero_x, w, b_), b)) < GRAD_TOL


@IMPLS
@GRADCHECK
# A confident answer has a loss near 1e-6 whose finite differences are mostly float64 rounding
# (1e-16 / 2h = 1e-11 against a gradient of 1e-6): spread 2 keeps every gradient above 1e-2.
@given(case=cross_entropy_cases(spread=2.0))
def test_cross_entropy_gradient_matches_numerical_gradient(impl, case):
    logits, y, weights = case
    _, dlogits = impl.softmax_cross_entropy(logits, y, class_weights=weights)
    numeric = numerical_gradient(
        lambda l_: float(impl.softmax_cross_entropy(l_, y, class_weights=weights)[0]), logits)
    assert rel_error(dlogits, numeric) < GRAD_TOL


@DTYPES
@COMPARE
@given(case=conv_cases())
def test_fast_conv_matches_reference_on_random_shapes(dtype, case):
    (x, w, b, g), (x64, w64, b64, g64) = fast_and_reference_inputs(dtype, *conv_arrays(case))
    out, cache = fast.nn.layers.conv2d_forward(x, w, b, stride=case.stride, pad=case.pad)
    want_out, want_cache = reference.layers.conv2d_forward(
        x64, w64, b64, stride=case.stride, pad=case.pad)
    assert_matches_reference(out, want_out, dtype)
    for got, want in zip(fast.nn.layers.conv2d_backward(g, cache),
                         reference.layers.conv2d_backward(g64, want_cache)):
        assert_matches_reference(got, want, dtype)


@DTYPES
@COMPARE
@given(case=pool_cases())
def test_fast_maxpool_matches_reference_on_random_shapes(dtype, case):
    (x, g), (x64, g64) = fast_and_reference_inputs(dtype, *pool_arrays(case))
    out, cache = fast.nn.layers.maxpool2d_forward(x, size=case.size, stride=case.stride)
    want_out, want_cache = reference.layers.maxpool2d_forward(
        x64, size=case.size, stride=case.stride)
    assert_matches_reference(out, want_out, dtype)
    assert_matches_reference(fast.nn.layers.maxpool2d_backward(g, cache),
                              reference.layers.maxpool2d_backward(g64, want_cache), dtype)


@COMPARE
@given(case=pool_cases())
def test_fast_maxpool_breaks_ties_like_reference(case):
    # Small integers: nearly every window holds a tie, and overlapping windows share them.
    rng = np.random.default_rng(case.seed)
    x = rng.integers(0, 3, size=(case.n, case.c, case.h, case.w)).astype(np.float64)
    g = rng.standard_normal(case.out_shape)
    out, cache = fast.nn.layers.maxpool2d_forward(x, size=case.size, stride=case.stride)
    want_out, want_cache = reference.layers.maxpool2d_forward(x, size=case.size, stride=case.stride)
    assert_same(out, want_out)
    assert_close(fast.nn.layers.maxpool2d_backward(g, cache),
                    reference.layers.maxpool2d_backward(g, want_cache), rtol=1e-12, atol=1e-12)


@DTYPES
@COMPARE
@given(arrays=relu_arrays())
def test_fast_relu_matches_reference_on_random_shapes(dtype, arrays):
    (x, g), (x64, g64) = fast_and_reference_inputs(dtype, *arrays)
    out, cache = fast.nn.layers.relu_forward(x)
    want_out, want_cache = reference.layers.relu_forward(x64)
    assert_matches_reference(out, want_out, dtype)
    assert_matches_reference(fast.nn.layers.relu_backward(g, cache),
                              reference.layers.relu_backward(g64, want_cache), dtype)


@DTYPES
@COMPARE
@given(arrays=affine_arrays())
def test_fast_affine_matches_reference_on_random_shapes(dtype, arrays):
    (x, w, b, g), (x64, w64, b64, g64) = fast_and_reference_inputs(dtype, *arrays)
    out, cache = fast.nn.layers.affine_forward(x, w, b)
    want_out, want_cache = reference.layers.affine_forward(x64, w64, b64)
    assert_matches_reference(out, want_out, dtype)
    for got, want in zip(fast.nn.layers.affine_backward(g, cache),
                         reference.layers.affine_backward(g64, want_cache)):
        assert_matches_reference(got, want, dtype)


@DTYPES
@COMPARE
@given(case=cross_entropy_cases())
def test_fast_cross_entropy_matches_reference_on_random_cases(dtype, case):
    logits, y, weights = case
    (logits,), (logits64,) = fast_and_reference_inputs(dtype, logits)
    loss, dlogits = fast.nn.layers.softmax_cross_entropy(logits, y, class_weights=weights)
    want_loss, want_dlogits = reference.layers.softmax_cross_entropy(
        logits64, y, class_weights=weights)
    assert_matches_reference(loss, want_loss, dtype)
    assert_matches_reference(dlogits, want_dlogits, dtype)


def test_fast_accepts_non_contiguous_inputs():
    # A flipped, strided view (what an augmentation might hand over) must read like its copy.
    rng = np.random.default_rng(7)
    base = distinct_values(rng, (2, 3, 9, 8))
    x = base[:, :, ::2, ::-1]  # (2, 3, 5, 8), negative and doubled strides
    w, b = rng.standard_normal((2, 3, 2, 3)), rng.standard_normal(2)
    contiguous = np.ascontiguousarray(x)
    assert_close(fast.nn.layers.conv2d_forward(x, w, b, stride=2, pad=1)[0],
                    reference.layers.conv2d_forward(contiguous, w, b, stride=2, pad=1)[0],
                    rtol=1e-10, atol=1e-12)
    assert_same(fast.nn.layers.maxpool2d_forward(x, size=3, stride=2)[0],
                       reference.layers.maxpool2d_forward(contiguous, size=3, stride=2)[0])


X3 = np.array([[1.0, 2.0, 3.0],
               [4.0, 5.0, 6.0],
               [7.0, 8.0, 9.0]])


K2 = np.array([[1.0, 2.0],
               [3.0, 4.0]])


@IMPLS
def test_conv_3x3_image_2x2_kernel_stride_1_by_hand(impl):
    x, w, b = X3[None, None], K2[None, None], np.array([1.0])
    out, cache = impl.conv2d_forward(x, w, b, stride=1, pad=0)
    # out[i, j] = sum(window * K2) + 1:
    #   [1 2; 4 5] -> 1 + 4 + 12 + 20 = 37    [2 3; 5 6] -> 2 + 6 + 15 + 24 = 47
    #   [4 5; 7 8] -> 4 + 10 + 21 + 32 = 67   [5 6; 8 9] -> 5 + 12 + 24 + 36 = 77
    assert_close(out[0, 0], [[38.0, 48.0], [68.0, 78.0]], rtol=0, atol=1e-12)

    dx, dw, db = impl.conv2d_backward(np.ones((1, 1, 2, 2)), cache)
    # dx: each pixel collects the kernel entries that touch it (the centre gets all four).
    assert_close(dx[0, 0], [[1.0, 3.0, 2.0],
                               [4.0, 10.0, 6.0],
                               [3.0, 7.0, 4.0]], rtol=0, atol=1e-12)
    # dw[p, q]: the sum of the pixel under kernel entry (p, q) over the four windows,
    #   dw[0, 0] = 1 + 2 + 4 + 5 = 12, dw[0, 1] = 2 + 3 + 5 + 6 = 16,
    #   dw[1, 0] = 4 + 5 + 7 + 8 = 24, dw[1, 1] = 5 + 6 + 8 + 9 = 28; db = four ones = 4.
    assert_close(dw[0, 0], [[12.0, 16.0], [24.0, 28.0]], rtol=0, atol=1e-12)
    assert_close(db, [4.0], rtol=0, atol=1e-12)


@IMPLS
def test_conv_3x3_image_2x2_kernel_pad_1_stride_2_by_hand(impl):
    x, w, b = X3[None, None], K2[None, None], np.zeros(1)
    out, cache = impl.conv2d_forward(x, w, b, stride=2, pad=1)
    # Padded image (5x5), OH = (3 + 2 - 2) // 2 + 1 = 2; the last padded row/column is unused.
    #   0 0 0 0 0     window (0,0) = [0 0; 0 1] -> 4*1         = 4
    #   0 1 2 3 0     window (0,1) = [0 0; 2 3] -> 3*2 + 4*3   = 18
    #   0 4 5 6 0     window (1,0) = [0 4; 0 7] -> 2*4 + 4*7   = 36
    #   0 7 8 9 0     window (1,1) = [5 6; 8 9] -> 5+12+24+36  = 77
    #   0 0 0 0 0
    assert out.shape == (1, 1, 2, 2)
    assert_close(out[0, 0], [[4.0, 18.0], [36.0, 77.0]], rtol=0, atol=1e-12)

    dx, dw, db = impl.conv2d_backward(np.ones((1, 1, 2, 2)), cache)
    # Every pixel sits in exactly one window, under the kernel entry written in the comment above:
    #   corners under 4, edge middles under 3 (top/bottom) or 2 (left/right), the centre under 1.
    assert_close(dx[0, 0], [[4.0, 3.0, 4.0],
                               [2.0, 1.0, 2.0],
                               [4.0, 3.0, 4.0]], rtol=0, atol=1e-12)
    # dw[p, q] sums entry (p, q) of the four windows: [0+0+0+5, 0+0+4+6; 0+2+0+8, 1+3+7+9].
    assert_close(dw[0, 0], [[5.0, 10.0], [10.0, 20.0]], rtol=0, atol=1e-12)
    assert_close(db, [4.0], rtol=0, atol=1e-12)


@IMPLS
def test_conv_stride_2_floors_the_output_size_by_hand(impl):
    # OH = (3 - 2) // 2 + 1 = 1: only the top-left window fits, 1 + 4 + 12 + 20 = 37.
    out, _ = impl.conv2d_forward(X3[None, None], K2[None, None], np.zeros(1), stride=2, pad=0)
    assert_close(out, [[[[37.0]]]], rtol=0, atol=1e-12)


@IMPLS
def test_conv_non_square_kernel_by_hand(impl):
    # A 1x2 kernel [1, -1] gives x[i, j] - x[i, j + 1] = -1 everywhere: 3 rows, 2 columns.
    out, _ = impl.conv2d_forward(X3[None, None], np.array([[[[1.0, -1.0]]]]), np.zeros(1))
    assert_close(out, np.full((1, 1, 3, 2), -1.0), rtol=0, atol=1e-12)


@IMPLS
def test_conv_sums_over_input_channels_for_each_filter_by_hand(impl):
    x = np.stack([X3, np.ones((3, 3))])[None]  # (1, 2, 3, 3)
    w = np.stack([np.stack([K2, np.zeros((2, 2))]),           # filter 0 reads channel 0 only
                  np.stack([np.zeros((2, 2)), np.ones((2, 2))])])  # filter 1 counts channel 1
    out, _ = impl.conv2d_forward(x, w, np.array([0.0, 0.5]))
    # Filter 0 is the stride-1 case above without bias; filter 1: four ones + 0.5 = 4.5.
    assert_close(out[0, 0], [[37.0, 47.0], [67.0, 77.0]], rtol=0, atol=1e-12)
    assert_close(out[0, 1], np.full((2, 2), 4.5), rtol=0, atol=1e-12)


@IMPLS
def test_maxpool_2x2_on_4x4_by_hand(impl):
    x = np.array([[1.0, 3.0, 2.0, 0.0],
                  [4.0, 2.0, 1.0, 5.0],
                  [0.0, 6.0, 7.0, 1.0],
                  [2.0, 1.0, 3.0, 8.0]])[None, None]
    out, cache = impl.maxpool2d_forward(x)  # size 2, stride defaults to 2
    # Window maxima: top-left 4 at (1,0), top-right 5 at (1,3), bottom-left 6 at (2,1),
    # bottom-right 8 at (3,3).
    assert_same(out[0, 0], [[4.0, 5.0], [6.0, 8.0]])
    dx = impl.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    # Each window's gradient lands on its maximum, everything else gets 0.
    assert_same(dx[0, 0], [[0.0, 0.0, 0.0, 0.0],
                                  [1.0, 0.0, 0.0, 2.0],
                                  [0.0, 3.0, 0.0, 0.0],
                                  [0.0, 0.0, 0.0, 4.0]])


@IMPLS
def test_relu_by_hand_with_zero_gradient_at_the_kink(impl):
    x = np.array([[-1.0, 0.0, 2.0]])
    out, cache = impl.relu_forward(x)
    assert_same(out, [[0.0, 0.0, 2.0]])
    # The gradient passes only where x > 0: the kink x == 0 gets 0, like x < 0.
    assert_same(impl.relu_backward(np.array([[5.0, 6.0, 7.0]]), cache), [[0.0, 0.0, 7.0]])


@IMPLS
def test_affine_2x3_by_hand(impl):
    x = np.array([[1.0, 2.0, 3.0],
                  [4.0, 5.0, 6.0]])
    w = np.array([[1.0, 0.0],
                  [0.0, 1.0],
                  [1.0, 1.0]])
    b = np.array([10.0, 20.0])
    out, cache = impl.affine_forward(x, w, b)
    # Row 0: [1 + 3, 2 + 3] + b = [14, 25]; row 1: [4 + 6, 5 + 6] + b = [20, 31].
    assert_close(out, [[14.0, 25.0], [20.0, 31.0]], rtol=0, atol=1e-12)
    dx, dw, db = impl.affine_backward(np.eye(2), cache)
    # dout = I picks columns: dx = dout @ w.T = w.T, dw = x.T @ dout = x.T, db = column sums = 1.
    assert_close(dx, w.T, rtol=0, atol=1e-12)
    assert_close(dw, x.T, rtol=0, atol=1e-12)
    assert_close(db, [1.0, 1.0], rtol=0, atol=1e-12)


@IMPLS
def test_affine_flattens_a_4d_input_and_restores_its_shape_by_hand(impl):
    x = np.arange(8.0).reshape(2, 1, 2, 2)  # rows [0 1 2 3] and [4 5 6 7]
    w = np.ones((4, 1))
    out, cache = impl.affine_forward(x, w, np.zeros(1))
    assert_close(out, [[6.0], [22.0]], rtol=0, atol=1e-12)  # 0+1+2+3, 4+5+6+7
    dx, _, _ = impl.affine_backward(np.array([[1.0], [2.0]]), cache)
    assert dx.shape == (2, 1, 2, 2)
    assert_close(dx, np.stack([np.ones((1, 2, 2)), np.full((1, 2, 2), 2.0)]),
                    rtol=0, atol=1e-12)


@IMPLS
def test_cross_entropy_of_equal_logits_is_log_2(impl):
    loss, dlogits = impl.softmax_cross_entropy(np.array([[0.0, 0.0]]), np.array([0]))
    # softmax = [1/2, 1/2]: loss = -log(1/2) = log 2, dlogits = softmax - onehot = [-1/2, 1/2].
    assert_close(loss, np.log(2.0), rtol=1e-12)
    assert_close(dlogits, [[-0.5, 0.5]], rtol=0, atol=1e-12)


@IMPLS
def test_cross_entropy_class_weights_by_hand(impl):
    logits = np.array([[np.log(3.0), 0.0],
                       [0.0, 0.0]])
    y = np.array([0, 1])
    loss, dlogits = impl.softmax_cross_entropy(logits, y, class_weights=np.array([1.0, 3.0]))
    # Row 0: softmax [3/4, 1/4], label 0, loss log(4/3), weight 1.
    # Row 1: softmax [1/2, 1/2], label 1, loss log 2,   weight 3.
    # Weighted mean: (log(4/3) + 3 log 2) / (1 + 3).
    assert_close(loss, (np.log(4 / 3) + 3 * np.log(2.0)) / 4, rtol=1e-12)
    # dlogits row i = weight_i * (softmax_i - onehot_i) / 4:
    #   row 0: [-1/4, 1/4] / 4 = [-1/16, 1/16]; row 1: 3 * [1/2, -1/2] / 4 = [3/8, -3/8].
    assert_close(dlogits, [[-1 / 16, 1 / 16], [3 / 8, -3 / 8]], rtol=0, atol=1e-12)
    # Unweighted, the same rows average plainly: (log(4/3) + log 2) / 2.
    plain, _ = impl.softmax_cross_entropy(logits, y)
    assert_close(plain, (np.log(4 / 3) + np.log(2.0)) / 2, rtol=1e-12)


@IMPLS
def test_maxpool_tie_sends_gradient_to_first_maximum_in_row_major_order(impl):
    x = np.array([[5.0, 5.0, 1.0, 2.0],
                  [5.0, 5.0, 2.0, 2.0],
                  [0.0, 3.0, 4.0, 4.0],
                  [3.0, 1.0, 4.0, 0.0]])[None, None]
    out, cache = impl.maxpool2d_forward(x, size=2)
    assert_same(out[0, 0], [[5.0, 2.0], [3.0, 4.0]])
    dx = impl.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    # First maximum of each window, row by row: all-5 window -> (0,0); [1 2; 2 2] -> (0,3);
    # [0 3; 3 1] -> (2,1); [4 4; 4 0] -> (2,2). The whole window gradient goes there.
    assert_same(dx[0, 0], [[1.0, 0.0, 0.0, 2.0],
                                  [0.0, 0.0, 0.0, 0.0],
                                  [0.0, 3.0, 4.0, 0.0],
                                  [0.0, 0.0, 0.0, 0.0]])


@IMPLS
def test_maxpool_overlapping_windows_accumulate_on_a_shared_maximum(impl):
    x = np.array([[1.0, 2.0, 3.0],
                  [4.0, 9.0, 5.0],
                  [6.0, 7.0, 8.0]])[None, None]
    out, cache = impl.maxpool2d_forward(x, size=2, stride=1)
    assert_same(out[0, 0], np.full((2, 2), 9.0))  # all four windows hold the centre
    dx = impl.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    # The centre collects 1 + 2 + 3 + 4 = 10.
    assert_same(dx[0, 0], [[0.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 0.0]])


@IMPLS
def test_maxpool_overlapping_windows_with_ties_accumulate_on_each_first_maximum(impl):
    x = np.array([[0.0, 0.0, 0.0],
                  [0.0, 1.0, 1.0],
                  [0.0, 1.0, 1.0]])[None, None]
    out, cache = impl.maxpool2d_forward(x, size=2, stride=1)
    assert_same(out[0, 0], np.ones((2, 2)))
    dx = impl.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    # In every 2x2 window the first 1 in row-major order is the pixel at (1, 1), even in the
    # bottom-right window where all four tie: it collects 1 + 2 + 3 + 4 = 10.
    assert_same(dx[0, 0], [[0.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 0.0]])


class LayerRun(NamedTuple):
    inputs: list  # the forward's array inputs, after forward and backward ran
    inputs_before: list  # copies taken before forward
    dout: np.ndarray  # the upstream gradient, after backward ran
    dout_before: np.ndarray  # its copy taken before backward
    results: dict  # {name: array} for the output and every gradient


LAYER_SPECS = {
    # layer: (forward, backward, input shapes, forward keywords, gradient names)
    "conv": ("conv2d_forward", "conv2d_backward", [(2, 3, 5, 4), (2, 3, 3, 2), (2,)],
             {"stride": 2, "pad": 1}, ["dx", "dw", "db"]),
    "maxpool": ("maxpool2d_forward", "maxpool2d_backward", [(2, 3, 5, 5)],
                {"size": 3, "stride": 2}, ["dx"]),
    # about half of x is negative: a backward that zeroes dout in place there would show
    "relu": ("relu_forward", "relu_backward", [(2, 3, 4)], {}, ["dx"]),
    "affine": ("affine_forward", "affine_backward", [(2, 3, 2), (6, 4), (4,)], {},
               ["dx", "dw", "db"]),
}


def _run_layer(impl, layer, dtype):
    """Run one layer forward and backward on small random arrays of dtype."""
    forward, backward, shapes, kwargs, grad_names = LAYER_SPECS[layer]
    rng = np.random.default_rng(11)
    inputs = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    inputs_before = [a.copy() for a in inputs]
    out, cache = getattr(impl, forward)(*inputs, **kwargs)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dout_before = dout.copy()
    grads = getattr(impl, backward)(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    return LayerRun(inputs, inputs_before, dout, dout_before,
                    {"out": out, **dict(zip(grad_names, grads, strict=True))})


LAYERS = pytest.mark.parametrize("layer", list(LAYER_SPECS))


@IMPLS
@DTYPES
@LAYERS
def test_layer_output_and_gradients_keep_the_input_dtype(impl, dtype, layer):
    for name, array in _run_layer(impl, layer, dtype).results.items():
        assert array.dtype == dtype, f"{layer} {name} is {array.dtype}, not {np.dtype(dtype)}"


@IMPLS
@DTYPES
@LAYERS
def test_backward_leaves_dout_untouched_and_forward_leaves_inputs_untouched(impl, dtype, layer):
    run = _run_layer(impl, layer, dtype)
    assert_same(run.dout, run.dout_before)
    for array, before in zip(run.inputs, run.inputs_before, strict=True):
        assert_same(array, before)


@IMPLS
@DTYPES
@pytest.mark.parametrize("weights", [None, [1.0, 2.0, 0.5]], ids=["plain", "weighted"])
def test_cross_entropy_keeps_the_dtype_and_leaves_logits_untouched(impl, dtype, weights):
    logits = np.random.default_rng(12).standard_normal((4, 3)).astype(dtype)
    before = logits.copy()
    loss, dlogits = impl.softmax_cross_entropy(logits, np.array([0, 2, 1, 2]),
                                               class_weights=weights)
    assert np.asarray(loss).dtype == dtype
    assert np.asarray(loss).shape == ()
    assert dlogits.dtype == dtype
    assert_same(logits, before)


@IMPLS
@DTYPES
def test_cross_entropy_is_stable_for_logits_in_the_thousands(impl, dtype):
    logits = np.array([[1000.0, -1000.0], [1000.0, -1000.0]], dtype=dtype)
    # Right label: softmax = [1, e^-2000] -> loss 0, gradient 0. Wrong label: loss 2000,
    # gradient [1, -1]; mean of the two rows: loss 1000, gradients halved.
    loss, dlogits = impl.softmax_cross_entropy(logits, np.array([0, 1]))
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert_close(loss, 1000.0, rtol=1e-6)
    assert_close(dlogits, [[0.0, 0.0], [0.5, -0.5]], rtol=0, atol=1e-6)


@IMPLS
def test_cross_entropy_is_unchanged_by_a_huge_shift_of_the_logits(impl):
    logits = np.random.default_rng(13).standard_normal((3, 4))
    y = np.array([3, 0, 1])
    loss, dlogits = impl.softmax_cross_entropy(logits, y)
    shifted_loss, shifted_dlogits = impl.softmax_cross_entropy(logits + 5000.0, y)
    # Adding 5000 costs the logits about 1e-12 of absolute precision, nothing more.
    assert_close(shifted_loss, loss, rtol=0, atol=1e-10)
    assert_close(shifted_dlogits, dlogits, rtol=0, atol=1e-10)


@IMPLS
@COMPARE
@given(case=cross_entropy_cases())
def test_cross_entropy_equals_the_log_sum_exp_formula(impl, case):
    logits, y, weights = case
    loss, dlogits = impl.softmax_cross_entropy(logits, y, class_weights=weights)
    # Logits here stay within +-10, so the textbook formula needs no shift.
    log_sum_exp = np.log(np.sum(np.exp(logits), axis=1))  # (N,)
    per_sample = log_sum_exp - logits[np.arange(len(y)), y]  # (N,)
    sample_weights = np.ones(len(y)) if weights is None else weights[y]
    expected = np.sum(sample_weights * per_sample) / np.sum(sample_weights)
    softmax = np.exp(logits - log_sum_exp[:, None])  # (N, K)
    onehot = np.eye(logits.shape[1])[y]  # (N, K)
    expected_grad = sample_weights[:, None] * (softmax - onehot) / np.sum(sample_weights)
    assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    assert_close(dlogits, expected_grad, rtol=1e-10, atol=1e-12)


@IMPLS
def test_affine_takes_an_empty_batch(impl):
    # (0, 3, 4) flattens to (0, 12): a batch with no rows, not an unknown width
    w, b = np.arange(60.0).reshape(12, 5), np.ones(5)
    out, cache = impl.affine_forward(np.zeros((0, 3, 4)), w, b)
    assert out.shape == (0, 5)
    dx, dw, db = impl.affine_backward(out, cache)
    assert dx.shape == (0, 3, 4)
    assert_same(dw, np.zeros((12, 5)))
    assert_same(db, np.zeros(5))
