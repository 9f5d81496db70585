"""The trainer: it learns on real X-rays, resumes exactly, stops cleanly, refuses bad flags."""
import json
import math

import numpy as np
import pytest

import fast.training.loop
from fast.training import framing
from fast.scoring import metrics
from fast.training.config import TrainConfig
from fast.inference import ensemble_proba
from fast.nn.model import ConvNet
from fast.nn.model_file import load_model
from fast.training.optim import SGD, Adam, Momentum, learning_rate
from fast.train import main, parse_args
from fast.training.loop import TrainingError, balanced_class_weights
from fast.training.trainer import train


def _quiet(*_):
    pass


def _config(root, tmp_path, **changes):
    fields = dict(data=str(root), out=str(tmp_path / "run"), image_size=32, limit=300, epochs=3,
                  channels=(8, 16), hidden=32, folds=1, cache_dir=str(tmp_path / "cache"))
    fields.update(changes)
    return TrainConfig(**fields)


def _weights(run_dir):
    model, _ = load_model(run_dir / "model.npz")
    return model.state()  # params and batch-norm running statistics


def test_short_real_training_beats_val_auc_0_9(xray_root, tmp_path):
    config = _config(xray_root, tmp_path, limit=1200, epochs=6, channels=(8, 16, 16), batchnorm=False,
                     dropout=0.0, head="flatten")
    run_dir = train(config, log=_quiet, progress_bars=False)

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


def test_short_real_training_of_a_batch_normalised_network_beats_val_auc_0_9(xray_root, tmp_path):
    config = _config(xray_root, tmp_path, limit=1200, epochs=6, channels=(8, 16, 16), batchnorm=True,
                     head="gap", dropout=0.2, hidden=0)
    run_dir = train(config, log=_quiet, progress_bars=False)
    results = json.loads((run_dir / "metrics.json").read_text())
    assert results["val"]["roc_auc"] > 0.9
    model, _ = load_model(run_dir / "model.npz")
    assert model.arch.batchnorm and model.arch.head == "gap" and model.arch.dropout == 0.2
    # the running statistics were learned and stored: not their initial 0 and 1
    assert not np.allclose(model.buffers["bn1_mean"], 0) and not np.allclose(model.buffers["bn1_var"], 1)


PLAIN = dict(batchnorm=False, dropout=0.0, head="flatten", convs_per_block=1)


@pytest.mark.parametrize("layers", [PLAIN, NORMALISED], ids=["plain", "normalised"])
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(xray_root, tmp_path, monkeypatch,
                                                                        layers):
    whole = train(_config(xray_root, tmp_path / "a", **layers), log=_quiet, progress_bars=False)

    # Interrupt the second run in the middle of its second epoch, as Ctrl-C would.
    real_augment, calls = fast.training.loop.augment_batch, []

    def interrupting_augment(x, rng, rows=None, **kwargs):
        calls.append(1)
        if len(calls) == 13:  # 270 training images / 32 = 9 batches an epoch
            raise KeyboardInterrupt
        return real_augment(x, rng, rows, **kwargs)

    monkeypatch.setattr(fast.training.loop, "augment_batch", interrupting_augment)
    config = _config(xray_root, tmp_path / "b", **layers)
    with pytest.raises(KeyboardInterrupt):
        train(config, log=_quiet, progress_bars=False)
    assert not (tmp_path / "b" / "run" / "model.npz").exists()
    monkeypatch.setattr(fast.training.loop, "augment_batch", real_augment)

    resumed = train(config, resume=tmp_path / "b" / "run", log=_quiet, progress_bars=False)
    a, b = _weights(whole), _weights(resumed)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert (json.loads((whole / "metrics.json").read_text())["test"]
            == json.loads((resumed / "metrics.json").read_text())["test"])


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_checkpoint(xray_root, tmp_path, monkeypatch):
    real_loss, calls = ConvNet.loss, []

    def loss_turning_nan(self, x, y, class_weights=None, rng=None):
        calls.append(1)
        loss, grads = real_loss(self, x, y, class_weights, rng)
        return (math.nan if len(calls) > 12 else loss), grads

    monkeypatch.setattr(ConvNet, "loss", loss_turning_nan)
    with pytest.raises(TrainingError, match=r"nan in epoch 2.*after epoch 1.*checkpoint.npz.*--lr"):
        train(_config(xray_root, tmp_path), log=_quiet, progress_bars=False)
    with np.load(tmp_path / "run" / "checkpoint.npz") as checkpoint:
        assert json.loads(str(checkpoint["progress"]))["epoch"] == 1


def test_a_second_run_into_the_same_directory_is_refused(xray_root, tmp_path):
    config = _config(xray_root, tmp_path, epochs=1)
    train(config, log=_quiet, progress_bars=False)
    with pytest.raises(TrainingError, match="--resume"):
        train(config, log=_quiet, progress_bars=False)


def test_missing_data_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    status = main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 1
    assert "nowhere" in err and "Kermany" in err and "Traceback" not in err


@pytest.mark.parametrize("argv, complaint", [
    (["--epochs", "0"], "--epochs"),
    (["--image-size", "7"], "--image-size"),
    (["--impl", "torch"], "--impl"),
    (["--lr", "-1"], "--lr"),
    (["--optimizer", "rmsprop"], "--optimizer"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--batch-size", "zero"], "--batch-size"),
])
def test_cli_refuses_bad_values(argv, complaint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


def test_cli_defaults_come_from_the_config_dataclass():
    config, resume = parse_args([])
    assert config == TrainConfig() and resume is None
    config, _ = parse_args(["--channels", "4,8", "--no-augment", "--impl", "reference"])
    assert config.channels == (4, 8) and config.augment is False and config.impl == "reference"


@pytest.mark.parametrize("argv, complaint", [
    (["--calibration", "temperature"], "--threshold-rule prevalence needs calibrated probabilities"),
    (["--acquisition", "--no-augment"], "--acquisition is part of the augmentation"),
    (["--reframe", "1.3", "--crop-area", "none"], "it needs --augment and a --crop-area"),
    (["--reframe", "1.3", "--no-augment"], "it needs --augment and a --crop-area"),
])
def test_conflicting_settings_are_refused_in_one_line(argv, complaint, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err
    # each half alone is fine, and so is the pair that fits
    parse_args(["--calibration", "temperature", "--threshold-rule", "youden"])
    parse_args(["--calibration", "temperature", "--target-sensitivity", "0.95"])
    with pytest.raises(TrainingError, match="needs calibrated"):  # the API says it too
        train(TrainConfig(calibration="temperature", out=str(tmp_path / "run")), log=_quiet, progress_bars=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_stored_configuration_without_a_newer_setting_keeps_what_the_run_did():
    """A run made before --normalise, --tta and --threshold-rule existed stored none of them;
    resumed, it must go on as it began, not switch to today's defaults."""
    newer = ("normalise", "tta", "threshold_rule", "acquisition", "crop_area", "stem_stride",
             "stem_kernel", "reframe")
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in newer}
    resumed = TrainConfig.from_dict(old)
    assert tuple(getattr(resumed, k) for k in newer) == \
        ("dataset", False, "youden", False, None, 1, 3, 1.0)
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()  # stored ones are kept


def test_balanced_class_weights_equalise_the_classes():
    y = np.array([0, 1, 1, 1])
    w = balanced_class_weights(y)
    np.testing.assert_allclose(w, [2.0, 2 / 3])
    assert w[0] * 1 == pytest.approx(w[1] * 3)  # each class carries the same total weight


def test_optimizers_follow_their_update_rules():
    g = {"a_w": np.array([0.5, -1.0])}
    p = {"a_w": np.array([1.0, 2.0])}
    SGD().update(p, g, lr=0.1)
    np.testing.assert_allclose(p["a_w"], [0.95, 2.1])

    p, opt = {"a_w": np.array([1.0, 2.0])}, Momentum(momentum=0.9)
    opt.update(p, g, lr=0.1)  # v = g
    opt.update(p, g, lr=0.1)  # v = 0.9 g + g = 1.9 g
    np.testing.assert_allclose(p["a_w"], np.array([1.0, 2.0]) - 0.1 * 2.9 * g["a_w"])

    # Adam's first step moves each weight by lr * sign(g) (bias-corrected m / sqrt(v) = g / |g|).
    p, opt = {"a_w": np.array([1.0, 2.0]), "a_b": np.array([1.0])}, Adam()
    opt.update(p, {"a_w": g["a_w"], "a_b": np.array([3.0])}, lr=0.01)
    np.testing.assert_allclose(p["a_w"], [0.99, 2.01], rtol=1e-6)
    np.testing.assert_allclose(p["a_b"], [0.99], rtol=1e-6)

    # Decoupled weight decay shrinks weights, not biases.
    p = {"a_w": np.array([1.0]), "a_b": np.array([1.0])}
    SGD(weight_decay=0.5).update(p, {"a_w": np.zeros(1), "a_b": np.zeros(1)}, lr=0.1)
    np.testing.assert_allclose([p["a_w"][0], p["a_b"][0]], [0.95, 1.0])


def test_learning_rate_schedules():
    assert learning_rate("constant", 0.1, 5, 10) == 0.1
    assert learning_rate("cosine", 0.1, 0, 10) == pytest.approx(0.1)
    assert learning_rate("cosine", 0.1, 9, 10) == pytest.approx(0.001)
    assert [learning_rate("step", 1.0, e, 8) for e in range(8)] == pytest.approx(
        [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_trained_threshold_is_youden_on_calibrated_validation_probabilities(xray_root, tmp_path, method):
    run_dir = train(_config(xray_root, tmp_path, epochs=2, calibration=method, threshold_rule="youden"),
                    log=_quiet, progress_bars=False)
    from fast.scoring.calibration import apply_platt, apply_temperature, fit_platt, fit_temperature
    from fast.data.dataset import load_dataset
    config = _config(xray_root, tmp_path, epochs=2)
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


def test_target_sensitivity_threshold_reaches_the_target_on_validation(xray_root, tmp_path):
    run_dir = train(_config(xray_root, tmp_path, epochs=1, target_sensitivity=0.99), log=_quiet,
                    progress_bars=False)
    results = json.loads((run_dir / "metrics.json").read_text())
    assert results["val"]["sensitivity"] >= 0.99
    assert "sensitivity >= 0.99" in results["threshold_rule"]


def test_train_step_updates_on_a_finite_loss_and_leaves_the_weights_on_a_nan():
    model = ConvNet(fast.training.loop.make_model(TrainConfig(image_size=16)).arch, seed=0)
    rng = np.random.default_rng(0)  # also draws any dropout mask
    x, y = rng.standard_normal((4, 1, 16, 16)).astype(np.float32), np.array([0, 1, 1, 0])
    before = {k: v.copy() for k, v in model.params.items()}
    loss = fast.training.loop.train_step(model, SGD(), x, y, lr=0.1, rng=rng)
    assert math.isfinite(loss)
    assert any(not np.array_equal(before[k], model.params[k]) for k in before)

    before = {k: v.copy() for k, v in model.params.items()}
    x[0, 0, 0, 0] = np.nan
    loss = fast.training.loop.train_step(model, SGD(), x, y, lr=0.1, rng=rng)
    assert not math.isfinite(loss)
    assert all(np.array_equal(before[k], model.params[k]) for k in before)


def test_k_fold_run_predicts_every_training_image_once_and_saves_the_ensemble(xray_root, tmp_path):
    config = _config(xray_root, tmp_path, folds=3, epochs=2)
    run_dir = train(config, log=_quiet, progress_bars=False)
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
    # the framing study: every held-out image of the small run (under PER_CLASS of each class),
    # as it is and in every view, at the run's threshold
    study = results["framing"]
    assert study["threshold"] == results["threshold"]
    assert sum(study["images"].values()) == 300
    assert list(study["views"]) == ["as is"] + [v.name for v in framing.VIEWS]
    as_is = study["views"]["as is"]
    matrix = results["val"]["confusion_matrix"]  # as is, the study's shares are the run's own
    assert as_is["NORMAL"]["called_pneumonia"] == pytest.approx(matrix[0][1] / sum(matrix[0]))
    assert as_is["PNEUMONIA"]["called_pneumonia"] == pytest.approx(matrix[1][1] / sum(matrix[1]))
    assert as_is["roc_auc"] == pytest.approx(results["val"]["roc_auc"])


def test_k_fold_run_resumes_to_the_same_ensemble(xray_root, tmp_path, monkeypatch):
    whole = train(_config(xray_root, tmp_path / "a", folds=2, epochs=2), log=_quiet, progress_bars=False)
    real_augment, calls = fast.training.loop.augment_batch, []

    def interrupting_augment(x, rng, rows=None, **kwargs):  # 2 folds of about 150 images: 5 batches an epoch
        calls.append(1)
        if len(calls) == 17:  # in the second fold's second epoch
            raise KeyboardInterrupt
        return real_augment(x, rng, rows, **kwargs)

    monkeypatch.setattr(fast.training.loop, "augment_batch", interrupting_augment)
    config = _config(xray_root, tmp_path / "b", folds=2, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train(config, log=_quiet, progress_bars=False)
    # fold 1 finished, fold 2 stopped after its first epoch
    assert (tmp_path / "b" / "run" / "fold2" / "checkpoint.npz").is_file()
    assert not (tmp_path / "b" / "run" / "model.npz").exists()
    monkeypatch.setattr(fast.training.loop, "augment_batch", real_augment)
    resumed = train(config, resume=tmp_path / "b" / "run", log=_quiet, progress_bars=False)
    from fast.nn.model_file import load_models
    a, b = load_models(whole / "model.npz")[0], load_models(resumed / "model.npz")[0]
    for m, n in zip(a, b, strict=True):
        for k, v in m.state().items():
            assert np.array_equal(v, n.state()[k]), k


def test_more_folds_than_patients_is_a_clear_error_not_a_traceback(xray_root, tmp_path, capsys):
    argv = ["--data", str(xray_root), "--out", str(tmp_path / "run"), "--limit", "20",
            "--image-size", "16", "--folds", "12", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "12 folds" in err and "NORMAL patients" in err and "Traceback" not in err


def test_a_k_fold_runs_test_predictions_come_back_through_the_classifier(xray_root, tmp_path):
    run_dir = train(_config(xray_root, tmp_path, folds=2, epochs=1), log=_quiet, progress_bars=False)
    from fast.inference import load_classifier
    classifier = load_classifier(run_dir)
    assert len(classifier.members) == 2
    with np.load(run_dir / "test_predictions.npz", allow_pickle=False) as npz:
        paths, stored = [str(p) for p in npz["paths"]], npz["probability"]
    np.testing.assert_allclose(classifier.predict_proba(paths), stored, rtol=0, atol=1e-6)


def test_the_epoch_line_says_its_accuracy_is_taken_at_0_5(xray_root, tmp_path):
    """Before calibration and threshold exist the epoch's accuracy is at P = 0.5: the line says so,
    as the figure can sit far from the run's final accuracy."""
    lines = []
    run_dir = train(_config(xray_root, tmp_path, epochs=1, limit=60, image_size=16, channels=(4,), hidden=8),
                    log=lambda *parts: lines.append(" ".join(map(str, parts))), progress_bars=False)
    (epoch_line,) = [line for line in lines if line.lstrip().startswith("epoch")]
    import csv
    with open(run_dir / "history.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert f"val acc@0.5 {float(row['val_accuracy']):.4f}" in epoch_line
