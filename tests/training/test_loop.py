"""The training loop of one model (``fast.training.loop``): its step, its class weights, its
checkpoints (a resumed run ends with the weights of an uninterrupted one), its epoch line."""
import json
import math

import numpy as np
import pytest

import fast.training.loop
from fast.nn.model import ConvNet
from fast.nn.model_file import load_model
from fast.training.config import TrainConfig
from fast.training.loop import TrainingError, balanced_class_weights
from fast.training.optim import SGD
from fast.training.trainer import train

from helpers import SMALL_STEM, quiet, small_config


def _weights(run_dir):
    model, _ = load_model(run_dir / "model.npz")
    return model.state()  # params and batch-norm running statistics


def test_balanced_class_weights_equalise_the_classes():
    y = np.array([0, 1, 1, 1])
    w = balanced_class_weights(y)
    np.testing.assert_allclose(w, [2.0, 2 / 3])
    assert w[0] * 1 == pytest.approx(w[1] * 3)  # each class carries the same total weight


def test_train_step_updates_on_a_finite_loss_and_leaves_the_weights_on_a_nan():
    model = ConvNet(fast.training.loop.make_model(TrainConfig(image_size=16, **SMALL_STEM)).arch, seed=0)
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


PLAIN = dict(batchnorm=False, dropout=0.0, head="flatten", convs_per_block=1)

NORMALISED = dict(batchnorm=True, head="gap", dropout=0.3, convs_per_block=2, hidden=0)


@pytest.mark.slow
@pytest.mark.parametrize("layers", [PLAIN, NORMALISED], ids=["plain", "normalised"])
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(xray_root, tmp_path, monkeypatch,
                                                                        layers):
    whole = train(small_config(xray_root, tmp_path / "a", **layers), log=quiet, progress_bars=False)

    # Interrupt the second run in the middle of its second epoch, as Ctrl-C would.
    real_augment, calls = fast.training.loop.augment_batch, []

    def interrupting_augment(x, rng, rows=None, **kwargs):
        calls.append(1)
        if len(calls) == 13:  # 270 training images / 32 = 9 batches an epoch
            raise KeyboardInterrupt
        return real_augment(x, rng, rows, **kwargs)

    monkeypatch.setattr(fast.training.loop, "augment_batch", interrupting_augment)
    config = small_config(xray_root, tmp_path / "b", **layers)
    with pytest.raises(KeyboardInterrupt):
        train(config, log=quiet, progress_bars=False)
    assert not (tmp_path / "b" / "run" / "model.npz").exists()
    monkeypatch.setattr(fast.training.loop, "augment_batch", real_augment)

    resumed = train(config, resume=tmp_path / "b" / "run", log=quiet, progress_bars=False)
    a, b = _weights(whole), _weights(resumed)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert (json.loads((whole / "metrics.json").read_text())["test"]
            == json.loads((resumed / "metrics.json").read_text())["test"])


@pytest.mark.slow
def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_checkpoint(xray_root, tmp_path, monkeypatch):
    real_loss, calls = ConvNet.loss, []

    def loss_turning_nan(self, x, y, class_weights=None, rng=None):
        calls.append(1)
        loss, grads = real_loss(self, x, y, class_weights, rng)
        return (math.nan if len(calls) > 12 else loss), grads

    monkeypatch.setattr(ConvNet, "loss", loss_turning_nan)
    with pytest.raises(TrainingError, match=r"nan in epoch 2.*after epoch 1.*checkpoint.npz.*--lr"):
        train(small_config(xray_root, tmp_path), log=quiet, progress_bars=False)
    with np.load(tmp_path / "run" / "checkpoint.npz") as checkpoint:
        assert json.loads(str(checkpoint["progress"]))["epoch"] == 1


@pytest.mark.slow
def test_the_epoch_line_says_its_accuracy_is_taken_at_0_5(xray_root, tmp_path):
    """Before calibration and threshold exist the epoch's accuracy is at P = 0.5: the line says so,
    as the figure can sit far from the run's final accuracy."""
    lines = []
    run_dir = train(small_config(xray_root, tmp_path, epochs=1, limit=60, image_size=16, channels=(4,), hidden=8),
                    log=lambda *parts: lines.append(" ".join(map(str, parts))), progress_bars=False)
    (epoch_line,) = [line for line in lines if line.lstrip().startswith("epoch")]
    import csv
    with open(run_dir / "history.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert f"val acc@0.5 {float(row['val_accuracy']):.4f}" in epoch_line
