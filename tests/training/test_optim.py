"""Optimisers and learning-rate schedules (``fast.training.optim``)."""
import numpy as np
import pytest

from fast.training.optim import SGD, Adam, Momentum, learning_rate


def test_optimizers_follow_their_update_rules():
    g = {"a_w": np.array([0.5, -1.0])}
    p = {"a_w": np.array([1.0, 2.0])}
    SGD().update(p, g, lr=0.1)
    np.testing.assert_allclose(p["a_w"], [0.95, 2.1])

    p, opt = {"a_w": np.array([1.0, 2.0])}, Momentum(momentum=0.9)
    opt.update(p, g, lr=0.1)  # v = g
    opt.update(p, g, lr=0.1)  # v = 0.9 g + g = 1.9 g
    np.testing.assert_allclose(p["a_w"], np.array([1.0, 2.0]) - 0.1 * 2.9 * g["a_w"])

    # Adam's first step moves each weight by lr * sign(g) (bias-corrected m / sqrt(v) = g / |g|).
    p, opt = {"a_w": np.array([1.0, 2.0]), "a_b": np.array([1.0])}, Adam()
    opt.update(p, {"a_w": g["a_w"], "a_b": np.array([3.0])}, lr=0.01)
    np.testing.assert_allclose(p["a_w"], [0.99, 2.01], rtol=1e-6)
    np.testing.assert_allclose(p["a_b"], [0.99], rtol=1e-6)

    # Decoupled weight decay shrinks weights, not biases.
    p = {"a_w": np.array([1.0]), "a_b": np.array([1.0])}
    SGD(weight_decay=0.5).update(p, {"a_w": np.zeros(1), "a_b": np.zeros(1)}, lr=0.1)
    np.testing.assert_allclose([p["a_w"][0], p["a_b"][0]], [0.95, 1.0])


def test_learning_rate_schedules():
    assert learning_rate("constant", 0.1, 5, 10) == 0.1
    assert learning_rate("cosine", 0.1, 0, 10) == pytest.approx(0.1)
    assert learning_rate("cosine", 0.1, 9, 10) == pytest.approx(0.001)
    assert [learning_rate("step", 1.0, e, 8) for e in range(8)] == pytest.approx(
        [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
