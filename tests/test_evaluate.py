"""``python -m fast.evaluate``: the same images as the trainer, the run's figures back."""
import json

import pytest
from numpy.testing import assert_allclose

from fast import cli, evaluate
from fast.cli import score_split
from fast.data.errors import DataError
from fast.nn.model_file import save_model

from helpers import SMALL_STEM, run_cli


@pytest.mark.slow
def test_evaluate_reproduces_the_runs_test_metrics(tiny_run, capsys):
    assert evaluate.main(["--model", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    test_metrics = json.loads((tiny_run / "metrics.json").read_text())["test"]
    from fast.scoring.metrics import format_metrics_table
    assert format_metrics_table({"test": test_metrics}) in out
    assert "equals the run's" in out


@pytest.mark.slow
def test_evaluate_scores_the_same_val_images_as_the_trainer(tiny_run, classifier):
    """``cli.score_split`` reads the run's data folder, --limit, seed and validation share from
    its config.json beside the model file."""
    answers = score_split(classifier, "val")
    result = answers.scored(classifier.threshold)
    assert answers.flagged.shape == answers.y.shape  # the tiny run keeps a typicality model
    stored_val = json.loads((tiny_run / "metrics.json").read_text())["val"]
    assert result["confusion_matrix"] == stored_val["confusion_matrix"]
    assert_allclose(result["roc_auc"], stored_val["roc_auc"], rtol=0, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--model", "{tmp}/nowhere.npz"], "no such model file"),
    (["--data", "{tmp}/no-data"], "data folder not found"),
])
def test_evaluate_refuses_a_bad_model_or_data_path_without_traceback(tiny_run, tmp_path, args,
                                                                     message):
    args = [a.format(tmp=tmp_path) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_run)]
    result = run_cli("fast.evaluate", *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_evaluate_refuses_the_val_split_of_a_k_fold_ensemble(xray_root, tmp_path, capsys):
    from fast.training.config import TrainConfig
    from fast.training.trainer import train
    run_dir = train(TrainConfig(data=str(xray_root), out=str(tmp_path / "run"), image_size=16, limit=80,
                                **SMALL_STEM,
                                epochs=1, folds=2, channels=(4,), hidden=8,
                                cache_dir=str(tmp_path / "cache")), log=lambda *a: None,
                    progress_bars=False)
    assert evaluate.main(["--model", str(run_dir), "--split", "val"]) == 1
    err = capsys.readouterr().err
    assert "out-of-fold" in err and f"in {run_dir / 'val_predictions.npz'}" in err  # it exists
    assert evaluate.main(["--model", str(run_dir), "--split", "test"]) == 0
    assert "equals the run's" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_says_it_began_before_decoding_the_images(tiny_run, xray_root, monkeypatch, capsys):
    said = []

    def load_splits(*args, **kwargs):  # the slow part: the start line must already be out
        said.append(capsys.readouterr().err)
        raise DataError("stopped here by the test")

    monkeypatch.setattr(cli, "load_splits", load_splits)
    assert evaluate.main(["--model", str(tiny_run), "--data", str(xray_root)]) == 1
    assert f"scoring the test split of {xray_root}" in said[0]


def test_evaluate_counts_must_match_exactly_and_figures_to_a_millionth():
    stored = {"n": 624, "brier": 0.1534, "ece": 0.1851, "roc_auc": 0.0, "confusion_matrix": [[147, 87], [5, 385]]}
    rounding = {**stored, "brier": 0.1534 + 3e-9, "ece": 0.1851 - 3e-9}
    assert evaluate._differences(rounding, stored) == []
    assert evaluate._differences({**stored, "brier": 0.1534 * (1 + 2e-6)}, stored) == ["brier"]
    assert evaluate._differences({**stored, "roc_auc": 1e-9}, stored) == ["roc_auc"]
    assert evaluate._differences({**stored, "confusion_matrix": [[146, 88], [5, 385]]}, stored) == \
        ["confusion_matrix"]


@pytest.mark.slow
def test_evaluate_val_of_an_ensemble_names_only_files_that_exist(tmp_path, tiny_run, capsys):
    from fast.nn.model_file import load_models
    members, metadata = load_models(tiny_run / "model.npz")
    save_model(tmp_path / "ensemble.npz", members * 2, metadata)  # a model file alone: no run files beside it
    assert evaluate.main(["--model", str(tmp_path / "ensemble.npz"), "--split", "val"]) == 1
    err = capsys.readouterr().err
    assert "has no validation split" in err
    assert "val_predictions.npz" not in err and "metrics.json" not in err
