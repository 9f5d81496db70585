"""The pictures of a run drawn together from its files: every picture a readable PNG, the X-ray
pictures skipped without the data, Grad-CAM fed each X-ray's stored probability."""
from pathlib import Path

import numpy as np
import pytest

from fast.inference import load_classifier
from fast.pictures.drawing import PICTURES, make_report

from helpers import assert_readable_png, fresh_copy, texts_of

@pytest.mark.slow
def test_make_report_draws_every_picture_as_a_readable_png(tiny_run, xray_root, tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    notes = []
    written = make_report(run_dir, data_root=xray_root, log=notes.append)
    assert sorted(p.name for p in written) == sorted(PICTURES.values())
    for path in written:
        assert path.parent == run_dir
        assert_readable_png(path)
    assert not any(n.startswith("note") for n in notes)


@pytest.mark.slow
def test_without_the_data_the_report_skips_only_the_xray_pictures(tiny_run, tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    # The stored test paths lead nowhere, and so does the data folder given.
    with np.load(run_dir / "test_predictions.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["paths"] = np.array([str(tmp_path / "gone" / "test" / Path(p).parent.name / Path(p).name)
                                for p in arrays["paths"]])
    np.savez(run_dir / "test_predictions.npz", **arrays)
    notes = []
    written = make_report(run_dir, data_root=tmp_path / "no-data", log=notes.append)
    skipped = {PICTURES["features"], PICTURES["saliency"]}
    assert {p.name for p in written} == set(PICTURES.values()) - skipped
    assert any(n.startswith("note") and "--data" in n for n in notes)


@pytest.mark.slow
def test_the_saliency_grid_scales_each_map_by_its_probability(tiny_run, xray_root, drawn, tmp_path, monkeypatch):
    """The report hands each X-ray's stored P(pneumonia) to Grad-CAM, and its captions give the
    model's input size."""
    calls = []
    real = load_classifier(tiny_run / "model.npz")
    grad_cam = real.grad_cam

    def recorded(images, probability):
        calls.append(list(probability))
        return grad_cam(images, probability)

    monkeypatch.setattr(real, "grad_cam", recorded)
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    make_report(run_dir, data_root=xray_root, log=lambda *a: None, classifier=real)
    with np.load(run_dir / "test_predictions.npz") as npz:
        stored = set(np.round(npz["probability"], 12))
    assert calls and all(round(p, 12) in stored for call in calls for p in call)
    assert any(f"the model sees it at {real.image_size}x{real.image_size}" in t
               for t in texts_of(drawn[PICTURES["saliency"]]))


@pytest.mark.slow
def test_feature_maps_have_a_colour_bar_and_the_grad_cam_grid_says_what_it_shows(tiny_run, xray_root, drawn,
                                                                                 tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    make_report(run_dir, data_root=xray_root, log=lambda *a: None)
    features = drawn[PICTURES["features"]]
    assert any("activation after ReLU" in t for t in texts_of(features))  # the colour bar's label
    grid = " ".join(texts_of(drawn[PICTURES["saliency"]]))
    assert "not where\ndisease is" in grid and "most confident about" in grid
    assert "Where the network sees pneumonia" not in grid
