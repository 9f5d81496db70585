"""The checkers themselves: the gradient checker right on known functions and catching a wrong
gradient; the quick comparisons failing exactly where numpy's asserts fail."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from helpers import assert_close, assert_same, numerical_gradient, rel_error

TOLERANCE = 1e-7  # the threshold every layer gradient check in test_layers.py uses


def test_numerical_gradient_of_sum_of_cubes_is_three_x_squared():
    x = np.random.default_rng(0).standard_normal((3, 4))
    grad = numerical_gradient(lambda x_: np.sum(x_**3), x)
    # centred differences are exact for quadratics; for x**3 the error is h**2 = 1e-10
    assert_allclose(grad, 3 * x**2, rtol=0, atol=1e-8)


def test_numerical_gradient_covers_every_element_of_a_4d_array():
    x = np.random.default_rng(1).standard_normal((2, 1, 3, 2))
    weights = np.arange(x.size, dtype=np.float64).reshape(x.shape)
    grad = numerical_gradient(lambda x_: np.sum(weights * x_), x)
    assert_allclose(grad, weights, rtol=1e-9, atol=1e-9)


def test_numerical_gradient_restores_x_exactly():
    x = np.random.default_rng(2).standard_normal((2, 3))
    before = x.copy()
    numerical_gradient(lambda x_: np.sum(np.sin(x_)), x)
    assert_array_equal(x, before)


def test_numerical_gradient_rejects_float32():
    with pytest.raises(TypeError, match="float32"):
        numerical_gradient(np.sum, np.ones(3, dtype=np.float32))


def test_rel_error_is_symmetric_and_scale_free():
    a = np.array([1.0, -2.0, 3.0])
    b = np.array([1.0, -2.0, 3.3])
    # max|a - b| = 0.3 at the last element; max(|a| + |b|) = 6.3 there too
    assert rel_error(a, b) == pytest.approx(0.3 / 6.3, rel=1e-12)
    assert rel_error(a, b) == rel_error(b, a)
    assert rel_error(1e6 * a, 1e6 * b) == pytest.approx(rel_error(a, b), rel=1e-12)


def test_rel_error_is_zero_for_equal_arrays_including_all_zeros():
    assert rel_error(np.zeros(4), np.zeros(4)) == 0.0
    a = np.array([[0.5, -7.0]])
    assert rel_error(a, a.copy()) == 0.0


def _matmul_loss_and_gradient(x, w, g):
    """L = sum((x @ w) * g) and its exact gradient dL/dw = x.T @ g."""
    return np.sum((x @ w) * g), x.T @ g


def test_checker_accepts_a_correct_gradient():
    rng = np.random.default_rng(3)
    x, w, g = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    _, dw = _matmul_loss_and_gradient(x, w, g)
    numeric = numerical_gradient(lambda w_: _matmul_loss_and_gradient(x, w_, g)[0], w)
    assert rel_error(dw, numeric) < TOLERANCE


def test_checker_fails_on_a_gradient_scaled_by_one_percent():
    rng = np.random.default_rng(4)
    x, w, g = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    _, dw = _matmul_loss_and_gradient(x, w, g)
    numeric = numerical_gradient(lambda w_: _matmul_loss_and_gradient(x, w_, g)[0], w)
    # a 1% scale error gives a relative error of about 0.01 / 2, far above the threshold
    assert rel_error(1.01 * dw, numeric) > TOLERANCE
    assert rel_error(1.01 * dw, numeric) == pytest.approx(0.01 / 2.01, rel=1e-3)


def test_checker_fails_when_one_element_of_the_gradient_is_wrong():
    rng = np.random.default_rng(5)
    x, w, g = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    _, dw = _matmul_loss_and_gradient(x, w, g)
    numeric = numerical_gradient(lambda w_: _matmul_loss_and_gradient(x, w_, g)[0], w)
    broken = dw.copy()
    broken[1, 0] += 1e-4  # a tiny slip in a single element
    assert rel_error(broken, numeric) > TOLERANCE


@pytest.mark.parametrize("got, want, kwargs", [
    (np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-6]), {}),              # beyond rtol 1e-7
    (np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-6]), {"rtol": 1e-8, "atol": 5e-7}),
    (np.array([1.0, np.nan]), np.array([1.0, 2.0]), {}),                   # NaN against a number
    (np.ones((2, 3)), np.ones((3, 2)), {}),                                # another shape
])
def test_the_quick_comparisons_fail_where_numpys_fail(got, want, kwargs):
    """``helpers.assert_close`` and ``assert_same`` pass only what numpy's asserts pass: a quick
    check first, numpy's assert where that check fails."""
    with pytest.raises(AssertionError):
        assert_close(got, want, **kwargs)
    with pytest.raises(AssertionError):
        assert_same(got, want)


def test_the_quick_comparisons_pass_where_numpys_pass():
    assert_close(np.array([1.0, np.nan]), np.array([1.0 + 1e-9, np.nan]))  # NaN equals NaN, as numpy has it
    assert_close(np.array([0.0, 1.0]), np.array([1e-9, 1.0]), atol=1e-8)
    assert_same(np.array([3, 4]), np.array([3, 4]))
    assert_same(np.array([1.0, np.nan]), np.array([1.0, np.nan]))
