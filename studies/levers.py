"""What bounds the benchmark network's step, and two levers measured: ``python -m studies.levers``.

The step (``bench.network``, timed in ``bench/test_speed.py``: 32 X-rays of 128 px, three conv blocks, 7.95 GFLOP) runs at about
a fifth of the float32 GEMM yardstick. This study times, in one process and in turn:

1. the step through ``train_step`` and the yardstick (2048^3, every core);
2. each convolution GEMM of the step at its own shape, as the step runs it (``kernels.gemm`` and
   ``kernels.weight_gradient``, split between the cores) and on one core alone (``np.matmul``, BLAS
   on one thread): what OpenBLAS itself makes of that shape;
3. Winograd F(2x2, 3x3) in NumPy (a compact forward, checked against ``conv2d_forward``): input
   transform, 16 GEMMs, output transform, against the im2col forward, at the conv2 and conv3 shapes;
4. conv + max-pool + ReLU in chunks of a few images, each chunk's im2col, GEMM and pooling done
   one after the other while the chunk is fresh, forward and backward (weight and input gradients),
   against the layer functions in turn (``conv2d_*``, ``maxpool_relu_*``); and what shorter
   products cost: the conv2 forward GEMM on one core, over runs of columns of a given length
   (a chunk small enough for the core's 2 MB L2 holds under 3,600 of its columns).

Medians of ``--repeats`` timings, after one untimed call. A study, not a test: about 20 seconds.
"""
import argparse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

import fast.nn.layers as L
from bench.network import BATCH, BENCH_ARCH, median_seconds, network_flops
from bench.yardstick import FLOP, Yardstick
from fast.nn import kernels
from fast.nn.model import ConvNet
from fast.runtime import configure_process
from fast.training.loop import train_step
from fast.training.optim import SGD

# (N, C, H, F) of the benchmark network's convolutions that carry its FLOPs
CONV2, CONV3 = (BATCH, 16, 64, 32), (BATCH, 32, 32, 64)


def median_ms(fn, repeats):
    """The median of ``repeats`` timings of fn(), after an untimed call, in ms."""
    return median_seconds(fn, repeats) * 1e3


def conv_inputs(shape, seed=0):
    n, c, h, f = shape
    rng = np.random.default_rng(seed)
    x = kernels.channel_major((n, c, h, h), np.float32)
    x[...] = rng.standard_normal(x.shape, dtype=np.float32)
    w = rng.standard_normal((f, c, 3, 3), dtype=np.float32) * np.float32(np.sqrt(2 / (9 * c)))
    return x, w, rng.standard_normal(f, dtype=np.float32)


# --------------------------------------------------------------------------- 2. GEMM shapes

def gemm_shapes(repeats):
    """Each conv GEMM of the step: (label, GFLOP, ms as the step runs it, ms on one core)."""
    rows = []
    for k, (n, c, h, f) in ((2, CONV2), (3, CONV3)):
        rng = np.random.default_rng(k)
        positions, taps = n * h * h, 9 * c
        cols = rng.standard_normal((taps + 1, positions), dtype=np.float32)
        w_b = rng.standard_normal((f, taps + 1), dtype=np.float32)
        w_t = rng.standard_normal((taps, f), dtype=np.float32)
        dout = rng.standard_normal((f, positions), dtype=np.float32)
        cases = [
            (f"conv{k} forward ({f}x{taps + 1}) @ ({taps + 1}x{positions})", lambda: kernels.gemm(w_b, cols),
             lambda: np.matmul(w_b, cols), 2 * f * (taps + 1) * positions),
            (f"conv{k} input gradient ({taps}x{f}) @ ({f}x{positions})", lambda: kernels.gemm(w_t, dout),
             lambda: np.matmul(w_t, dout), 2 * taps * f * positions),
            (f"conv{k} weight gradient, a sum over {positions} positions",
             lambda: kernels.weight_gradient(cols, dout), lambda: np.matmul(cols, dout.T).T,
             2 * f * (taps + 1) * positions),
        ]
        for label, split, one_core, flop in cases:
            with threadpool_limits(limits=1, user_api="blas"):
                rows.append((label, flop / 1e9, median_ms(split, repeats), median_ms(one_core, repeats)))
    return rows


# --------------------------------------------------------------------------- 3. Winograd

# F(2x2, 3x3) (Lavin and Gray, 2016): out = A^T [(G w G^T) * (B^T d B)] A for each 4x4 input tile d
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def _times_b_transposed(d, out):
    """B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] applied along one axis:
    d, the four inputs (views), -> out[0..3]."""
    np.subtract(d[0], d[2], out=out[0])
    np.add(d[1], d[2], out=out[1])
    np.subtract(d[2], d[1], out=out[2])
    np.subtract(d[1], d[3], out=out[3])


def _times_a_transposed(m, out):
    """A^T = [[1, 1, 1, 0], [0, 1, -1, -1]] applied along one axis: m[0..3] -> out[0..1]."""
    np.add(m[0], m[1], out=out[0])
    out[0] += m[2]
    np.subtract(m[1], m[2], out=out[1])
    out[1] -= m[3]


def winograd_input(x):
    """x (N, C, H, W), even H and W, pad 1 -> B^T d B of every 4x4 input tile, (4, 4, C, tiles)."""
    n, c, h, wd = x.shape
    th, tw = h // 2, wd // 2  # output tiles of 2x2
    padded = np.zeros((c, n, h + 2, wd + 2), x.dtype)
    padded[:, :, 1:h + 1, 1:wd + 1] = x.transpose(1, 0, 2, 3)
    rows = np.empty((4, c, n, th, wd + 2), x.dtype)  # B^T along the tiles' rows, then columns
    _times_b_transposed([padded[:, :, k:k + 2 * th:2] for k in range(4)], rows)
    v = np.empty((4, 4, c, n, th, tw), x.dtype)
    for a in range(4):
        _times_b_transposed([rows[a][..., k:k + 2 * tw:2] for k in range(4)], v[a])
    return v.reshape(4, 4, c, -1)


def winograd_products(w, v):
    """(G w G^T) times the transformed tiles: 16 GEMMs (F, C) x (C, tiles) -> (4, 4, F, tiles)."""
    u = np.einsum("ai,fcij,bj->abfc", WINOGRAD_G, w.astype(np.float64), WINOGRAD_G).astype(v.dtype)
    m = np.empty((4, 4, w.shape[0], v.shape[-1]), v.dtype)
    for a in range(4):
        for b in range(4):
            m[a, b] = kernels.gemm(u[a, b], v[a, b])
    return m


def winograd_output(m, b, shape):
    """A^T M A of every tile, plus the bias -> (N, F, H, W), channel-major."""
    n, f, h, wd = shape
    m = m.reshape(4, 4, f, n, h // 2, wd // 2)
    q = np.empty((2, 4, f, n, h // 2, wd // 2), m.dtype)  # A^T along the tiles' rows
    for j in range(4):
        _times_a_transposed(m[:, j], q[:, j])
    out = np.empty((f, n, h, wd), m.dtype)
    for i in range(2):  # then columns, written to the two output pixels of each tile row
        _times_a_transposed(q[i], [out[:, :, i::2, 0::2], out[:, :, i::2, 1::2]])
    out += b[:, None, None, None]
    return out.transpose(1, 0, 2, 3)


def winograd_forward(x, w, b):
    """3x3 conv, stride 1, pad 1, even H and W, by Winograd F(2x2, 3x3) -> (N, F, H, W)."""
    return winograd_output(winograd_products(w, winograd_input(x)), b, (x.shape[0], w.shape[0], *x.shape[2:]))


# --------------------------------------------------------------------------- 4. chunks in cache

class Chunked:
    """conv (3x3, stride 1, pad 1) + 2x2 max-pool + ReLU over chunks of ``images`` images: two
    threads, one taking the first half of the chunks and one the second; the kernels inside run
    on the thread that calls them. Two threads, as many as the project's two-core machines have
    (the layer functions it is compared with use ``runtime.cpu_threads()``)."""

    def __init__(self, images):
        self.images = images

    def forward(self, x, w, b):
        n, c, h, wd = x.shape
        f = w.shape[0]
        w_b = np.concatenate([w.reshape(f, -1), b[:, None]], axis=1)
        out = kernels.channel_major((n, f, h // 2, wd // 2), x.dtype, zeroed=False)
        chunks = [(s, min(s + self.images, n)) for s in range(0, n, self.images)]
        masks = [None] * len(chunks)

        def job(lo, hi):
            for i in range(lo, hi):
                s, e = chunks[i]
                y = w_b @ kernels.im2col(x[s:e], 3, 3, 1, 1, ones_row=True)
                y = y.reshape(f, e - s, h, wd).transpose(1, 0, 2, 3)  # channel-major chunk
                pooled, right_won, bottom_won = kernels.maxpool_2x2_forward(y, relu=True)
                out[s:e] = pooled
                masks[i] = (right_won, bottom_won)

        self._on_two_threads(job, len(chunks))
        return out, (x, w, chunks, masks, out)

    def backward(self, dout, cache):
        x, w, chunks, masks, out = cache
        n, c, h, wd = x.shape
        f = w.shape[0]
        w_t = np.ascontiguousarray(w.reshape(f, -1).T)
        dx = kernels.channel_major(x.shape, x.dtype, zeroed=False)
        parts = [np.zeros((f, 9 * c + 1), x.dtype) for _ in range(2)]

        def job(lo, hi):
            part = parts[0 if lo == 0 else 1]
            for i in range(lo, hi):
                s, e = chunks[i]
                g = dout[s:e] * (out[s:e] > 0)  # through the ReLU
                dy = kernels.maxpool_2x2_backward(g, (e - s, f, h, wd), True, *masks[i])
                dy = kernels.by_channel(dy)
                part += dy @ kernels.im2col(x[s:e], 3, 3, 1, 1, ones_row=True).T
                dx[s:e] = kernels.col2im_keeping_size(w_t @ dy, (e - s, c, h, wd), 3, 3, 1)

        self._on_two_threads(job, len(chunks))
        return dx, parts[0] + parts[1]

    @staticmethod
    def _on_two_threads(job, count):
        kept = kernels.PARALLEL_MIN_ELEMENTS
        kernels.PARALLEL_MIN_ELEMENTS = 1 << 62  # each chunk's kernels on the thread that runs it
        try:
            with ThreadPoolExecutor(1) as pool:
                half = (count + 1) // 2
                other = pool.submit(job, half, count)
                job(0, half)
                other.result()
        finally:
            kernels.PARALLEL_MIN_ELEMENTS = kept


def layer_functions(x, w, b, dout):
    y, conv_cache = L.conv2d_forward(x, w, b, 1, 1)
    out, pool_cache = L.maxpool_relu_forward(y, 2)
    dy = L.maxpool_relu_backward(dout, pool_cache)
    return out, L.conv2d_backward(dy, conv_cache)


def column_runs(repeats):
    """The conv2 forward GEMM on one core over runs of columns: {run length: GFLOP/s}."""
    n, c, h, f = CONV2
    rng = np.random.default_rng(2)
    a = rng.standard_normal((f, 9 * c + 1), dtype=np.float32)
    b = rng.standard_normal((9 * c + 1, 1 << 16), dtype=np.float32)
    out = np.empty((f, b.shape[1]), np.float32)
    rates = {}
    for run in (512, 1024, 2048, 4096, 1 << 16):
        def runs():
            for s in range(0, b.shape[1], run):
                np.matmul(a, b[:, s:s + run], out=out[:, s:s + run])
        with threadpool_limits(limits=1, user_api="blas"):
            rates[run] = 2 * a.size * b.shape[1] / median_ms(runs, repeats) / 1e6
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m studies.levers", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    configure_process()  # as training runs: BLAS on one thread, the kernels splitting the GEMMs
    r = args.repeats

    yardstick = Yardstick()
    model, optimizer = ConvNet(BENCH_ARCH, seed=0), SGD()
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((BATCH, *BENCH_ARCH.input_shape), dtype=np.float32)
    yb = rng.integers(0, 2, BATCH)
    step_ms = median_ms(lambda: train_step(model, optimizer, xb, yb, 1e-3), r)
    gemm = FLOP / float(np.median([yardstick.seconds() for _ in range(r)])) / 1e9
    flop = network_flops(BENCH_ARCH, BATCH)
    print(f"yardstick: float32 GEMM 2048^3 {gemm:.0f} GFLOP/s on {kernels.cpu_threads()} threads")
    print(f"step: {step_ms:.1f} ms = {flop / step_ms / 1e6:.0f} GFLOP/s = {flop / step_ms / 1e6 / gemm:.1%} "
          f"of it; at 30 % it would take {flop / (0.3 * gemm) / 1e6:.1f} ms\n")

    print("conv GEMMs of the step at their shapes | GFLOP | as the step runs them | one core alone")
    total = 0.0
    for label, gflop, split_ms, one_ms in gemm_shapes(r):
        total += split_ms
        print(f"  {label:58s} {gflop:5.2f} | {split_ms:5.1f} ms {gflop / split_ms * 1e3:4.0f} GFLOP/s "
              f"({gflop / split_ms * 1e3 / gemm:.0%}) | {one_ms:5.1f} ms {gflop / one_ms * 1e3:4.0f} GFLOP/s")
    print(f"  these six GEMMs: {total:.1f} ms of the step\n")

    print("lever                                            conv2 (16->32, 64 px)   conv3 (32->64, 32 px)")
    rows = {"im2col forward (conv2d_forward)": [], "Winograd F(2x2,3x3) forward": [],
            "  of which input transform": [], "  of which 16 GEMMs": [], "  of which output transform": [],
            "layer functions, conv+pool+ReLU fwd+bwd": [], "in chunks of 2 images, fwd+bwd": [],
            "in chunks of 4 images, fwd+bwd": []}
    for shape in (CONV2, CONV3):
        x, w, b = conv_inputs(shape)
        direct = L.conv2d_forward(x, w, b, 1, 1)[0]
        np.testing.assert_allclose(winograd_forward(x, w, b), direct, rtol=1e-4, atol=1e-4 * np.abs(direct).max())
        rows["im2col forward (conv2d_forward)"].append(median_ms(lambda: L.conv2d_forward(x, w, b, 1, 1), r))
        rows["Winograd F(2x2,3x3) forward"].append(median_ms(lambda: winograd_forward(x, w, b), r))
        v = winograd_input(x)
        m = winograd_products(w, v)
        rows["  of which input transform"].append(median_ms(lambda: winograd_input(x), r))
        rows["  of which 16 GEMMs"].append(median_ms(lambda: winograd_products(w, v), r))
        rows["  of which output transform"].append(median_ms(lambda: winograd_output(m, b, direct.shape), r))
        dout = kernels.channel_major((x.shape[0], w.shape[0], x.shape[2] // 2, x.shape[3] // 2), np.float32)
        dout[...] = np.random.default_rng(1).standard_normal(dout.shape, dtype=np.float32)
        want_out, (want_dx, want_dw, want_db) = layer_functions(x, w, b, dout)
        rows["layer functions, conv+pool+ReLU fwd+bwd"].append(median_ms(lambda: layer_functions(x, w, b, dout), r))
        for images in (2, 4):
            chunked = Chunked(images)

            def fused():
                out, cache = chunked.forward(x, w, b)
                return out, chunked.backward(dout, cache)

            out, (dx, dw_b) = fused()
            np.testing.assert_allclose(out, want_out, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(dx, want_dx, rtol=1e-3, atol=1e-3 * np.abs(want_dx).max())
            for got, want in ((dw_b[:, :-1].reshape(w.shape), want_dw), (dw_b[:, -1], want_db)):
                np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
            rows[f"in chunks of {images} images, fwd+bwd"].append(median_ms(fused, r))
    for label, (two, three) in rows.items():
        print(f"  {label:46s} {two:8.1f} ms {three:20.1f} ms")
    n, c, h, _ = CONV2
    print(f"\nconv2 forward GEMM on one core over runs of columns (a run's {9 * c + 1} x run operand "
          f"fits the 2 MB L2 below about 3,600 columns):")
    print("  " + "  ".join(f"{run}: {rate:.0f}" for run, rate in column_runs(r).items()) + " GFLOP/s")


if __name__ == "__main__":
    main()
