"""Vectorised CNN layers: the contract of ``reference.layers``, computed with im2col and GEMMs.

Same functions, signatures and semantics as ``reference.layers``, function by function; no
Python loop over the batch or over output positions. Arrays keep their dtype: float32 for
training, float64 for the gradient checks. The two implementations share only ``contract``
(argument checks and output sizes); the machinery that makes these functions fast (memory
layouts, im2col/col2im, pooling kernels, thread splitting) lives in ``fast.nn.kernels``.

Conv outputs and the gradients flowing into convs are NCHW views of channel-major memory
(``kernels.channel_major``); every layer accepts any layout and keeps the one it is given.
"""
import math
from typing import NamedTuple, Optional, Tuple

import numpy as np

from contract import (check_affine_args, check_batchnorm_args, check_conv_args, check_dropout_p,
                      check_global_avgpool_args, check_labels, check_pool_args)
from fast.nn import kernels


class ConvCache(NamedTuple):
    x_shape: Tuple[int, int, int, int]
    cols: np.ndarray  # im2col of x with a row of ones: (C*KH*KW + 1, N*OH*OW)
    w: np.ndarray
    stride: int
    pad: int


class PoolCache(NamedTuple):
    """Any window: which kernel offset won each window."""
    x_shape: Tuple[int, int, int, int]
    channel_major: bool
    arg: np.ndarray  # (N, C, OH, OW), the winning offset i * size + j
    size: int
    stride: int


class Pool2x2Cache(NamedTuple):
    """2x2 windows tiling the input: who won each horizontal pair, then each vertical one."""
    x_shape: Tuple[int, int, int, int]
    channel_major: bool
    right_won: np.ndarray  # (N*C, H, W/2)
    bottom_won: np.ndarray  # (N*C, H/2, W/2)


class PoolReluCache(NamedTuple):
    pool: object  # PoolCache or Pool2x2Cache
    relu_output: Optional[np.ndarray]  # fused 2x2 path: the rectified output; else None
    relu: Optional[np.ndarray]  # the pooled values the ReLU saw, when run in turn


class AffineCache(NamedTuple):
    x: np.ndarray
    w: np.ndarray


def conv2d_forward(x, w, b, stride=1, pad=0):
    """Cross-correlate ``x`` with ``w``.

    x: (N, C, H, W), w: (F, C, KH, KW), b: (F,) -> out: (N, F, OH, OW), an NCHW view of
    channel-major memory.
    """
    OH, OW = check_conv_args(x, w, b, stride, pad)
    N = x.shape[0]
    F, _, KH, KW = w.shape

    cols = kernels.im2col(x, KH, KW, stride, pad, ones_row=True)  # (C*KH*KW + 1, N*OH*OW)
    w_b = np.concatenate([w.reshape(F, -1), b[:, None]], axis=1).astype(x.dtype, copy=False)
    out = kernels.thin_product(w_b, cols)  # (F, N*OH*OW): one GEMM for the batch, bias included
    out = out.reshape(F, N, OH, OW).transpose(1, 0, 2, 3)  # (N, F, OH, OW), a view
    return out, ConvCache(x.shape, cols, w, stride, pad)


def conv2d_backward(dout, cache, need_dx=True):
    """dout: (N, F, OH, OW) -> dx: (N, C, H, W), dw: (F, C, KH, KW), db: (F,).

    With ``need_dx=False`` (a first layer, whose input is data) dx is None and its GEMM and
    col2im are skipped.
    """
    x_shape, cols, w, stride, pad = cache
    F, C, KH, KW = w.shape
    dout_mat = kernels.by_channel(dout)  # (F, N*OH*OW)
    dx = None
    if need_dx:  # first, while dout is fresh in cache
        w_t = np.ascontiguousarray(w.reshape(F, -1).T, dtype=dout.dtype)  # (C*KH*KW, F)
        dcols = kernels.gemm(w_t, dout_mat)  # (C*KH*KW, N*OH*OW)
        if kernels.keeps_size(x_shape, KH, KW, stride, pad):
            dx = kernels.col2im_keeping_size(dcols, x_shape, KH, KW, pad)
        else:
            dx = kernels.col2im(dcols, x_shape, KH, KW, stride, pad)
        del dcols
    dw_b = kernels.weight_gradient(cols, dout_mat)  # (F, C*KH*KW + 1)
    dw = dw_b[:, :-1].reshape(w.shape).astype(w.dtype, copy=False)
    db = dw_b[:, -1].astype(w.dtype, copy=False)  # the ones row: db = sum of dout
    return dx, dw, db


def maxpool2d_forward(x, size=2, stride=None):
    """Max over ``size`` x ``size`` windows, ``stride`` apart (default ``size``), no padding.

    x: (N, C, H, W) -> out: (N, C, OH, OW) in x's memory layout. Windows may overlap.
    """
    stride, OH, OW = check_pool_args(x, size, stride)
    if kernels.pools_2x2(x, size, stride):
        out, right_won, bottom_won = kernels.maxpool_2x2_forward(x)
        return out, Pool2x2Cache(x.shape, kernels.is_channel_major(x), right_won, bottom_won)
    out, arg = kernels.maxpool_windows_forward(x, size, stride, OH, OW)
    return out, PoolCache(x.shape, kernels.is_channel_major(x), arg, size, stride)


def maxpool2d_backward(dout, cache):
    """dout: (N, C, OH, OW) -> dx: (N, C, H, W), in the pooled input's memory layout.

    Each window's gradient goes to one element: the first maximum in row-major order. An
    element that is the maximum of several overlapping windows collects the sum of their
    gradients.
    """
    if isinstance(cache, Pool2x2Cache):
        return kernels.maxpool_2x2_backward(dout, cache.x_shape, cache.channel_major,
                                            cache.right_won, cache.bottom_won)
    return kernels.maxpool_windows_backward(dout, cache.arg, cache.x_shape, cache.channel_major,
                                            cache.size, cache.stride)


def relu_forward(x):
    """max(x, 0), elementwise, any shape (and x's memory layout)."""
    out = np.empty_like(x)
    kernels.elementwise(lambda x_, out_: np.maximum(x_, 0, out=out_), out, x)
    return out, x


def relu_backward(dout, cache):
    """Gradient passes where x > 0; at the kink x == 0 it is 0."""
    x = cache
    dx = np.empty_like(dout)
    kernels.elementwise(lambda d, x_, out_: np.multiply(d, x_ > 0, out=out_), dx, dout, x)
    return dx


def affine_forward(x, w, b):
    """x: (N, ...) flattened to (N, D), w: (D, M), b: (M,) -> out: (N, M)."""
    D = check_affine_args(x, w, b)
    x2 = x.reshape(x.shape[0], D)  # (N, D), also for an empty batch
    out = kernels.gemm(x2, w.astype(x.dtype, copy=False))
    out += b.astype(x.dtype, copy=False)
    return out, AffineCache(x, w)


def affine_backward(dout, cache):
    """dout: (N, M) -> dx in x's original shape, dw: (D, M), db: (M,)."""
    x, w = cache
    x2 = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (N, D), also for an empty batch
    dx = kernels.gemm(dout, w.T.astype(dout.dtype, copy=False)).reshape(x.shape)
    dw = kernels.gemm(x2.T, dout).astype(w.dtype, copy=False)
    db = dout.sum(axis=0)
    return dx, dw, db


def softmax_cross_entropy(logits, y, class_weights=None):
    """Mean (or class-weighted mean) cross-entropy of softmax(logits) against labels y.

    logits: (N, K), y: (N,) ints in [0, K) -> (loss, dlogits (N, K)).
    With class_weights (K,), the loss is sum(w[y_i] * loss_i) / sum(w[y_i]).
    """
    check_labels(logits, y, class_weights)
    N = logits.shape[0]
    weights = (np.ones(N, dtype=logits.dtype) if class_weights is None
               else np.asarray(class_weights, dtype=logits.dtype)[y])  # (N,)
    total = weights.sum()

    shifted = logits - logits.max(axis=1, keepdims=True)  # no overflow for huge logits
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, K)
    rows = np.arange(N)
    loss = (weights * -log_probs[rows, y]).sum() / total
    dlogits = np.exp(log_probs)
    dlogits[rows, y] -= 1
    dlogits *= (weights / total)[:, None]
    return loss.astype(logits.dtype), dlogits


def maxpool_relu_forward(x, size=2):
    """ReLU(max-pool(x)), a model's pool and ReLU in a row: -> (out, cache).

    The numbers of ``relu_forward(maxpool2d_forward(x, size)[0])``; on the 2x2 path the
    ReLU is applied while the pooled block is still in cache, and its backward is folded into
    the pool's, sparing two passes over the output.
    """
    stride, _, _ = check_pool_args(x, size, None)
    if kernels.pools_2x2(x, size, stride):
        out, right_won, bottom_won = kernels.maxpool_2x2_forward(x, relu=True)
        pool = Pool2x2Cache(x.shape, kernels.is_channel_major(x), right_won, bottom_won)
        return out, PoolReluCache(pool, relu_output=out, relu=None)
    pooled, pool_cache = maxpool2d_forward(x, size)
    out, relu_cache = relu_forward(pooled)
    return out, PoolReluCache(pool_cache, relu_output=None, relu=relu_cache)


def maxpool_relu_backward(dout, cache):
    """dout: the gradient of ``maxpool_relu_forward``'s output -> dx, x's shape and layout."""
    if cache.relu_output is not None:
        pool = cache.pool
        return kernels.maxpool_2x2_backward(dout, pool.x_shape, pool.channel_major, pool.right_won,
                                            pool.bottom_won, relu_output=cache.relu_output)
    return maxpool2d_backward(relu_backward(dout, cache.relu), cache.pool)


# ---------------------------------------------------------------------------------------------
# Normalisation, regularisation and pooling to a vector: batch norm, dropout, global average
# pooling. Each keeps x's memory layout (a conv's channel-major output stays channel-major, and
# so does the gradient sent back to that conv).
# ---------------------------------------------------------------------------------------------

def _sum_per_channel(a):
    """(N, C, H, W) -> (C,): sums over (N, H, W), accumulated in float64 whatever a's dtype
    or memory layout (no copy of a)."""
    return a.sum(axis=(0, 2, 3), dtype=np.float64)


def _per_channel(values, dtype=np.float64):
    """(C,) -> (C, 1, 1) in dtype, which broadcasts against (N, C, H, W)."""
    return np.asarray(values, dtype=dtype).reshape(-1, 1, 1)


class BatchNormCache(NamedTuple):
    xhat: np.ndarray  # the normalised input, in x's dtype and memory layout: (N, C, H, W)
    inv_std: np.ndarray  # 1 / sqrt(var + eps) it was normalised with, float64: (C,)
    gamma: np.ndarray  # (C,)
    training: bool  # whether mean and var were the batch's own (and so depend on x)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Spatial batch normalisation: x (N, C, H, W); gamma, beta, running_mean, running_var (C,).

    The contract of ``reference.layers.batchnorm_forward``: training mode normalises with the
    batch's mean and biased variance over (N, H, W) and updates the running statistics in place
    (the running variance with the unbiased batch variance, times m / (m - 1), m = N*H*W, or the
    biased one when m == 1); evaluation mode uses them and leaves them alone. out has x's memory
    layout. The mean is summed in float64, and the variance from the centred values (two
    passes): E[x^2] - E[x]^2 loses every digit when a channel's mean is large against its
    spread. A conv's channel-major output goes row by row (``kernels.batchnorm_rows_forward``).
    """
    check_batchnorm_args(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    N, C, H, W = x.shape
    m = N * H * W  # values per channel

    rows = kernels.channel_rows(x)
    if rows is not None:  # a conv's output: each channel one contiguous row
        xhat = kernels.new_in_layout_of(x, x.shape, zeroed=False)
        out = kernels.new_in_layout_of(x, x.shape, zeroed=False)
        mean, var, inv_std = kernels.batchnorm_rows_forward(
            rows, kernels.channel_rows(xhat), kernels.channel_rows(out), gamma, beta, eps,
            None if training else (running_mean, running_var))
        if training:
            unbiased = var * m / (m - 1) if m > 1 else var
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            running_var[...] = (1 - momentum) * running_var + momentum * unbiased
        return out, BatchNormCache(xhat, inv_std, gamma, bool(training))

    mean = _sum_per_channel(x) / m if training else running_mean.astype(np.float64)
    xhat = kernels.new_in_layout_of(x, x.shape, zeroed=False)
    # x - mean computed in float64 (the ufunc converts x chunk by chunk, no float64 copy of x)
    # and rounded once into xhat: a float32 mean of 1e4 alone would be off by 5e-4.
    np.subtract(x, _per_channel(mean), out=xhat, casting="same_kind")  # centred, for now
    if training:
        var = _sum_per_channel(np.square(xhat)) / m  # biased: normalises this very batch
        unbiased = var * m / (m - 1) if m > 1 else var  # one value: no spread to correct
        running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        running_var[...] = (1 - momentum) * running_var + momentum * unbiased
    else:
        var = running_var.astype(np.float64)
    inv_std = 1 / np.sqrt(var + eps)  # (C,), float64
    np.multiply(xhat, _per_channel(inv_std), out=xhat, casting="same_kind")
    out = kernels.new_in_layout_of(x, x.shape, zeroed=False)
    np.multiply(xhat, _per_channel(gamma, x.dtype), out=out)
    out += _per_channel(beta, x.dtype)
    return out, BatchNormCache(xhat, inv_std, gamma, bool(training))


def batchnorm_backward(dout, cache):
    """dout: (N, C, H, W) -> dx (x's memory layout), dgamma: (C,), dbeta: (C,) (gamma's dtype).

    Per channel, with the means over its m = N*H*W values:
        training:   dx = gamma / std * (dout - mean(dout) - xhat * mean(dout * xhat))
        evaluation: dx = gamma / std * dout  (mean and std are constants: a fixed affine map)
    The training form is the reference's step-by-step chain rule through the mean and the
    variance, collected: dbeta and dgamma are those two sums, so they are computed once.
    """
    xhat, inv_std, gamma, training = cache
    N, C, H, W = xhat.shape
    m = N * H * W
    rows, xhat_rows = kernels.channel_rows(dout), kernels.channel_rows(xhat)
    if rows is not None and xhat_rows is not None:  # both channel-major: row by row
        dx = kernels.new_in_layout_of(xhat, xhat.shape, zeroed=False)
        dgamma, dbeta = kernels.batchnorm_rows_backward(rows, xhat_rows, kernels.channel_rows(dx),
                                                        gamma * inv_std, training)
        return dx, dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)
    dbeta = _sum_per_channel(dout)  # (C,), float64
    dgamma = _sum_per_channel(dout * xhat)
    dx = kernels.new_in_layout_of(xhat, xhat.shape, zeroed=False)
    scale = _per_channel(gamma * inv_std, dout.dtype)
    if training:
        np.multiply(scale, dout - _per_channel(dbeta / m, dout.dtype)
                    - xhat * _per_channel(dgamma / m, dout.dtype), out=dx)
    else:
        np.multiply(scale, dout, out=dx)
    return dx, dgamma.astype(gamma.dtype), dbeta.astype(gamma.dtype)


class DropoutCache(NamedTuple):
    mask: Optional[np.ndarray]  # 0 where dropped, 1 / (1 - p) where kept; None: nothing dropped


def dropout_forward(x, p, rng, training):
    """Inverted dropout: x (any shape) -> out, x's shape, dtype and memory layout.

    The contract of ``reference.layers.dropout_forward``: the kept elements are
    ``rng.random(x.shape) >= p`` (float64 draws in C order of x.shape, so both implementations
    draw the same mask from generators in the same state) and are scaled by 1 / (1 - p). In
    evaluation mode or with p == 0, out is a copy of x and rng is not drawn from.
    """
    check_dropout_p(p)
    if not training or p == 0:
        return x.copy(), DropoutCache(None)
    keep = rng.random(x.shape) >= p
    mask = np.empty_like(x)  # x's dtype and memory layout
    np.multiply(keep, np.array(1 / (1 - p), dtype=x.dtype), out=mask)
    out = np.empty_like(x)
    np.multiply(x, mask, out=out)
    return out, DropoutCache(mask)


def dropout_backward(dout, cache):
    """dout: out's shape -> dx: dout through the forward's mask and scale."""
    if cache.mask is None:
        return dout.copy()
    dx = np.empty_like(cache.mask)  # x's memory layout
    np.multiply(dout, cache.mask, out=dx)
    return dx


class GlobalAvgPoolCache(NamedTuple):
    x_shape: tuple  # (N, C, H, W)
    channel_major: bool  # x's memory layout, which dx gets back


def global_avgpool_forward(x):
    """The mean of each (H, W) plane: x (N, C, H, W) -> out (N, C), summed in float64."""
    check_global_avgpool_args(x)
    N, C, H, W = x.shape
    out = (x.sum(axis=(2, 3), dtype=np.float64) / (H * W)).astype(x.dtype)  # (N, C)
    return out, GlobalAvgPoolCache(x.shape, kernels.is_channel_major(x))


def global_avgpool_backward(dout, cache):
    """dout (N, C) -> dx (N, C, H, W) in x's memory layout: each plane gets dout / (H*W)."""
    N, C, H, W = cache.x_shape
    if cache.channel_major:
        dx = kernels.channel_major(cache.x_shape, dout.dtype, zeroed=False)
    else:
        dx = np.empty(cache.x_shape, dtype=dout.dtype)
    dx[...] = (dout / (H * W))[:, :, None, None]  # (N, C, 1, 1), broadcast over (H, W)
    return dx
