"""Training runs (``fast.training.trainer``): short real trainings learn, the threshold follows its
rule on the held-out predictions, K-fold runs predict every training image once and resume."""
import json

import numpy as np
import pytest

import fast.training.loop
from fast.inference import ensemble_proba
from fast.nn.model_file import load_model
from fast.scoring import metrics, stress
from fast.training.loop import TrainingError
from fast.training.trainer import train

from helpers import quiet, small_config


def _weights(run_dir):
    model, _ = load_model(run_dir / "model.npz")
    return model.state()  # params and batch-norm running statistics


@pytest.mark.slow
def test_short_real_training_beats_val_auc_0_9(xray_root, tmp_path):
    config = small_config(xray_root, tmp_path, limit=1200, epochs=6, channels=(8, 16, 16), batchnorm=False,
                     dropout=0.0, head="flatten")
    run_dir = train(config, log=quiet, progress_bars=False)

    results = json.loads((run_dir / "metrics.json").read_text())
    assert results["val"]["roc_auc"] > 0.9
    assert results["test"]["n"] == 624
    for name in ("config.json", "history.csv", "model.npz", "checkpoint.npz"):
        assert (run_dir / name).is_file()
    history = (run_dir / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,lr,train_loss,val_loss,val_accuracy,val_auc")
    assert len(history) == 1 + 6
    # The stored threshold is the one the run reports.
    model, meta = load_model(run_dir / "model.npz")
    assert meta["threshold"] == results["threshold"]
    assert set(results["test"]) >= {"accuracy", "sensitivity", "specificity", "precision", "f1",
                                    "roc_auc", "confusion_matrix"}
    assert np.array(results["test"]["confusion_matrix"]).sum() == 624


NORMALISED = dict(batchnorm=True, head="gap", dropout=0.3, convs_per_block=2, hidden=0)


@pytest.mark.slow
def test_short_real_training_of_a_batch_normalised_network_beats_val_auc_0_9(xray_root, tmp_path):
    config = small_config(xray_root, tmp_path, limit=1200, epochs=6, channels=(8, 16, 16), batchnorm=True,
                     head="gap", dropout=0.2, hidden=0)
    run_dir = train(config, log=quiet, progress_bars=False)
    results = json.loads((run_dir / "metrics.json").read_text())
    assert results["val"]["roc_auc"] > 0.9
    model, _ = load_model(run_dir / "model.npz")
    assert model.arch.batchnorm and model.arch.head == "gap" and model.arch.dropout == 0.2
    # the running statistics were learned and stored: not their initial 0 and 1
    assert not np.allclose(model.buffers["bn1_mean"], 0) and not np.allclose(model.buffers["bn1_var"], 1)


@pytest.mark.slow
def test_a_second_run_into_the_same_directory_is_refused(xray_root, tmp_path):
    config = small_config(xray_root, tmp_path, epochs=1)
    train(config, log=quiet, progress_bars=False)
    with pytest.raises(TrainingError, match="--resume"):
        train(config, log=quiet, progress_bars=False)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_trained_threshold_is_youden_on_calibrated_validation_probabilities(xray_root, tmp_path, method):
    run_dir = train(small_config(xray_root, tmp_path, epochs=2, calibration=method, threshold_rule="youden"),
                    log=quiet, progress_bars=False)
    from fast.data.dataset import load_dataset
    from fast.scoring.calibration import apply_platt, apply_temperature, fit_platt, fit_temperature
    config = small_config(xray_root, tmp_path, epochs=2)
    ds = load_dataset(xray_root, config.image_size, val_fraction=config.carved_fraction, seed=config.seed,
                      normalisation=config.normalise, cache_dir=config.cache_dir, limit=config.limit,
                      progress=False)
    model, meta = load_model(run_dir / "model.npz")
    # the held-out probabilities are averaged over the image and its test-time zooms
    assert meta["test_time_zooms"] == [1.0, 0.95, 1.05]
    raw = ensemble_proba([model], ds.x_val, zooms=meta["test_time_zooms"])
    stored = meta["calibration"]
    assert stored["method"] == method
    if method == "temperature":
        temperature = fit_temperature(raw, ds.y_val)
        assert stored["bias"] == 0 and stored["scale"] == pytest.approx(1 / temperature, rel=1e-9)
        val_prob = apply_temperature(raw, temperature)
    else:
        assert (stored["scale"], stored["bias"]) == pytest.approx(fit_platt(raw, ds.y_val), rel=1e-9)
        val_prob = apply_platt(raw, stored["scale"], stored["bias"])
    assert meta["threshold"] == pytest.approx(metrics.youden_threshold(ds.y_val, val_prob), rel=1e-6)
    stored = json.loads((run_dir / "metrics.json").read_text())["val"]
    assert stored["ece"] == pytest.approx(metrics.expected_calibration_error(ds.y_val, val_prob))
    assert stored["brier"] == pytest.approx(metrics.brier_score(ds.y_val, val_prob))


@pytest.mark.slow
def test_target_sensitivity_threshold_reaches_the_target_on_validation(xray_root, tmp_path):
    run_dir = train(small_config(xray_root, tmp_path, epochs=1, target_sensitivity=0.99), log=quiet,
                    progress_bars=False)
    results = json.loads((run_dir / "metrics.json").read_text())
    assert results["val"]["sensitivity"] >= 0.99
    assert "sensitivity >= 0.99" in results["threshold_rule"]


@pytest.mark.slow
def test_k_fold_run_predicts_every_training_image_once_and_saves_the_ensemble(xray_root, tmp_path):
    config = small_config(xray_root, tmp_path, folds=3, epochs=2)
    run_dir = train(config, log=quiet, progress_bars=False)
    results = json.loads((run_dir / "metrics.json").read_text())
    from fast.data.folders import list_split
    from fast.nn.model_file import load_models
    members, meta = load_models(run_dir / "model.npz")
    assert len(members) == 3 and results["models"] == 3 and meta["held_out"] == "out-of-fold"
    # the held-out ("val") figures are out-of-fold: every training image of the run, once
    with np.load(run_dir / "val_predictions.npz", allow_pickle=False) as npz:
        paths = [str(p) for p in npz["paths"]]
    assert len(paths) == len(set(paths)) == results["val"]["n"] == 300
    listed = {str(p.resolve()) for p in list_split(xray_root, "train")[0]}
    assert set(paths) <= listed
    history = (run_dir / "history.csv").read_text().splitlines()
    assert history[0].startswith("fold,epoch") and len(history) == 1 + 3 * 2
    assert all((run_dir / f"fold{k}" / "checkpoint.npz").is_file() for k in (1, 2, 3))
    # the threshold was chosen on the out-of-fold images, by the default rule: their share of
    # PNEUMONIA (the training split's 3,875 of 5,216, as stratified in the 300-image subset)
    with np.load(run_dir / "val_predictions.npz", allow_pickle=False) as npz:
        assert results["threshold"] == npz["label"].mean() == pytest.approx(3875 / 5216, abs=2 / 300)
    assert results["threshold_rule"] == "the share of PNEUMONIA among the out-of-fold images"
    # the stress battery: every held-out image of the small run (under PER_CLASS of each class),
    # as it is and in every view, at the run's threshold
    study = results["stress"]
    assert study["threshold"] == results["threshold"]
    assert sum(study["images"].values()) == 300
    assert list(study["views"]) == ["as is"] + [v.name for v in stress.VIEWS]
    as_is = study["views"]["as is"]
    matrix = results["val"]["confusion_matrix"]  # as is, the study's shares are the run's own
    assert as_is["NORMAL"]["called_pneumonia"] == pytest.approx(matrix[0][1] / sum(matrix[0]))
    assert as_is["PNEUMONIA"]["called_pneumonia"] == pytest.approx(matrix[1][1] / sum(matrix[1]))
    assert as_is["roc_auc"] == pytest.approx(results["val"]["roc_auc"])


@pytest.mark.slow
@pytest.mark.parametrize("augmentation", [{}, {"cues": True, "match_detail": 0.6}])
def test_k_fold_run_resumes_to_the_same_ensemble(xray_root, tmp_path, monkeypatch, augmentation):
    whole = train(small_config(xray_root, tmp_path / "a", folds=2, epochs=2, **augmentation), log=quiet,
                  progress_bars=False)
    real_augment, calls = fast.training.loop.augment_batch, []

    def interrupting_augment(x, rng, rows=None, **kwargs):  # 2 folds of about 150 images: 5 batches an epoch
        calls.append(1)
        if len(calls) == 17:  # in the second fold's second epoch
            raise KeyboardInterrupt
        return real_augment(x, rng, rows, **kwargs)

    monkeypatch.setattr(fast.training.loop, "augment_batch", interrupting_augment)
    config = small_config(xray_root, tmp_path / "b", folds=2, epochs=2, **augmentation)
    with pytest.raises(KeyboardInterrupt):
        train(config, log=quiet, progress_bars=False)
    # fold 1 finished, fold 2 stopped after its first epoch
    assert (tmp_path / "b" / "run" / "fold2" / "checkpoint.npz").is_file()
    assert not (tmp_path / "b" / "run" / "model.npz").exists()
    monkeypatch.setattr(fast.training.loop, "augment_batch", real_augment)
    resumed = train(config, resume=tmp_path / "b" / "run", log=quiet, progress_bars=False)
    from fast.nn.model_file import load_model_file
    (a, _, kept), (b, _, again) = load_model_file(whole / "model.npz"), load_model_file(resumed / "model.npz")
    for m, n in zip(a, b, strict=True):
        for k, v in m.state().items():
            assert np.array_equal(v, n.state()[k]), k
    assert set(kept) == set(again) >= {"typicality_layers", "typicality_conv1_means", "held_out_probability"}
    for k, v in kept.items():  # the typicality model and the held-out predictions too
        assert np.array_equal(v, again[k]), k


@pytest.mark.slow
def test_a_k_fold_runs_test_predictions_come_back_through_the_classifier(xray_root, tmp_path):
    run_dir = train(small_config(xray_root, tmp_path, folds=2, epochs=1), log=quiet, progress_bars=False)
    from fast.inference import load_classifier
    classifier = load_classifier(run_dir)
    assert len(classifier.members) == 2
    with np.load(run_dir / "test_predictions.npz", allow_pickle=False) as npz:
        paths, stored = [str(p) for p in npz["paths"]], npz["probability"]
    np.testing.assert_allclose(classifier.predict_proba(paths), stored, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_a_typicality_model_attached_afterwards_is_the_one_the_run_fitted(xray_root, tmp_path):
    """``studies.attach_typicality`` (for model files made before they kept one) fits exactly what
    the trainer fits at the end of a run."""
    import dataclasses
    from fast.inference import read_classifier, save_classifier
    from studies import attach_typicality
    run = train(small_config(xray_root, tmp_path, folds=2, epochs=1), log=quiet, progress_bars=False)
    members, record = read_classifier(run / "model.npz")
    save_classifier(run / "model.npz", members, dataclasses.replace(record, typicality=None))
    assert read_classifier(run / "model.npz")[1].typicality is None
    assert attach_typicality.main(["--model", str(run), "--data", str(xray_root),
                                   "--cache-dir", str(tmp_path / "cache")]) == 0
    again = read_classifier(run / "model.npz")[1].typicality
    kept = record.typicality.arrays()
    assert set(again.arrays()) == set(kept)
    for name, value in again.arrays().items():
        assert np.array_equal(value, kept[name]), name
