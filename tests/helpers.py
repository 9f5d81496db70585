"""What the tests share: the two layer implementations as a parameter, the dtypes, the tolerances
and hypothesis settings of the layer proofs, centred-difference gradients, memory layouts, small
trees of image files, a small training configuration and a small network, running a command, and
reading pictures."""
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple, Optional

import cv2
import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import fast.nn.kernels
import fast.nn.layers
import reference.layers
from fast.data.folders import CLASS_NAMES
from fast.nn.model import Architecture, ConvNet
from fast.nn.model_file import load_model, save_model
from fast.runs import RunDir
from fast.training.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# --------------------------------------------------------------------------- the layer proofs

IMPLS = pytest.mark.parametrize("impl", [reference.layers, fast.nn.layers], ids=["reference", "fast"])
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])

GRAD_TOL = 1e-7  # symmetric relative error allowed between analytic and numerical gradients
# Layer shapes are tiny: a hundred gradient checks, two hundred comparisons a property, in seconds.
GRADCHECK = settings(max_examples=100, deadline=None)
COMPARE = settings(max_examples=200, deadline=None)


def numerical_gradient(f, x, h=1e-5):
    """Gradient of the scalar f(x) with respect to every element of x, by centred differences.

    x: float64 array of any shape; it is perturbed in place one element at a time and restored
    exactly, so f must read x afresh on each call. Returns a float64 array of x's shape.
    """
    if x.dtype != np.float64:
        # float32 has about 7 digits: (f(x+h) - f(x-h)) / 2h would be mostly rounding noise
        raise TypeError(f"numerical_gradient needs a float64 array, got {x.dtype}")
    grad = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + h
        f_plus = f(x)
        x[index] = saved - h
        f_minus = f(x)
        x[index] = saved
        grad[index] = (f_plus - f_minus) / (2 * h)
    return grad


def rel_error(a, b):
    """Symmetric relative error max|a - b| / max(|a| + |b|), 0 when both are all zeros.

    One scale for the whole array, so an element that happens to be near zero does not turn
    rounding noise into a large relative error.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(a) + np.abs(b))
    return float(np.max(np.abs(a - b)) / max(scale, np.finfo(np.float64).tiny))


def assert_matches_reference(got, want, dtype):
    """``fast``'s result ``got`` (in ``dtype``) against the float64 reference ``want``: float64
    agrees to rounding; float32 to about 1e-4 of the scale of the terms.

    The drawn inputs are O(1), so each result is a sum of O(1) terms, rounded on that scale:
    an element where the terms cancel (x * w + b = -2e-4, or a loss log(1 + 1e-5) from a
    confident right answer) keeps an absolute error of the terms' size, not of its own.
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == dtype
    assert got.shape == want.shape
    scale = max(1.0, np.max(np.abs(want), initial=0.0))
    rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (1e-4, 1e-4)
    assert_close(got, want, rtol=rtol, atol=atol * scale)


def assert_close(actual, desired, rtol=1e-7, atol=0.0):
    """``numpy.testing.assert_allclose``, its criterion |actual - desired| <= atol + rtol
    |desired| checked first in one vectorised pass: numpy's assert, with its NaN rule and its
    report of the differences, runs only where that check fails. The proofs call it hundreds of
    thousands of times, where numpy's own is the slow part."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    if actual.shape == desired.shape:
        with np.errstate(invalid="ignore"):
            if np.all(np.abs(actual - desired) <= atol + rtol * np.abs(desired)):
                return
    assert_allclose(actual, desired, rtol=rtol, atol=atol)


def assert_same(actual, desired):
    """``numpy.testing.assert_array_equal``, checked first with ``np.array_equal`` (same shape,
    every element equal): numpy's assert, with its NaN rule and its report, runs only where that
    check fails."""
    if not np.array_equal(actual, desired):
        assert_array_equal(actual, desired)


def in_layout(a, layout):
    """a's values in a given memory layout: "C" order, "channel-major" (a conv's output), or
    "gapped", a view whose planes are not back to back (which must take the general path)."""
    if layout == "channel-major":
        out = fast.nn.kernels.channel_major(a.shape, a.dtype)
        out[...] = a
        return out
    if layout == "gapped":
        wide = np.zeros(a.shape[:3] + (a.shape[3] + 1,), a.dtype)
        wide[..., :-1] = a
        return wide[..., :-1]
    return np.ascontiguousarray(a)


# --------------------------------------------------------------------------- drawn layer cases

seeds = st.integers(0, 2**32 - 1)


def output_size(size, kernel, stride, pad):
    """The contract's formula, written out here so the tests do not trust the code under test."""
    return (size + 2 * pad - kernel) // stride + 1


def draw_input_size(draw, kernel, stride, pad):
    out = draw(st.integers(1, 3))
    size = (out - 1) * stride + kernel - 2 * pad
    # Padding wider than the kernel can ask for an input below 1: bump it (the output grows).
    # The extra 0..stride-1 rows are dropped by the floor, so they exercise it.
    return max(size, 1) + draw(st.integers(0, stride - 1))


class ConvCase(NamedTuple):
    n: int
    c: int
    f: int
    h: int
    w: int
    kh: int
    kw: int
    stride: int
    pad: int
    seed: int

    @property
    def out_shape(self):
        return (self.n, self.f, output_size(self.h, self.kh, self.stride, self.pad),
                output_size(self.w, self.kw, self.stride, self.pad))


@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))  # non-square included
    stride, pad = draw(st.integers(1, 3)), draw(st.integers(0, 2))
    return ConvCase(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 3)),
                    f=draw(st.integers(1, 3)),
                    h=draw_input_size(draw, kh, stride, pad),
                    w=draw_input_size(draw, kw, stride, pad),
                    kh=kh, kw=kw, stride=stride, pad=pad, seed=draw(seeds))


def conv_arrays(case):
    """x, w, b and a fixed upstream gradient g of out's shape, all float64.

    x and g keep |values| >= 0.1: with one input pixel and a 1x1 kernel, dw is the single product
    x * g, and a draw near zero would leave it below the centred difference's rounding (about
    1e-16 of the loss, which the bias term keeps near 1, divided by h = 1e-5)."""
    rng = np.random.default_rng(case.seed)

    def away_from_zero(shape):
        return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)

    x = away_from_zero((case.n, case.c, case.h, case.w))
    w = rng.standard_normal((case.f, case.c, case.kh, case.kw))
    b = rng.standard_normal(case.f)
    g = away_from_zero(case.out_shape)
    return x, w, b, g


class PoolCase(NamedTuple):
    n: int
    c: int
    h: int
    w: int
    size: int
    stride: Optional[int]  # None: the default, stride = size
    seed: int

    @property
    def out_shape(self):
        stride = self.size if self.stride is None else self.stride
        return (self.n, self.c, output_size(self.h, self.size, stride, 0),
                output_size(self.w, self.size, stride, 0))


@st.composite
def pool_cases(draw):
    size = draw(st.integers(1, 3))
    # stride < size overlaps the windows, stride > size skips elements
    stride = draw(st.none() | st.integers(1, 4))
    effective = size if stride is None else stride
    return PoolCase(n=draw(st.integers(1, 2)), c=draw(st.integers(1, 2)),
                    h=draw_input_size(draw, size, effective, 0),
                    w=draw_input_size(draw, size, effective, 0),
                    size=size, stride=stride, seed=draw(seeds))


def distinct_values(rng, shape):
    """Values 0.01 apart with no ties: finite differences (h = 1e-5) never move an argmax."""
    count = int(np.prod(shape))
    return 0.01 * (rng.permutation(count) - count / 2).reshape(shape)


def pool_arrays(case):
    rng = np.random.default_rng(case.seed)
    x = distinct_values(rng, (case.n, case.c, case.h, case.w))
    g = rng.standard_normal(case.out_shape)
    return x, g


def fast_and_reference_inputs(dtype, *arrays):
    fast_inputs = [a.astype(dtype) for a in arrays]
    return fast_inputs, [a.astype(np.float64) for a in fast_inputs]


# --------------------------------------------------------------------------- image files

def smooth_image(h=60, w=80, shift=0.0):
    """A smooth blob on a ramp, in [0, 1] float64, so JPEG round-trips it faithfully."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (0.2 + 0.6 * np.exp(-(((yy - 30 - shift) / 18) ** 2 + ((xx - 40) / 25) ** 2))
            + 0.1 * xx / w)


def to_u8(image):
    return np.round(image * 255).astype(np.uint8)


def write(path, array, params=()):
    """Encode ``array`` in the format named by ``path``'s extension; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix.lower(), array, list(params))
    assert ok
    buf.tofile(path)
    return path


def make_tree(root, split="train", normal=("IM-0001-0001.jpeg", "IM-0002-0001.jpeg"),
              pneumonia=("person1_bacteria_1.jpeg", "person2_virus_2.jpeg")):
    """root/split/{NORMAL,PNEUMONIA}/ with distinct smooth images; returns the paths."""
    paths = []
    for k, (class_name, names) in enumerate(zip(CLASS_NAMES, (normal, pneumonia))):
        for i, name in enumerate(names):
            image = to_u8(smooth_image(shift=3 * i) * (0.7 + 0.3 * k))
            paths.append(write(root / split / class_name / name, image))
    return paths


# --------------------------------------------------------------------------- files a command refuses or writes

class _RunsCodeWhenUnpickled:
    """Unpickling this creates ``marker``: a stand-in for a malicious model file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def bad_model_files(folder, tiny_model):
    """{kind: path} of model files prediction must refuse."""
    model, metadata = load_model(tiny_model)
    files = {kind: folder / f"{kind}.npz" for kind in
             ("missing", "corrupt", "truncated", "other architecture", "three channels", "pickle",
              "no metadata")}
    files["corrupt"].write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    whole = Path(tiny_model).read_bytes()
    files["truncated"].write_bytes(whole[:len(whole) // 2])
    # The tiny model's weights under an architecture record they do not fit.
    with np.load(tiny_model, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arch = Architecture.from_json(str(arrays["architecture"]))
    arrays["architecture"] = np.array(small_architecture(input_shape=arch.input_shape, channels=(8, 8),
                                                   hidden=arch.hidden).to_json())
    np.savez(files["other architecture"], **arrays)
    colour = ConvNet(small_architecture(input_shape=(3, 32, 32), channels=(4,), hidden=8))
    save_model(files["three channels"], colour, metadata)
    np.savez(files["pickle"], weights=np.array([_RunsCodeWhenUnpickled(folder / "pwned")],
                                               dtype=object))
    save_model(files["no metadata"], model, {})
    return files


MIN_SIDE = 300  # pixels: anything smaller is not readable


def assert_readable_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, path
    height, width = image.shape[:2]
    assert width >= MIN_SIDE and height >= MIN_SIDE, (path, width, height)
    assert image.std() > 5, f"{path} is blank"


# --------------------------------------------------------------------------- runs and commands

def quiet(*_):
    """A log that says nothing."""


# small test images get a plain first conv, not the default 4x4 patches of 224 px images
SMALL_STEM = dict(stem_stride=1, stem_kernel=3)  # a plain 3x3 first conv, for small images


def small_architecture(**fields):
    """An ``Architecture`` for the small images of tests: the default network's settings but a
    plain first conv (``SMALL_STEM``) and whatever ``fields`` say."""
    return Architecture(**{**SMALL_STEM, **fields})


def small_config(root, tmp_path, **changes):
    """A quick run's settings: 32 px, at most 300 images, a small network, one model."""
    fields = dict(data=str(root), out=str(tmp_path / "run"), image_size=32, limit=300, epochs=3,
                  channels=(8, 16), hidden=32, folds=1, cache_dir=str(tmp_path / "cache"), **SMALL_STEM)
    fields.update(changes)
    return TrainConfig(**fields)


def run_cli(module, *args, cwd=REPO_ROOT):
    """``python -m module args`` in a fresh interpreter -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------- pictures

def fresh_copy(run_dir, folder):
    """The run's own files, without any picture already drawn, in ``folder``."""
    folder.mkdir()
    for name in RunDir.FINISHED:
        shutil.copy(run_dir / name, folder / name)
    return folder


def texts_of(fig):
    """Every piece of text in a matplotlib figure: titles, labels, legends, captions."""
    from matplotlib.text import Text
    return [t.get_text() for t in fig.findobj(Text)]
