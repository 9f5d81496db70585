"""The stress battery (``fast.scoring.stress``): its views by hand, its draws, its limits, its summary."""
import cv2
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fast.data.images import from_pixels
from fast.data.normalise import normalise
from fast.data.pixels import Inputs, Pixels
from fast.scoring import stress
from fast.scoring.stress import framed


def _rows(h=8, w=8):
    """An image whose every pixel holds its row number: a window's rows read off directly."""
    return np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)[None]


def test_a_framed_window_against_the_top_edge_shows_the_top_half():
    # zoom 2 keeps a window of half the side; centre (0, -1) puts it against the top edge:
    # output row r reads source row r / 2 - 0.25 (pixel centres), the first clamped to row 0
    out = framed(_rows(), 2.0, (0.0, -1.0))
    expected = np.maximum(np.arange(8) / 2 - 0.25, 0)
    assert_allclose(out[0, :, 3], expected, atol=1e-5)
    bottom = framed(_rows(), 2.0, (0.0, 1.0))
    assert_allclose(bottom[0, :, 3], np.minimum(np.arange(8) / 2 + 3.75, 7), atol=1e-5)


def test_a_centred_frame_crops_the_middle_and_a_zoom_out_shrinks_the_image():
    centre = framed(_rows(), 2.0)
    assert_allclose(centre[0, :, 0], np.arange(8) / 2 + 1.75, atol=1e-5)  # rows 1.75 .. 5.25
    # zoom 0.5: output row r reads source row 2 (r - 3.5) + 3.5, clamped to the image
    shrunk = framed(_rows(), 0.5)
    assert_allclose(shrunk[0, :, 0], np.clip(2 * (np.arange(8) - 3.5) + 3.5, 0, 7), atol=1e-5)
    assert_array_equal(framed(_rows(), 1.0), _rows())


def test_a_zoom_out_with_a_black_border_is_black_outside_and_a_reflected_one_mirrors_the_image():
    image = _rows() + 1  # rows 1..8: no row is black
    black = framed(image, 0.5, border=cv2.BORDER_CONSTANT)
    # zoom 0.5 of 8 x 8: the image fills rows and columns 2..5; rows 0 and 7 lie wholly outside
    assert_array_equal(black[0, [0, 7]], 0)
    assert_array_equal(black[0, :, [0, 7]], 0)
    assert (black[0, 2:6, 2:6] > 0).all()
    reflected = framed(image, 0.5, border=cv2.BORDER_REFLECT_101)
    # row 0 reads source row -3.5, reflected about row 0 to 3.5: between rows 3 and 4 (values 4, 5)
    assert_allclose(reflected[0, 0], 4.5, atol=1e-5)


def test_exposure_sharpness_and_mirror_views_by_hand():
    x = np.array([[[0.0, 0.25, 1.0, 0.64]]], dtype=np.float32)
    assert_allclose(stress.gamma(x, 1.5), [[[0.0, 0.125, 1.0, 0.512]]], rtol=1e-6)
    assert_allclose(stress.gamma(x, 1 / 1.5), x ** (1 / 1.5), rtol=1e-6)
    flat = np.full((1, 9, 9), 0.5, dtype=np.float32)
    assert_allclose(stress.blurred(flat, 1.5), flat, atol=1e-6)  # a constant image has no detail
    assert_allclose(stress.sharpened(flat), flat, atol=1e-6)
    assert_allclose(stress.resampled(flat, 0.5), flat, atol=1e-6)
    mirror = stress.BY_NAME["mirrored"].make(x, None)
    assert_array_equal(mirror, x[..., ::-1])


def test_noise_is_drawn_from_the_image_so_any_split_of_the_images_gets_the_same_views():
    levels = np.random.default_rng(0).integers(0, 256, (6, 12, 12), dtype=np.uint8)
    inputs = Inputs(Pixels(levels), mean=0.4, std=0.2, how="dataset")
    for name in ("noise 0.03", "letter 1/10", "electrode discs"):
        whole = stress.ViewedInputs(inputs, stress.BY_NAME[name])[:]
        parts = np.concatenate([stress.ViewedInputs(inputs.subset(rows), stress.BY_NAME[name])[:]
                                for rows in ([0, 1], [2], [3, 4, 5])])
        assert_array_equal(whole, parts)
        assert not np.array_equal(whole, inputs[:])  # the view changed the images
    # the noise's size is its sd: the change, before normalisation, is about 0.03 of the grey range
    grey = np.full((1, 64, 64), 0.5, dtype=np.float32)
    rngs = stress.image_rngs(np.zeros((1, 64, 64), np.uint8), stress.BY_NAME["noise 0.03"])
    assert np.std(stress.noisy(grey, rngs, 0.03) - grey) == pytest.approx(0.03, rel=0.1)


def test_a_letter_goes_in_a_corner_and_discs_on_the_chest_wall():
    black = np.zeros((5, 100, 100), dtype=np.float32)
    rngs = [np.random.default_rng(i) for i in range(5)]
    lettered = stress.lettered(black, rngs, 1 / 10)
    for image in lettered:
        rows, cols = np.nonzero(image > 0.5)
        assert rows.max() - rows.min() <= 12  # about a tenth of the side high
        assert (rows.max() < 20 or rows.min() > 80) and (cols.max() < 25 or cols.min() > 75)
    assert_array_equal(black, 0)  # the input is left as it was
    discs = stress.with_discs(black, [np.random.default_rng(i) for i in range(5)])
    for image in discs:
        cols = np.nonzero(image.max(axis=0) > 0.5)[0]
        assert ((cols < 35) | (cols > 65)).all()  # the outer thirds, not the mediastinum


def test_corners_masked_fill_the_top_corners_with_the_median_grey():
    x = np.random.default_rng(1).random((1, 20, 10), dtype=np.float32)
    out = stress.corners_masked(x)
    median = np.median(x[0])
    assert_allclose(out[0, :3, :3], median)  # 15 % of 20 rows, 30 % of 10 columns
    assert_allclose(out[0, :3, 7:], median)
    assert_array_equal(out[0, 3:], x[0, 3:])
    assert_array_equal(out[0, :3, 3:7], x[0, :3, 3:7])


def test_jpeg_at_low_quality_changes_the_image_a_little():
    x = from_pixels(np.random.default_rng(2).integers(0, 256, (1, 32, 32), dtype=np.uint8))
    out = stress.jpeg(x, 15)
    assert out.shape == x.shape and out.dtype == np.float32
    assert 0 < np.abs(out - x).mean() < 0.5


def _inputs(n=5, size=16, how="image"):
    levels = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
    return Inputs(Pixels(levels), mean=0.4, std=0.2, how=how)


@pytest.mark.parametrize("how", ["image", "dataset"])
def test_viewed_inputs_change_the_stored_images_then_normalise_them_as_the_run_does(how):
    inputs = _inputs(how=how)
    view = stress.BY_NAME["crop 0.8 top"]
    got = stress.ViewedInputs(inputs, view)[1:4]
    expected = normalise(framed(inputs.pixels[1:4], 1 / 0.8, (0.0, -1.0)), how, 0.4, 0.2)[:, None]
    assert got.shape == (3, 1, 16, 16) and got.dtype == np.float32
    assert_array_equal(got, expected)
    if how == "image":  # each view by its own statistics, as a file taken so would be
        assert_allclose(got.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    as_is = stress.ViewedInputs(inputs, stress.AS_IS)
    assert_array_equal(as_is[:], inputs[:])
    assert_array_equal(as_is.subset([4, 0])[:], inputs[[4, 0]])


def test_every_view_keeps_the_shape_and_the_grey_range():
    images = from_pixels(np.random.default_rng(3).integers(0, 256, (2, 32, 32), dtype=np.uint8))
    for view in stress.VIEWS:
        out = view.make(images.copy(), stress.image_rngs((images * 255).astype(np.uint8), view))
        assert out.shape == images.shape, view.name
        assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6, view.name


def test_the_study_draws_at_most_its_share_of_each_class_the_same_way_every_time():
    y = np.array([0] * 5 + [1] * 30)
    rows = stress.study_rows(y, seed=3, per_class=10)
    assert rows.sum() == 15 and rows[:5].all() and rows[5:].sum() == 10
    assert_array_equal(rows, stress.study_rows(y, seed=3, per_class=10))
    assert not np.array_equal(rows, stress.study_rows(y, seed=4, per_class=10))


def test_the_summary_counts_the_share_called_pneumonia_and_its_change_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1])
    probability = {
        stress.AS_IS.name: np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.9]),  # NORMAL 1/4 called, PNEUMONIA 2/2
        "crop 0.8": np.array([0.1, 0.6, 0.7, 0.9, 0.4, 0.9]),  # NORMAL 3/4 (+0.5), PNEUMONIA 1/2 (-0.5)
        "crop 0.9": np.array([0.1, 0.2, 0.3, 0.5, 0.8, 0.9]),  # exactly at the threshold counts
    }
    summary = stress.summarise(y, probability, threshold=0.5)
    views = summary["views"]
    assert summary["images"] == {"NORMAL": 4, "PNEUMONIA": 2}
    assert views["as is"]["NORMAL"]["called_pneumonia"] == 0.25
    assert views["as is"]["limit"] is None
    assert views["crop 0.8"]["NORMAL"]["called_pneumonia"] == 0.75
    assert views["crop 0.8"]["NORMAL"]["change"] == 0.5
    assert views["crop 0.8"]["PNEUMONIA"]["change"] == -0.5
    assert views["crop 0.8"]["NORMAL"]["mean_probability"] == pytest.approx(0.575)
    assert views["crop 0.8"]["family"] == "framing" and views["crop 0.8"]["limit"] == 0.05
    assert views["crop 0.9"]["NORMAL"]["change"] == 0.0
    # crop 0.8, PNEUMONIA against NORMAL: 0.4 beats 0.1 only (1 of 4); 0.9 beats 0.1, 0.6, 0.7
    # and ties 0.9 (3.5 of 4): 4.5 of 8 pairs
    assert views["crop 0.8"]["roc_auc"] == pytest.approx(4.5 / 8)
    assert summary["breaches"] == ["crop 0.8: NORMAL called PNEUMONIA +0.500 (limit 0.05)",
                                   "crop 0.8: PNEUMONIA called PNEUMONIA -0.500 (limit 0.05)"]
    assert "2 beyond the limits" in stress.format_summary(summary)
    assert stress.worst_change(summary) == 0.5
    assert stress.worst_change(summary, "acquisition") == 0.0


def test_changes_within_the_limits_make_no_breach_and_strong_views_may_move_twice_as_far():
    y = np.array([0] * 20 + [1] * 20)
    base = np.r_[np.full(20, 0.2), np.full(20, 0.8)]
    moved = base.copy()
    moved[0] = 0.9  # one NORMAL of 20 now called PNEUMONIA: +0.05, at the limit, not beyond
    twice = moved.copy()
    twice[1] = 0.9  # +0.10
    summary = stress.summarise(y, {"as is": base, "crop 0.8": moved, "crop 0.7": twice,
                                   "noise 0.03": twice}, 0.5)
    assert summary["breaches"] == []
    assert "every view within its limit" in stress.format_summary(summary)
    summary = stress.summarise(y, {"as is": base, "noise 0.01": twice}, 0.5)
    assert summary["breaches"] == ["noise 0.01: NORMAL called PNEUMONIA +0.100 (limit 0.05)"]


def test_the_views_and_limits_are_the_issues():
    names = [v.name for v in stress.VIEWS]
    assert len(names) == len(set(names))
    assert {v.family for v in stress.VIEWS} == set(stress.FAMILIES)
    strong = {v.name for v in stress.VIEWS if v.strong}
    # strong (0.10): crop 0.7, noise sd 0.03 and above, gamma 1.5 either way, the large letter,
    # the zoom-outs; every other view 0.05
    assert strong == {"crop 0.7", "noise 0.03", "gamma 1/1.5 (brighter)", "gamma 1.5 (darker)",
                      "letter 1/10", "zoom-out 0.8", "zoom-out 0.8 black", "zoom-out 0.8 reflected"}
    assert {v.limit for v in stress.VIEWS if not v.strong} == {0.05}
    assert {v.limit for v in stress.VIEWS if v.strong} == {0.10}
