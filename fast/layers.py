"""Vectorised CNN layers: the contract of ``reference.layers``, computed with im2col.

Same functions, signatures and semantics as ``reference.layers``; no Python loop
over the batch or over output positions (the only loops run over kernel
offsets). Arrays keep their dtype: float32 for training, float64 for the
gradient checks.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from reference.layers import check_labels, conv_output_size  # noqa: F401  (shared validation)


def _check_rank(name, array, rank):
    if array.ndim != rank:
        raise ValueError(f"{name} must be {rank}-D, got shape {array.shape}")


def _windows(xp, kh, kw, stride, oh, ow):
    """A read-only view of every window: xp (N, C, Hp, Wp) -> (N, OH, OW, C, KH, KW)."""
    sn, sc, sh, sw = xp.strides
    return as_strided(xp, shape=(xp.shape[0], oh, ow, xp.shape[1], kh, kw),
                      strides=(sn, sh * stride, sw * stride, sc, sh, sw), writeable=False)


def _pad(x, pad):
    if pad == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def im2col(x, kh, kw, stride=1, pad=0):
    """x: (N, C, H, W) -> cols: (N*OH*OW, C*KH*KW), one row per output position.

    The columns run over (C, KH, KW) in that order, matching ``w.reshape(F, -1)``.
    """
    N, C, H, W = x.shape
    oh = conv_output_size(H, kh, stride, pad)
    ow = conv_output_size(W, kw, stride, pad)
    windows = _windows(_pad(x, pad), kh, kw, stride, oh, ow)  # (N, OH, OW, C, KH, KW)
    return windows.reshape(N * oh * ow, C * kh * kw)  # copies


def col2im(cols, x_shape, kh, kw, stride=1, pad=0):
    """The adjoint of ``im2col``: cols (N*OH*OW, C*KH*KW) -> (N, C, H, W).

    Overlapping windows are summed, so this is not an inverse of im2col. Loops
    over the KH*KW kernel offsets, each a strided add over all positions.
    """
    N, C, H, W = x_shape
    oh = conv_output_size(H, kh, stride, pad)
    ow = conv_output_size(W, kw, stride, pad)
    cols = cols.reshape(N, oh, ow, C, kh, kw)
    xp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)  # (N, C, OH, OW)
            xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += patch
    return xp[:, :, pad:pad + H, pad:pad + W]


def conv2d_forward(x, w, b, stride=1, pad=0):
    """x: (N, C, H, W), w: (F, C, KH, KW), b: (F,) -> out: (N, F, OH, OW)."""
    _check_rank("conv input x", x, 4)
    _check_rank("conv weights w", w, 4)
    N, C, H, W = x.shape
    F, CW, KH, KW = w.shape
    if C != CW:
        raise ValueError(f"channel mismatch: x has {C} channels, w expects {CW}")
    if b.shape != (F,):
        raise ValueError(f"conv bias b must have shape ({F},), got {b.shape}")
    oh = conv_output_size(H, KH, stride, pad)
    ow = conv_output_size(W, KW, stride, pad)

    cols = im2col(x, KH, KW, stride, pad)  # (N*OH*OW, C*KH*KW)
    w_mat = w.reshape(F, -1).astype(x.dtype, copy=False)  # (F, C*KH*KW)
    out = cols @ w_mat.T + b.astype(x.dtype, copy=False)  # (N*OH*OW, F)
    out = out.reshape(N, oh, ow, F).transpose(0, 3, 1, 2)  # (N, F, OH, OW)
    return np.ascontiguousarray(out), (x.shape, cols, w, stride, pad)


def conv2d_backward(dout, cache):
    """dout: (N, F, OH, OW) -> dx: (N, C, H, W), dw: (F, C, KH, KW), db: (F,)."""
    x_shape, cols, w, stride, pad = cache
    F, C, KH, KW = w.shape
    dout_mat = dout.transpose(0, 2, 3, 1).reshape(-1, F)  # (N*OH*OW, F)
    dw = (dout_mat.T @ cols).reshape(w.shape).astype(w.dtype, copy=False)
    db = dout_mat.sum(axis=0)
    dcols = dout_mat @ w.reshape(F, -1).astype(dout.dtype, copy=False)  # (N*OH*OW, C*KH*KW)
    dx = col2im(dcols, x_shape, KH, KW, stride, pad)
    return dx, dw, db


def maxpool2d_forward(x, size=2, stride=None):
    """x: (N, C, H, W) -> out: (N, C, OH, OW); windows may overlap (stride < size)."""
    _check_rank("max-pool input x", x, 4)
    stride = size if stride is None else stride
    N, C, H, W = x.shape
    oh = conv_output_size(H, size, stride, 0)
    ow = conv_output_size(W, size, stride, 0)
    sn, sc, sh, sw = x.strides
    windows = as_strided(x, shape=(N, C, oh, ow, size, size),
                         strides=(sn, sc, sh * stride, sw * stride, sh, sw), writeable=False)
    windows = windows.reshape(N, C, oh, ow, size * size)  # copies
    # argmax returns the first maximum in row-major order: the tie rule of the contract.
    arg = windows.argmax(axis=-1)  # (N, C, OH, OW)
    out = np.take_along_axis(windows, arg[..., None], axis=-1)[..., 0]
    return out, (x.shape, x.dtype, arg, size, stride)


def maxpool2d_backward(dout, cache):
    """dout: (N, C, OH, OW) -> dx: (N, C, H, W); each window's gradient to its first maximum."""
    x_shape, dtype, arg, size, stride = cache
    _, _, oh, ow = dout.shape
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for k in range(size * size):
        i, j = divmod(k, size)
        # Strided add per kernel offset: overlapping windows accumulate.
        dx[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += np.where(arg == k, dout, 0)
    return dx


def relu_forward(x):
    """max(x, 0), elementwise, any shape."""
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """Gradient passes where x > 0; at the kink x == 0 it is 0."""
    return np.where(cache > 0, dout, 0).astype(dout.dtype, copy=False)


def affine_forward(x, w, b):
    """x: (N, ...) flattened to (N, D), w: (D, M), b: (M,) -> out: (N, M)."""
    if x.ndim < 2:
        raise ValueError(f"affine input x must be at least 2-D (N, ...), got shape {x.shape}")
    _check_rank("affine weights w", w, 2)
    x2 = x.reshape(x.shape[0], -1)  # (N, D)
    if x2.shape[1] != w.shape[0]:
        raise ValueError(f"affine size mismatch: x has {x2.shape[1]} features per sample, "
                         f"w expects {w.shape[0]}")
    if b.shape != (w.shape[1],):
        raise ValueError(f"affine bias b must have shape ({w.shape[1]},), got {b.shape}")
    out = x2 @ w.astype(x.dtype, copy=False) + b.astype(x.dtype, copy=False)
    return out, (x, w)


def affine_backward(dout, cache):
    """dout: (N, M) -> dx in x's original shape, dw: (D, M), db: (M,)."""
    x, w = cache
    x2 = x.reshape(x.shape[0], -1)  # (N, D)
    dx = (dout @ w.T.astype(dout.dtype, copy=False)).reshape(x.shape)
    dw = (x2.T @ dout).astype(w.dtype, copy=False)
    db = dout.sum(axis=0)
    return dx, dw, db


def softmax_cross_entropy(logits, y, class_weights=None):
    """Mean (or class-weighted mean) softmax cross-entropy: logits (N, K), y (N,) -> (loss, dlogits)."""
    check_labels(logits, y, class_weights)
    N, K = logits.shape
    weights = np.ones(N, dtype=logits.dtype)
    if class_weights is not None:
        weights = np.asarray(class_weights, dtype=logits.dtype)[y]
    total = weights.sum()

    shifted = logits - logits.max(axis=1, keepdims=True)  # no overflow for huge logits
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, K)
    rows = np.arange(N)
    loss = (weights * -log_probs[rows, y]).sum() / total
    dlogits = np.exp(log_probs)
    dlogits[rows, y] -= 1
    dlogits *= (weights / total)[:, None]
    return loss.astype(logits.dtype), dlogits
