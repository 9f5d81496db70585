"""``python -m fast.train``: errors in one line, not tracebacks, and the pictures of a finished run."""

import pytest

from fast import report
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
    for name in report.PICTURES.values():
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    history = report.read_history(run_dir / "history.csv")
    assert set(history["fold"]) == {1.0, 2.0}
