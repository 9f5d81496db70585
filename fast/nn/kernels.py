"""The machinery behind ``fast.nn.layers``: memory layouts, im2col/col2im, pooling kernels, threads.

``fast.nn.layers`` reads as the layer contract; what makes it fast lives here:

- **Layout.** Conv outputs and gradients live in channel-major memory (C, N, H, W) behind NCHW
  views, so the GEMMs see one long (C, N*H*W) matrix per tensor and need no transposed copies.
- **im2col / col2im**: one strided copy (or add) per kernel offset, straight from the unpadded
  input. A "same" convolution's col2im (stride 1, output as large as the input) goes by flat runs.
- **Thin products**: a first layer (one input channel, few filters) multiplies over runs of
  positions, which BLAS handles better than one long, thin product.
- **2x2 max-pooling** as two pairwise maxima over flat memory, in cache-sized blocks, with the
  ReLU optionally fused in; other windows take a general path over kernel offsets.
- **Threads**: NumPy's element-wise passes run on one core and release the GIL, so the big ones
  are split between the cores (``split_work``); so are the GEMMs (``gemm``, ``summed_gemm``,
  ``thin_product``) where BLAS runs on one thread: inside ``runtime.kernel_threads()``, which
  every pass of a network enters, or after ``runtime.configure_process``. Elsewhere (a layer
  function called on its own) BLAS's threads split them, and the project's threads leave them
  whole, so that the two never run side by side.

Every function here computes exactly what its docstring says, for any shape it accepts; which
path runs is an optimisation, and the tests draw each path on purpose against ``reference``.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from contract import conv_output_size
from fast import runtime
from fast.runtime import cpu_threads

# Below this many elements a job runs on the calling thread: a thread hand-off costs more.
PARALLEL_MIN_ELEMENTS = 1 << 20
# Element-wise passes with temporaries work through this many input elements at a time.
BLOCK_ELEMENTS = 1 << 18
# A layer with at most this many weights (a first layer: one input channel, few filters) has
# its output and weight gradient computed over runs of RUN output positions; see thin_product.
SMALL_WEIGHTS = 256
RUN = 4096

_executor = None


# --------------------------------------------------------------------------- threads

def split_work(job, n, elements):
    """Run ``job(lo, hi)`` over chunks [lo, hi) covering range(n), one per thread
    (``runtime.cpu_threads``): n counts images, pooling planes or elements, whatever the job
    splits.

    The memory-bound copies, adds and comparisons here run single-threaded in NumPy, which
    releases the GIL inside them: splitting the work between threads lets every core work.
    Chunks touch disjoint parts of every array, and each element gets exactly the operations
    it would get in one piece, so results are bit-for-bit the same. Jobs of fewer than
    ``PARALLEL_MIN_ELEMENTS`` elements run in one piece on the calling thread.
    """
    global _executor
    workers = min(cpu_threads(), n)
    if workers < 2 or elements < PARALLEL_MIN_ELEMENTS:
        job(0, n)
        return
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=max(cpu_threads() - 1, 1), thread_name_prefix="fast-kernels")
    bounds = np.linspace(0, n, workers + 1).astype(int)
    # the calling thread takes the first chunk itself: one hand-off fewer per call
    futures = [_executor.submit(job, lo, hi) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    try:
        job(bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()  # waits for every chunk; re-raises a worker's exception here


def in_blocks(job, size):
    """``job(lo, hi)`` as a sequence of calls on sub-ranges of at most ``size``, so that
    the temporaries of each call stay in the core's cache instead of going to memory."""
    def blocked(lo, hi):
        for start in range(lo, hi, size):
            job(start, min(start + size, hi))
    return blocked


# --------------------------------------------------------------------------- memory layouts

def channel_major(shape, dtype, zeroed=True):
    """A zeroed (or, if not ``zeroed``, uninitialised) (N, C, H, W) array whose memory
    is laid out as (C, N, H, W).

    The GEMMs want the batch folded into one long axis per channel (C, N*H*W); an NCHW
    *view* of channel-major memory gives them that with no transposed copies, while every
    layer still sees the contract's shapes.
    """
    n, c, h, w = shape
    return (np.zeros if zeroed else np.empty)((c, n, h, w), dtype=dtype).transpose(1, 0, 2, 3)


def is_channel_major(x):
    """Whether the (N, C, H, W) array x is channel-major: each channel's N*H*W values together."""
    return x.ndim == 4 and x.strides[1] > x.strides[0]


def by_channel(a):
    """(N, C, H, W) -> (C, N*H*W): a free view for channel-major memory, else one copy."""
    n, c, h, w = a.shape
    return a.transpose(1, 0, 2, 3).reshape(c, n * h * w)


def new_in_layout_of(x, shape, zeroed):
    """A new (N, C, H, W) array of ``shape`` in x's layout: channel-major if x is, else C order."""
    if is_channel_major(x):
        return channel_major(shape, x.dtype, zeroed=zeroed)
    return (np.zeros if zeroed else np.empty)(shape, dtype=x.dtype)


def image_planes(x):
    """x's (H, W) planes as one (N*C, H, W) view in memory order; None if not back to back."""
    N, C, H, W = x.shape
    memory = x.transpose(1, 0, 2, 3) if is_channel_major(x) else x
    if not memory.flags.c_contiguous:
        return None
    return memory.reshape(N * C, H, W)


def flat_view(a):
    """a's elements as a 1-D view in memory order; None unless a is C-order or channel-major."""
    if a.flags.c_contiguous:
        return a.reshape(-1)
    if is_channel_major(a) and a.transpose(1, 0, 2, 3).flags.c_contiguous:
        return a.transpose(1, 0, 2, 3).reshape(-1)
    return None


def elementwise(job, out, *inputs):
    """``job(*inputs, out)`` for an element-wise job, split between cores (in cache-sized
    blocks) when every array has out's memory layout; in one piece otherwise."""
    small = out.size < PARALLEL_MIN_ELEMENTS and out.size <= BLOCK_ELEMENTS  # one piece it is
    flats = [] if small else [flat_view(a) for a in (*inputs, out)]
    if not flats or any(f is None for f in flats) or any(a.strides != out.strides for a in inputs):
        job(*inputs, out)
        return
    split_work(in_blocks(lambda lo, hi: job(*(f[lo:hi] for f in flats)), BLOCK_ELEMENTS),
               out.size, out.size)


# --------------------------------------------------------------------------- im2col, col2im

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


def im2col(x, kh, kw, stride=1, pad=0, ones_row=False):
    """x: (N, C, H, W) -> cols: (C*KH*KW [+ 1], N*OH*OW), one column per output position.

    Rows run over (C, KH, KW), matching ``w.reshape(F, -1)``, and columns over (N, OH, OW),
    so the whole batch's convolution is the single GEMM ``w_mat @ cols``. Built by one
    strided copy per kernel offset straight from x, with no padded copy: positions that fall
    on padding are zero. With ``ones_row`` a last row of ones is appended: then one GEMM
    against [w_mat | b] adds the bias, and the GEMM for dw yields db as its last column.
    """
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

    split_work(fill, N, cols.size)
    return buffer.reshape(rows, N * oh * ow)


def col2im(cols, x_shape, kh, kw, stride=1, pad=0):
    """The adjoint of ``im2col``: cols (C*KH*KW, N*OH*OW) -> (N, C, H, W), channel-major.

    Overlapping windows are summed (so this is not an inverse of im2col): one strided add per
    kernel offset; values that fell on padding are dropped. ``cols`` is left as it was.
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

    split_work(accumulate, N, cols.size)
    return x


def keeps_size(x_shape, kh, kw, stride, pad):
    """Stride 1 and an output as large as the input ("same" padding, odd kernels)."""
    _, _, H, W = x_shape
    return stride == 1 and conv_output_size(H, kh, 1, pad) == H and conv_output_size(W, kw, 1, pad) == W


def col2im_keeping_size(cols, x_shape, kh, kw, pad):
    """col2im for a stride-1 conv whose output has the input's size; overwrites parts of cols.

    Then output position p and input position p + s, for a kernel offset whose shift is
    s = (i - pad) * W + (j - pad), are s apart in the flat (N*H*W) index too, so each offset's
    gradient is added to the input gradient in one long contiguous run per channel instead of
    one short row at a time. A run also carries the values of positions whose input falls on
    padding; those wrap into a neighbouring row or image, so they are zeroed in cols first.
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
    flat_cols = blocks.reshape(C, kh, kw, length)

    def accumulate(lo, hi):
        start, stop = lo * H * W, hi * H * W  # this chunk's images in the flat index
        x_flat[:, start:stop] = flat_cols[:, pad, pad, start:stop]  # the centre offset: s = 0
        for i, j, shift in shifts:
            first, last = max(start, shift), min(stop, length + shift)  # q whose source q - s exists
            if first < last:
                x_flat[:, first:last] += flat_cols[:, i, j, first - shift:last - shift]

    split_work(clear_padding, N, cols.size)
    split_work(accumulate, N, cols.size)  # after all clearing: a run may read another chunk's images
    return x


# --------------------------------------------------------------------------- GEMMs

def gemm(a, b):
    """a @ b: (M, K) x (K, N) -> (M, N), for the big products of a step.

    Where BLAS runs on one thread (``runtime.splits_gemms``) the product is split here between
    the cores: by columns of the result when it is wide (each thread one block of b's columns),
    else by rows. Each element is the same dot product either way. Otherwise BLAS's own threads
    split it.
    """
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    if not runtime.splits_gemms():
        return np.matmul(a, b, out=out)
    if out.shape[1] >= out.shape[0]:
        split_work(lambda lo, hi: np.matmul(a, b[:, lo:hi], out=out[:, lo:hi]), out.shape[1],
                   a.shape[1] * out.size)
    else:
        split_work(lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]), out.shape[0],
                   a.shape[1] * out.size)
    return out


def summed_gemm(a, b, run=None):
    """a @ b for a long inner dimension: (M, P) x (P, N) -> (M, N), a sum over P.

    Where BLAS runs on one thread (``runtime.splits_gemms``) each thread takes a range of P
    and the threads' partial products are added (float round-off apart, the same sum); ``run`` cuts each range
    further into products over ``run`` positions (a tiny result, which OpenBLAS runs slowly in
    one long call).
    """
    dtype = np.result_type(a, b)
    workers = max(1, min(cpu_threads(), a.shape[1])) if runtime.splits_gemms() else 1
    bounds = np.linspace(0, a.shape[1], workers + 1).astype(int)
    parts = [np.zeros((a.shape[0], b.shape[1]), dtype=dtype) for _ in range(workers)]

    def job(lo, hi):
        for k in range(lo, hi):
            step = max(1, run or bounds[k + 1] - bounds[k])  # an empty sum leaves the zeros
            for start in range(bounds[k], bounds[k + 1], step):
                stop = min(start + step, bounds[k + 1])
                parts[k] += a[:, start:stop] @ b[start:stop]

    if workers == 1:
        job(0, 1)
    else:
        split_work(job, workers, a.shape[1] * a.shape[0] * b.shape[1])
    return sum(parts[1:], parts[0])


def weight_gradient(cols, dout_mat):
    """dout_mat @ cols.T: (F, P) x (R, P) -> (F, R), a sum over the P output positions.

    Asked for as (cols @ dout_mat.T).T, BLAS reads both operands in place. A tiny result (a
    first layer: one input channel, few filters) is summed over runs of positions instead:
    OpenBLAS runs such a long, thin product at a fraction of its speed.
    """
    small = cols.shape[0] * dout_mat.shape[0] <= SMALL_WEIGHTS
    return summed_gemm(cols, dout_mat.T, RUN if small else None).T


def thin_product(a, b):
    """a @ b; for a tiny a (a first layer's weights), over runs of b's columns, split between
    the cores where BLAS runs on one thread (``runtime.splits_gemms``). OpenBLAS takes such
    short products on its path for small matrices, which writes the result once, where one big
    call first zeroes it and then has its threads hand work to each other."""
    if a.size > SMALL_WEIGHTS:
        return gemm(a, b)
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    runs = -(-b.shape[1] // RUN)

    def job(lo, hi):
        for r in range(lo, hi):
            np.matmul(a, b[:, r * RUN:(r + 1) * RUN], out=out[:, r * RUN:(r + 1) * RUN])

    if runtime.splits_gemms():
        split_work(job, runs, out.size)
    else:  # BLAS's threads are there: the project's would only fight them for the cores
        job(0, runs)
    return out


# --------------------------------------------------------------------------- max-pooling

def pools_2x2(x, size, stride):
    """Whether ``maxpool_2x2_forward`` applies: 2x2 windows tiling even H and W, in
    planes laid out back to back."""
    _, _, H, W = x.shape
    return size == 2 and stride == 2 and H % 2 == 0 and W % 2 == 0 and image_planes(x) is not None


def maxpool_windows_forward(x, size, stride, oh, ow):
    """Any window and stride -> (out (N, C, OH, OW) in x's layout, arg: which offset won).

    One pass per kernel offset k = i * size + j (row-major): a strictly greater value takes
    the lead, so on a tie the earlier offset keeps it, the contract's tie rule.
    """
    N = x.shape[0]
    out = new_in_layout_of(x, (N, x.shape[1], oh, ow), zeroed=False)
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

    split_work(pool, N, x.size)
    return out, arg


def maxpool_windows_backward(dout, arg, x_shape, channel_major_input, size, stride):
    """Each window's gradient to the offset ``arg`` names -> dx in the input's layout."""
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

    split_work(scatter, len(dout), dx.size)
    return dx


def maxpool_2x2_forward(x, relu=False):
    """2x2 windows, stride 2, even H and W -> (out, right_won, bottom_won).

    Two pairwise maxima over flat memory: first each horizontal pair (x[2j], x[2j+1]) of a
    row, which are neighbours in memory whatever the plane; then each vertical pair of those
    row maxima, which are neighbouring half-rows. Both passes run over long strided or
    contiguous runs instead of one short row at a time. The order keeps the tie rule: the
    first column wins a tie within a row, then the top row wins a tie between rows, so the
    window's first maximum in row-major order is chosen. Two masks say who won: ``right_won``
    (one per horizontal pair) and ``bottom_won`` (one per window). With ``relu`` the output
    is then rectified in place, while it is still in the core's cache.
    """
    N, C, H, W = x.shape
    out = new_in_layout_of(x, (N, C, H // 2, W // 2), zeroed=False)
    x_planes, out_planes = image_planes(x), image_planes(out)  # (N*C, H, W) and (N*C, H/2, W/2) views
    right_won = np.empty((len(x_planes), H, W // 2), dtype=bool)
    bottom_won = np.empty(out_planes.shape, dtype=bool)

    def pool(lo, hi):
        values = x_planes[lo:hi].reshape(-1)
        left, right = values[0::2], values[1::2]
        np.greater(right, left, out=right_won[lo:hi].reshape(-1))
        row_max = np.maximum(left, right).reshape(-1, 2, W // 2)  # (rows, top/bottom, W/2)
        top, bottom = row_max[:, 0], row_max[:, 1]
        np.greater(bottom, top, out=bottom_won[lo:hi].reshape(-1, W // 2))
        pooled = out_planes[lo:hi].reshape(-1, W // 2)
        np.maximum(top, bottom, out=pooled)
        if relu:
            np.maximum(pooled, 0, out=pooled)

    split_work(in_blocks(pool, max(1, BLOCK_ELEMENTS // (H * W))), len(x_planes), x.size)
    return out, right_won, bottom_won


def maxpool_2x2_backward(dout, x_shape, channel_major_input, right_won, bottom_won, relu_output=None):
    """The two pairwise maxima of ``maxpool_2x2_forward``, undone in reverse order -> dx.

    Each pair's gradient goes to its winner and zero to the other. The loser's share is
    written as ``g - winner's share``, which is g or 0 exactly, one subtraction instead of a
    second mask. With ``relu_output`` (the forward's rectified output) dout first passes the
    ReLU: it is kept where the output is > 0.
    """
    N, C, H, W = x_shape
    dx = channel_major(x_shape, dout.dtype, zeroed=False) if channel_major_input else \
        np.empty(x_shape, dout.dtype)
    dx_planes = image_planes(dx)
    # dout's planes in the order of the masks (a copy only if dout's layout differs)
    g_planes = (dout.transpose(1, 0, 2, 3) if channel_major_input else dout).reshape(N * C, H // 2, W // 2)
    relu_planes = None if relu_output is None else image_planes(relu_output)

    def scatter(lo, hi):
        g = g_planes[lo:hi].reshape(-1, W // 2)
        if relu_planes is not None:
            g = g * (relu_planes[lo:hi].reshape(-1, W // 2) > 0)
        row_grad = np.empty((len(g), 2, W // 2), dout.dtype)  # gradient of each row's pair maxima
        np.multiply(g, bottom_won[lo:hi].reshape(-1, W // 2), out=row_grad[:, 1])
        np.subtract(g, row_grad[:, 1], out=row_grad[:, 0])
        row_grad = row_grad.reshape(-1)
        values = dx_planes[lo:hi].reshape(-1)
        np.multiply(row_grad, right_won[lo:hi].reshape(-1), out=values[1::2])
        np.subtract(row_grad, values[1::2], out=values[0::2])

    split_work(in_blocks(scatter, max(1, BLOCK_ELEMENTS // (H * W))), N * C, dx.size)
    return dx


# --------------------------------------------------------------------------- batch norm

def channel_rows(a):
    """The (C, N*H*W) rows of a channel-major (N, C, H, W) array as a view; None otherwise."""
    if not is_channel_major(a):
        return None
    memory = a.transpose(1, 0, 2, 3)
    if not memory.flags.c_contiguous:
        return None
    return memory.reshape(a.shape[1], -1)


def batchnorm_rows_forward(x_rows, xhat_rows, out_rows, gamma, beta, eps, stats=None):
    """Batch norm over rows of (C, M) views, a block of channels at a time, split between cores.

    Each block is centred, scaled and written while it is in the core's cache. Training
    (``stats`` None): the rows' mean (summed in float64) and biased variance (of the centred
    values, which NumPy sums pairwise along a contiguous row, so its rounding error grows with
    log(M), not M). The mean enters x's dtype as a rounded part plus its (tiny) remainder, so
    centring loses nothing to the rounding of a large mean. Evaluation: ``stats`` = (mean,
    var) as given.
    -> (mean, var, inv_std), float64 (C,).
    """
    C, M = x_rows.shape
    dtype = x_rows.dtype
    mean = np.empty(C) if stats is None else np.asarray(stats[0], dtype=np.float64)
    var = np.empty(C) if stats is None else np.asarray(stats[1], dtype=np.float64)
    inv_std = np.empty(C)

    def job(lo, hi):
        x, xhat, out = x_rows[lo:hi], xhat_rows[lo:hi], out_rows[lo:hi]
        if stats is None:
            # the mean in float64: a channel's values may sit far from 0 (its offset would
            # swamp float32's rounding of the sum); the centred values below may not
            mean[lo:hi] = x.sum(axis=1, dtype=np.float64) / M
        rounded = mean[lo:hi].astype(dtype)
        np.subtract(x, rounded[:, None], out=xhat)
        xhat -= (mean[lo:hi] - rounded).astype(dtype)[:, None]  # what the rounding left out
        if stats is None:
            np.square(xhat, out=out)  # out as scratch
            var[lo:hi] = out.sum(axis=1) / M
        inv_std[lo:hi] = 1 / np.sqrt(var[lo:hi] + eps)
        xhat *= inv_std[lo:hi].astype(dtype)[:, None]
        np.multiply(xhat, np.asarray(gamma[lo:hi], dtype=dtype)[:, None], out=out)
        out += np.asarray(beta[lo:hi], dtype=dtype)[:, None]

    split_work(in_blocks(job, max(1, BLOCK_ELEMENTS // max(M, 1))), C, x_rows.size)
    return mean, var, inv_std


def batchnorm_rows_backward(dout_rows, xhat_rows, dx_rows, scale, training):
    """The batch-norm gradient over rows of (C, M) views, a block of channels at a time.

    dx = scale * (dout - mean(dout) - xhat * mean(dout * xhat)) in training mode, scale * dout
    in evaluation mode; scale = gamma / std per row. -> (dgamma, dbeta), float64 (C,).
    """
    C, M = dout_rows.shape
    dtype = dout_rows.dtype
    dgamma, dbeta = np.empty(C), np.empty(C)

    def job(lo, hi):
        g, xhat, dx = dout_rows[lo:hi], xhat_rows[lo:hi], dx_rows[lo:hi]
        dbeta[lo:hi] = g.sum(axis=1)  # pairwise sums, as in the forward
        np.multiply(g, xhat, out=dx)  # dx as scratch
        dgamma[lo:hi] = dx.sum(axis=1)
        row_scale = np.asarray(scale[lo:hi], dtype=dtype)[:, None]
        if training:
            np.multiply(xhat, (dgamma[lo:hi] / M).astype(dtype)[:, None], out=dx)
            np.subtract(g, dx, out=dx)
            dx -= (dbeta[lo:hi] / M).astype(dtype)[:, None]
            dx *= row_scale
        else:
            np.multiply(g, row_scale, out=dx)

    split_work(in_blocks(job, max(1, BLOCK_ELEMENTS // max(M, 1))), C, dout_rows.size)
    return dgamma, dbeta
