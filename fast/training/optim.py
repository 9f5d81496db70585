"""Optimizers over parameter dicts, and learning-rate schedules.

``update(params, grads, lr)`` changes ``params`` in place, looping over its keys.
Weight decay is decoupled (AdamW-style): weights shrink by ``lr * weight_decay``
each step, independently of the gradient's scale; biases are not decayed.
Each optimizer's moving averages live in ``state`` (a dict of arrays) so a
checkpoint can store and restore them exactly.
"""
import math

import numpy as np


def _decays(key):
    return key.endswith("_w")


class SGD:
    def __init__(self, weight_decay=0.0):
        self.weight_decay = weight_decay
        self.state = {}

    def update(self, params, grads, lr):
        for k in params:
            if self.weight_decay and _decays(k):
                params[k] *= 1 - lr * self.weight_decay
            params[k] -= lr * self._step(k, grads[k])

    def _step(self, key, grad):
        return grad


class Momentum(SGD):
    """Heavy-ball momentum: v = mu * v + g; p -= lr * v."""

    def __init__(self, momentum=0.9, weight_decay=0.0):
        super().__init__(weight_decay)
        self.momentum = momentum

    def _step(self, key, grad):
        v = self.state.setdefault(f"{key}/v", np.zeros_like(grad))
        v *= self.momentum
        v += grad
        return v


class Adam(SGD):
    """Adam (Kingma & Ba, 2015) with bias correction."""

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, params, grads, lr):
        t = self.state.get("t", np.zeros((), np.int64)) + 1
        self.state["t"] = np.asarray(t)
        self._correction = math.sqrt(1 - self.beta2 ** int(t)) / (1 - self.beta1 ** int(t))
        super().update(params, grads, lr)

    def _step(self, key, grad):
        m = self.state.setdefault(f"{key}/m", np.zeros_like(grad))
        v = self.state.setdefault(f"{key}/v", np.zeros_like(grad))
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * grad * grad
        return self._correction * m / (np.sqrt(v) + self.eps)


def make_optimizer(name, momentum=0.9, weight_decay=0.0):
    if name == "sgd":
        return SGD(weight_decay)
    if name == "momentum":
        return Momentum(momentum, weight_decay)
    if name == "adam":
        return Adam(weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd, momentum or adam")


def learning_rate(schedule, base_lr, epoch, epochs):
    """The learning rate of ``epoch`` (0-based) out of ``epochs``.

    cosine: from base_lr down to 1 % of it along half a cosine; step: divided by
    10 at half and again at three quarters of the epochs; constant: base_lr.
    """
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        progress = epoch / max(epochs - 1, 1)
        return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
    if schedule == "step":
        return base_lr * 0.1 ** ((epoch >= epochs // 2) + (epoch >= 3 * epochs // 4))
    raise ValueError(f"unknown schedule {schedule!r}")
