"""Prediction and evaluation of a saved model: the trainer's numbers back, every bad file named."""
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

from fast import evaluate
from fast import inference
from fast import predict
from fast.data.images import read_xray
from fast.nn.model import Architecture, ConvNet
from fast.data.errors import DataError
from fast.nn.model_file import ModelFileError, load_model, load_models, save_model
from gradcheck import numerical_gradient, rel_error

REPO_ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def stored(tiny_run):
    """The trainer's test predictions: (paths as str, probabilities, labels)."""
    with np.load(tiny_run / "test_predictions.npz", allow_pickle=False) as npz:
        return [str(p) for p in npz["paths"]], npz["probability"], npz["label"]


@pytest.fixture(scope="session")
def classifier(tiny_run):
    return inference.load_classifier(tiny_run / "model.npz")


def run_cli(module, *args, cwd=REPO_ROOT):
    """``python -m module args`` in a fresh interpreter -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def predict_main(*args):
    """predict.main on ``args`` (paths allowed) -> exit status."""
    return predict.main([str(a) for a in args])


def json_out(capsys):
    return json.loads(capsys.readouterr().out)


# --------------------------------------------------------------------------- the trainer's numbers

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


def test_predict_of_a_single_image_matches_the_batch_probability(tiny_run, stored, capsys):
    paths, probability, _ = stored
    for k in (0, len(paths) - 1):  # one NORMAL, one PNEUMONIA
        assert predict_main("--model", tiny_run / "model.npz", "--json", paths[k]) == 0
        (result,) = json_out(capsys)
        assert_allclose(result["probability"], probability[k], rtol=0, atol=1e-5)


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


def test_evaluate_reproduces_the_runs_test_metrics(tiny_run, capsys):
    assert evaluate.main(["--model", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    test_metrics = json.loads((tiny_run / "metrics.json").read_text())["test"]
    from fast.scoring.metrics import format_metrics_table
    assert format_metrics_table({"test": test_metrics}) in out
    assert "equals the run's" in out


def test_evaluate_scores_the_same_val_images_as_the_trainer(tiny_run, classifier, xray_root):
    config = json.loads((tiny_run / "config.json").read_text())
    images, y, _ = evaluate.split_images(xray_root, "val", classifier.image_size,
                                         limit=config["limit"], seed=config["seed"],
                                         val_fraction=config["val_fraction"])
    result = evaluate.evaluate(classifier, images, y)
    stored_val = json.loads((tiny_run / "metrics.json").read_text())["val"]
    assert result["confusion_matrix"] == stored_val["confusion_matrix"]
    assert_allclose(result["roc_auc"], stored_val["roc_auc"], rtol=0, atol=1e-12)


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


# --------------------------------------------------------------------------- formats

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


# --------------------------------------------------------------------------- bad images

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


def test_json_output_of_a_subprocess_parses(tiny_run, stored, tmp_path):
    paths, _, _ = stored
    result = run_cli("fast.predict", "--json", "--model", tiny_run, paths[0], tmp_path / "gone.png")
    assert result.returncode == 1
    good, missing = json.loads(result.stdout)
    assert set(good) == {"path", "probability", "label"}
    assert missing == {"path": str(tmp_path / "gone.png"), "error": "file not found"}


# --------------------------------------------------------------------------- bad models

class _RunsCodeWhenUnpickled:
    """Unpickling this creates ``marker``: a stand-in for a malicious model file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def bad_models(folder, tiny_model):
    """{kind: path} of model files prediction must refuse."""
    model, metadata = load_model(tiny_model)
    files = {kind: folder / f"{kind}.npz" for kind in
             ("missing", "corrupt", "truncated", "other architecture", "three channels", "pickle",
              "no metadata")}
    files["corrupt"].write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    whole = Path(tiny_model).read_bytes()
    files["truncated"].write_bytes(whole[:len(whole) // 2])
    # The tiny model's weights under an architecture record they do not fit.
    with np.load(tiny_model, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arch = Architecture.from_json(str(arrays["architecture"]))
    arrays["architecture"] = np.array(Architecture(input_shape=arch.input_shape, channels=(8, 8),
                                                   hidden=arch.hidden).to_json())
    np.savez(files["other architecture"], **arrays)
    colour = ConvNet(Architecture(input_shape=(3, 32, 32), channels=(4,), hidden=8))
    save_model(files["three channels"], colour, metadata)
    np.savez(files["pickle"], weights=np.array([_RunsCodeWhenUnpickled(folder / "pwned")],
                                               dtype=object))
    save_model(files["no metadata"], model, {})
    return files


def test_every_bad_model_file_is_refused_by_load_classifier(tiny_run, tmp_path):
    for kind, path in bad_models(tmp_path, tiny_run / "model.npz").items():
        with pytest.raises(ModelFileError, match=re.escape(str(path))):
            inference.load_classifier(path)
    assert not (tmp_path / "pwned").exists()  # loading never ran the pickle


def test_bad_model_files_are_refused_with_a_message_and_no_traceback(tiny_run, stored, tmp_path):
    paths, _, _ = stored
    # np.load takes any non-npz file for a pickle, so random bytes may be refused as such.
    expected = {"missing": "no such model file", "corrupt": "not a",
                "truncated": "not a readable model file", "other architecture": "do not match",
                "three channels": "another architecture", "pickle": "pickle",
                "no metadata": "lacks"}
    for kind, path in bad_models(tmp_path, tiny_run / "model.npz").items():
        result = run_cli("fast.predict", "--model", path, paths[0])
        assert result.returncode == 2, kind
        assert result.stdout == "", kind
        assert "Traceback" not in result.stderr, kind
        assert expected[kind] in result.stderr and str(path) in result.stderr, (kind, result.stderr)
    assert not (tmp_path / "pwned").exists()


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


def test_every_command_says_which_model_answers(tiny_run, capsys):
    """File, input size, threshold, networks and views, on stderr; the repr says the same."""
    classifier = inference.load_classifier(tiny_run)
    line = (f"{tiny_run / 'model.npz'}: 32x32 px input, threshold {classifier.threshold:.4f}, "
            "one network, 3 test-time views")
    assert classifier.describe() == line and repr(classifier) == f"<Classifier {line}>"
    shipped = inference.load_classifier()
    members = len(shipped.members)
    assert repr(shipped).startswith(f"<Classifier {inference.SHIPPED_MODEL} (the shipped model): "
                                    f"{shipped.image_size}x{shipped.image_size} px input")
    assert (f"an ensemble of {members} networks" if members > 1 else "one network") in repr(shipped)
    from fast import cli
    assert cli.open_classifier(str(tiny_run)) is not None
    assert capsys.readouterr().err == f"model {line}\n"


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


def test_predict_imports_no_matplotlib_without_saliency(tiny_run, stored):
    paths, _, _ = stored
    code = ("import sys; from fast import predict; "
            f"code = predict.main(['--model', {str(tiny_run)!r}, {paths[0]!r}]); "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- saliency

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


def test_last_conv_gradient_sums_to_the_numerical_gradient_of_the_last_conv_bias():
    """The gradient Grad-CAM weighs the maps with, d(log-odds)/d(last conv output), summed over
    the batch and the positions of a channel, is d(sum of log-odds)/d(that channel's bias):
    checked against centred differences of the network's own forward pass."""
    rng = np.random.default_rng(3)
    model = ConvNet(Architecture(input_shape=(1, 16, 16), channels=(4, 6), hidden=10, batchnorm=False,
                                 dropout=0.0),
                    dtype=np.float64, seed=1)
    x = rng.normal(size=(3, 1, 16, 16))
    maps, dconv, logits = model.last_conv_gradient(x, (-1.0, 1.0))
    assert maps.shape == dconv.shape == (3, 6, 8, 8)
    assert_allclose(logits, model.forward(x)[0], rtol=0, atol=0)

    bias = model.params["conv2_b"]

    def log_odds_sum(b):
        logits = model.forward(x)[0]
        return float(np.sum(logits[:, 1] - logits[:, 0]))

    expected = numerical_gradient(log_odds_sum, bias)
    assert rel_error(dconv.sum(axis=(0, 2, 3)), expected) < 1e-7


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


# --------------------------------------------------------------------------- folders and tables

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
    assert list(rows[0]) == ["path", "probability", "label", "error"]
    assert_allclose([float(rows[0]["probability"]), float(rows[1]["probability"])],
                    probability[[0, -1]], rtol=0, atol=1e-5)
    assert rows[0]["error"] == rows[1]["error"] == ""
    assert rows[2]["probability"] == rows[2]["label"] == "" and "PNG" in rows[2]["error"]
    assert "1 of 3 file(s) could not be read" in capsys.readouterr().err


def test_a_folder_without_images_is_an_error(tiny_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert predict_main("--model", tiny_run, tmp_path / "empty") == 1
    assert "no image files" in capsys.readouterr().err


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


# --------------------------------------------------------------------------- the Python API

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


def test_the_api_reads_integer_images_as_files_are_read_and_refuses_values_outside_0_1(tiny_run, stored):
    paths, probability, _ = stored
    classifier = inference.load_classifier(tiny_run)
    pixels = cv2.imread(paths[0], cv2.IMREAD_GRAYSCALE)  # uint8, 0..255
    assert_allclose(classifier.predict_proba(pixels), probability[:1], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classifier.predict_proba(pixels.astype(np.float32))  # 0..255 as floats


def _classifier(members, metadata):
    """A classifier of ``members`` whose record reads as the model file's ``metadata``."""
    return inference.Classifier(members, inference.ModelRecord.from_dict(members[0].arch, metadata))


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


def test_csv_into_a_missing_folder_is_refused_before_any_work(tiny_run, stored, tmp_path, capsys):
    paths, _, _ = stored
    assert predict_main("--model", tiny_run, "--csv", tmp_path / "no" / "out.csv", paths[0]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_refuses_the_val_split_of_a_k_fold_ensemble(xray_root, tmp_path, capsys):
    from fast.training.config import TrainConfig
    from fast.training.trainer import train
    run_dir = train(TrainConfig(data=str(xray_root), out=str(tmp_path / "run"), image_size=16, limit=80,
                                epochs=1, folds=2, channels=(4,), hidden=8,
                                cache_dir=str(tmp_path / "cache")), log=lambda *a: None,
                    progress_bars=False)
    assert evaluate.main(["--model", str(run_dir), "--split", "val"]) == 1
    err = capsys.readouterr().err
    assert "out-of-fold" in err and f"in {run_dir / 'val_predictions.npz'}" in err  # it exists
    assert evaluate.main(["--model", str(run_dir), "--split", "test"]) == 0
    assert "equals the run's" in capsys.readouterr().out


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


# --------------------------------------------------------------------------- bad targets, progress

def _everything_under(folder):
    return sorted(p.relative_to(folder) for p in Path(folder).rglob("*"))


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


def test_many_files_say_that_work_began_when_stderr_is_not_a_terminal(tiny_run, stored, capsys):
    paths, _, _ = stored
    many = paths[:predict.PROGRESS_FROM]
    assert predict_main("--model", tiny_run, "--json", *many) == 0
    err = capsys.readouterr().err
    assert f"predicting {len(many)} files" in err


def test_evaluate_says_it_began_before_decoding_the_images(tiny_run, xray_root, monkeypatch, capsys):
    said = []

    def split_images(*args, **kwargs):  # the slow part: the start line must already be out
        said.append(capsys.readouterr().err)
        raise DataError("stopped here by the test")

    monkeypatch.setattr(evaluate, "split_images", split_images)
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


def test_evaluate_val_of_an_ensemble_names_only_files_that_exist(tmp_path, tiny_run, capsys):
    from fast.nn.model_file import load_models
    members, metadata = load_models(tiny_run / "model.npz")
    save_model(tmp_path / "ensemble.npz", members * 2, metadata)  # a model file alone: no run files beside it
    assert evaluate.main(["--model", str(tmp_path / "ensemble.npz"), "--split", "val"]) == 1
    err = capsys.readouterr().err
    assert "has no validation split" in err
    assert "val_predictions.npz" not in err and "metrics.json" not in err
