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


def test_a_zoomed_view_enlarges_about_the_centre():
    ramp = np.tile(np.arange(16, dtype=np.float32) - 7.5, (16, 1))  # value = column - centre
    x = np.stack([ramp, ramp.T])[:, None]  # (2, 1, 16, 16): one ramp across, one down
    assert augment.zoomed(x, 1.0) is x
    twice = augment.zoomed(x, 2.0)
    assert twice.shape == x.shape and twice.dtype == np.float32
    # enlarged twice about the centre: the slope halves and the centre stays where it was
    assert_allclose(twice[0, 0], ramp / 2, atol=1e-5)
    assert_allclose(twice[1, 0], ramp.T / 2, atol=1e-5)
    assert_array_equal(augment.zoomed(np.full((1, 1, 8, 8), 3.0, np.float32), 0.9), 3.0)


def test_an_ensemble_with_zooms_averages_every_member_over_every_view():
    from fast.model import Architecture, ConvNet, ensemble_proba
    arch = Architecture(input_shape=(1, 16, 16), channels=(4,), hidden=8, batchnorm=True, dropout=0.2)
    members = [ConvNet(arch, seed=s) for s in (0, 1)]
    x = np.random.default_rng(0).normal(size=(5, 1, 16, 16)).astype(np.float32)
    zooms = (1.0, 0.9, 1.2)
    expected = np.mean([m.predict_proba(augment.zoomed(x, z))[:, 1] for z in zooms for m in members], axis=0)
    assert_allclose(ensemble_proba(members, x, chunk=2, zooms=zooms), expected, rtol=1e-6)
    assert_allclose(ensemble_proba(members, x), np.mean([m.predict_proba(x)[:, 1] for m in members], axis=0),
                    rtol=1e-6)
    assert not np.allclose(ensemble_proba(members, x, zooms=zooms), ensemble_proba(members, x))
