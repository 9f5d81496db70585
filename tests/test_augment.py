"""Augmentation: each transform does what its docstring says, and nothing else."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fast import augment
from fast.augment import augment_batch


def _only(monkeypatch, **limits):
    """Every transform's range set to nothing (identity) except those in ``limits``."""
    for name in ("MAX_ROTATION_DEG", "MAX_ZOOM", "MAX_SHIFT", "MAX_CONTRAST", "MAX_BRIGHTNESS",
                 "MAX_DETAIL", "MAX_NOISE"):
        monkeypatch.setattr(augment, name, limits.get(name, 0.0))


def test_with_every_range_at_zero_augmentation_is_the_identity(monkeypatch):
    _only(monkeypatch)
    x = np.random.default_rng(0).normal(size=(3, 1, 16, 16)).astype(np.float32)
    out = augment_batch(x, np.random.default_rng(1), acquisition=True)
    assert out.dtype == np.float32 and out is not x
    assert_allclose(out, x, atol=1e-5)


def test_acquisition_leaves_the_other_transforms_as_they_were(monkeypatch):
    x = np.random.default_rng(0).normal(size=(4, 1, 16, 16)).astype(np.float32)
    plain = augment_batch(x, np.random.default_rng(5))
    assert not np.allclose(augment_batch(x, np.random.default_rng(5), acquisition=True), plain)
    monkeypatch.setattr(augment, "MAX_DETAIL", 0.0)
    monkeypatch.setattr(augment, "MAX_NOISE", 0.0)
    assert_allclose(augment_batch(x, np.random.default_rng(5), acquisition=True), plain, atol=1e-6)


def test_detail_weight_minus_one_gives_the_blurred_image_and_plus_one_sharpens(monkeypatch):
    import cv2
    _only(monkeypatch, MAX_DETAIL=1.0)
    x = np.zeros((1, 1, 64, 64), np.float32)
    x[0, 0, :, 32:] = 1.0  # a vertical edge
    sigma = 64 * augment.DETAIL_SIGMA_PER_PIXEL
    blurred = cv2.GaussianBlur(x[0, 0], (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)

    class Fixed:  # a generator whose every uniform draw is the range's low or high end
        def __init__(self, end):
            self.end = end

        def uniform(self, low, high, size):
            return np.full(size, low if self.end == "low" else high, dtype=np.float64)

        def standard_normal(self, shape, dtype):
            return np.zeros(shape, dtype)

    assert_allclose(augment_batch(x, Fixed("low"), acquisition=True)[0, 0], blurred, atol=1e-5)
    sharpened = augment_batch(x, Fixed("high"), acquisition=True)[0, 0]
    assert_allclose(sharpened, 2 * x[0, 0] - blurred, atol=1e-5)
    assert sharpened.max() > 1.05 and sharpened.min() < -0.05  # overshoot at the edge


def test_noise_has_the_drawn_strength(monkeypatch):
    _only(monkeypatch, MAX_NOISE=0.1)
    x = np.zeros((64, 1, 32, 32), np.float32)
    # the draws in augment_batch's order: angles, zooms, shifts, contrast, brightness, detail,
    # then the noise strengths
    twin = np.random.default_rng(3)
    for size in (64, (64, 2), (64, 2), 64, 64, 64):
        twin.uniform(0, 1, size)
    strengths = twin.uniform(0, 0.1, 64)
    out = augment_batch(x, np.random.default_rng(3), acquisition=True)
    assert_allclose(out.std(axis=(1, 2, 3)), strengths, rtol=0.08, atol=2e-3)
