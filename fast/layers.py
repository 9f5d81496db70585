"""Vectorised CNN layers: the contract of ``reference.layers``, computed with im2col.

Same functions, signatures and semantics as ``reference.layers``; no Python loop
over the batch or over output positions (the only loops run over kernel
offsets). Arrays keep their dtype: float32 for training, float64 for the
gradient checks.
"""
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from reference.layers import check_conv_args, conv_output_size, sample_weights  # shared validation

# Below this many elements a job runs on the calling thread: a thread hand-off costs more.
PARALLEL_MIN_ELEMENTS = 1 << 20
# Element-wise passes with temporaries work through this many input elements at a time.
BLOCK_ELEMENTS = 1 << 18
_executor = None


def _over_batch(job, n, elements):
    """Run ``job(lo, hi)`` over chunks [lo, hi) covering range(n), one per core: n counts
    images, pooling planes or elements, whatever the job splits.

    The memory-bound copies, adds and comparisons here run single-threaded in
    NumPy, which releases the GIL inside them: splitting the work between
    threads lets every core work (BLAS already does so for the GEMMs). Chunks
    touch disjoint parts of every array, and each element gets exactly the
    operations it would get in one piece, so results are bit-for-bit the same.
    """
    global _executor
    workers = min(os.cpu_count() or 1, n)
    if workers < 2 or elements < PARALLEL_MIN_ELEMENTS:
        job(0, n)
        return
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=os.cpu_count() - 1, thread_name_prefix="fast-layers")
    bounds = np.linspace(0, n, workers + 1).astype(int)
    # the calling thread takes the first chunk itself: one hand-off fewer per call
    futures = [_executor.submit(job, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    try:
        job(bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()  # waits for every chunk; re-raises a worker's exception here


def _in_blocks(job, size):
    """``job(lo, hi)`` as a sequence of calls on sub-ranges of at most ``size``, so that
    the temporaries of each call stay in the core's cache instead of going to memory."""
    def blocked(lo, hi):
        for start in range(lo, hi, size):
            job(start, min(start + size, hi))
    return blocked


def _check_rank(name, array, rank):
    if array.ndim != rank:
        raise ValueError(f"{name} must be {rank}-D, got shape {array.shape}")


def _offset_slices(k, size, out_size, stride, pad):
    """For kernel offset k: the output positions whose input (o*stride + k - pad) lies inside
    [0, size), as (output slice, input slice). Padding positions are simply skipped."""
    lo = max(0, -(-(pad - k) // stride))  # ceil((pad - k) / stride), at least 0
    hi = min(out_size - 1, (size - 1 + pad - k) // stride)
    if hi < lo:
        return None
    first = lo * stride + k - pad
    return slice(lo, hi + 1), slice(first, first + (hi - lo) * stride + 1, stride)


def _kernel_offsets(kh, kw, h, w, oh, ow, stride, pad):
    """(i, j, row slices, column slices) for every kernel offset; the slices are
    None for an offset that only ever sees padding."""
    offsets = []
    for i in range(kh):
        rows = _offset_slices(i, h, oh, stride, pad)
        for j in range(kw):
            cols = _offset_slices(j, w, ow, stride, pad)
            reaches = rows is not None and cols is not None
            offsets.append((i, j, rows if reaches else None, cols if reaches else None))
    return offsets


def _covers_everything(rows, cols, h, w):
    """Whether an offset's output positions read every input pixel exactly once."""
    return (rows is not None and rows[1] == slice(0, h, 1) and cols[1] == slice(0, w, 1))


def channel_major(shape, dtype, zeroed=True):
    """A zeroed (or, if not ``zeroed``, uninitialised) (N, C, H, W) array whose memory
    is laid out as (C, N, H, W).

    The GEMMs below want the batch folded into one long axis per channel
    (C, N*H*W); an NCHW *view* of channel-major memory gives them that with no
    transposed copies, while every function still sees the contract's shapes.
    """
    n, c, h, w = shape
    return (np.zeros if zeroed else np.empty)((c, n, h, w), dtype=dtype).transpose(1, 0, 2, 3)


def _by_channel(a):
    """(N, C, H, W) -> (C, N*H*W): a free view for channel-major memory, else one copy."""
    n, c, h, w = a.shape
    return a.transpose(1, 0, 2, 3).reshape(c, n * h * w)


def im2col(x, kh, kw, stride=1, pad=0):
    """x: (N, C, H, W) -> cols: (C*KH*KW, N*OH*OW), one column per output position.

    Rows run over (C, KH, KW), matching ``w.reshape(F, -1)``, and columns over
    (N, OH, OW), so the whole batch's convolution is the single GEMM
    ``w_mat @ cols``. Built by one strided copy per kernel offset straight from
    x, with no padded copy: positions that fall on padding stay zero.
    """
    return _im2col(x, kh, kw, stride, pad, ones_row=False)


def _im2col(x, kh, kw, stride, pad, ones_row):
    """im2col, with an extra last row of ones when ``ones_row``: then one GEMM
    against [w_mat | b] adds the bias, and the GEMM for dw yields db as its last
    column, saving two passes over the largest arrays."""
    N, C, H, W = x.shape
    oh = conv_output_size(H, kh, stride, pad)
    ow = conv_output_size(W, kw, stride, pad)
    rows = C * kh * kw + ones_row
    buffer = np.empty(rows * N * oh * ow, dtype=x.dtype)
    cols = buffer[:C * kh * kw * N * oh * ow].reshape(C, kh, kw, N, oh, ow)
    if ones_row:
        buffer[C * kh * kw * N * oh * ow:] = 1
    x_c = x.transpose(1, 0, 2, 3)  # (C, N, H, W), a view
    offsets = _kernel_offsets(kh, kw, H, W, oh, ow, stride, pad)

    def fill(lo, hi):
        for i, j, rows_, cols_ in offsets:
            block = cols[:, i, j, lo:hi]  # (C, n, OH, OW)
            if rows_ is None:
                block[...] = 0
                continue
            (out_rows, in_rows), (out_cols, in_cols) = rows_, cols_
            block[:, :, out_rows, out_cols] = x_c[:, lo:hi, in_rows, in_cols]
            # Zero only the border strips that fall on padding, not the whole buffer.
            block[:, :, :out_rows.start] = 0
            block[:, :, out_rows.stop:] = 0
            block[:, :, out_rows, :out_cols.start] = 0
            block[:, :, out_rows, out_cols.stop:] = 0

    _over_batch(fill, N, cols.size)
    return buffer.reshape(rows, N * oh * ow)


def col2im(cols, x_shape, kh, kw, stride=1, pad=0):
    """The adjoint of ``im2col``: cols (C*KH*KW, N*OH*OW) -> (N, C, H, W), channel-major.

    Overlapping windows are summed (so this is not an inverse of im2col): one
    strided add per kernel offset; values that fell on padding are dropped.
    """
    N, C, H, W = x_shape
    oh = conv_output_size(H, kh, stride, pad)
    ow = conv_output_size(W, kw, stride, pad)
    cols = cols.reshape(C, kh, kw, N, oh, ow)
    offsets = [o for o in _kernel_offsets(kh, kw, H, W, oh, ow, stride, pad) if o[2] is not None]
    # An offset that covers every pixel once (stride 1, "same" padding: the centre)
    # goes first and is assigned, which spares zeroing the result.
    offsets.sort(key=lambda o: not _covers_everything(o[2], o[3], H, W))
    assign_first = bool(offsets) and _covers_everything(offsets[0][2], offsets[0][3], H, W)
    x = channel_major(x_shape, cols.dtype, zeroed=not assign_first)
    x_c = x.transpose(1, 0, 2, 3)  # (C, N, H, W), contiguous

    def accumulate(lo, hi):
        for n, (i, j, (out_rows, in_rows), (out_cols, in_cols)) in enumerate(offsets):
            source = cols[:, i, j, lo:hi, out_rows, out_cols]
            if n == 0 and assign_first:
                x_c[:, lo:hi] = source
            else:
                x_c[:, lo:hi, in_rows, in_cols] += source

    _over_batch(accumulate, N, cols.size)
    return x


def _keeps_size(x_shape, kh, kw, stride, pad):
    """Stride 1 and an output as large as the input ("same" padding, odd kernels)."""
    _, _, H, W = x_shape
    return stride == 1 and conv_output_size(H, kh, 1, pad) == H and conv_output_size(W, kw, 1, pad) == W


def _col2im_keeping_size(cols, x_shape, kh, kw, pad):
    """col2im for a stride-1 conv whose output has the input's size; overwrites parts of cols.

    Then output position p and input position p + s, for a kernel offset whose
    shift is s = (i - pad) * W + (j - pad), are s apart in the flat (N*H*W) index
    too, so each offset's gradient is added to the input gradient in one long
    contiguous run per channel instead of one short row at a time. A run also
    carries the values of positions whose input falls on padding; those wrap into
    a neighbouring row or image, so they are zeroed in cols first.
    """
    N, C, H, W = x_shape
    length = N * H * W
    blocks = cols.reshape(C, kh, kw, N, H, W)
    shifts = [(i, j, (i - pad) * W + (j - pad)) for i in range(kh) for j in range(kw) if (i, j) != (pad, pad)]

    def clear_padding(lo, hi):
        for i, j, _ in shifts:
            block = blocks[:, i, j, lo:hi]
            rows, columns = i - pad, j - pad  # where the input position moves off the image
            if rows:
                block[:, :, slice(H - rows, None) if rows > 0 else slice(None, -rows)] = 0
            if columns:
                block[:, :, :, slice(W - columns, None) if columns > 0 else slice(None, -columns)] = 0

    x = channel_major(x_shape, cols.dtype, zeroed=False)
    x_flat = x.transpose(1, 0, 2, 3).reshape(C, length)  # a view
    flat = blocks.reshape(C, kh, kw, length)

    def accumulate(lo, hi):
        start, stop = lo * H * W, hi * H * W  # this chunk's images in the flat index
        x_flat[:, start:stop] = flat[:, pad, pad, start:stop]  # the centre offset: s = 0
        for i, j, shift in shifts:
            first, last = max(start, shift), min(stop, length + shift)  # q whose source q - s exists
            if first < last:
                x_flat[:, first:last] += flat[:, i, j, first - shift:last - shift]

    _over_batch(clear_padding, N, cols.size)
    _over_batch(accumulate, N, cols.size)  # after all clearing: a run may read another chunk's images
    return x


def conv2d_forward(x, w, b, stride=1, pad=0):
    """x: (N, C, H, W), w: (F, C, KH, KW), b: (F,) -> out: (N, F, OH, OW).

    out is an NCHW view of channel-major memory (see ``channel_major``).
    """
    oh, ow = check_conv_args(x, w, b, stride, pad)
    N = x.shape[0]
    F, _, KH, KW = w.shape

    cols = _im2col(x, KH, KW, stride, pad, ones_row=True)  # (C*KH*KW + 1, N*OH*OW)
    w_b = np.concatenate([w.reshape(F, -1), b[:, None]], axis=1).astype(x.dtype, copy=False)
    out = _thin_product(w_b, cols)  # (F, N*OH*OW): one GEMM for the batch, bias included
    out = out.reshape(F, N, oh, ow).transpose(1, 0, 2, 3)  # (N, F, OH, OW), a view
    return out, (x.shape, cols, w, stride, pad)


# A layer with at most this many weights (a first layer: one input channel, few filters) has
# its output and weight gradient computed over runs of RUN output positions; see _thin_product.
SMALL_WEIGHTS = 256
RUN = 4096


def _weight_gradient(cols, dout_mat):
    """dout_mat @ cols.T: (F, P) x (R, P) -> (F, R), a sum over the P output positions.

    Asked for as (cols @ dout_mat.T).T, BLAS reads both operands in place and
    runs 20-30 % faster on these shapes. A tiny result (a first layer: one input
    channel, few filters) is summed over runs of positions instead: OpenBLAS runs
    such a long, thin product at a fraction of its speed (6 ms against 3.6 ms
    for 16 x 10 entries over 524288 positions, on 2 cores).
    """
    if cols.shape[0] * dout_mat.shape[0] > SMALL_WEIGHTS:
        return (cols @ dout_mat.T).T
    total = np.zeros((cols.shape[0], dout_mat.shape[0]), dtype=np.result_type(cols, dout_mat))
    for start in range(0, cols.shape[1], RUN):
        total += cols[:, start:start + RUN] @ dout_mat[:, start:start + RUN].T
    return total.T


def _thin_product(a, b):
    """a @ b; for a tiny a (a first layer's weights), over runs of b's columns, split between
    the cores. OpenBLAS takes such short products on its path for small matrices, which
    writes the result once, where one big call first zeroes it and then has its two threads
    hand work to each other: 4.5 ms against 5.9 ms a step for the first conv of the speed
    benchmark (16 filters of 3x3 over 524288 positions)."""
    if a.size > SMALL_WEIGHTS:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    runs = -(-b.shape[1] // RUN)

    def job(lo, hi):
        for r in range(lo, hi):
            np.matmul(a, b[:, r * RUN:(r + 1) * RUN], out=out[:, r * RUN:(r + 1) * RUN])

    _over_batch(job, runs, out.size)
    return out


def conv2d_backward(dout, cache, need_dx=True):
    """dout: (N, F, OH, OW) -> dx: (N, C, H, W), dw: (F, C, KH, KW), db: (F,).

    With ``need_dx=False`` (a first layer, whose input is data) dx is None and its
    GEMM and col2im are skipped.
    """
    x_shape, cols, w, stride, pad = cache
    F, C, KH, KW = w.shape
    dout_mat = _by_channel(dout)  # (F, N*OH*OW)
    dx = None
    if need_dx:  # first, while dout is fresh in cache
        w_t = np.ascontiguousarray(w.reshape(F, -1).T, dtype=dout.dtype)  # (C*KH*KW, F)
        dcols = w_t @ dout_mat  # (C*KH*KW, N*OH*OW)
        if _keeps_size(x_shape, KH, KW, stride, pad):
            dx = _col2im_keeping_size(dcols, x_shape, KH, KW, pad)
        else:
            dx = col2im(dcols, x_shape, KH, KW, stride, pad)
        del dcols
    dw_b = _weight_gradient(cols, dout_mat)  # (F, C*KH*KW + 1)
    dw = dw_b[:, :-1].reshape(w.shape).astype(w.dtype, copy=False)
    db = dw_b[:, -1].astype(w.dtype, copy=False)  # the ones row: db = sum of dout
    return dx, dw, db


def maxpool2d_forward(x, size=2, stride=None):
    """x: (N, C, H, W) -> out: (N, C, OH, OW); windows may overlap (stride < size).

    out keeps x's memory layout (channel-major or not), so a conv below gets its
    layout back. The common 2x2 window with stride 2 on even sizes has a faster
    path (``_maxpool_2x2_forward``); both send the gradient to the first maximum
    in row-major order, the tie rule of the contract.
    """
    _check_rank("max-pool input x", x, 4)
    stride = size if stride is None else stride
    N, C, H, W = x.shape
    oh = conv_output_size(H, size, stride, 0)
    ow = conv_output_size(W, size, stride, 0)
    if _pools_2x2(x, size, stride):
        return _maxpool_2x2_forward(x)
    out = _like(x, (N, C, oh, ow), zeroed=False)
    arg = np.zeros(out.shape, dtype=np.uint16 if size * size > 255 else np.uint8)
    views = [x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
             for i in range(size) for j in range(size)]  # offset k = i * size + j, row-major

    def pool(lo, hi):
        best, best_arg = out[lo:hi], arg[lo:hi]
        best[...] = views[0][lo:hi]
        for k in range(1, size * size):
            view = views[k][lo:hi]
            greater = view > best  # strictly: on a tie the earlier offset keeps the lead
            np.maximum(best, view, out=best)
            # k grows with the loop, so max() marks k exactly where this offset took the lead
            # (arithmetic on small ints is several times faster than a masked copy).
            np.maximum(best_arg, greater.view(np.uint8) * np.array(k, arg.dtype), out=best_arg)

    _over_batch(pool, N, x.size)
    return out, ("windows", x.shape, _is_channel_major(x), arg, size, stride)


def _pools_2x2(x, size, stride):
    """Whether ``_maxpool_2x2_forward`` applies: 2x2 windows tiling even H and W, in
    planes laid out back to back."""
    _, _, H, W = x.shape
    return size == 2 and stride == 2 and H % 2 == 0 and W % 2 == 0 and _planes(x) is not None


def _maxpool_2x2_forward(x, relu=False):
    """2x2 windows, stride 2, even H and W: two pairwise maxima over flat memory.

    First each horizontal pair (x[2j], x[2j+1]) of a row, which are neighbours in
    memory whatever the plane; then each vertical pair of those row maxima, which
    are neighbouring half-rows. Both passes run over long strided or contiguous
    runs instead of one short row at a time, the cost of the general path. The
    order keeps the tie rule: the first column wins a tie within a row, then the
    top row wins a tie between rows, so the window's first maximum in row-major
    order is chosen. Two masks say who won: ``right_won`` (one per horizontal
    pair) and ``bottom_won`` (one per window). With ``relu`` the output is then
    rectified in place, while it is still in the core's cache.
    """
    N, C, H, W = x.shape
    out = _like(x, (N, C, H // 2, W // 2), zeroed=False)
    planes, out_planes = _planes(x), _planes(out)  # (N*C, H, W) and (N*C, H/2, W/2) views
    right_won = np.empty((len(planes), H, W // 2), dtype=bool)
    bottom_won = np.empty(out_planes.shape, dtype=bool)

    def pool(lo, hi):
        flat = planes[lo:hi].reshape(-1)
        left, right = flat[0::2], flat[1::2]
        np.greater(right, left, out=right_won[lo:hi].reshape(-1))
        row_max = np.maximum(left, right).reshape(-1, 2, W // 2)  # (rows, top/bottom, W/2)
        top, bottom = row_max[:, 0], row_max[:, 1]
        np.greater(bottom, top, out=bottom_won[lo:hi].reshape(-1, W // 2))
        pooled = out_planes[lo:hi].reshape(-1, W // 2)
        np.maximum(top, bottom, out=pooled)
        if relu:
            np.maximum(pooled, 0, out=pooled)

    _over_batch(_in_blocks(pool, max(1, BLOCK_ELEMENTS // (H * W))), len(planes), x.size)
    return out, ("2x2", x.shape, _is_channel_major(x), right_won, bottom_won)


def _planes(x):
    """(N, C, H, W) -> its memory as (planes, H, W), a view, in memory order (C-major for
    channel-major arrays); None when the (H, W) planes are not contiguous back to back."""
    N, C, H, W = x.shape
    memory = x.transpose(1, 0, 2, 3) if _is_channel_major(x) else x
    if not memory.flags.c_contiguous:
        return None
    return memory.reshape(N * C, H, W)


def _like(x, shape, zeroed):
    """A new (N, C, H, W) array in x's layout: channel-major if x is, else C order."""
    if _is_channel_major(x):
        return channel_major(shape, x.dtype, zeroed=zeroed)
    return (np.zeros if zeroed else np.empty)(shape, dtype=x.dtype)


def _is_channel_major(x):
    return x.ndim == 4 and x.strides[1] > x.strides[0]


def maxpool2d_backward(dout, cache):
    """dout: (N, C, OH, OW) -> dx: (N, C, H, W); each window's gradient to its first maximum.

    dx has the memory layout of the pooled input, so a conv below gets its
    gradient in the layout it wants.
    """
    if cache[0] == "2x2":
        return _maxpool_2x2_backward(dout, cache)
    _, x_shape, channel_major_input, arg, size, stride = cache
    _, _, oh, ow = dout.shape
    # When the windows tile the input exactly, every element of dx is written once below.
    tiles = stride == size and x_shape[2] == size * oh and x_shape[3] == size * ow
    if channel_major_input:
        dx = channel_major(x_shape, dout.dtype, zeroed=not tiles)
    else:
        dx = (np.empty if tiles else np.zeros)(x_shape, dtype=dout.dtype)

    def scatter(lo, hi):
        for k in range(size * size):
            i, j = divmod(k, size)
            target = dx[lo:hi, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            if stride >= size:  # disjoint windows: each element is written once
                np.multiply(dout[lo:hi], arg[lo:hi] == k, out=target)
            else:  # overlapping windows accumulate
                target += dout[lo:hi] * (arg[lo:hi] == k)

    _over_batch(scatter, len(dout), dx.size)
    return dx


def _maxpool_2x2_backward(dout, cache, relu_output=None):
    """The two pairwise maxima of ``_maxpool_2x2_forward``, undone in reverse order.

    Each pair's gradient goes to its winner and zero to the other. The loser's
    share is written as ``g - winner's share``, which is g or 0 exactly, one
    subtraction instead of a second mask. With ``relu_output`` (the forward's
    rectified output) dout first passes the ReLU: it is kept where the output is > 0.
    """
    _, x_shape, channel_major_input, right_won, bottom_won = cache
    N, C, H, W = x_shape
    dx = channel_major(x_shape, dout.dtype, zeroed=False) if channel_major_input else \
        np.empty(x_shape, dout.dtype)
    dx_planes = _planes(dx)
    # dout's planes in the order of the masks (a copy only if dout's layout differs)
    g_planes = (dout.transpose(1, 0, 2, 3) if channel_major_input else dout).reshape(N * C, H // 2, W // 2)

    relu_planes = None if relu_output is None else _planes(relu_output)

    def scatter(lo, hi):
        g = g_planes[lo:hi].reshape(-1, W // 2)
        if relu_planes is not None:
            g = g * (relu_planes[lo:hi].reshape(-1, W // 2) > 0)
        row_grad = np.empty((len(g), 2, W // 2), dout.dtype)  # gradient of each row's pair maxima
        np.multiply(g, bottom_won[lo:hi].reshape(-1, W // 2), out=row_grad[:, 1])
        np.subtract(g, row_grad[:, 1], out=row_grad[:, 0])
        row_grad = row_grad.reshape(-1)
        flat = dx_planes[lo:hi].reshape(-1)
        np.multiply(row_grad, right_won[lo:hi].reshape(-1), out=flat[1::2])
        np.subtract(row_grad, flat[1::2], out=flat[0::2])

    _over_batch(_in_blocks(scatter, max(1, BLOCK_ELEMENTS // (H * W))), N * C, dx.size)
    return dx


def maxpool_relu_forward(x, size=2):
    """ReLU(max-pool(x)), a model's pool and ReLU in a row: -> (out, cache).

    The numbers of ``relu_forward(maxpool2d_forward(x, size)[0])``; on the fast
    2x2 path the ReLU is applied while the pooled block is still in cache, and its
    backward is folded into the pool's, sparing two passes over the output.
    """
    _check_rank("max-pool input x", x, 4)
    if _pools_2x2(x, size, size):
        out, pool_cache = _maxpool_2x2_forward(x, relu=True)
        return out, ("fused", pool_cache, out)
    pooled, pool_cache = maxpool2d_forward(x, size)
    out, relu_cache = relu_forward(pooled)
    return out, ("in turn", pool_cache, relu_cache)


def maxpool_relu_backward(dout, cache):
    """dout: the gradient of ``maxpool_relu_forward``'s output -> dx, x's shape and layout."""
    how, pool_cache, rest = cache
    if how == "fused":
        return _maxpool_2x2_backward(dout, pool_cache, relu_output=rest)
    return maxpool2d_backward(relu_backward(dout, rest), pool_cache)


def relu_forward(x):
    """max(x, 0), elementwise, any shape."""
    out = np.empty_like(x)  # in x's memory layout
    _elementwise(lambda x_, out_: np.maximum(x_, 0, out=out_), out, x)
    return out, x


def relu_backward(dout, cache):
    """Gradient passes where x > 0; at the kink x == 0 it is 0."""
    dx = np.empty_like(dout)
    _elementwise(lambda d, x_, out_: np.multiply(d, x_ > 0, out=out_), dx, dout, cache)
    return dx


def _flat(a):
    """a's elements as a 1-D view in memory order: for C-order and channel-major arrays."""
    if a.flags.c_contiguous:
        return a.reshape(-1)
    if _is_channel_major(a) and a.transpose(1, 0, 2, 3).flags.c_contiguous:
        return a.transpose(1, 0, 2, 3).reshape(-1)
    return None


def _elementwise(job, out, *inputs):
    """``job(*inputs, out)`` for an element-wise job, split between cores (in cache-sized
    blocks) when every array has out's memory layout; in one piece otherwise."""
    small = out.size < PARALLEL_MIN_ELEMENTS and out.size <= BLOCK_ELEMENTS  # one piece it is
    flats = [] if small else [_flat(a) for a in (*inputs, out)]
    if not flats or any(f is None for f in flats) or any(a.strides != out.strides for a in inputs):
        job(*inputs, out)
        return
    _over_batch(_in_blocks(lambda lo, hi: job(*(f[lo:hi] for f in flats)), BLOCK_ELEMENTS),
                out.size, out.size)


def affine_forward(x, w, b):
    """x: (N, ...) flattened to (N, D), w: (D, M), b: (M,) -> out: (N, M)."""
    if x.ndim < 2:
        raise ValueError(f"affine input x must be at least 2-D (N, ...), got shape {x.shape}")
    _check_rank("affine weights w", w, 2)
    x2 = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (N, D), also for an empty batch
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
    x2 = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (N, D), also for an empty batch
    dx = (dout @ w.T.astype(dout.dtype, copy=False)).reshape(x.shape)
    dw = (x2.T @ dout).astype(w.dtype, copy=False)
    db = dout.sum(axis=0)
    return dx, dw, db


def softmax_cross_entropy(logits, y, class_weights=None):
    """Mean (or class-weighted mean) softmax cross-entropy: logits (N, K), y (N,) -> (loss, dlogits)."""
    weights = sample_weights(logits, y, class_weights)
    total = weights.sum()
    N = logits.shape[0]

    shifted = logits - logits.max(axis=1, keepdims=True)  # no overflow for huge logits
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, K)
    rows = np.arange(N)
    loss = (weights * -log_probs[rows, y]).sum() / total
    dlogits = np.exp(log_probs)
    dlogits[rows, y] -= 1
    dlogits *= (weights / total)[:, None]
    return loss.astype(logits.dtype), dlogits


# ---------------------------------------------------------------------------------------------
# Normalisation, regularisation and pooling to a vector: batch norm, dropout, global average
# pooling. Each keeps x's memory layout (a conv's channel-major output stays channel-major, and
# so does the gradient sent back to that conv).
# ---------------------------------------------------------------------------------------------

# Imported here rather than at the top while the top of this module is being rearranged; they
# belong with the imports there (the shared validation next to check_conv_args).
from typing import NamedTuple, Optional  # noqa: E402

from reference.layers import check_batchnorm_args, check_dropout_p  # noqa: E402


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
    layout. The statistics are accumulated in float64, the variance from the centred values
    (two passes): E[x^2] - E[x]^2 loses every digit when a channel's mean is large against its
    spread.
    """
    check_batchnorm_args(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    N, C, H, W = x.shape
    m = N * H * W  # values per channel

    mean = _sum_per_channel(x) / m if training else running_mean.astype(np.float64)
    xhat = _like(x, x.shape, zeroed=False)
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
    out = _like(x, x.shape, zeroed=False)
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
    dbeta = _sum_per_channel(dout)  # (C,), float64
    dgamma = _sum_per_channel(dout * xhat)
    dx = _like(xhat, xhat.shape, zeroed=False)
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
    _check_rank("global average pooling input x", x, 4)
    N, C, H, W = x.shape
    if H * W == 0:
        raise ValueError(f"global average pooling needs planes of at least 1x1, "
                         f"got x of shape {x.shape}")
    out = (x.sum(axis=(2, 3), dtype=np.float64) / (H * W)).astype(x.dtype)  # (N, C)
    return out, GlobalAvgPoolCache(x.shape, _is_channel_major(x))


def global_avgpool_backward(dout, cache):
    """dout (N, C) -> dx (N, C, H, W) in x's memory layout: each plane gets dout / (H*W)."""
    N, C, H, W = cache.x_shape
    if cache.channel_major:
        dx = channel_major(cache.x_shape, dout.dtype, zeroed=False)
    else:
        dx = np.empty(cache.x_shape, dtype=dout.dtype)
    dx[...] = (dout / (H * W))[:, :, None, None]  # (N, C, 1, 1), broadcast over (H, W)
    return dx
