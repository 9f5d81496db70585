"""The framing stress study (``fast.training.framing``): its views by hand, its draw, its summary."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fast.data.normalise import normalise
from fast.data.pixels import Inputs, Pixels
from fast.training import framing
from fast.training.framing import framed


def _rows(h=8, w=8):
    """An image whose every pixel holds its row number: a window's rows read off directly."""
    return np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)[None]


def test_a_framed_window_against_the_top_edge_shows_the_top_half():
    # zoom 2 keeps a window of half the side; centre (0, -1) puts it against the top edge:
    # output row r reads source row r / 2 - 0.25 (pixel centres), the first clamped to row 0
    out = framing.framed(_rows(), 2.0, (0.0, -1.0))
    expected = np.maximum(np.arange(8) / 2 - 0.25, 0)
    assert_allclose(out[0, :, 3], expected, atol=1e-5)
    bottom = framing.framed(_rows(), 2.0, (0.0, 1.0))
    assert_allclose(bottom[0, :, 3], np.minimum(np.arange(8) / 2 + 3.75, 7), atol=1e-5)


def test_a_centred_frame_crops_the_middle_and_a_zoom_out_shrinks_the_image():
    centre = framing.framed(_rows(), 2.0)
    assert_allclose(centre[0, :, 0], np.arange(8) / 2 + 1.75, atol=1e-5)  # rows 1.75 .. 5.25
    # zoom 0.5: output row r reads source row 2 (r - 3.5) + 3.5, clamped to the image
    shrunk = framing.framed(_rows(), 0.5)
    assert_allclose(shrunk[0, :, 0], np.clip(2 * (np.arange(8) - 3.5) + 3.5, 0, 7), atol=1e-5)
    assert_array_equal(framing.framed(_rows(), 1.0), _rows())


def _inputs(n=5, size=16, how="image"):
    levels = np.random.default_rng(0).integers(0, 256, (n, size, size), dtype=np.uint8)
    return Inputs(Pixels(levels), mean=0.4, std=0.2, how=how)


@pytest.mark.parametrize("how", ["image", "dataset"])
def test_framed_inputs_frame_the_stored_images_then_normalise_them_as_the_run_does(how):
    inputs = _inputs(how=how)
    view = framing.View("crop 0.8 top", 1 / 0.8, (0.0, -1.0))
    got = framing.FramedInputs(inputs, view)[1:4]
    expected = normalise(framed(inputs.pixels[1:4], 1 / 0.8, (0.0, -1.0)), how, 0.4, 0.2)[:, None]
    assert got.shape == (3, 1, 16, 16) and got.dtype == np.float32
    assert_array_equal(got, expected)
    if how == "image":  # each view by its own statistics, as a file framed so would be
        assert_allclose(got.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    as_is = framing.FramedInputs(inputs, framing.AS_IS)
    assert_array_equal(as_is[:], inputs[:])
    assert_array_equal(as_is.subset([4, 0])[:], inputs[[4, 0]])


def test_the_study_draws_at_most_its_share_of_each_class_the_same_way_every_time():
    y = np.array([0] * 5 + [1] * 30)
    rows = framing.study_rows(y, seed=3, per_class=10)
    assert rows.sum() == 15 and rows[:5].all() and rows[5:].sum() == 10
    assert_array_equal(rows, framing.study_rows(y, seed=3, per_class=10))
    assert not np.array_equal(rows, framing.study_rows(y, seed=4, per_class=10))


def test_the_summary_counts_the_share_called_pneumonia_and_its_change_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1])
    probability = {
        framing.AS_IS.name: np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.9]),  # NORMAL 1/4 called, PNEUMONIA 2/2
        "crop 0.8": np.array([0.1, 0.6, 0.7, 0.9, 0.4, 0.9]),  # NORMAL 3/4 (+0.5), PNEUMONIA 1/2 (-0.5)
        "crop 0.9": np.array([0.1, 0.2, 0.3, 0.5, 0.8, 0.9]),  # exactly at the threshold counts
    }
    summary = framing.summarise(y, probability, threshold=0.5)
    views = summary["views"]
    assert summary["images"] == {"NORMAL": 4, "PNEUMONIA": 2}
    assert views["as is"]["NORMAL"]["called_pneumonia"] == 0.25
    assert views["crop 0.8"]["NORMAL"]["called_pneumonia"] == 0.75
    assert views["crop 0.8"]["NORMAL"]["change"] == 0.5
    assert views["crop 0.8"]["PNEUMONIA"]["change"] == -0.5
    assert views["crop 0.8"]["NORMAL"]["mean_probability"] == pytest.approx(0.575)
    assert views["crop 0.9"]["NORMAL"]["change"] == 0.0
    # crop 0.8, PNEUMONIA against NORMAL: 0.4 beats 0.1 only (1 of 4); 0.9 beats 0.1, 0.6, 0.7
    # and ties 0.9 (3.5 of 4): 4.5 of 8 pairs
    assert views["crop 0.8"]["roc_auc"] == pytest.approx(4.5 / 8)
    assert summary["breaches"] == ["crop 0.8: NORMAL called PNEUMONIA +0.500 (limit 0.05)",
                                   "crop 0.8: PNEUMONIA called PNEUMONIA -0.500 (limit 0.05)"]
    assert "beyond the limits" in framing.format_summary(summary)


def test_changes_within_the_limits_make_no_breach():
    y = np.array([0] * 20 + [1] * 20)
    base = np.r_[np.full(20, 0.2), np.full(20, 0.8)]
    moved = base.copy()
    moved[0] = 0.9  # one NORMAL of 20 now called PNEUMONIA: +0.05, at the limit, not beyond
    summary = framing.summarise(y, {"as is": base, "crop 0.8": moved, "crop 0.7": moved}, 0.5)
    assert summary["breaches"] == []
    assert "framing-invariant" in framing.format_summary(summary)


def test_the_limits_are_the_issues_figures():
    assert framing.LIMITS == {"crop 0.9": {"NORMAL": 0.05, "PNEUMONIA": 0.05},
                              "crop 0.8": {"NORMAL": 0.05, "PNEUMONIA": 0.05},
                              "crop 0.7": {"NORMAL": 0.10}}
    assert {v.name for v in framing.VIEWS} >= set(framing.LIMITS)
