"""Reference CNN layers: explicit loops over output positions, to be checked by eye.

Every ``*_forward`` returns ``(out, cache)`` and every ``*_backward(dout, cache)``
returns the gradients of the loss with respect to the forward's inputs. Tensors
are NCHW. Arrays keep the dtype they come in with; the tests run this module in
float64 and use it as the oracle for ``fast.nn.layers``. Nothing here imports
``fast``; the two share only ``contract`` (argument checks and output sizes), so no
mistake in the arithmetic can hide in both implementations.
"""
import math
from typing import NamedTuple, Optional

import numpy as np

from contract import (check_affine_args, check_batchnorm_args, check_conv_args, check_dropout_p,
                      check_global_avgpool_args, check_labels, check_pool_args)


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
                    out[n, f, i, j] = (window * w[f]).sum() + b[f]
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


# ---------------------------------------------------------------------------------------------
# Normalisation, regularisation and pooling to a vector: batch norm, dropout, global average
# pooling. Per-channel (or per-element) arithmetic written out, like the layers above.
# ---------------------------------------------------------------------------------------------

class BatchNormCache(NamedTuple):
    centred: np.ndarray  # x minus the mean it was normalised with: (N, C, H, W)
    var: np.ndarray  # the variance it was normalised with: (C,)
    gamma: np.ndarray  # (C,)
    eps: float
    training: bool  # whether mean and var were the batch's own (and so depend on x)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Spatial batch normalisation: each channel scaled to zero mean and unit variance, then
    ``gamma * xhat + beta``.

    x: (N, C, H, W); gamma, beta, running_mean, running_var: (C,) -> out: (N, C, H, W).
    Training: the batch's per-channel mean and biased variance over (N, H, W), and the running
    statistics are updated in place, r = (1 - momentum) * r + momentum * batch statistic, with
    the unbiased variance (times m / (m - 1), m = N*H*W; the biased one when m == 1).
    Evaluation (training=False): running_mean and running_var are used and left untouched.
    """
    check_batchnorm_args(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    N, C, H, W = x.shape
    m = N * H * W  # values per channel

    centred = np.zeros_like(x)
    var = np.zeros(C, dtype=x.dtype)
    out = np.zeros_like(x)
    for c in range(C):
        values = x[:, c]  # (N, H, W)
        if training:
            mean = values.sum() / m
            var[c] = ((values - mean) ** 2).sum() / m  # biased: normalises this very batch
            unbiased = var[c] * m / (m - 1) if m > 1 else var[c]  # one value: no spread to correct
            running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean
            running_var[c] = (1 - momentum) * running_var[c] + momentum * unbiased
        else:
            mean, var[c] = running_mean[c], running_var[c]
        centred[:, c] = values - mean
        xhat = centred[:, c] / np.sqrt(var[c] + eps)
        out[:, c] = gamma[c] * xhat + beta[c]
    return out, BatchNormCache(centred, var, gamma, eps, bool(training))


def batchnorm_backward(dout, cache):
    """dout: (N, C, H, W) -> dx: (N, C, H, W), dgamma: (C,), dbeta: (C,) (in gamma's dtype).

    Training mode: back through every step of the forward, the mean and the variance included,
    since both depend on x. Evaluation mode: the map is a fixed affine one per channel, so
    dx = gamma * dout / sqrt(running_var + eps) (what Grad-CAM on a trained model needs).
    """
    centred, var, gamma, eps, training = cache
    N, C, H, W = centred.shape
    m = N * H * W
    dx = np.zeros_like(centred)
    dgamma = np.zeros_like(gamma)
    dbeta = np.zeros_like(gamma)
    for c in range(C):
        g = dout[:, c]  # (N, H, W)
        xc = centred[:, c]
        inv_std = 1 / np.sqrt(var[c] + eps)
        xhat = xc * inv_std
        dbeta[c] = g.sum()
        dgamma[c] = (g * xhat).sum()
        dxhat = g * gamma[c]
        if not training:
            dx[:, c] = dxhat * inv_std
            continue
        # xhat = (x - mean) * (var + eps)^(-1/2), var = sum((x - mean)^2) / m, mean = sum(x) / m
        dvar = (dxhat * xc).sum() * -0.5 * inv_std ** 3
        # mean reaches the loss through xhat and through var; the path through var adds
        # dvar * -2 * sum(x - mean) / m, which is 0: centred values sum to 0.
        dmean = -inv_std * dxhat.sum()
        dx[:, c] = dxhat * inv_std + dvar * 2 * xc / m + dmean / m
    return dx, dgamma, dbeta


class DropoutCache(NamedTuple):
    keep: Optional[np.ndarray]  # bool, x's shape; None when nothing was dropped
    p: float


def dropout_forward(x, p, rng, training):
    """Inverted dropout: each element kept with probability 1 - p and scaled by 1 / (1 - p).

    x: any shape -> out: x's shape. The mask is ``rng.random(x.shape) >= p``: float64 draws in
    C order of x.shape, so generators in the same state give the same mask whatever the
    implementation. In evaluation mode or with p == 0, out is a copy of x and rng is not drawn
    from at all.
    """
    check_dropout_p(p)
    if not training or p == 0:
        return x.copy(), DropoutCache(None, p)
    keep = rng.random(x.shape) >= p
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        out[index] = x[index] * keep[index] / (1 - p)
    return out, DropoutCache(keep, p)


def dropout_backward(dout, cache):
    """dout: out's shape -> dx: the same mask and scale as the forward applied to dout."""
    keep, p = cache
    if keep is None:
        return dout.copy()
    dx = np.zeros_like(dout)
    for index in np.ndindex(dout.shape):
        dx[index] = dout[index] * keep[index] / (1 - p)
    return dx


def global_avgpool_forward(x):
    """The mean of each (H, W) plane: x (N, C, H, W) -> out (N, C)."""
    check_global_avgpool_args(x)
    N, C, H, W = x.shape
    out = np.zeros((N, C), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            out[n, c] = x[n, c].sum() / (H * W)
    return out, x.shape


def global_avgpool_backward(dout, cache):
    """dout (N, C) -> dx (N, C, H, W): each plane's gradient spread evenly over its H*W pixels."""
    N, C, H, W = cache
    dx = np.zeros((N, C, H, W), dtype=dout.dtype)
    for n in range(N):
        for c in range(C):
            dx[n, c] = dout[n, c] / (H * W)
    return dx
