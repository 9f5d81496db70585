"""The layer contract, checked against three oracles for both implementations.

1. Centred-difference numerical gradients in float64 (through L = sum(out * g) with a fixed
   random upstream gradient g), on shapes hypothesis draws constructively.
2. ``fast`` equals ``reference``: forward and every gradient, in float64 and in float32.
3. Hand-worked tiny cases whose arithmetic fits in a comment.
Plus the tie rule of max-pool, the errors, dtype preservation and untouched ``dout``.
"""
import inspect
import os
import re
from typing import NamedTuple, Optional

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import contract
import fast.nn.kernels
import fast.nn.layers
import fast.runtime
import reference.layers
from gradcheck import assert_matches_reference, numerical_gradient, rel_error

IMPLS = pytest.mark.parametrize("impl", [reference.layers, fast.nn.layers], ids=["reference", "fast"])
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])

GRAD_TOL = 1e-7  # symmetric relative error allowed between analytic and numerical gradients
# Shapes stay tiny so both test files run in seconds on 2 cores. A numerical check calls the
# loop-based forward twice per input element, so it draws half as many cases as a comparison.
GRADCHECK = settings(max_examples=100, deadline=None)
COMPARE = settings(max_examples=200, deadline=None)

seeds = st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------------------------------------
# Drawn cases: the output size is drawn first and the input size derived from it.
# ---------------------------------------------------------------------------------------------

def _output_size(size, kernel, stride, pad):
    """The contract's formula, written out here so the tests do not trust the code under test."""
    return (size + 2 * pad - kernel) // stride + 1


def _draw_input_size(draw, kernel, stride, pad):
    out = draw(st.integers(1, 3))
    size = (out - 1) * stride + kernel - 2 * pad
    # Padding wider than the kernel can ask for an input below 1: bump it (the output grows).
    # The extra 0..stride-1 rows are dropped by the floor, so they exercise it.
    return max(size, 1) + draw(st.integers(0, stride - 1))


class ConvCase(NamedTuple):
    n: int
    c: int
    f: int
    h: int
    w: int
    kh: int
    kw: int
    stride: int
    pad: int
    seed: int

    @property
    def out_shape(self):
        return (self.n, self.f, _output_size(self.h, self.kh, self.stride, self.pad),
                _output_size(self.w, self.kw, self.stride, self.pad))


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))  # non-square included
    stride, pad = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    return ConvCase(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)),
                    f=draw(st.integers(1, 3)),
                    h=_draw_input_size(draw, kh, stride, pad),
                    w=_draw_input_size(draw, kw, stride, pad),
                    kh=kh, kw=kw, stride=stride, pad=pad, seed=draw(seeds))


def _conv_arrays(case):
    """x, w, b and a fixed upstream gradient g of out's shape, all float64."""
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal((case.n, case.c, case.h, case.w))
    w = rng.standard_normal((case.f, case.c, case.kh, case.kw))
    b = rng.standard_normal(case.f)
    g = rng.standard_normal(case.out_shape)
    return x, w, b, g


class PoolCase(NamedTuple):
    n: int
    c: int
    h: int
    w: int
    size: int
    stride: Optional[int]  # None: the default, stride = size
    seed: int

    @property
    def out_shape(self):
        stride = self.size if self.stride is None else self.stride
        return (self.n, self.c, _output_size(self.h, self.size, stride, 0),
                _output_size(self.w, self.size, stride, 0))


@st.composite
def pool_cases(draw):
    size = draw(st.integers(1, 3))
    # stride < size overlaps the windows, stride > size skips elements
    stride = draw(st.none() | st.integers(1, 4))
    effective = size if stride is None else stride
    return PoolCase(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 2)),
                    h=_draw_input_size(draw, size, effective, 0),
                    w=_draw_input_size(draw, size, effective, 0),
                    size=size, stride=stride, seed=draw(seeds))


def _distinct_values(rng, shape):
    """Values 0.01 apart with no ties: finite differences (h = 1e-5) never move an argmax."""
    count = int(np.prod(shape))
    return 0.01 * (rng.permutation(count) - count / 2).reshape(shape)


def _pool_arrays(case):
    rng = np.random.default_rng(case.seed)
    x = _distinct_values(rng, (case.n, case.c, case.h, case.w))
    g = rng.standard_normal(case.out_shape)
    return x, g


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


# ---------------------------------------------------------------------------------------------
# Oracle 1: numerical gradients (float64).
# ---------------------------------------------------------------------------------------------

@IMPLS
@GRADCHECK
@given(case=conv_cases())
def test_conv_backward_matches_numerical_gradient(impl, case):
    x, w, b, g = _conv_arrays(case)
    out, cache = impl.conv2d_forward(x, w, b, stride=case.stride, pad=case.pad)
    assert out.shape == case.out_shape
    dx, dw, db = impl.conv2d_backward(g, cache)

    def loss(x_, w_, b_):
        return np.sum(impl.conv2d_forward(x_, w_, b_, stride=case.stride, pad=case.pad)[0] * g)

    assert rel_error(dx, numerical_gradient(lambda x_: loss(x_, w, b), x)) < GRAD_TOL
    assert rel_error(dw, numerical_gradient(lambda w_: loss(x, w_, b), w)) < GRAD_TOL
    assert rel_error(db, numerical_gradient(lambda b_: loss(x, w, b_), b)) < GRAD_TOL


@IMPLS
def test_conv_backward_without_dx_gives_the_same_dw_and_db(impl):
    # need_dx=False (a first layer, whose input is data) skips dx; dw and db must not change.
    x, w, b, g = _conv_arrays(ConvCase(n=2, c=3, f=2, h=6, w=5, kh=3, kw=2, stride=2, pad=1,
                                       seed=9))
    _, cache = impl.conv2d_forward(x, w, b, stride=2, pad=1)
    _, dw, db = impl.conv2d_backward(g, cache)
    no_dx, dw_only, db_only = impl.conv2d_backward(g, cache, need_dx=False)
    assert no_dx is None
    assert_array_equal(dw_only, dw)
    assert_array_equal(db_only, db)


@IMPLS
@GRADCHECK
@given(case=pool_cases())
def test_maxpool_backward_matches_numerical_gradient(impl, case):
    x, g = _pool_arrays(case)
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

    assert rel_error(dx, numerical_gradient(lambda x_: loss(x_, w, b), x)) < GRAD_TOL
    assert rel_error(dw, numerical_gradient(lambda w_: loss(x, w_, b), w)) < GRAD_TOL
    assert rel_error(db, numerical_gradient(lambda b_: loss(x, w, b_), b)) < GRAD_TOL


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


# ---------------------------------------------------------------------------------------------
# Oracle 2: fast equals reference. fast runs in dtype; reference runs in float64 on the very
# same values, so float32 measures only fast's rounding.
# ---------------------------------------------------------------------------------------------

def _fast_and_reference_inputs(dtype, *arrays):
    fast_inputs = [a.astype(dtype) for a in arrays]
    return fast_inputs, [a.astype(np.float64) for a in fast_inputs]


@DTYPES
@COMPARE
@given(case=conv_cases())
def test_fast_conv_matches_reference_on_random_shapes(dtype, case):
    (x, w, b, g), (x64, w64, b64, g64) = _fast_and_reference_inputs(dtype, *_conv_arrays(case))
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
    (x, g), (x64, g64) = _fast_and_reference_inputs(dtype, *_pool_arrays(case))
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
    assert_array_equal(out, want_out)
    assert_allclose(fast.nn.layers.maxpool2d_backward(g, cache),
                    reference.layers.maxpool2d_backward(g, want_cache), rtol=1e-12, atol=1e-12)


@DTYPES
@COMPARE
@given(arrays=relu_arrays())
def test_fast_relu_matches_reference_on_random_shapes(dtype, arrays):
    (x, g), (x64, g64) = _fast_and_reference_inputs(dtype, *arrays)
    out, cache = fast.nn.layers.relu_forward(x)
    want_out, want_cache = reference.layers.relu_forward(x64)
    assert_matches_reference(out, want_out, dtype)
    assert_matches_reference(fast.nn.layers.relu_backward(g, cache),
                              reference.layers.relu_backward(g64, want_cache), dtype)


@DTYPES
@COMPARE
@given(arrays=affine_arrays())
def test_fast_affine_matches_reference_on_random_shapes(dtype, arrays):
    (x, w, b, g), (x64, w64, b64, g64) = _fast_and_reference_inputs(dtype, *arrays)
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
    (logits,), (logits64,) = _fast_and_reference_inputs(dtype, logits)
    loss, dlogits = fast.nn.layers.softmax_cross_entropy(logits, y, class_weights=weights)
    want_loss, want_dlogits = reference.layers.softmax_cross_entropy(
        logits64, y, class_weights=weights)
    assert_matches_reference(loss, want_loss, dtype)
    assert_matches_reference(dlogits, want_dlogits, dtype)


def test_fast_accepts_non_contiguous_inputs():
    # A flipped, strided view (what an augmentation might hand over) must read like its copy.
    rng = np.random.default_rng(7)
    base = _distinct_values(rng, (2, 3, 9, 8))
    x = base[:, :, ::2, ::-1]  # (2, 3, 5, 8), negative and doubled strides
    w, b = rng.standard_normal((2, 3, 2, 3)), rng.standard_normal(2)
    contiguous = np.ascontiguousarray(x)
    assert_allclose(fast.nn.layers.conv2d_forward(x, w, b, stride=2, pad=1)[0],
                    reference.layers.conv2d_forward(contiguous, w, b, stride=2, pad=1)[0],
                    rtol=1e-10, atol=1e-12)
    assert_array_equal(fast.nn.layers.maxpool2d_forward(x, size=3, stride=2)[0],
                       reference.layers.maxpool2d_forward(contiguous, size=3, stride=2)[0])


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
    assert_allclose(np.sum(x * back), np.sum(cols * c),
                    rtol=1e-10, atol=1e-12 * np.sum(np.abs(cols * c)))


@DTYPES
def test_im2col_and_col2im_keep_the_dtype(dtype):
    x = np.random.default_rng(8).standard_normal((1, 2, 4, 5)).astype(dtype)
    cols = fast.nn.kernels.im2col(x, 2, 3, 1, 1)
    assert cols.dtype == dtype
    assert fast.nn.kernels.col2im(cols, x.shape, 2, 3, 1, 1).dtype == dtype


# ---------------------------------------------------------------------------------------------
# Oracle 3: hand-worked tiny cases.
# ---------------------------------------------------------------------------------------------

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
    assert_allclose(out[0, 0], [[38.0, 48.0], [68.0, 78.0]], rtol=0, atol=1e-12)

    dx, dw, db = impl.conv2d_backward(np.ones((1, 1, 2, 2)), cache)
    # dx: each pixel collects the kernel entries that touch it (the centre gets all four).
    assert_allclose(dx[0, 0], [[1.0, 3.0, 2.0],
                               [4.0, 10.0, 6.0],
                               [3.0, 7.0, 4.0]], rtol=0, atol=1e-12)
    # dw[p, q]: the sum of the pixel under kernel entry (p, q) over the four windows,
    #   dw[0, 0] = 1 + 2 + 4 + 5 = 12, dw[0, 1] = 2 + 3 + 5 + 6 = 16,
    #   dw[1, 0] = 4 + 5 + 7 + 8 = 24, dw[1, 1] = 5 + 6 + 8 + 9 = 28; db = four ones = 4.
    assert_allclose(dw[0, 0], [[12.0, 16.0], [24.0, 28.0]], rtol=0, atol=1e-12)
    assert_allclose(db, [4.0], rtol=0, atol=1e-12)


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
    assert_allclose(out[0, 0], [[4.0, 18.0], [36.0, 77.0]], rtol=0, atol=1e-12)

    dx, dw, db = impl.conv2d_backward(np.ones((1, 1, 2, 2)), cache)
    # Every pixel sits in exactly one window, under the kernel entry written in the comment above:
    #   corners under 4, edge middles under 3 (top/bottom) or 2 (left/right), the centre under 1.
    assert_allclose(dx[0, 0], [[4.0, 3.0, 4.0],
                               [2.0, 1.0, 2.0],
                               [4.0, 3.0, 4.0]], rtol=0, atol=1e-12)
    # dw[p, q] sums entry (p, q) of the four windows: [0+0+0+5, 0+0+4+6; 0+2+0+8, 1+3+7+9].
    assert_allclose(dw[0, 0], [[5.0, 10.0], [10.0, 20.0]], rtol=0, atol=1e-12)
    assert_allclose(db, [4.0], rtol=0, atol=1e-12)


@IMPLS
def test_conv_stride_2_floors_the_output_size_by_hand(impl):
    # OH = (3 - 2) // 2 + 1 = 1: only the top-left window fits, 1 + 4 + 12 + 20 = 37.
    out, _ = impl.conv2d_forward(X3[None, None], K2[None, None], np.zeros(1), stride=2, pad=0)
    assert_allclose(out, [[[[37.0]]]], rtol=0, atol=1e-12)


@IMPLS
def test_conv_non_square_kernel_by_hand(impl):
    # A 1x2 kernel [1, -1] gives x[i, j] - x[i, j + 1] = -1 everywhere: 3 rows, 2 columns.
    out, _ = impl.conv2d_forward(X3[None, None], np.array([[[[1.0, -1.0]]]]), np.zeros(1))
    assert_allclose(out, np.full((1, 1, 3, 2), -1.0), rtol=0, atol=1e-12)


@IMPLS
def test_conv_sums_over_input_channels_for_each_filter_by_hand(impl):
    x = np.stack([X3, np.ones((3, 3))])[None]  # (1, 2, 3, 3)
    w = np.stack([np.stack([K2, np.zeros((2, 2))]),           # filter 0 reads channel 0 only
                  np.stack([np.zeros((2, 2)), np.ones((2, 2))])])  # filter 1 counts channel 1
    out, _ = impl.conv2d_forward(x, w, np.array([0.0, 0.5]))
    # Filter 0 is the stride-1 case above without bias; filter 1: four ones + 0.5 = 4.5.
    assert_allclose(out[0, 0], [[37.0, 47.0], [67.0, 77.0]], rtol=0, atol=1e-12)
    assert_allclose(out[0, 1], np.full((2, 2), 4.5), rtol=0, atol=1e-12)


@IMPLS
def test_maxpool_2x2_on_4x4_by_hand(impl):
    x = np.array([[1.0, 3.0, 2.0, 0.0],
                  [4.0, 2.0, 1.0, 5.0],
                  [0.0, 6.0, 7.0, 1.0],
                  [2.0, 1.0, 3.0, 8.0]])[None, None]
    out, cache = impl.maxpool2d_forward(x)  # size 2, stride defaults to 2
    # Window maxima: top-left 4 at (1,0), top-right 5 at (1,3), bottom-left 6 at (2,1),
    # bottom-right 8 at (3,3).
    assert_array_equal(out[0, 0], [[4.0, 5.0], [6.0, 8.0]])
    dx = impl.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    # Each window's gradient lands on its maximum, everything else gets 0.
    assert_array_equal(dx[0, 0], [[0.0, 0.0, 0.0, 0.0],
                                  [1.0, 0.0, 0.0, 2.0],
                                  [0.0, 3.0, 0.0, 0.0],
                                  [0.0, 0.0, 0.0, 4.0]])


@IMPLS
def test_relu_by_hand_with_zero_gradient_at_the_kink(impl):
    x = np.array([[-1.0, 0.0, 2.0]])
    out, cache = impl.relu_forward(x)
    assert_array_equal(out, [[0.0, 0.0, 2.0]])
    # The gradient passes only where x > 0: the kink x == 0 gets 0, like x < 0.
    assert_array_equal(impl.relu_backward(np.array([[5.0, 6.0, 7.0]]), cache), [[0.0, 0.0, 7.0]])


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
    assert_allclose(out, [[14.0, 25.0], [20.0, 31.0]], rtol=0, atol=1e-12)
    dx, dw, db = impl.affine_backward(np.eye(2), cache)
    # dout = I picks columns: dx = dout @ w.T = w.T, dw = x.T @ dout = x.T, db = column sums = 1.
    assert_allclose(dx, w.T, rtol=0, atol=1e-12)
    assert_allclose(dw, x.T, rtol=0, atol=1e-12)
    assert_allclose(db, [1.0, 1.0], rtol=0, atol=1e-12)


@IMPLS
def test_affine_flattens_a_4d_input_and_restores_its_shape_by_hand(impl):
    x = np.arange(8.0).reshape(2, 1, 2, 2)  # rows [0 1 2 3] and [4 5 6 7]
    w = np.ones((4, 1))
    out, cache = impl.affine_forward(x, w, np.zeros(1))
    assert_allclose(out, [[6.0], [22.0]], rtol=0, atol=1e-12)  # 0+1+2+3, 4+5+6+7
    dx, _, _ = impl.affine_backward(np.array([[1.0], [2.0]]), cache)
    assert dx.shape == (2, 1, 2, 2)
    assert_allclose(dx, np.stack([np.ones((1, 2, 2)), np.full((1, 2, 2), 2.0)]),
                    rtol=0, atol=1e-12)


@IMPLS
def test_cross_entropy_of_equal_logits_is_log_2(impl):
    loss, dlogits = impl.softmax_cross_entropy(np.array([[0.0, 0.0]]), np.array([0]))
    # softmax = [1/2, 1/2]: loss = -log(1/2) = log 2, dlogits = softmax - onehot = [-1/2, 1/2].
    assert_allclose(loss, np.log(2.0), rtol=1e-12)
    assert_allclose(dlogits, [[-0.5, 0.5]], rtol=0, atol=1e-12)


@IMPLS
def test_cross_entropy_class_weights_by_hand(impl):
    logits = np.array([[np.log(3.0), 0.0],
                       [0.0, 0.0]])
    y = np.array([0, 1])
    loss, dlogits = impl.softmax_cross_entropy(logits, y, class_weights=np.array([1.0, 3.0]))
    # Row 0: softmax [3/4, 1/4], label 0, loss log(4/3), weight 1.
    # Row 1: softmax [1/2, 1/2], label 1, loss log 2,   weight 3.
    # Weighted mean: (log(4/3) + 3 log 2) / (1 + 3).
    assert_allclose(loss, (np.log(4 / 3) + 3 * np.log(2.0)) / 4, rtol=1e-12)
    # dlogits row i = weight_i * (softmax_i - onehot_i) / 4:
    #   row 0: [-1/4, 1/4] / 4 = [-1/16, 1/16]; row 1: 3 * [1/2, -1/2] / 4 = [3/8, -3/8].
    assert_allclose(dlogits, [[-1 / 16, 1 / 16], [3 / 8, -3 / 8]], rtol=0, atol=1e-12)
    # Unweighted, the same rows average plainly: (log(4/3) + log 2) / 2.
    plain, _ = impl.softmax_cross_entropy(logits, y)
    assert_allclose(plain, (np.log(4 / 3) + np.log(2.0)) / 2, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Max-pool ties, on purpose.
# ---------------------------------------------------------------------------------------------

@IMPLS
def test_maxpool_tie_sends_gradient_to_first_maximum_in_row_major_order(impl):
    x = np.array([[5.0, 5.0, 1.0, 2.0],
                  [5.0, 5.0, 2.0, 2.0],
                  [0.0, 3.0, 4.0, 4.0],
                  [3.0, 1.0, 4.0, 0.0]])[None, None]
    out, cache = impl.maxpool2d_forward(x, size=2)
    assert_array_equal(out[0, 0], [[5.0, 2.0], [3.0, 4.0]])
    dx = impl.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    # First maximum of each window, row by row: all-5 window -> (0,0); [1 2; 2 2] -> (0,3);
    # [0 3; 3 1] -> (2,1); [4 4; 4 0] -> (2,2). The whole window gradient goes there.
    assert_array_equal(dx[0, 0], [[1.0, 0.0, 0.0, 2.0],
                                  [0.0, 0.0, 0.0, 0.0],
                                  [0.0, 3.0, 4.0, 0.0],
                                  [0.0, 0.0, 0.0, 0.0]])


@IMPLS
def test_maxpool_overlapping_windows_accumulate_on_a_shared_maximum(impl):
    x = np.array([[1.0, 2.0, 3.0],
                  [4.0, 9.0, 5.0],
                  [6.0, 7.0, 8.0]])[None, None]
    out, cache = impl.maxpool2d_forward(x, size=2, stride=1)
    assert_array_equal(out[0, 0], np.full((2, 2), 9.0))  # all four windows hold the centre
    dx = impl.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    # The centre collects 1 + 2 + 3 + 4 = 10.
    assert_array_equal(dx[0, 0], [[0.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 0.0]])


@IMPLS
def test_maxpool_overlapping_windows_with_ties_accumulate_on_each_first_maximum(impl):
    x = np.array([[0.0, 0.0, 0.0],
                  [0.0, 1.0, 1.0],
                  [0.0, 1.0, 1.0]])[None, None]
    out, cache = impl.maxpool2d_forward(x, size=2, stride=1)
    assert_array_equal(out[0, 0], np.ones((2, 2)))
    dx = impl.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    # In every 2x2 window the first 1 in row-major order is the pixel at (1, 1), even in the
    # bottom-right window where all four tie: it collects 1 + 2 + 3 + 4 = 10.
    assert_array_equal(dx[0, 0], [[0.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 0.0]])


# ---------------------------------------------------------------------------------------------
# Errors name the numbers.
# ---------------------------------------------------------------------------------------------

def _names(*numbers):
    """A regex matching a message that mentions each number as a whole number (1 is not 12)."""
    return "".join(rf"(?=.*(?<![\d.]){re.escape(str(n))}(?![\d.]))" for n in numbers)


def _ones(*shape):
    return np.ones(shape)


ERROR_CASES = {
    # conv: (5 - 7) // 1 + 1 = -1 rows
    "conv output below 1": (lambda m: m.conv2d_forward(_ones(1, 1, 5, 5), _ones(1, 1, 7, 7),
                                                       _ones(1)), (5, 7)),
    # conv: height fine, width (4 - 6) // 1 + 1 = -1
    "conv output width below 1": (lambda m: m.conv2d_forward(_ones(1, 1, 9, 4),
                                                             _ones(1, 1, 3, 6), _ones(1)), (4, 6)),
    # conv with padding: (2 + 2 - 5) // 1 + 1 = 0
    "conv padded output below 1": (lambda m: m.conv2d_forward(_ones(1, 1, 2, 2),
                                                              _ones(1, 1, 5, 5), _ones(1),
                                                              pad=1), (2, 5)),
    "pool output below 1": (lambda m: m.maxpool2d_forward(_ones(1, 1, 3, 3), size=4), (3, 4)),
    # pool: height (6 - 3) // 1 + 1 = 4, width (2 - 3) // 1 + 1 = 0
    "pool output width below 1": (lambda m: m.maxpool2d_forward(_ones(1, 1, 6, 2), size=3,
                                                                stride=1), (2, 3)),
    "conv channel mismatch": (lambda m: m.conv2d_forward(_ones(1, 3, 4, 4), _ones(2, 5, 1, 1),
                                                         _ones(2)), (3, 5)),
    # shapes made of the rank itself: a message naming the rank or the shape both pass
    "conv x 3-D": (lambda m: m.conv2d_forward(_ones(3, 3, 3), _ones(1, 3, 1, 1), _ones(1)), (3,)),
    "conv x 5-D": (lambda m: m.conv2d_forward(_ones(5, 5, 5, 5, 5), _ones(1, 5, 1, 1),
                                              _ones(1)), (5,)),
    "conv w 3-D": (lambda m: m.conv2d_forward(_ones(1, 2, 4, 4), _ones(3, 3, 3), _ones(3)), (3,)),
    "pool x 3-D": (lambda m: m.maxpool2d_forward(_ones(3, 3, 3)), (3,)),
    "pool x 2-D": (lambda m: m.maxpool2d_forward(_ones(2, 2)), (2,)),
    "negative label": (lambda m: m.softmax_cross_entropy(_ones(2, 3), np.array([0, -1])), (-1,)),
    "label equal to class count": (lambda m: m.softmax_cross_entropy(_ones(2, 3),
                                                                     np.array([0, 3])), (3,)),
    "label above class count": (lambda m: m.softmax_cross_entropy(_ones(2, 3),
                                                                  np.array([7, 0])), (7,)),
}


@IMPLS
@pytest.mark.parametrize("call, numbers", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_invalid_input_raises_value_error_naming_the_numbers(impl, call, numbers):
    with pytest.raises(ValueError, match=_names(*numbers)):
        call(impl)


# conv_output_size lives in ``contract``, shared by both implementations: tested once, here.
@pytest.mark.parametrize("size, kernel, stride, pad, expected", [
    (5, 3, 1, 0, 3),  # (5 - 3) // 1 + 1
    (5, 3, 2, 1, 3),  # (5 + 2 - 3) // 2 + 1
    (6, 3, 2, 0, 2),  # (6 - 3) // 2 + 1 = 2.5 floored
    (1, 3, 1, 2, 3),  # padding wider than the image: (1 + 4 - 3) // 1 + 1
])
def test_conv_output_size_floors_the_formula(size, kernel, stride, pad, expected):
    assert contract.conv_output_size(size, kernel, stride, pad) == expected


def test_conv_output_size_below_1_raises_naming_the_numbers():
    # (2 + 2 - 5) // 1 + 1 = 0
    with pytest.raises(ValueError, match=_names(2, 5)):
        contract.conv_output_size(2, 5, 1, 1)


def _own_functions(module):
    """The public functions defined in ``module`` itself -> {name: parameter names}."""
    return {name: list(inspect.signature(f).parameters)
            for name, f in vars(module).items()
            if inspect.isfunction(f) and not name.startswith("_") and f.__module__ == module.__name__}


def test_both_implementations_define_the_same_functions_with_the_same_parameters():
    ours = _own_functions(fast.nn.layers)
    assert ours == _own_functions(reference.layers)
    assert {"conv2d_forward", "maxpool_relu_backward", "softmax_cross_entropy"} <= set(ours)


def test_the_implementations_share_only_the_contract_module():
    # Neither layer module imports the other: what they share is contract's checks alone.
    for module in (fast.nn.layers, reference.layers):
        imported = {v.__name__ for v in vars(module).values() if inspect.ismodule(v)}
        imported |= {v.__module__ for v in vars(module).values()
                     if inspect.isfunction(v) and v.__module__ != module.__name__}
        assert not {"fast.nn.layers", "reference.layers"} & imported
        assert imported <= {"contract", "fast.nn.kernels", "numpy", "math", "typing"}


# ---------------------------------------------------------------------------------------------
# Dtype preservation and untouched inputs.
# ---------------------------------------------------------------------------------------------

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
    assert_array_equal(run.dout, run.dout_before)
    for array, before in zip(run.inputs, run.inputs_before, strict=True):
        assert_array_equal(array, before)


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
    assert_array_equal(logits, before)


# ---------------------------------------------------------------------------------------------
# Cross-entropy: stability and the log-sum-exp formula.
# ---------------------------------------------------------------------------------------------

@IMPLS
@DTYPES
def test_cross_entropy_is_stable_for_logits_in_the_thousands(impl, dtype):
    logits = np.array([[1000.0, -1000.0], [1000.0, -1000.0]], dtype=dtype)
    # Right label: softmax = [1, e^-2000] -> loss 0, gradient 0. Wrong label: loss 2000,
    # gradient [1, -1]; mean of the two rows: loss 1000, gradients halved.
    loss, dlogits = impl.softmax_cross_entropy(logits, np.array([0, 1]))
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert_allclose(loss, 1000.0, rtol=1e-6)
    assert_allclose(dlogits, [[0.0, 0.0], [0.5, -0.5]], rtol=0, atol=1e-6)


@IMPLS
def test_cross_entropy_is_unchanged_by_a_huge_shift_of_the_logits(impl):
    logits = np.random.default_rng(13).standard_normal((3, 4))
    y = np.array([3, 0, 1])
    loss, dlogits = impl.softmax_cross_entropy(logits, y)
    shifted_loss, shifted_dlogits = impl.softmax_cross_entropy(logits + 5000.0, y)
    # Adding 5000 costs the logits about 1e-12 of absolute precision, nothing more.
    assert_allclose(shifted_loss, loss, rtol=0, atol=1e-10)
    assert_allclose(shifted_dlogits, dlogits, rtol=0, atol=1e-10)


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
    assert_allclose(loss, expected, rtol=1e-10, atol=1e-12)
    assert_allclose(dlogits, expected_grad, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# fast splits big jobs across cores in batch chunks; force that path on small drawn cases.
# ---------------------------------------------------------------------------------------------

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
    x, w, b, g = _conv_arrays(case)
    with _SplitAcrossCores():
        out, cache = fast.nn.layers.conv2d_forward(x, w, b, stride=case.stride, pad=case.pad)
        grads = fast.nn.layers.conv2d_backward(g, cache)
        px, pg = _pool_arrays(pool._replace(n=case.n + 2))
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
    assert_array_equal(pooled, want_pooled)
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
        assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# The fast paths: 2x2 pooling over flat memory, and col2im by flat runs for "same" convs.
# They take over only for some shapes and layouts, so they are drawn on purpose here.
# ---------------------------------------------------------------------------------------------

def _in_layout(a, layout):
    """a's values in a given memory layout: C order, channel-major (conv's output), or a
    view whose planes are not back to back (which must take the general path)."""
    if layout == "channel-major":
        out = fast.nn.kernels.channel_major(a.shape, a.dtype)
        out[...] = a
        return out
    if layout == "gapped":
        wide = np.zeros(a.shape[:3] + (a.shape[3] + 1,), a.dtype)
        wide[..., :-1] = a
        return wide[..., :-1]
    return np.ascontiguousarray(a)


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
    x = _in_layout(values, x_layout)
    with (_SplitAcrossCores() if split else _NoSplit()):
        out, cache = fast.nn.layers.maxpool2d_forward(x, 2)
        dx = fast.nn.layers.maxpool2d_backward(_in_layout(g, g_layout), cache)
    want_out, want_cache = reference.layers.maxpool2d_forward(values, 2)
    assert_array_equal(out, want_out)
    assert_array_equal(dx, reference.layers.maxpool2d_backward(g, want_cache))
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
    assume(_output_size(h, kh, 1, pad) >= 1 and _output_size(w, kw, 1, pad) >= 1)
    g = rng.standard_normal((n, f, _output_size(h, kh, 1, pad), _output_size(w, kw, 1, pad)))
    (x, wt, b, g), (x64, w64, b64, g64) = _fast_and_reference_inputs(dtype, x, wt, b, g)
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
    x = _in_layout(values, x_layout)
    with (_SplitAcrossCores() if split else _NoSplit()):
        out, cache = fast.nn.layers.maxpool_relu_forward(x, size)
        g = rng.standard_normal(out.shape)
        dx = fast.nn.layers.maxpool_relu_backward(g, cache)
    pooled, pool_cache = reference.layers.maxpool2d_forward(values, size)
    want_out, relu_cache = reference.layers.relu_forward(pooled)
    assert_array_equal(out, want_out)
    assert_array_equal(dx, reference.layers.maxpool2d_backward(
        reference.layers.relu_backward(g, relu_cache), pool_cache))
    # the reference's own pair is the two layers in turn as well
    ref_out, ref_cache = reference.layers.maxpool_relu_forward(values, size)
    assert_array_equal(ref_out, want_out)
    assert_array_equal(reference.layers.maxpool_relu_backward(g, ref_cache), dx)


@IMPLS
def test_affine_takes_an_empty_batch(impl):
    # (0, 3, 4) flattens to (0, 12): a batch with no rows, not an unknown width
    w, b = np.arange(60.0).reshape(12, 5), np.ones(5)
    out, cache = impl.affine_forward(np.zeros((0, 3, 4)), w, b)
    assert out.shape == (0, 5)
    dx, dw, db = impl.affine_backward(out, cache)
    assert dx.shape == (0, 3, 4)
    assert_array_equal(dw, np.zeros((12, 5)))
    assert_array_equal(db, np.zeros(5))
