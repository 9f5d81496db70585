"""``python -m fast.train``: errors in one line, not tracebacks, and the pictures of a finished run."""

import pytest

from fast.pictures.drawing import PICTURES, read_history
from fast.train import main


def test_missing_data_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    status = main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 1
    assert "nowhere" in err and "Kermany" in err and "Traceback" not in err


def test_more_folds_than_patients_is_a_clear_error_not_a_traceback(xray_root, tmp_path, capsys):
    argv = ["--data", str(xray_root), "--out", str(tmp_path / "run"), "--limit", "20",
            "--image-size", "16", "--stem-stride", "1", "--stem-kernel", "3", "--folds", "12", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "12 folds" in err and "NORMAL patients" in err and "Traceback" not in err


@pytest.mark.slow
def test_the_training_command_draws_every_picture_of_a_k_fold_run(xray_root, tmp_path):
    from fast.train import main
    run_dir = tmp_path / "run"
    assert main(["--data", str(xray_root), "--out", str(run_dir), "--limit", "80", "--image-size", "16",
                 "--stem-stride", "1", "--stem-kernel", "3",
                 "--epochs", "1", "--folds", "2", "--channels", "4,8", "--hidden", "0", "--head", "gap",
                 "--batchnorm", "--dropout", "0.2", "--cache-dir", str(tmp_path / "cache")]) == 0
    for name in PICTURES.values():
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    history = read_history(run_dir / "history.csv")
    assert set(history["fold"]) == {1.0, 2.0}


def test_a_run_that_fails_on_its_data_leaves_no_run_directory(tmp_path, capsys):
    data = tmp_path / "data"
    for folder in ("train/NORMAL", "test/NORMAL", "test/PNEUMONIA"):  # train/PNEUMONIA missing
        (data / folder).mkdir(parents=True)
    status = main(["--data", str(data), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err and err.startswith("error: ")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_that_fails_after_it_began_is_marked_failed_and_latest_skips_it(xray_root, tmp_path, monkeypatch,
                                                                             capsys):
    import fast.training.loop
    from fast import inference
    from fast.runs import RunDir
    monkeypatch.setattr(fast.training.loop, "train_step", lambda *args, **kwargs: float("nan"))
    run = tmp_path / "runs" / "broken"
    argv = ["--data", str(xray_root), "--out", str(run), "--limit", "40", "--image-size", "16",
            "--stem-stride", "1", "--stem-kernel", "3", "--epochs", "1", "--folds", "1",
            "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 1
    assert "the loss became nan" in capsys.readouterr().err
    failed = RunDir(run).failed.read_text()
    assert "TrainingError" in failed and f"--resume {run}" in failed
    with pytest.raises(inference.ModelFileError, match="no finished run"):
        inference.find_model(inference.LATEST, runs_dir=tmp_path / "runs")


@pytest.mark.slow
def test_a_log_gets_a_line_per_epoch_and_no_progress_bars(xray_root, tmp_path):
    """stderr is not a terminal here: no bar, for decoding or training; a line per epoch."""
    from helpers import run_cli
    result = run_cli("fast.train", "--data", xray_root, "--out", tmp_path / "run", "--limit", "40",
                     "--image-size", "16", "--stem-stride", "1", "--stem-kernel", "3", "--epochs", "2",
                     "--folds", "1", "--cache-dir", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr + result.stdout
    assert "batch/s" not in result.stderr and "img/s" not in result.stderr
    assert sum(line.startswith("epoch ") for line in result.stdout.splitlines()) == 2
