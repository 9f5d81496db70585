"""The run report: every picture drawn as a readable PNG, from the files of a finished run."""
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fast import report
from test_predict import PNG_SIGNATURE, REPO_ROOT

MIN_SIDE = 300  # pixels: anything smaller is not readable



def fresh_copy(run_dir, folder):
    """The run's own files, without any picture already drawn, in ``folder``."""
    folder.mkdir()
    for name in report.RUN_FILES:
        shutil.copy(run_dir / name, folder / name)
    return folder


def assert_readable_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, path
    height, width = image.shape[:2]
    assert width >= MIN_SIDE and height >= MIN_SIDE, (path, width, height)
    assert image.std() > 5, f"{path} is blank"


def test_make_report_draws_every_picture_as_a_readable_png(tiny_run, xray_root, tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    notes = []
    written = report.make_report(run_dir, data_root=xray_root, log=notes.append)
    assert sorted(p.name for p in written) == sorted(report.PICTURES.values())
    for path in written:
        assert path.parent == run_dir
        assert_readable_png(path)
    assert not any(n.startswith("note") for n in notes)


def test_report_cli_on_an_existing_run_directory(tiny_run, tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    # The run's config.json names the data folder, so --data is not needed.
    result = subprocess.run([sys.executable, "-m", "fast.report", str(run_dir)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in report.PICTURES.values():
        assert f"wrote {run_dir / name}" in result.stdout
        assert_readable_png(run_dir / name)


def test_without_the_data_the_report_skips_only_the_xray_pictures(tiny_run, tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    # The stored test paths lead nowhere, and so does the data folder given.
    with np.load(run_dir / "test_predictions.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["paths"] = np.array([str(tmp_path / "gone" / "test" / Path(p).parent.name / Path(p).name)
                                for p in arrays["paths"]])
    np.savez(run_dir / "test_predictions.npz", **arrays)
    notes = []
    written = report.make_report(run_dir, data_root=tmp_path / "no-data", log=notes.append)
    skipped = {report.PICTURES["features"], report.PICTURES["saliency"]}
    assert {p.name for p in written} == set(report.PICTURES.values()) - skipped
    assert any(n.startswith("note") and "--data" in n for n in notes)


def test_report_refuses_an_unfinished_run_naming_what_is_missing(tiny_run, tmp_path, capsys):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    (run_dir / "metrics.json").unlink()
    with pytest.raises(report.ReportError, match="metrics.json"):
        report.make_report(run_dir)
    assert report.main([str(run_dir)]) == 1
    assert "metrics.json" in capsys.readouterr().err
    assert report.main([str(tmp_path / "no-such-run")]) == 1
    assert "no such run directory" in capsys.readouterr().err


def test_saliency_overlay_is_a_readable_png(tmp_path):
    yy, xx = np.mgrid[0:320, 0:320]
    xray = (0.3 + 0.5 * np.exp(-((yy - 160) ** 2 + (xx - 120) ** 2) / 8000)).astype(np.float32)
    cam = np.zeros((8, 8))
    cam[3:5, 2:4] = 1.0
    path = report.save_saliency_overlay(tmp_path / "one.png", xray, cam, "a title")
    assert_readable_png(path)


def test_the_training_command_draws_every_picture_of_a_k_fold_run(xray_root, tmp_path):
    from fast.train import main
    run_dir = tmp_path / "run"
    assert main(["--data", str(xray_root), "--out", str(run_dir), "--limit", "80", "--image-size", "16",
                 "--epochs", "1", "--folds", "2", "--channels", "4,8", "--hidden", "0", "--head", "gap",
                 "--batchnorm", "--dropout", "0.2", "--cache-dir", str(tmp_path / "cache")]) == 0
    for name in report.PICTURES.values():
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    history = report.read_history(run_dir / "history.csv")
    assert set(history["fold"]) == {1.0, 2.0}
