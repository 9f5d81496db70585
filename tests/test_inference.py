"""The trained classifier (``fast.inference``): its record, its test-time views, finding and loading
it, and its answers through the Python API: probabilities, labels, feature maps, Grad-CAM."""
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fast import inference
from fast.data.images import read_xray
from fast.nn.model import ConvNet
from fast.nn.model_file import ModelFileError, load_models

from helpers import bad_model_files, small_architecture


def test_a_zoomed_view_enlarges_about_the_centre():
    ramp = np.tile(np.arange(16, dtype=np.float32) - 7.5, (16, 1))  # value = column - centre
    x = np.stack([ramp, ramp.T])[:, None]  # (2, 1, 16, 16): one ramp across, one down
    assert inference.zoomed(x, 1.0) is x
    twice = inference.zoomed(x, 2.0)
    assert twice.shape == x.shape and twice.dtype == np.float32
    # enlarged twice about the centre: the slope halves and the centre stays where it was
    assert_allclose(twice[0, 0], ramp / 2, atol=1e-5)
    assert_allclose(twice[1, 0], ramp.T / 2, atol=1e-5)
    assert_array_equal(inference.zoomed(np.full((1, 1, 8, 8), 3.0, np.float32), 0.9), 3.0)


def test_an_ensemble_with_zooms_averages_every_member_over_every_view():
    from fast.inference import ensemble_proba
    from fast.nn.model import ConvNet
    arch = small_architecture(input_shape=(1, 16, 16), channels=(4,), hidden=8, batchnorm=True, dropout=0.2)
    members = [ConvNet(arch, seed=s) for s in (0, 1)]
    x = np.random.default_rng(0).normal(size=(5, 1, 16, 16)).astype(np.float32)
    zooms = (1.0, 0.9, 1.2)
    expected = np.mean([m.predict_proba(inference.zoomed(x, z))[:, 1] for z in zooms for m in members], axis=0)
    assert_allclose(ensemble_proba(members, x, chunk=2, zooms=zooms), expected, rtol=1e-6)
    assert_allclose(ensemble_proba(members, x), np.mean([m.predict_proba(x)[:, 1] for m in members], axis=0),
                    rtol=1e-6)
    assert not np.allclose(ensemble_proba(members, x, zooms=zooms), ensemble_proba(members, x))


def _classifier(members, metadata):
    """A classifier of ``members`` whose record reads as the model file's ``metadata``."""
    return inference.Classifier(members, inference.ModelRecord.from_dict(members[0].arch, metadata))


@pytest.mark.slow
def test_a_classifier_without_stored_calibration_or_with_a_temperature_applies_it(tiny_run, tmp_path):
    from fast.scoring.calibration import apply_temperature
    members, metadata = load_models(tiny_run / "model.npz")
    plain = {k: v for k, v in metadata.items() if k != "calibration"}
    images = np.random.default_rng(0).uniform(0, 1, (3, 32, 32))
    raw = _classifier(members, plain).probability(images)  # nothing stored: as it comes
    classifier = _classifier(members, plain)
    assert_allclose(raw, inference.ensemble_proba(members, classifier.prepare(images), zooms=classifier.zooms),
                    rtol=0, atol=1e-9)
    warmed = _classifier(members, {**plain, "temperature": 2.0}).probability(images)
    assert_allclose(warmed, apply_temperature(raw, 2.0), rtol=1e-9)


@pytest.mark.slow
def test_a_classifier_prepares_and_views_images_as_its_model_file_says(tiny_run):
    from fast.data.normalise import normalise
    members, metadata = load_models(tiny_run / "model.npz")
    images = np.random.default_rng(3).uniform(0, 1, (4, 32, 32)).astype(np.float32)
    for how in ("dataset", "image", "equalise"):
        prepared = _classifier(members, {**metadata, "normalise": how}).prepare(images)
        assert_allclose(prepared[:, 0], normalise(images.copy(), how, metadata["mean"], metadata["std"]))
    older = {k: v for k, v in metadata.items() if k not in ("normalise", "test_time_zooms")}
    assert _classifier(members, older).record.normalise == "dataset"  # files from before the choices
    assert _classifier(members, older).zooms == (1.0,)
    assert metadata["test_time_zooms"] == [1.0, 0.95, 1.05]  # the trainer's default
    with pytest.raises(ValueError, match="unusable test-time zooms"):
        _classifier(members, {**metadata, "test_time_zooms": [0.0]})
    with pytest.raises(ValueError, match="unknown normalisation 'clahe'"):
        _classifier(members, {**metadata, "normalise": "clahe"})


@pytest.mark.slow
def test_every_bad_model_file_is_refused_by_load_classifier(tiny_run, tmp_path):
    for kind, path in bad_model_files(tmp_path, tiny_run / "model.npz").items():
        with pytest.raises(ModelFileError, match=re.escape(str(path))):
            inference.load_classifier(path)
    assert not (tmp_path / "pwned").exists()  # loading never ran the pickle


@pytest.mark.slow
def test_the_api_takes_a_run_directory_paths_or_arrays_and_agrees_with_the_cli(tiny_run, stored):
    paths, probability, _ = stored
    classifier = inference.load_classifier(tiny_run)  # a run directory
    by_path = classifier.predict_proba([paths[0], Path(paths[-1])])
    assert_allclose(by_path, probability[[0, -1]], rtol=0, atol=1e-5)
    assert_allclose(classifier.predict_proba(paths[0]), probability[:1], rtol=0, atol=1e-5)
    # an array at full size goes through the same resize as a file
    full = cv2.imread(paths[0], cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    assert_allclose(classifier.predict_proba(full), probability[:1], rtol=0, atol=1e-5)
    assert classifier.predict(paths[:2]) == classifier.labels(probability[:2])
    cam = classifier.saliency(paths[0])
    assert cam.shape[0] == 1 and 0 <= cam.min() and cam.max() <= 1
    with pytest.raises(ValueError, match="shape"):
        classifier.predict_proba(np.zeros((2, 3, 4, 5)))


@pytest.mark.slow
def test_the_api_reads_integer_images_as_files_are_read_and_refuses_values_outside_0_1(tiny_run, stored):
    paths, probability, _ = stored
    classifier = inference.load_classifier(tiny_run)
    pixels = cv2.imread(paths[0], cv2.IMREAD_GRAYSCALE)  # uint8, 0..255
    assert_allclose(classifier.predict_proba(pixels), probability[:1], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classifier.predict_proba(pixels.astype(np.float32))  # 0..255 as floats


@pytest.mark.slow
def test_feature_maps_come_with_the_networks_own_logits(classifier, stored):
    paths, _, _ = stored
    images = np.stack([read_xray(p, classifier.image_size) for p in paths[:4]])
    logits, maps = classifier.feature_maps(images)
    model = classifier.model
    assert_allclose(logits, model.forward(classifier.prepare(images))[0], rtol=0, atol=0)
    size = classifier.image_size
    assert [m.shape for m in maps] == [(4, c, size >> i, size >> i)
                                       for i, c in enumerate(model.arch.channels)]
    assert all(m.dtype == model.dtype and m.min() >= 0 for m in maps)


@pytest.mark.slow
def test_grad_cam_maps_peak_at_their_images_probability_or_are_all_zero(classifier, stored):
    """So a healthy X-ray (low P) shows no bright spot: the brightness is the evidence's strength."""
    paths, probability, _ = stored
    images = np.stack([read_xray(p, classifier.image_size) for p in paths[:6]])
    cam = classifier.grad_cam(images)
    size = classifier.image_size >> (len(classifier.model.arch.channels) - 1)
    assert cam.shape == (6, size, size) and cam.min() >= 0
    assert all(np.isclose(m.max(), p, rtol=1e-4) or m.max() == 0 for m, p in zip(cam, probability[:6]))
    assert any(m.max() > 0 for m in cam)
    # the probabilities given are the ones used: a healthy-looking P gives a dim map
    dim = classifier.grad_cam(images, np.full(6, 0.25))
    assert dim.max() <= 0.25 + 1e-12
    assert_allclose(dim, cam * (0.25 / probability[:6])[:, None, None], rtol=1e-4, atol=1e-12)
    with pytest.raises(ValueError, match="one probability per image"):
        classifier.grad_cam(images, [0.5])


@pytest.mark.slow
def test_files_are_predicted_a_chunk_at_a_time_as_in_one_piece(classifier, stored, tmp_path):
    paths, probability, _ = stored
    broken = tmp_path / "broken.jpeg"
    broken.write_bytes(b"")
    files = paths[:5] + [str(broken)] + paths[5:9]
    whole, images = classifier.predict_files(files)
    chunked, none_kept = classifier.predict_files(files, keep_images=False, chunk=3)
    assert len(images) == 9 and none_kept == []
    assert [r["path"] for r in chunked] == files and "error" in chunked[5]
    for a, b in zip(whole, chunked):
        assert a.keys() == b.keys()
        if "probability" in a:
            assert b["probability"] == pytest.approx(a["probability"], abs=1e-5)  # float32 batches differ
            assert b["label"] == a["label"]
    assert_allclose([r["probability"] for r in chunked if "error" not in r], probability[:9], atol=1e-5)


# --------------------------------------------------------------------------- the record, in memory

SMALL = small_architecture(input_shape=(1, 16, 16), channels=(2,), hidden=0, batchnorm=False, dropout=0.0)
# a model file's record as the trainer writes it, key by key in its order
WRITTEN = {"mean": 0.47, "std": 0.23, "normalise": "image", "test_time_zooms": [1.0, 0.95, 1.05],
           "threshold": 0.74, "calibration": {"method": "platt", "scale": 0.7, "bias": 2.6},
           "class_names": ["NORMAL", "PNEUMONIA"], "best_epoch": None,
           "threshold_rule": "the share of PNEUMONIA among the out-of-fold images", "held_out": "out-of-fold"}


def test_a_record_reads_back_as_written_in_the_same_order():
    record = inference.ModelRecord.from_dict(SMALL, WRITTEN)
    assert list(record.to_dict().items()) == list(WRITTEN.items())  # the same JSON, byte for byte
    assert record.test_time_zooms == (1.0, 0.95, 1.05) and record.calibration.scale == 0.7


def test_a_record_from_an_older_file_reads_as_it_was_made():
    record = inference.ModelRecord.from_dict(SMALL, {"mean": 0.4, "std": 0.2, "threshold": 0.5})
    assert record.normalise == "dataset" and record.test_time_zooms == (1.0,)
    assert record.calibration == inference.Calibration("temperature", 1.0, 0.0)  # no calibration: T = 1
    assert record.class_names == ("NORMAL", "PNEUMONIA") and record.held_out == "validation"
    assert record.best_epoch is None and record.threshold_rule is None
    warmed = inference.ModelRecord.from_dict(SMALL, {"mean": 0.4, "std": 0.2, "threshold": 0.5, "temperature": 2.0})
    assert warmed.calibration == inference.Calibration("temperature", 0.5, 0.0)


@pytest.mark.parametrize("values, arch, message", [
    ({"mean": 0.4, "threshold": 0.5}, SMALL, "lacks std"),
    ({**WRITTEN, "std": 0.0}, SMALL, r"corrupt metadata \(std 0.0\)"),
    (WRITTEN, small_architecture(input_shape=(3, 16, 16), channels=(2,)), "expected a 1-channel square input"),
    (WRITTEN, small_architecture(input_shape=(1, 16, 12), channels=(2,)), "expected a 1-channel square input"),
    (WRITTEN, small_architecture(input_shape=(1, 16, 16), channels=(2,), num_classes=3), "and 2 classes"),
])
def test_a_record_no_model_of_this_project_has_is_refused_saying_why(values, arch, message):
    with pytest.raises(ValueError, match=message):
        inference.ModelRecord.from_dict(arch, values)


def test_a_classifier_file_round_trips_its_networks_and_record(tmp_path):
    members = [ConvNet(SMALL, seed=s) for s in (0, 1)]
    record = inference.ModelRecord.from_dict(SMALL, WRITTEN)
    inference.save_classifier(tmp_path / "m.npz", members, record)
    loaded, again = inference.read_classifier(tmp_path / "m.npz")
    assert again == record and len(loaded) == 2
    with pytest.raises(ValueError, match="architecture"):
        inference.save_classifier(tmp_path / "n.npz", [ConvNet(small_architecture(input_shape=(1, 8, 8), channels=(2,)))],
                                  record)


def test_a_probability_exactly_at_the_threshold_is_called_pneumonia():
    record = inference.ModelRecord.from_dict(SMALL, WRITTEN)
    classifier = inference.Classifier([ConvNet(SMALL)], record)
    below = float(np.nextafter(record.threshold, 0))
    assert classifier.labels([below, record.threshold, 1.0]) == ["NORMAL", "PNEUMONIA", "PNEUMONIA"]


def _typical_classifier(tmp_path, seed=0):
    """A small two-network classifier with a typicality model fitted on noise images' features
    and held-out predictions, saved and loaded back."""
    import dataclasses
    from fast.scoring import typicality
    members = [ConvNet(SMALL, seed=s) for s in (0, 1)]
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(80, 1, 16, 16)).astype(np.float32)
    features = [inference.member_features(m, x) for m in members]
    record = dataclasses.replace(inference.ModelRecord.from_dict(SMALL, WRITTEN),
                                 typicality=typicality.fit([{n: v[:60] for n, v in f.items()} for f in features],
                                                           [{n: v[60:] for n, v in f.items()} for f in features]),
                                 held_out_probability=np.linspace(0, 1, 11), held_out_label=np.array([0] * 5 + [1] * 6))
    inference.save_classifier(tmp_path / "m.npz", members, record)
    return inference.load_classifier(tmp_path / "m.npz"), record


def test_a_classifier_file_round_trips_its_typicality_and_held_out_predictions(tmp_path):
    classifier, record = _typical_classifier(tmp_path)
    again = classifier.record
    assert again.typicality.threshold == record.typicality.threshold
    for layer in record.typicality.layers:
        assert_allclose(again.typicality.precisions[layer], record.typicality.precisions[layer], rtol=1e-6)
    assert_array_equal(again.held_out_probability, record.held_out_probability)
    assert_array_equal(again.held_out_label, record.held_out_label)
    images = np.random.default_rng(9).random((3, 16, 16)).astype(np.float32)
    probability, typical = classifier.scores(images)
    assert_allclose(probability, classifier.probability(images))
    x = classifier.prepare(images)  # the score is the typicality model's of the networks' features
    assert_allclose(typical, record.typicality.score([inference.member_features(m, x) for m in classifier.members]))


def test_an_older_model_file_loads_says_once_it_has_no_typicality_and_gets_the_cheap_checks(tmp_path):
    members = [ConvNet(SMALL, seed=0)]
    inference.save_classifier(tmp_path / "old.npz", members, inference.ModelRecord.from_dict(SMALL, WRITTEN))
    with pytest.warns(inference.OldModelWarning, match="no typicality model") as caught:
        classifier = inference.load_classifier(tmp_path / "old.npz")
    assert len(caught) == 1
    probability, warnings = classifier.predict_proba(np.zeros((80, 80)), with_warnings=True)
    assert probability.shape == (1,) and warnings == [["blank or nearly constant image"]]
    with pytest.raises(ValueError, match="keeps no held-out predictions"):
        classifier.operating_point(sensitivity=0.9)


def test_the_operating_point_is_the_models_own_a_given_threshold_or_one_chosen_by_sensitivity(tmp_path):
    classifier, _ = _typical_classifier(tmp_path)
    assert classifier.operating_point() == (0.74, "the model's own threshold 0.7400, the share of PNEUMONIA "
                                                  "among the out-of-fold images")
    assert classifier.operating_point(threshold=0.3)[0] == 0.3
    # held-out labels 0 x5, 1 x6 at probabilities 0.0 .. 1.0: positives at 0.5 .. 1.0
    assert classifier.operating_point(sensitivity=1.0)[0] == pytest.approx(0.5)
    assert classifier.operating_point(sensitivity=0.5)[0] == pytest.approx(0.8)  # 3 of 6: 0.8, 0.9, 1.0
    assert classifier.labels([0.75, 0.85], 0.8) == ["NORMAL", "PNEUMONIA"]
    assert classifier.predict(np.zeros((2, 16, 16)), threshold=0.0) == ["PNEUMONIA", "PNEUMONIA"]
    for bad in ({"threshold": 1.2}, {"sensitivity": 0.0}, {"threshold": 0.5, "sensitivity": 0.9}):
        with pytest.raises(ValueError):
            classifier.operating_point(**bad)


def test_a_colour_array_is_one_image_made_grey_as_a_file_is(tmp_path):
    classifier, _ = _typical_classifier(tmp_path)
    grey = np.random.default_rng(4).integers(0, 256, (30, 20), dtype=np.uint8)
    bgr = np.repeat(grey[:, :, None], 3, axis=2)
    bgra = np.concatenate([bgr, np.full((30, 20, 1), 255, np.uint8)], axis=2)
    expected = classifier.predict_proba(grey)
    for colour in (bgr, bgra):
        p, warnings = classifier.predict_proba(colour, with_warnings=True)
        assert p.shape == (1,)  # never a batch of 30 images of 20 x 3
        assert_allclose(p, expected, rtol=1e-6)
        assert not any("colour" in w for w in warnings[0])  # grey stored as colour is grey
    tinted = bgr.copy()
    tinted[:, :, 0] = 0
    _, warnings = classifier.predict_proba(tinted, with_warnings=True)
    assert any("colour" in w for w in warnings[0])
    png = tmp_path / "tinted.png"
    cv2.imwrite(str(png), tinted)  # the same colour image as a file: the same probability
    assert_allclose(classifier.predict_proba(str(png)), classifier.predict_proba(tinted), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        classifier.predict_proba(np.zeros((2, 3, 8, 8)))


def test_typicality_warnings_flag_scores_above_the_threshold(tmp_path):
    classifier, record = _typical_classifier(tmp_path)
    limit = record.typicality.threshold
    warned = classifier.typicality_warnings(np.array([limit, limit * 1.01]))
    assert warned[0] == [] and "unlike the chest X-rays the model learned from" in warned[1][0]
    assert classifier.typicality_warnings(None) is None
