"""How grey values become the network's input (``fast.data.normalise``), and the inputs drawn
from stored pixels (``fast.data.pixels``)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from fast.data.images import from_pixels
from fast.data.normalise import normalise, standardise
from fast.data.pixels import Inputs, Pixels


def test_normalise_by_image_a_hand_worked_case():
    # grey values 0.2, 0.2, 0.6, 0.6: mean 0.4, standard deviation 0.2
    images = np.array([[[0.2, 0.2], [0.6, 0.6]]], dtype=np.float32)
    assert_allclose(normalise(images.copy(), "image"), [[[-1, -1], [1, 1]]], atol=1e-6)
    # and a constant image has nothing to scale: all zeros, not NaN
    assert_array_equal(normalise(np.full((1, 3, 3), 0.7, np.float32), "image"), np.zeros((1, 3, 3)))


def test_normalise_equalise_a_hand_worked_case():
    # levels 10, 10, 20, 200: equalisation sends the lowest to 0 and the highest to 255 and
    # spaces the levels by how many pixels lie below them: 10 -> 0, 20 -> 128 (255/2 rounded
    # half up), 200 -> 255, before standardising by the image's own mean and std.
    levels = np.array([[[10, 10], [20, 200]]], dtype=np.uint8)
    equalised = np.array([0, 0, 128, 255], dtype=np.float64) / 255
    expected = (equalised - equalised.mean()) / equalised.std()
    got = normalise(from_pixels(levels), "equalise")
    assert got.dtype == np.float32
    assert_allclose(got.ravel(), expected, atol=1e-6)
    # "image" alone keeps the uneven spacing
    assert not np.allclose(normalise(from_pixels(levels), "image").ravel(), expected, atol=1e-2)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.2, 1.0), offset=st.floats(0.0, 0.5))
def test_normalise_by_image_ignores_exposure_and_contrast(seed, scale, offset):
    """What a per-image normalisation is for: the same X-ray, brighter or flatter (a * x + b,
    a > 0), reaches the network the same."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (3, 8, 8)).astype(np.float32)
    changed = (offset + scale * (1 - offset) * images).astype(np.float32)
    assert_allclose(normalise(changed, "image"), normalise(images.copy(), "image"), atol=2e-4)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_normalise_equalise_ignores_any_increasing_change_of_grey_levels(seed):
    """Histogram equalisation reads only the order of the grey levels: any strictly
    increasing map of them (gamma, a detector's curve) leaves its output unchanged."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 40, (2, 8, 8)).astype(np.uint8)
    curve = np.cumsum(rng.integers(1, 7, 256)).clip(max=255).astype(np.uint8)  # increasing below 40
    assert_allclose(normalise(from_pixels(curve[levels]), "equalise"),
                    normalise(from_pixels(levels), "equalise"), atol=1e-6)


@pytest.mark.parametrize("how", ["image", "equalise"])
def test_normalise_writes_into_a_strided_view_too(how):
    big = np.random.default_rng(4).integers(0, 256, (3, 8, 12)).astype(np.float32) / 255
    view = big[:, :, 2:10]  # not contiguous: each image's rows are 8 of 12 values apart
    expected = normalise(np.ascontiguousarray(view), how)
    assert normalise(view, how) is view
    assert_allclose(big[:, :, 2:10], expected, atol=1e-6)


def test_normalise_dataset_is_standardise_and_unknown_ways_are_refused():
    images = np.random.default_rng(1).uniform(0, 1, (2, 4, 4)).astype(np.float32)
    assert_array_equal(normalise(images.copy(), "dataset", 0.3, 0.2), standardise(images, 0.3, 0.2))
    with pytest.raises(ValueError, match="unknown normalisation 'histogram'.*dataset, image, equalise"):
        normalise(images, "histogram")


@pytest.mark.parametrize("how", ["dataset", "image", "equalise"])
def test_inputs_hand_over_normalised_batches_of_one_channel(how):
    levels = np.random.default_rng(2).integers(0, 256, (5, 6, 6)).astype(np.uint8)
    inputs = Inputs(Pixels(levels), 0.4, 0.25, how)
    assert inputs[1:4].shape == (3, 1, 6, 6) and inputs[1:4].dtype == np.float32
    assert_array_equal(inputs[1:4][:, 0], normalise(from_pixels(levels[1:4]), how, 0.4, 0.25))
    assert_array_equal(inputs.subset([4, 0])[:][:, 0], normalise(from_pixels(levels[[4, 0]]), how, 0.4, 0.25))
