"""Batch norm, dropout and global average pooling, checked like the layers of test_layers.py.

For both implementations: centred-difference gradients in float64 (through L = sum(out * g)
with a fixed random upstream gradient g) on shapes hypothesis draws, ``fast`` equal to
``reference`` in float64 and float32 (running statistics and channel-major inputs included),
hand-worked tiny cases, dtype kept, ``dout`` and the inputs untouched, and every boundary the
docstrings state: evaluation mode, p == 0, m == 1, momentum 0 and 1, invalid arguments, layout."""
from functools import partial
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fast.nn.kernels
import fast.nn.layers
import reference.layers

from helpers import (COMPARE, DTYPES, GRADCHECK, GRAD_TOL, IMPLS, assert_close,
                     assert_matches_reference, assert_same, in_layout, numerical_gradient, rel_error)

MODES = pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])


seeds = st.integers(0, 2**32 - 1)


class Case(NamedTuple):
    n: int
    c: int
    h: int
    w: int
    seed: int

    @property
    def shape(self):
        return (self.n, self.c, self.h, self.w)


@st.composite
def cases(draw, two_values_per_channel=True):
    """Small (N, C, H, W) shapes and a seed; N = H = W = 1 included, a channel of one value.

    Without ``two_values_per_channel``, a shape with m = N*H*W = 2 gets one more column. Two
    values normalise to -+1 whatever they are, so their gradient is eps-small (1e-4) and centred
    differences resolve it to only ~1e-7 of itself: the hand-worked case pins m == 2 instead.
    """
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if n * h * w == 2 and not two_values_per_channel:
        w += 1
    return Case(n=n, c=draw(st.integers(1, 3)), h=h, w=w, seed=draw(seeds))


def _spread_channels(rng, shape):
    """(N, C, H, W) values, those of each channel distinct and at least 0.1 apart, around a
    random offset per channel.

    Batch norm of a channel whose values nearly coincide is a steep function of them (on the
    scale of sqrt(eps) = 3e-3), where differences over h = 1e-5 are no longer accurate: values
    this far apart keep every channel's variance far above eps.
    """
    n, c, h, w = shape
    x = np.empty(shape)
    for channel in range(c):
        steps = rng.permutation(n * h * w).reshape(n, h, w)
        x[:, channel] = 0.2 * steps + rng.uniform(-0.05, 0.05, size=(n, h, w)) + rng.uniform(-3, 3)
    return x


def _away_from_zero(rng, shape):
    """Magnitudes in [0.5, 2] with random signs: a gamma or an upstream gradient near 0 would
    shrink the gradient to below the rounding noise of the finite differences."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape)


class BatchNormArrays(NamedTuple):
    x: np.ndarray  # (N, C, H, W)
    gamma: np.ndarray  # (C,)
    beta: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    g: np.ndarray  # upstream gradient, x's shape


def _batchnorm_arrays(case):
    rng = np.random.default_rng(case.seed)
    c = case.c
    return BatchNormArrays(_spread_channels(rng, case.shape), _away_from_zero(rng, c),
                           rng.standard_normal(c), rng.standard_normal(c),
                           rng.uniform(0.5, 2.0, size=c), _away_from_zero(rng, case.shape))


@st.composite
def dropout_cases(draw):
    """(x, g, p, seed): x of 1 to 4 dimensions, p in [0, 0.9] with 0 drawn often."""
    shape = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 4))))
    p = draw(st.sampled_from([0.0, 0.5]) | st.floats(0.0, 0.9))
    seed = draw(seeds)
    rng = np.random.default_rng(seed + 1)  # not the dropout generator's seed
    return rng.standard_normal(shape), rng.standard_normal(shape), p, seed


def _has_layout(a, layout):
    """Whether a's memory is laid out as (C, N, H, W) ("channel-major") or (N, C, H, W) ("C").
    With one image or one channel both are true: they are the same memory order."""
    return (a.transpose(1, 0, 2, 3) if layout == "channel-major" else a).flags.c_contiguous


layouts = st.sampled_from(["C", "channel-major"])


@IMPLS
@MODES
@GRADCHECK
@given(case=cases(two_values_per_channel=False))
def test_batchnorm_backward_matches_numerical_gradient(impl, training, case):
    x, gamma, beta, running_mean, running_var, g = _batchnorm_arrays(case)

    def loss(x_, gamma_, beta_):
        # copies: training mode would move the running statistics on every evaluation
        out, _ = impl.batchnorm_forward(x_, gamma_, beta_, running_mean.copy(), running_var.copy(),
                                        training)
        return np.sum(out * g)

    out, cache = impl.batchnorm_forward(x, gamma, beta, running_mean.copy(), running_var.copy(),
                                        training)
    assert out.shape == case.shape
    dx, dgamma, dbeta = impl.batchnorm_backward(g, cache)
    assert rel_error(dx, numerical_gradient(lambda x_: loss(x_, gamma, beta), x)) < GRAD_TOL
    # L is linear in gamma and beta, so centred differences are exact for any step: a step of 1
    # leaves only rounding. With h = 1e-5 that rounding (1e-16 * |L| / h, about 1e-10) would
    # swamp a dgamma = sum(g * xhat) that happens to cancel to 1e-4.
    numeric_dgamma = numerical_gradient(lambda gm: loss(x, gm, beta), gamma, h=1.0)
    numeric_dbeta = numerical_gradient(lambda bt: loss(x, gamma, bt), beta, h=1.0)
    assert rel_error(dgamma, numeric_dgamma) < GRAD_TOL
    assert rel_error(dbeta, numeric_dbeta) < GRAD_TOL


@IMPLS
@GRADCHECK
@given(case=dropout_cases())
def test_dropout_backward_matches_numerical_gradient_for_a_fixed_mask(impl, case):
    x, g, p, seed = case
    # a generator seeded afresh for every evaluation draws the same mask each time
    _, cache = impl.dropout_forward(x, p, np.random.default_rng(seed), training=True)
    dx = impl.dropout_backward(g, cache)
    numeric = numerical_gradient(
        lambda x_: np.sum(impl.dropout_forward(x_, p, np.random.default_rng(seed), True)[0] * g), x)
    assert rel_error(dx, numeric) < GRAD_TOL


@IMPLS
@GRADCHECK
@given(case=cases())
def test_global_avgpool_backward_matches_numerical_gradient(impl, case):
    rng = np.random.default_rng(case.seed)
    x, g = rng.standard_normal(case.shape), rng.standard_normal((case.n, case.c))
    out, cache = impl.global_avgpool_forward(x)
    assert out.shape == (case.n, case.c)
    dx = impl.global_avgpool_backward(g, cache)
    numeric = numerical_gradient(lambda x_: np.sum(impl.global_avgpool_forward(x_)[0] * g), x)
    assert rel_error(dx, numeric) < GRAD_TOL


@DTYPES
@COMPARE
@given(case=cases(), training=st.booleans(), x_layout=layouts, g_layout=layouts)
def test_fast_batchnorm_matches_reference_with_running_statistics(dtype, case, training, x_layout,
                                                                   g_layout):
    arrays = BatchNormArrays(*(a.astype(dtype) for a in _batchnorm_arrays(case)))
    want = BatchNormArrays(*(a.astype(np.float64) for a in arrays))  # float64 copies
    x = in_layout(arrays.x, x_layout)
    out, cache = fast.nn.layers.batchnorm_forward(x, arrays.gamma, arrays.beta, arrays.running_mean,
                                               arrays.running_var, training)
    dx, dgamma, dbeta = fast.nn.layers.batchnorm_backward(in_layout(arrays.g, g_layout), cache)
    want_out, want_cache = reference.layers.batchnorm_forward(
        want.x, want.gamma, want.beta, want.running_mean, want.running_var, training)
    assert_matches_reference(out, want_out, dtype)
    # the running statistics, updated in place in training mode, agree as well
    assert_matches_reference(arrays.running_mean, want.running_mean, dtype)
    assert_matches_reference(arrays.running_var, want.running_var, dtype)
    for got, expected in zip((dx, dgamma, dbeta),
                             reference.layers.batchnorm_backward(want.g, want_cache), strict=True):
        assert_matches_reference(got, expected, dtype)
    # out and dx in x's layout: the conv below a channel-major output wants its gradient so
    assert _has_layout(out, x_layout) and _has_layout(dx, x_layout)


@DTYPES
@COMPARE
@given(case=dropout_cases())
def test_fast_dropout_matches_reference_and_draws_the_same_mask(dtype, case):
    x, g, p, seed = case
    x, g = x.astype(dtype), g.astype(dtype)
    rng_fast, rng_reference = np.random.default_rng(seed), np.random.default_rng(seed)
    out, cache = fast.nn.layers.dropout_forward(x, p, rng_fast, training=True)
    want_out, want_cache = reference.layers.dropout_forward(x.astype(np.float64), p, rng_reference,
                                                            training=True)
    assert_matches_reference(out, want_out, dtype)
    assert_matches_reference(fast.nn.layers.dropout_backward(g, cache),
                              reference.layers.dropout_backward(g.astype(np.float64), want_cache),
                              dtype)
    # The mask is the contract's: rng.random(x.shape) >= p from a generator in the same state
    # (all True for p == 0, where nothing is drawn; x has no zeros, so the kept elements are
    # exactly the nonzero outputs), and both implementations leave their generators in the
    # same state.
    assert_same(out != 0, np.random.default_rng(seed).random(x.shape) >= p)
    assert rng_fast.random() == rng_reference.random()


@DTYPES
@COMPARE
@given(case=cases(), x_layout=layouts)
def test_fast_global_avgpool_matches_reference(dtype, case, x_layout):
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.shape).astype(dtype)
    g = rng.standard_normal((case.n, case.c)).astype(dtype)
    out, cache = fast.nn.layers.global_avgpool_forward(in_layout(x, x_layout))
    want_out, want_cache = reference.layers.global_avgpool_forward(x.astype(np.float64))
    assert_matches_reference(out, want_out, dtype)
    dx = fast.nn.layers.global_avgpool_backward(g, cache)
    assert_matches_reference(dx, reference.layers.global_avgpool_backward(g.astype(np.float64),
                                                                           want_cache), dtype)
    assert _has_layout(dx, x_layout)


@pytest.mark.parametrize("x_layout", ["C", "channel-major"])
def test_fast_dropout_keeps_the_layout_of_x(x_layout):
    rng = np.random.default_rng(20)
    x = in_layout(rng.standard_normal((2, 3, 4, 5)), x_layout)
    out, cache = fast.nn.layers.dropout_forward(x, 0.5, rng, training=True)
    dx = fast.nn.layers.dropout_backward(rng.standard_normal(x.shape), cache)
    assert _has_layout(out, x_layout) and _has_layout(dx, x_layout)


def test_fast_batchnorm_is_accurate_in_float32_when_the_mean_dwarfs_the_spread():
    # Values 1e4 +- 1: a float32 mean alone is off by up to 5e-4, and E[x^2] - E[x]^2 in float32
    # loses every digit of the variance. The two-pass float64 statistics keep xhat to 1e-4.
    rng = np.random.default_rng(21)
    x = (1e4 + rng.standard_normal((4, 2, 8, 8))).astype(np.float32)
    gamma, beta = np.ones(2, np.float32), np.zeros(2, np.float32)
    out, _ = fast.nn.layers.batchnorm_forward(x, gamma, beta, np.zeros(2, np.float32),
                                           np.ones(2, np.float32), training=True)
    want, _ = reference.layers.batchnorm_forward(x.astype(np.float64), gamma.astype(np.float64),
                                                 beta.astype(np.float64), np.zeros(2), np.ones(2),
                                                 training=True)
    assert_close(out, want, rtol=0, atol=1e-4)


@IMPLS
def test_batchnorm_of_a_two_value_channel_by_hand(impl):
    x = np.array([1.0, 3.0]).reshape(1, 1, 1, 2)
    gamma, beta = np.array([2.0]), np.array([0.5])
    running_mean, running_var = np.array([0.0]), np.array([1.0])
    eps = 1e-5
    out, cache = impl.batchnorm_forward(x, gamma, beta, running_mean, running_var, True, 0.1, eps)
    # mean 2, biased variance ((1-2)^2 + (3-2)^2) / 2 = 1, so xhat = [-1, 1] / s with
    # s = sqrt(1 + eps); out = 2 * xhat + 0.5.
    s = np.sqrt(1 + eps)
    assert_close(out.ravel(), [0.5 - 2 / s, 0.5 + 2 / s], rtol=1e-12)
    # running mean 0.9 * 0 + 0.1 * 2 = 0.2; running variance from the unbiased variance
    # 1 * m / (m - 1) = 2: 0.9 * 1 + 0.1 * 2 = 1.1
    assert_close(running_mean, [0.2], rtol=1e-12)
    assert_close(running_var, [1.1], rtol=1e-12)

    dx, dgamma, dbeta = impl.batchnorm_backward(np.array([1.0, 0.0]).reshape(1, 1, 1, 2), cache)
    # dbeta = sum(dout) = 1, dgamma = sum(dout * xhat) = -1/s.
    # dx = gamma / s * (dout - mean(dout) - xhat * mean(dout * xhat))
    #    = 2/s * ([1, 0] - 1/2 - [-1, 1]/s * (-1 / (2s))) = (1/s) * (1 - 1/s^2) * [1, -1]
    #    = eps / (1 + eps)^(3/2) * [1, -1]: two values normalise to -+1 whatever they are,
    # so only eps lets the output move at all.
    assert_close(dbeta, [1.0], rtol=1e-12)
    assert_close(dgamma, [-1 / s], rtol=1e-12)
    assert_close(dx.ravel(), eps / (1 + eps) ** 1.5 * np.array([1.0, -1.0]), rtol=1e-8)


@IMPLS
def test_batchnorm_statistics_run_over_batch_and_space_by_hand(impl):
    # Channel 0 holds 0, 2 (image 0) and 4, 6 (image 1): m = N*H*W = 4 values, mean 3, biased
    # variance (9 + 1 + 1 + 9) / 4 = 5, unbiased 20 / 4 * 4/3 = 20/3. Channel 1 is constant 5:
    # variance 0, so xhat = 0 and out = beta.
    x = np.array([[[[0.0, 2.0]], [[5.0, 5.0]]],
                  [[[4.0, 6.0]], [[5.0, 5.0]]]])  # (2, 2, 1, 2)
    running_mean, running_var = np.array([1.0, 1.0]), np.array([2.0, 2.0])
    out, _ = impl.batchnorm_forward(x, np.ones(2), np.array([0.0, 7.0]), running_mean, running_var,
                                    True, momentum=0.5, eps=1e-5)
    assert_close(out[:, 0].ravel(), np.array([-3.0, -1.0, 1.0, 3.0]) / np.sqrt(5 + 1e-5),
                    rtol=1e-12)
    assert_same(out[:, 1], np.full((2, 1, 2), 7.0))
    # momentum 0.5: the running values move halfway to the batch's
    assert_close(running_mean, [0.5 * 1 + 0.5 * 3, 0.5 * 1 + 0.5 * 5], rtol=1e-12)
    assert_close(running_var, [0.5 * 2 + 0.5 * 20 / 3, 0.5 * 2 + 0.5 * 0], rtol=1e-12)


@IMPLS
def test_batchnorm_of_a_single_value_uses_the_biased_variance_for_the_running_one(impl):
    # m = 1: mean 7, variance 0; the unbiased correction m / (m - 1) would divide by zero, so
    # the running variance takes the biased 0: 0.9 * 1 + 0.1 * 0 = 0.9. xhat = 0, out = beta.
    running_mean, running_var = np.array([0.0]), np.array([1.0])
    out, cache = impl.batchnorm_forward(np.full((1, 1, 1, 1), 7.0), np.array([3.0]),
                                        np.array([-2.0]), running_mean, running_var, True)
    assert_same(out, [[[[-2.0]]]])
    assert_close(running_mean, [0.7], rtol=1e-12)
    assert_close(running_var, [0.9], rtol=1e-12)
    assert np.all(np.isfinite(running_var))
    dx, dgamma, dbeta = impl.batchnorm_backward(np.full((1, 1, 1, 1), 5.0), cache)
    # out = beta whatever x and gamma are: dx = 0, dgamma = 0, dbeta = 5
    assert_close(dx, [[[[0.0]]]], rtol=0, atol=1e-12)
    assert_close(dgamma, [0.0], rtol=0, atol=1e-12)
    assert_close(dbeta, [5.0], rtol=1e-12)


@IMPLS
def test_batchnorm_in_evaluation_mode_is_a_fixed_affine_map_by_hand(impl):
    # running mean 1, running variance 3, eps 1: std sqrt(3 + 1) = 2. x = 5 -> xhat = (5 - 1) / 2
    # = 2 -> out = 3 * 2 - 1 = 5; x = -3 -> xhat = -2 -> out = -7.
    x = np.array([5.0, -3.0]).reshape(2, 1, 1, 1)
    running_mean, running_var = np.array([1.0]), np.array([3.0])
    out, cache = impl.batchnorm_forward(x, np.array([3.0]), np.array([-1.0]), running_mean,
                                        running_var, False, eps=1.0)
    assert_close(out.ravel(), [5.0, -7.0], rtol=1e-12)
    dx, dgamma, dbeta = impl.batchnorm_backward(np.array([1.0, 2.0]).reshape(2, 1, 1, 1), cache)
    # dx = gamma / std * dout = 1.5 * dout; dgamma = sum(dout * xhat) = 1*2 + 2*(-2) = -2;
    # dbeta = 1 + 2 = 3
    assert_close(dx.ravel(), [1.5, 3.0], rtol=1e-12)
    assert_close(dgamma, [-2.0], rtol=1e-12)
    assert_close(dbeta, [3.0], rtol=1e-12)
    assert_same(running_mean, [1.0])
    assert_same(running_var, [3.0])


class _FixedDraws:
    """A stand-in generator whose random(shape) returns given numbers, in C order."""

    def __init__(self, draws):
        self.draws = np.asarray(draws, dtype=np.float64)

    def random(self, shape):
        return self.draws.reshape(shape)


@IMPLS
def test_dropout_with_a_known_mask_by_hand(impl):
    x = np.array([[2.0, 4.0],
                  [6.0, 8.0]])
    # draws [0.1, 0.5; 0.7, 0.2] >= p = 0.5 keep [no, yes; yes, no]: a draw equal to p is kept.
    out, cache = impl.dropout_forward(x, 0.5, _FixedDraws([0.1, 0.5, 0.7, 0.2]), training=True)
    # kept elements are scaled by 1 / (1 - 0.5) = 2
    assert_same(out, [[0.0, 8.0], [12.0, 0.0]])
    dx = impl.dropout_backward(np.array([[1.0, 2.0], [3.0, 4.0]]), cache)
    assert_same(dx, [[0.0, 4.0], [6.0, 0.0]])


@IMPLS
def test_global_avgpool_of_a_2x2_plane_by_hand(impl):
    # plane 0: (1 + 2 + 3 + 6) / 4 = 3; plane 1: (0 - 4 + 4 + 8) / 4 = 2
    x = np.array([[[[1.0, 2.0], [3.0, 6.0]], [[0.0, -4.0], [4.0, 8.0]]]])  # (1, 2, 2, 2)
    out, cache = impl.global_avgpool_forward(x)
    assert_close(out, [[3.0, 2.0]], rtol=1e-12)
    # each of the 4 pixels of a plane gets a quarter of its gradient: 8 / 4 = 2, -1 / 4
    dx = impl.global_avgpool_backward(np.array([[8.0, -1.0]]), cache)
    assert_close(dx, [[np.full((2, 2), 2.0), np.full((2, 2), -0.25)]], rtol=1e-12)


@IMPLS
def test_batchnorm_evaluation_mode_leaves_the_running_statistics_untouched(impl):
    arrays = _batchnorm_arrays(Case(2, 3, 2, 2, seed=30))
    running_mean, running_var = arrays.running_mean.copy(), arrays.running_var.copy()
    impl.batchnorm_forward(arrays.x, arrays.gamma, arrays.beta, running_mean, running_var, False,
                           momentum=0.9)
    assert_same(running_mean, arrays.running_mean)
    assert_same(running_var, arrays.running_var)


@IMPLS
def test_batchnorm_training_mode_updates_the_running_arrays_in_place(impl):
    arrays = _batchnorm_arrays(Case(2, 3, 2, 2, seed=31))
    running_mean, running_var = arrays.running_mean.copy(), arrays.running_var.copy()
    mean_id, var_id = id(running_mean), id(running_var)
    impl.batchnorm_forward(arrays.x, arrays.gamma, arrays.beta, running_mean, running_var, True)
    assert id(running_mean) == mean_id and id(running_var) == var_id
    assert not np.any(running_mean == arrays.running_mean)
    assert not np.any(running_var == arrays.running_var)


@IMPLS
def test_batchnorm_momentum_0_keeps_the_running_statistics(impl):
    arrays = _batchnorm_arrays(Case(2, 3, 2, 2, seed=32))
    running_mean, running_var = arrays.running_mean.copy(), arrays.running_var.copy()
    impl.batchnorm_forward(arrays.x, arrays.gamma, arrays.beta, running_mean, running_var, True,
                           momentum=0.0)
    assert_same(running_mean, arrays.running_mean)
    assert_same(running_var, arrays.running_var)


@IMPLS
def test_batchnorm_momentum_1_replaces_the_running_statistics_with_the_batch_ones(impl):
    arrays = _batchnorm_arrays(Case(2, 3, 2, 2, seed=32))
    running_mean, running_var = arrays.running_mean.copy(), arrays.running_var.copy()
    impl.batchnorm_forward(arrays.x, arrays.gamma, arrays.beta, running_mean, running_var, True,
                           momentum=1.0)
    # over (N, H, W), the variance unbiased (ddof=1: m = 8 values, divided by 7)
    assert_close(running_mean, arrays.x.mean(axis=(0, 2, 3)), rtol=1e-12)
    assert_close(running_var, arrays.x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)


@IMPLS
def test_batchnorm_evaluation_mode_takes_an_empty_batch(impl):
    arrays = _batchnorm_arrays(Case(1, 2, 3, 3, seed=33))
    out, cache = impl.batchnorm_forward(np.zeros((0, 2, 3, 3)), arrays.gamma, arrays.beta,
                                        arrays.running_mean, arrays.running_var, False)
    assert out.shape == (0, 2, 3, 3)
    dx, dgamma, dbeta = impl.batchnorm_backward(out, cache)
    assert dx.shape == (0, 2, 3, 3)
    assert_same(dgamma, [0.0, 0.0])
    assert_same(dbeta, [0.0, 0.0])


@IMPLS
@pytest.mark.parametrize("training, p", [(False, 0.5), (True, 0.0), (False, 0.0)],
                         ids=["evaluation", "p=0", "evaluation-p=0"])
def test_dropout_without_dropping_returns_x_and_leaves_rng_alone(impl, training, p):
    rng = np.random.default_rng(34)
    x, g = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    state = rng.bit_generator.state
    out, cache = impl.dropout_forward(x, p, rng, training)
    assert_same(out, x)
    assert rng.bit_generator.state == state  # not a single number drawn
    assert_same(impl.dropout_backward(g, cache), g)


class LayerRun(NamedTuple):
    results: tuple  # the output and every gradient
    inputs: tuple  # the forward's arrays (running statistics aside) and dout, after the run
    before: tuple  # their copies, taken before the forward


def _run_batchnorm(impl, dtype, training):
    arrays = BatchNormArrays(*(a.astype(dtype) for a in _batchnorm_arrays(Case(2, 3, 2, 3, 40))))
    inputs = (arrays.x, arrays.gamma, arrays.beta, arrays.g)
    before = tuple(a.copy() for a in inputs)
    out, cache = impl.batchnorm_forward(arrays.x, arrays.gamma, arrays.beta, arrays.running_mean,
                                        arrays.running_var, training)
    return LayerRun((out, *impl.batchnorm_backward(arrays.g, cache)), inputs, before)


def _run_dropout(impl, dtype, training):
    rng = np.random.default_rng(41)
    # about half of the elements dropped: a backward that zeroes dout in place would show
    x, g = (rng.standard_normal((2, 3, 2, 3)).astype(dtype) for _ in range(2))
    before = (x.copy(), g.copy())
    out, cache = impl.dropout_forward(x, 0.5, rng, training)
    return LayerRun((out, impl.dropout_backward(g, cache)), (x, g), before)


def _run_global_avgpool(impl, dtype):
    rng = np.random.default_rng(42)
    x = rng.standard_normal((2, 3, 2, 3)).astype(dtype)
    g = rng.standard_normal((2, 3)).astype(dtype)
    before = (x.copy(), g.copy())
    out, cache = impl.global_avgpool_forward(x)
    return LayerRun((out, impl.global_avgpool_backward(g, cache)), (x, g), before)


LAYER_RUNS = {
    "batchnorm-training": partial(_run_batchnorm, training=True),
    "batchnorm-evaluation": partial(_run_batchnorm, training=False),
    "dropout-training": partial(_run_dropout, training=True),
    "dropout-evaluation": partial(_run_dropout, training=False),
    "global_avgpool": _run_global_avgpool,
}


RUNS = pytest.mark.parametrize("run", LAYER_RUNS.values(), ids=LAYER_RUNS.keys())


@IMPLS
@DTYPES
@RUNS
def test_output_and_gradients_keep_the_input_dtype(impl, dtype, run):
    for array in run(impl, dtype).results:
        assert array.dtype == dtype


@IMPLS
@DTYPES
@RUNS
def test_backward_leaves_dout_untouched_and_forward_leaves_inputs_untouched(impl, dtype, run):
    layer_run = run(impl, dtype)
    for array, before in zip(layer_run.inputs, layer_run.before, strict=True):
        assert_same(array, before)


def _batchnorm_call(x_shape=(2, 3, 4, 4), gamma=3, beta=3, mean=3, var=3, training=True,
                    momentum=0.1, eps=1e-5):
    return lambda impl: impl.batchnorm_forward(np.ones(x_shape), np.ones(gamma), np.ones(beta),
                                               np.zeros(mean), np.ones(var), training,
                                               momentum=momentum, eps=eps)


ERROR_CASES = {
    "batchnorm x 3-D": (_batchnorm_call(x_shape=(2, 3, 4)), r"4-D.*\(2, 3, 4\)"),
    "batchnorm gamma shape": (_batchnorm_call(gamma=4), r"gamma.*\(3,\).*\(4,\)"),
    "batchnorm beta shape": (_batchnorm_call(beta=2), r"beta.*\(3,\).*\(2,\)"),
    "batchnorm running_mean shape": (_batchnorm_call(mean=5), r"running_mean.*\(3,\).*\(5,\)"),
    "batchnorm running_var shape": (_batchnorm_call(var=1), r"running_var.*\(3,\).*\(1,\)"),
    "batchnorm momentum below 0": (_batchnorm_call(momentum=-0.1), r"momentum.*-0\.1"),
    "batchnorm momentum above 1": (_batchnorm_call(momentum=1.5), r"momentum.*1\.5"),
    "batchnorm eps 0": (_batchnorm_call(eps=0.0), r"eps.*positive.*0\.0"),
    "batchnorm eps negative": (_batchnorm_call(eps=-1e-5), r"eps.*-1e-05"),
    "batchnorm empty training batch": (_batchnorm_call(x_shape=(0, 3, 4, 4)),
                                       r"training.*\(0, 3, 4, 4\)"),
    "dropout p 1": (lambda impl: impl.dropout_forward(np.ones(3), 1.0, np.random.default_rng(0),
                                                      True), r"\[0, 1\).*1\.0"),
    "dropout p negative": (lambda impl: impl.dropout_forward(np.ones(3), -0.2,
                                                             np.random.default_rng(0), True),
                           r"-0\.2"),
    # p is checked in evaluation mode too: a bad setting fails on first use, not first training
    "dropout p above 1 in evaluation": (lambda impl: impl.dropout_forward(
        np.ones(3), 1.5, np.random.default_rng(0), False), r"1\.5"),
    "global avgpool x 2-D": (lambda impl: impl.global_avgpool_forward(np.ones((2, 3))),
                             r"4-D.*\(2, 3\)"),
    "global avgpool empty planes": (lambda impl: impl.global_avgpool_forward(np.ones((2, 3, 0, 4))),
                                    r"\(2, 3, 0, 4\)"),
}


@IMPLS
@pytest.mark.parametrize("call, message", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_invalid_arguments_raise_value_error_saying_what_is_wrong(impl, call, message):
    with pytest.raises(ValueError, match=message):
        call(impl)
