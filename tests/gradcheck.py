"""Test helpers shared by the layer tests: centred-difference numerical gradients, a symmetric
relative error, and the tolerance by which ``fast`` must match ``reference``."""
import numpy as np
from numpy.testing import assert_allclose


def numerical_gradient(f, x, h=1e-5):
    """Gradient of the scalar f(x) with respect to every element of x, by centred differences.

    x: float64 array of any shape; it is perturbed in place one element at a time and restored
    exactly, so f must read x afresh on each call. Returns a float64 array of x's shape.
    """
    if x.dtype != np.float64:
        # float32 has about 7 digits: (f(x+h) - f(x-h)) / 2h would be mostly rounding noise
        raise TypeError(f"numerical_gradient needs a float64 array, got {x.dtype}")
    grad = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + h
        f_plus = f(x)
        x[index] = saved - h
        f_minus = f(x)
        x[index] = saved
        grad[index] = (f_plus - f_minus) / (2 * h)
    return grad


def rel_error(a, b):
    """Symmetric relative error max|a - b| / max(|a| + |b|), 0 when both are all zeros.

    One scale for the whole array, so an element that happens to be near zero does not turn
    rounding noise into a large relative error.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(a) + np.abs(b))
    return float(np.max(np.abs(a - b)) / max(scale, np.finfo(np.float64).tiny))


def assert_matches_reference(got, want, dtype):
    """``fast``'s result ``got`` (in ``dtype``) against the float64 reference ``want``: float64
    agrees to rounding; float32 to about 1e-4 of the scale of the terms.

    The drawn inputs are O(1), so each result is a sum of O(1) terms, rounded on that scale:
    an element where the terms cancel (x * w + b = -2e-4, or a loss log(1 + 1e-5) from a
    confident right answer) keeps an absolute error of the terms' size, not of its own.
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == dtype
    assert got.shape == want.shape
    scale = max(1.0, np.max(np.abs(want), initial=0.0))
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (1e-4, 1e-4)
    assert_allclose(got, want, rtol=rtol, atol=atol * scale)
