"""``python -m fast.predict``: the trainer's probabilities come back, per file and in any format;
unreadable files and models are named, not tracebacks; which model answers is said."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.testing import assert_allclose

from fast import inference, predict
from fast.nn.model_file import ModelFileError

from helpers import PNG_SIGNATURE, REPO_ROOT, bad_model_files, run_cli


def predict_main(*args):
    """predict.main on ``args`` (paths allowed) -> exit status."""
    return predict.main([str(a) for a in args])


def json_out(capsys):
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_predict_reproduces_the_trainers_test_probabilities(tiny_run, stored, capsys):
    paths, probability, labels = stored
    assert predict_main("--model", tiny_run, "--json", *paths) == 0
    results = json_out(capsys)
    assert [r["path"] for r in results] == paths
    # The same batches through the same forward pass: equal to float32 rounding at most.
    assert_allclose([r["probability"] for r in results], probability, rtol=0, atol=1e-6)
    threshold = json.loads((tiny_run / "metrics.json").read_text())["threshold"]
    expected = np.where(probability >= threshold, "PNEUMONIA", "NORMAL")
    assert [r["label"] for r in results] == list(expected)
    assert set(labels) == {0, 1}


@pytest.mark.slow
def test_predict_of_a_single_image_matches_the_batch_probability(tiny_run, stored, capsys):
    paths, probability, _ = stored
    for k in (0, len(paths) - 1):  # one NORMAL, one PNEUMONIA
        assert predict_main("--model", tiny_run / "model.npz", "--json", paths[k]) == 0
        (result,) = json_out(capsys)
        assert_allclose(result["probability"], probability[k], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_text_output_gives_path_probability_and_label_per_line(tiny_run, stored, capsys):
    paths, probability, _ = stored
    assert predict_main("--model", tiny_run, paths[0], paths[-1]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 2
    for line, path, p in zip(lines, (paths[0], paths[-1]), probability[[0, -1]]):
        name, prob, label = line.split()
        assert name == path and label in ("NORMAL", "PNEUMONIA")
        assert_allclose(float(prob), p, rtol=0, atol=1e-4)
    assert str(tiny_run / "model.npz") in out.err  # says which model


@pytest.mark.slow
def test_the_same_xray_in_any_format_gets_the_same_probability(tiny_run, stored, tmp_path,
                                                              capsys):
    paths, _, _ = stored
    gray = cv2.imread(paths[-1], cv2.IMREAD_GRAYSCALE)
    gray = cv2.resize(gray, (300, 260), interpolation=cv2.INTER_AREA)  # not square, not 32
    bgra = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGRA)
    bgra[:, :, 3] = 128  # alpha is ignored
    files = {
        "gray.png": (gray, []),
        "gray16.png": (gray.astype(np.uint16) * 257, []),  # 16-bit, the same intensities
        "gray.bmp": (gray, []),
        "colour.jpeg": (cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100]),
        "alpha.png": (bgra, []),
    }
    for name, (image, params) in files.items():
        assert cv2.imwrite(str(tmp_path / name), image, params)
    names = list(files)
    assert predict_main("--model", tiny_run, "--json", *(tmp_path / n for n in names)) == 0
    probability = {Path(r["path"]).name: r["probability"] for r in json_out(capsys)}
    for name in names[1:]:
        # The lossless files hold the same intensities; JPEG at quality 100 moves some pixels
        # by a grey level or two.
        atol = 2e-3 if name.endswith(".jpeg") else 1e-6
        assert_allclose(probability[name], probability["gray.png"], rtol=0, atol=atol,
                        err_msg=name)


def bad_files(folder, good_jpeg):
    """{kind: path} of files prediction must refuse, each with its own reason."""
    whole = Path(good_jpeg).read_bytes()
    rng = np.random.default_rng(0)
    files = {
        "missing": folder / "nowhere.jpeg",
        "empty": folder / "empty.png",
        "truncated": folder / "cut.jpeg",
        # A JPEG start and end with random bytes between: no decodable header.
        "corrupt": folder / "corrupt.jpeg",
        "not an image": folder / "notes.png",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(whole[:len(whole) // 2])
    files["corrupt"].write_bytes(whole[:2] + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
                                 + b"\xff\xd9")
    files["not an image"].write_text("a radiologist's notes, not a picture\n")
    return files


REASONS = {"missing": "not found", "empty": "empty", "truncated": "truncated",
           "corrupt": "corrupt|decode", "not an image": "not an image|decode"}


@pytest.mark.slow
def test_each_unreadable_file_gets_its_own_error_and_the_others_are_predicted(
        tiny_run, stored, tmp_path, capsys):
    paths, probability, _ = stored
    bad = bad_files(tmp_path, paths[0])
    argv = [paths[0], *map(str, bad.values()), paths[-1]]
    assert predict_main("--model", tiny_run, "--json", *argv) == 1
    results = json_out(capsys)
    assert [r["path"] for r in results] == argv
    assert_allclose([results[0]["probability"], results[-1]["probability"]],
                    probability[[0, -1]], rtol=0, atol=1e-5)
    for (kind, path), result in zip(bad.items(), results[1:-1]):
        assert set(result) == {"path", "error"}, kind
        assert re.search(REASONS[kind], result["error"]), (kind, result["error"])


@pytest.mark.slow
def test_unreadable_files_in_text_output_name_the_file_and_exit_non_zero(tiny_run, stored, tmp_path):
    paths, _, _ = stored
    bad = bad_files(tmp_path, paths[0])
    result = run_cli("fast.predict", "--model", tiny_run, paths[0], *bad.values())
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + len(bad)
    assert lines[0].startswith(paths[0]) and lines[0].split()[-1] in ("NORMAL", "PNEUMONIA")
    for (kind, path), line in zip(bad.items(), lines[1:]):
        assert line.startswith(f"{path}  error: "), line
        assert re.search(REASONS[kind], line), (kind, line)


@pytest.mark.slow
def test_json_output_of_a_subprocess_parses(tiny_run, stored, tmp_path):
    paths, _, _ = stored
    result = run_cli("fast.predict", "--json", "--model", tiny_run, paths[0], tmp_path / "gone.png")
    assert result.returncode == 1
    good, missing = json.loads(result.stdout)
    assert set(good) == {"path", "probability", "label", "warnings"}
    assert missing == {"path": str(tmp_path / "gone.png"), "error": "file not found"}


@pytest.mark.slow
def test_bad_model_files_are_refused_with_a_message_and_no_traceback(tiny_run, stored, tmp_path):
    paths, _, _ = stored
    # np.load takes any non-npz file for a pickle, so random bytes may be refused as such.
    expected = {"missing": "no such model file", "corrupt": "not a",
                "truncated": "not a readable model file", "other architecture": "do not match",
                "three channels": "another architecture", "pickle": "pickle",
                "no metadata": "lacks"}
    for kind, path in bad_model_files(tmp_path, tiny_run / "model.npz").items():
        result = run_cli("fast.predict", "--model", path, paths[0])
        assert result.returncode == 2, kind
        assert result.stdout == "", kind
        assert "Traceback" not in result.stderr, kind
        assert expected[kind] in result.stderr and str(path) in result.stderr, (kind, result.stderr)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_latest_is_the_newest_run_and_without_model_the_shipped_model_answers(
        tiny_run, stored, tmp_path, monkeypatch, capsys):
    """A training run (here two) never replaces the shipped model unless asked for."""
    paths, _, _ = stored
    for k, name in enumerate(("b-older", "a-newer")):
        (tmp_path / "runs" / name).mkdir(parents=True)
        shutil.copy(tiny_run / "model.npz", tmp_path / "runs" / name / "model.npz")
        os.utime(tmp_path / "runs" / name / "model.npz", (1e9 + k, 1e9 + k))
    (tmp_path / "runs" / "z-unfinished").mkdir()  # no model.npz: not a candidate
    monkeypatch.chdir(tmp_path)
    image = str(Path(paths[0]).resolve())
    assert predict.main(["--model", "latest", image]) == 0
    err = capsys.readouterr().err
    assert str(Path("runs") / "a-newer" / "model.npz") in err and "newest" in err
    assert predict.main([image]) == 0
    err = capsys.readouterr().err
    assert f"model {inference.SHIPPED_MODEL} (the shipped model)" in err and "runs" not in err
    assert inference.load_classifier().shipped
    assert inference.load_classifier("latest").path == Path("runs") / "a-newer" / "model.npz"


def test_latest_without_a_finished_run_is_refused_with_what_to_do(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs" / "unfinished").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelFileError, match="no finished run"):
        inference.load_classifier("latest")
    assert predict.main(["--model", "latest", "x.png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python -m fast.train" in err


def test_without_model_runs_or_shipped_model_the_error_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(inference, "SHIPPED_MODEL", tmp_path / "models" / "absent.npz")
    assert predict.main(["x.png"]) == 2
    assert "--model" in capsys.readouterr().err


def test_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for word in ("--model", "--json", "--saliency", "threshold", "PNEUMONIA"):
        assert word in out


@pytest.mark.slow
def test_predict_imports_no_matplotlib_without_saliency(tiny_run, stored):
    paths, _, _ = stored
    code = ("import sys; from fast import predict; "
            f"code = predict.main(['--model', {str(tiny_run)!r}, {paths[0]!r}]); "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_saliency_writes_one_readable_png_per_predicted_image(tiny_run, stored, tmp_path, capsys):
    paths, _, _ = stored
    out = tmp_path / "heat"
    argv = ["--model", tiny_run, "--json", "--saliency", out, paths[0], paths[-1],
            tmp_path / "gone.png"]
    assert predict_main(*argv) == 1
    results = json_out(capsys)
    written = sorted(out.iterdir())
    assert len(written) == 2
    assert sorted(Path(r["saliency"]) for r in results[:2]) == written
    for png in written:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        height, width = cv2.imread(str(png)).shape[:2]
        assert width >= 300 and height >= 300


@pytest.mark.slow
def test_a_folder_with_sub_folders_and_a_broken_file_gives_one_csv_row_per_file(tiny_run, stored,
                                                                                 tmp_path, capsys):
    paths, probability, _ = stored
    studies = tmp_path / "studies"
    (studies / "ward a").mkdir(parents=True)
    (studies / "ward b" / "bed 3").mkdir(parents=True)
    (studies / ".hidden").mkdir()
    shutil.copy(paths[0], studies / "ward a" / "first.jpeg")
    shutil.copy(paths[-1], studies / "ward b" / "bed 3" / "last.JPG")
    shutil.copy(paths[0], studies / ".hidden" / "skipped.jpeg")  # hidden folders are not searched
    (studies / "ward b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (studies / "notes.txt").write_text("not an image, not a DICOM file")
    table = tmp_path / "out.csv"
    assert predict_main("--model", tiny_run, "--csv", table, studies) == 1
    import csv
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [str(studies / "ward a" / "first.jpeg"),
                                          str(studies / "ward b" / "bed 3" / "last.JPG"),
                                          str(studies / "ward b" / "broken.png")]
    assert list(rows[0]) == ["path", "probability", "label", "warnings", "error"]
    assert_allclose([float(rows[0]["probability"]), float(rows[1]["probability"])],
                    probability[[0, -1]], rtol=0, atol=1e-5)
    assert rows[0]["error"] == rows[1]["error"] == ""
    assert rows[2]["probability"] == rows[2]["label"] == "" and "PNG" in rows[2]["error"]
    assert "1 of 3 file(s) could not be read" in capsys.readouterr().err


@pytest.mark.slow
def test_a_folder_without_images_is_an_error(tiny_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert predict_main("--model", tiny_run, tmp_path / "empty") == 1
    assert "no image files" in capsys.readouterr().err


@pytest.mark.slow
def test_without_runs_the_shipped_model_is_used_and_named(tiny_run, stored, tmp_path, monkeypatch,
                                                          capsys):
    paths, _, _ = stored
    shipped = tmp_path / "models" / "shipped.npz"
    shipped.parent.mkdir()
    shutil.copy(tiny_run / "model.npz", shipped)
    monkeypatch.setattr(inference, "SHIPPED_MODEL", shipped)
    monkeypatch.chdir(tmp_path)  # no runs/ here
    assert inference.find_model(shipped=shipped) == shipped
    assert predict.main([str(Path(paths[0]).resolve())]) == 0
    assert "shipped model" in capsys.readouterr().err


@pytest.mark.slow
def test_csv_into_a_missing_folder_is_refused_before_any_work(tiny_run, stored, tmp_path, capsys):
    paths, _, _ = stored
    assert predict_main("--model", tiny_run, "--csv", tmp_path / "no" / "out.csv", paths[0]) == 2
    assert "does not exist" in capsys.readouterr().err


def _everything_under(folder):
    return sorted(p.relative_to(folder) for p in Path(folder).rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("flag, target, complaint", [
    ("--saliency", "a-file.txt", "exists and is not a folder"),
    ("--saliency", "a-file.txt/heat", "is not a folder"),
    ("--csv", "a-folder", "is a folder"),
    ("--csv", "nowhere/out.csv", "its folder does not exist"),
])
def test_a_bad_output_target_is_refused_before_any_work_in_one_line(tiny_run, stored, tmp_path, monkeypatch,
                                                                   capsys, flag, target, complaint):
    paths, _, _ = stored
    (tmp_path / "a-file.txt").write_text("already here\n")
    (tmp_path / "a-folder").mkdir()
    before = _everything_under(tmp_path)
    loaded = []
    monkeypatch.setattr(predict, "open_classifier", lambda spec: loaded.append(spec))  # no model work
    assert predict_main("--model", tiny_run, flag, tmp_path / target, paths[0]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1
    assert out.err.startswith(f"error: {flag}: ") and complaint in out.err
    assert loaded == [] and _everything_under(tmp_path) == before  # nothing loaded, nothing written
    assert (tmp_path / "a-file.txt").read_text() == "already here\n"


@pytest.mark.slow
def test_many_files_say_that_work_began_when_stderr_is_not_a_terminal(tiny_run, stored, capsys):
    paths, _, _ = stored
    many = paths[:predict.PROGRESS_FROM]
    assert predict_main("--model", tiny_run, "--json", *many) == 0
    err = capsys.readouterr().err
    assert f"predicting {len(many)} files" in err
