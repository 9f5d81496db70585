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


# --------------------------------------------------------------------------- nothing destroyed

@pytest.mark.slow
def test_csv_naming_an_xray_by_mistake_leaves_it_byte_identical_and_fails(tiny_run, stored, tmp_path):
    """``predict --csv a.jpeg b.jpeg`` (the CSV's name forgotten): a.jpeg is refused as the CSV."""
    paths, _, _ = stored
    a, b = tmp_path / "a.jpeg", tmp_path / "b.jpeg"
    shutil.copy(paths[0], a)
    shutil.copy(paths[-1], b)
    before = a.read_bytes()
    result = run_cli("fast.predict", "--model", tiny_run, "--csv", a, b)
    assert result.returncode == 2 and result.stdout == ""
    assert "is named as an image" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert a.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpeg", "b.jpeg"]


@pytest.mark.slow
@pytest.mark.parametrize("make, complaint", [
    (lambda d, xray: xray, "is one of the inputs"),  # --csv x.csv where x.csv is an input X-ray
    (lambda d, xray: d / "scan.DCM", "is named as an image"),
    (lambda d, xray: shutil.copy(xray, d / "looks.csv") and d / "looks.csv", "is an image (by its content)"),
    (lambda d, xray: (d / "notes.txt").write_text("mine\n") and d / "notes.txt", "exists and is not a CSV"),
    (lambda d, xray: (d / "bin.csv").write_bytes(b"\x00\x01binary") and d / "bin.csv", "is not a CSV"),
])
def test_csv_refuses_an_input_an_image_or_a_file_that_is_not_a_csv(tiny_run, stored, tmp_path, capsys,
                                                                    make, complaint):
    paths, _, _ = stored
    xray = tmp_path / "x.csv"
    shutil.copy(paths[0], xray)  # an X-ray whatever its name: read by content
    target = make(tmp_path, xray)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert predict_main("--model", tiny_run, "--csv", target, xray) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --csv: ") and complaint in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.slow
def test_csv_replaces_an_earlier_csv_of_its_own(tiny_run, stored, tmp_path, capsys):
    paths, _, _ = stored
    table = tmp_path / "results.csv"
    table.write_text("path,probability\nold,0.5\n")
    assert predict_main("--model", tiny_run, "--csv", table, paths[0]) == 0
    assert table.read_text().splitlines()[0] == ",".join(predict.CSV_FIELDS)
    assert f"wrote {table}" in capsys.readouterr().err


@pytest.mark.slow
def test_saliency_never_writes_into_an_input_folder(tiny_run, stored, tmp_path, capsys):
    paths, _, _ = stored
    folder = tmp_path / "xrays"
    folder.mkdir()
    shutil.copy(paths[0], folder / "a.jpeg")
    for target in (folder, folder / "heat"):  # the folder itself, or one inside it
        assert predict_main("--model", tiny_run, "--saliency", target, folder) == 2
        assert "inside the input folder" in capsys.readouterr().err
    # the folder of an input file given by name
    assert predict_main("--model", tiny_run, "--saliency", folder, folder / "a.jpeg") == 2
    assert "is the folder of the input" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.jpeg", "xrays"]


@pytest.mark.slow
def test_saliency_never_overwrites_says_where_and_its_pictures_are_not_read_back(tiny_run, stored,
                                                                                tmp_path, capsys):
    paths, _, _ = stored
    heat = tmp_path / "heat"
    heat.mkdir()
    earlier = heat / f"{Path(paths[0]).stem}.saliency.png"
    earlier.write_bytes(b"an earlier overlay")
    assert predict_main("--model", tiny_run, "--saliency", heat, paths[0]) == 0
    err = capsys.readouterr().err
    assert f"wrote 1 Grad-CAM overlay(s) to {heat}" in err
    assert earlier.read_bytes() == b"an earlier overlay"
    new = heat / f"{Path(paths[0]).stem}-2.saliency.png"
    assert new.read_bytes()[:8] == PNG_SIGNATURE
    # the overlay, renamed as any X-ray could be and put among X-rays, is not read back as one
    shutil.copy(new, tmp_path / "IM-0001-0001.png")
    shutil.copy(paths[0], tmp_path / "scan.jpeg")
    assert predict.expand([tmp_path]) == [tmp_path / "scan.jpeg"]


# --------------------------------------------------------------------------- warnings, operating point

def _odd_images(folder):
    """A blank image, a colour picture, a tiny one: flagged by the cheap checks alone."""
    cv2.imwrite(str(folder / "black.png"), np.zeros((300, 300), np.uint8))
    colour = np.zeros((300, 300, 3), np.uint8)
    colour[:, :150] = (0, 0, 255)
    colour[:, 150:] = (255, 128, 0)
    cv2.imwrite(str(folder / "colour.png"), colour)
    cv2.imwrite(str(folder / "tiny.png"), np.full((3, 3), 128, np.uint8))
    return [folder / "black.png", folder / "colour.png", folder / "tiny.png"]


@pytest.mark.slow
def test_flagged_files_keep_their_answer_with_warnings_in_every_format(tiny_run, stored, tmp_path, capsys):
    paths, _, _ = stored
    odd = _odd_images(tmp_path)
    assert predict_main("--model", tiny_run, "--json", "--csv", tmp_path / "out.csv", paths[0], *odd) == 0
    out = capsys.readouterr()
    results = json.loads(out.out)
    assert all("probability" in r and "label" in r for r in results)
    assert [bool(r["warnings"]) for r in results] == [False, True, True, True]
    assert "blank or nearly constant image" in results[1]["warnings"]
    assert any("colour" in w for w in results[2]["warnings"])
    assert any("too small" in w for w in results[3]["warnings"])
    for path in odd:  # stderr names each flagged file in one line
        assert sum(line.startswith(f"warning: {path}: ") for line in out.err.splitlines()) == 1
    import csv
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["warnings"] == "" and "blank" in rows[1]["warnings"]
    assert predict_main("--model", tiny_run, odd[1]) == 0
    assert "  warning: colour picture" in capsys.readouterr().out


@pytest.mark.slow
def test_strict_makes_a_flagged_file_an_error_row(tiny_run, stored, tmp_path, capsys):
    paths, _, _ = stored
    odd = _odd_images(tmp_path)
    assert predict_main("--model", tiny_run, "--json", "--strict", paths[0], odd[0]) == 1
    good, flagged = json_out(capsys)
    assert "probability" in good
    assert set(flagged) == {"path", "error"} and flagged["error"].startswith("flagged (--strict): blank")


@pytest.mark.slow
def test_threshold_and_sensitivity_change_the_labels_exactly_as_stated(tiny_run, stored, classifier, capsys):
    paths, probability, _ = stored
    for t in (0.0, float(np.median(probability)), 1.0):
        assert predict_main("--model", tiny_run, "--json", "--threshold", t, *paths) == 0
        labels = [r["label"] for r in json_out(capsys)]
        assert labels == list(np.where(probability >= t, "PNEUMONIA", "NORMAL"))
    # --sensitivity S: the highest threshold whose held-out sensitivity is at least S
    record = classifier.record
    held_p, held_y = record.held_out_probability, record.held_out_label
    assert predict_main("--model", tiny_run, "--json", "--sensitivity", 0.9, *paths) == 0
    out = capsys.readouterr()
    chosen = float(re.search(r"operating point: threshold ([0-9.]+)", out.err).group(1))
    exact, _ = classifier.operating_point(sensitivity=0.9)
    assert chosen == pytest.approx(exact, abs=5e-5)
    assert np.mean(held_p[held_y == 1] >= exact) >= 0.9
    above = held_p[held_p > exact]  # any higher threshold (the next distinct score) misses more
    if len(above):
        assert np.mean(held_p[held_y == 1] >= above.min()) < 0.9
    labels = [r["label"] for r in json.loads(out.out)]
    assert labels == list(np.where(probability >= exact, "PNEUMONIA", "NORMAL"))
    assert f"(the model's own: {classifier.threshold:.4f})" in out.err


@pytest.mark.slow
@pytest.mark.parametrize("args, complaint", [
    (["--threshold", "1.5"], "must be a probability in [0, 1]"),
    (["--sensitivity", "0"], "must be in (0, 1]"),
    (["--threshold", "0.5", "--sensitivity", "0.9"], "not allowed with argument"),
])
def test_bad_operating_points_are_refused_by_argparse(tiny_run, stored, capsys, args, complaint):
    paths, _, _ = stored
    with pytest.raises(SystemExit) as exit_:
        predict_main("--model", tiny_run, *args, paths[0])
    assert exit_.value.code == 2 and complaint in capsys.readouterr().err
