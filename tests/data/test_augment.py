"""Augmentation (``fast.data.augment``): each transform does what its docstring says, and nothing else."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fast.data import augment
from fast.data.augment import augment_batch


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


def test_random_windows_keep_the_stated_share_of_the_area_and_stay_in_the_image():
    rng = np.random.default_rng(0)
    w, h = 64, 48
    zooms, shifts = augment._geometry(rng, 20000, w, h, crop_area=0.5)
    area = 1 / (zooms[:, 0] * zooms[:, 1])  # a zoom z keeps 1/z of each side
    assert area.min() >= 0.5 - 1e-12 and area.max() <= 2 + 1e-12
    assert area.min() < 0.52 and area.max() > 1.9  # the whole range is drawn
    assert np.mean(area < 1) == pytest.approx(0.5, abs=0.02)  # as many crops as zoom-outs
    aspect = zooms[:, 0] / zooms[:, 1]
    assert aspect.min() >= 3 / 4 - 1e-12 and aspect.max() <= 4 / 3 + 1e-12
    # a window (or a shrunken image) moves at most until it meets the frame, plus MAX_SHIFT
    reach = (np.abs(zooms - 1) / 2 + augment.MAX_SHIFT) * (w, h)
    assert np.all(np.abs(shifts) <= reach)


def test_without_crop_area_the_geometry_is_drawn_as_before():
    # the small zooms and shifts, in the order old runs drew them, so they resume bit-exactly
    zooms, shifts = augment._geometry(np.random.default_rng(4), 5, 32, 32, crop_area=None)
    twin = np.random.default_rng(4)
    assert_array_equal(zooms, twin.uniform(1 - augment.MAX_ZOOM, 1 + augment.MAX_ZOOM, (5, 2)))
    assert_array_equal(shifts, twin.uniform(-augment.MAX_SHIFT, augment.MAX_SHIFT, (5, 2)) * (32, 32))


def test_with_per_image_normalisation_each_cropped_image_is_standardised_again(monkeypatch):
    _only(monkeypatch)  # no contrast or brightness change after the crop
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(6, 1, 32, 32)).astype(np.float32)
    x[:, :, :16] += 5.0  # a bright top half, so a crop moves the mean
    out = augment_batch(x, np.random.default_rng(2), crop_area=0.5, per_image=True)
    assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-4)
    kept = augment_batch(x, np.random.default_rng(2), crop_area=0.5, per_image=False)
    assert np.abs(kept.mean(axis=(1, 2, 3))).max() > 0.5


def test_reframing_makes_the_normal_windows_tighter_by_its_factor_with_the_same_draws():
    labels = np.array([0, 1, 0, 1, 1])
    plain = augment._geometry(np.random.default_rng(7), 5, 32, 32, crop_area=0.5)
    scale = np.where(labels == 0, 1 / 1.5, 1.0)
    reframed = augment._geometry(np.random.default_rng(7), 5, 32, 32, crop_area=0.5, area_scale=scale)
    kept = lambda zooms: 1 / (zooms[:, 0] * zooms[:, 1])  # noqa: E731 -- the share of the area kept
    assert_allclose(kept(reframed[0]), kept(plain[0]) * scale)
    assert_allclose(reframed[0][:, 0] / reframed[0][:, 1], plain[0][:, 0] / plain[0][:, 1])  # aspect kept


def test_reframing_needs_the_whole_batchs_labels_and_changes_only_normal_images(monkeypatch):
    x = np.random.default_rng(0).normal(size=(4, 1, 16, 16)).astype(np.float32)
    labels = np.array([0, 1, 1, 0])
    with pytest.raises(ValueError, match="labels of the whole batch of 4 images"):
        augment_batch(x, np.random.default_rng(1), crop_area=0.5, reframe=1.5)
    plain = augment_batch(x, np.random.default_rng(1), crop_area=0.5, labels=labels)
    reframed = augment_batch(x, np.random.default_rng(1), crop_area=0.5, labels=labels, reframe=1.5)
    assert_array_equal(reframed[labels == 1], plain[labels == 1])
    assert not np.allclose(reframed[labels == 0], plain[labels == 0])
    # a batch split between processes: each part gets the rows it would get in one piece
    part = augment_batch(x[1:3], np.random.default_rng(1), (1, 3, 4), crop_area=0.5, labels=labels,
                         reframe=1.5)
    assert_array_equal(part, reframed[1:3])


# --------------------------------------------------------------------------- acquisition cues

def _greys(n=6, size=32, seed=0):
    return np.random.default_rng(seed).random((n, size, size), dtype=np.float32)


def test_cues_keep_shape_dtype_and_the_grey_range_and_leave_the_input_alone():
    images = _greys()
    before = images.copy()
    out = augment.acquisition_cues(images, np.random.default_rng(1))
    assert out.shape == images.shape and out.dtype == np.float32 and out is not images
    assert out.min() >= 0 and out.max() <= 1
    assert_array_equal(images, before)
    assert not np.array_equal(out, images)


def test_with_every_cue_off_the_images_come_back_as_they_were(monkeypatch):
    monkeypatch.setattr(augment, "CUE_CHANCE", {cue: 0.0 for cue in augment.CUE_CHANCE})
    images = _greys()
    assert_array_equal(augment.acquisition_cues(images, np.random.default_rng(1)), images)


def test_a_batch_split_between_processes_gets_the_cues_it_would_get_in_one_piece():
    images = _greys(n=7)
    whole = augment.acquisition_cues(images, np.random.default_rng(3))
    parts = [augment.acquisition_cues(images[lo:hi], np.random.default_rng(3), (lo, hi, 7))
             for lo, hi in ((0, 3), (3, 3), (3, 7))]
    assert_array_equal(np.concatenate(parts), whole)
    with pytest.raises(ValueError, match="do not fit"):
        augment.acquisition_cues(images[:2], np.random.default_rng(3), (0, 3, 7))


@pytest.mark.parametrize("cue", sorted(augment.CUE_CHANCE))
def test_each_cue_alone_changes_the_image(monkeypatch, cue):
    monkeypatch.setattr(augment, "CUE_CHANCE", {c: float(c == cue) for c in augment.CUE_CHANCE})
    images = 0.1 + 0.8 * _greys(n=4, size=224)  # away from 0 and 1, where gamma and clipping do nothing
    out = augment.acquisition_cues(images, np.random.default_rng(2))
    assert all(not np.allclose(o, i, atol=1e-3) for o, i in zip(out, images)), cue


def test_a_letter_is_pasted_in_its_corner_at_its_height():
    image = np.zeros((100, 100), np.float32)
    augment.paste_letter(image, "R", 20, corner=3)  # bottom-right
    rows, cols = np.nonzero(image > 0.5)
    assert rows.min() > 60 and cols.min() > 60 and rows.max() < 100 and cols.max() < 100
    assert 15 <= rows.max() - rows.min() + 1 <= 24


def test_matched_detail_blurs_the_normal_images_only():
    import cv2
    images = _greys(n=4)
    labels = np.array([0, 1, 0, 1])
    out = augment.matched_detail(images, labels, 0.6)
    assert_array_equal(out[labels == 1], images[labels == 1])
    blurred = cv2.GaussianBlur(images[0], (0, 0), 0.6 * 32 / 224, borderType=cv2.BORDER_REPLICATE)
    assert_allclose(out[0], blurred, atol=1e-6)
    assert_array_equal(augment.matched_detail(images, labels, 0.0), images)
