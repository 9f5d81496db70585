"""Reference CNN layers: explicit loops over output positions, to be checked by eye.

Every ``*_forward`` returns ``(out, cache)`` and every ``*_backward(dout, cache)``
returns the gradients of the loss with respect to the forward's inputs. Tensors
are NCHW. Arrays keep the dtype they come in with; the tests run this module in
float64 and use it as the oracle for ``fast.layers``. Nothing here imports
``fast``; the two share only ``contract`` (argument checks and output sizes), so no
mistake in the arithmetic can hide in both implementations.
"""
import math
from typing import NamedTuple

import numpy as np

from contract import check_affine_args, check_conv_args, check_labels, check_pool_args


class ConvCache(NamedTuple):
    x: np.ndarray
    w: np.ndarray
    stride: int
    pad: int


class PoolCache(NamedTuple):
    x: np.ndarray
    size: int
    stride: int


class AffineCache(NamedTuple):
    x: np.ndarray
    w: np.ndarray


class PoolReluCache(NamedTuple):
    pool: PoolCache
    relu: np.ndarray  # the pooled values the ReLU saw



def conv2d_forward(x, w, b, stride=1, pad=0):
    """Cross-correlate ``x`` with ``w``.

    x: (N, C, H, W), w: (F, C, KH, KW), b: (F,) -> out: (N, F, OH, OW).
    """
    OH, OW = check_conv_args(x, w, b, stride, pad)
    N = x.shape[0]
    F, _, KH, KW = w.shape

    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, OH, OW), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    window = xp[n, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return out, ConvCache(x, w, stride, pad)


def conv2d_backward(dout, cache, need_dx=True):
    """dout: (N, F, OH, OW) -> dx: (N, C, H, W), dw: (F, C, KH, KW), db: (F,).

    With ``need_dx=False`` (a first layer, whose input is data) dx is None.
    """
    x, w, stride, pad = cache
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    _, _, OH, OW = dout.shape

    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    db = np.zeros(F, dtype=dout.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    rows = slice(i * stride, i * stride + KH)
                    cols = slice(j * stride, j * stride + KW)
                    g = dout[n, f, i, j]
                    # out[n, f, i, j] = sum(window * w[f]) + b[f]: each input of the
                    # window and each weight gets g times the other factor.
                    dw[f] += g * xp[n, :, rows, cols]
                    dxp[n, :, rows, cols] += g * w[f]
                    db[f] += g
    dx = dxp[:, :, pad:pad + H, pad:pad + W] if need_dx else None
    return dx, dw, db


def maxpool2d_forward(x, size=2, stride=None):
    """Max over ``size`` x ``size`` windows, ``stride`` apart (default ``size``), no padding.

    x: (N, C, H, W) -> out: (N, C, OH, OW). Windows may overlap (stride < size).
    """
    stride, OH, OW = check_pool_args(x, size, stride)
    N, C, H, W = x.shape

    out = np.zeros((N, C, OH, OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    window = x[n, c, i * stride:i * stride + size, j * stride:j * stride + size]
                    out[n, c, i, j] = window.max()
    return out, PoolCache(x, size, stride)


def maxpool2d_backward(dout, cache):
    """dout: (N, C, OH, OW) -> dx: (N, C, H, W).

    Each window's gradient goes to one element: the first maximum in row-major
    order (what ``np.argmax`` picks). An element that is the maximum of several
    overlapping windows collects the sum of their gradients.
    """
    x, size, stride = cache
    N, C, OH, OW = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    window = x[n, c, i * stride:i * stride + size, j * stride:j * stride + size]
                    di, dj = divmod(int(np.argmax(window)), size)
                    dx[n, c, i * stride + di, j * stride + dj] += dout[n, c, i, j]
    return dx


def relu_forward(x):
    """max(x, 0), elementwise, any shape."""
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """Gradient passes where x > 0; at the kink x == 0 it is 0."""
    x = cache
    return dout * (x > 0)


def affine_forward(x, w, b):
    """x: (N, ...) flattened to (N, D), w: (D, M), b: (M,) -> out: (N, M)."""
    D = check_affine_args(x, w, b)
    N = x.shape[0]
    x2 = x.reshape(N, D)  # (N, D), also for an empty batch
    out = np.zeros((N, w.shape[1]), dtype=x.dtype)
    for n in range(N):
        out[n] = x2[n] @ w + b
    return out, AffineCache(x, w)


def affine_backward(dout, cache):
    """dout: (N, M) -> dx in x's original shape, dw: (D, M), db: (M,)."""
    x, w = cache
    N = x.shape[0]
    x2 = x.reshape(N, math.prod(x.shape[1:]))  # (N, D), also for an empty batch
    dx2 = np.zeros_like(x2)
    dw = np.zeros_like(w)
    for n in range(N):
        dx2[n] = w @ dout[n]
        dw += np.outer(x2[n], dout[n])
    db = dout.sum(axis=0)
    return dx2.reshape(x.shape), dw, db


def softmax_cross_entropy(logits, y, class_weights=None):
    """Mean (or class-weighted mean) cross-entropy of softmax(logits) against labels y.

    logits: (N, K), y: (N,) ints in [0, K) -> (loss, dlogits (N, K)).
    With class_weights (K,), the loss is sum(w[y_i] * loss_i) / sum(w[y_i]).
    """
    check_labels(logits, y, class_weights)
    N = logits.shape[0]
    weights = np.ones(N, dtype=logits.dtype)  # each sample's weight: its class's, or 1
    if class_weights is not None:
        for n in range(N):
            weights[n] = class_weights[y[n]]
    total = weights.sum()

    loss = np.zeros((), dtype=logits.dtype)
    dlogits = np.zeros_like(logits)
    for n in range(N):
        # log-sum-exp after subtracting the row max: exact, and no overflow
        # for logits in the thousands.
        shifted = logits[n] - logits[n].max()
        log_probs = shifted - np.log(np.sum(np.exp(shifted)))
        loss += weights[n] * -log_probs[y[n]]
        grad = np.exp(log_probs)
        grad[y[n]] -= 1
        dlogits[n] = weights[n] * grad / total
    return (loss / total).astype(logits.dtype), dlogits


def maxpool_relu_forward(x, size=2):
    """ReLU(max-pool(x)), a model's pool and ReLU in a row: -> (out, cache).

    Here simply the two layers one after the other; ``fast`` fuses them.
    """
    pooled, pool_cache = maxpool2d_forward(x, size)
    out, relu_cache = relu_forward(pooled)
    return out, PoolReluCache(pool_cache, relu_cache)


def maxpool_relu_backward(dout, cache):
    """dout: the gradient of ``maxpool_relu_forward``'s output -> dx."""
    pool_cache, relu_cache = cache
    return maxpool2d_backward(relu_backward(dout, relu_cache), pool_cache)
