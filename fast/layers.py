"""Vectorised CNN layers: the contract of ``reference.layers``, computed with im2col and GEMMs.

Same functions, signatures and semantics as ``reference.layers``, function by function; no
Python loop over the batch or over output positions. Arrays keep their dtype: float32 for
training, float64 for the gradient checks. The two implementations share only ``contract``
(argument checks and output sizes); the machinery that makes these functions fast (memory
layouts, im2col/col2im, pooling kernels, thread splitting) lives in ``fast.kernels``.

Conv outputs and the gradients flowing into convs are NCHW views of channel-major memory
(``kernels.channel_major``); every layer accepts any layout and keeps the one it is given.
"""
import math
from typing import NamedTuple, Optional, Tuple

import numpy as np

from contract import check_affine_args, check_conv_args, check_labels, check_pool_args
from fast import kernels


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
        dcols = w_t @ dout_mat  # (C*KH*KW, N*OH*OW)
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
    out = x2 @ w.astype(x.dtype, copy=False) + b.astype(x.dtype, copy=False)
    return out, AffineCache(x, w)


def affine_backward(dout, cache):
    """dout: (N, M) -> dx in x's original shape, dw: (D, M), db: (M,)."""
    x, w = cache
    x2 = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (N, D), also for an empty batch
    dx = (dout @ w.T.astype(dout.dtype, copy=False)).reshape(x.shape)
    dw = (x2.T @ dout).astype(w.dtype, copy=False)
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
