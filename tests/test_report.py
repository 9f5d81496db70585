"""The run report: every picture drawn as a readable PNG, from the files of a finished run."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fast import report
from fast.runs import RunDir

from helpers import REPO_ROOT, assert_readable_png


def fresh_copy(run_dir, folder):
    """The run's own files, without any picture already drawn, in ``folder``."""
    folder.mkdir()
    for name in RunDir.FINISHED:
        shutil.copy(run_dir / name, folder / name)
    return folder


@pytest.mark.slow
def test_make_report_draws_every_picture_as_a_readable_png(tiny_run, xray_root, tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    notes = []
    written = report.make_report(run_dir, data_root=xray_root, log=notes.append)
    assert sorted(p.name for p in written) == sorted(report.PICTURES.values())
    for path in written:
        assert path.parent == run_dir
        assert_readable_png(path)
    assert not any(n.startswith("note") for n in notes)


@pytest.mark.slow
def test_report_cli_on_an_existing_run_directory(tiny_run, tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    # The run's config.json names the data folder, so --data is not needed.
    result = subprocess.run([sys.executable, "-m", "fast.report", str(run_dir)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in report.PICTURES.values():
        assert f"wrote {run_dir / name}" in result.stdout
        assert_readable_png(run_dir / name)


@pytest.mark.slow
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


@pytest.mark.slow
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
    path = report.save_saliency_overlay(tmp_path / "one.png", xray, cam, "a title", 64)
    assert_readable_png(path)


@pytest.fixture
def drawn(monkeypatch):
    """The figures the report draws, kept open for inspection instead of saved: {file name: figure}."""
    figures = {}

    def keep(fig, path):
        figures[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(report, "_save", keep)
    yield figures
    for fig in figures.values():
        report.plt.close(fig)


def _texts(fig):
    """Every piece of text in a figure: titles, labels, legends, captions."""
    return [t.get_text() for t in fig.findobj(report.matplotlib.text.Text)]


def test_the_reliability_diagram_marks_the_threshold(drawn, tmp_path):
    rng = np.random.default_rng(0)
    prob = rng.uniform(0, 1, 200)
    y = (rng.uniform(0, 1, 200) < prob).astype(int)
    report.plot_reliability({"test": (y, prob)}, tmp_path / "r.png", threshold=0.7429)
    fig = drawn["r.png"]
    marks = [line for ax in fig.axes for line in ax.get_lines()
             if np.allclose(line.get_xdata(), 0.7429) and len(set(line.get_xdata())) == 1]
    assert len(marks) == 2  # on the diagram and on the counts below it
    assert any("threshold 0.743" in text for text in _texts(fig))


def test_captions_say_the_size_the_model_sees(drawn, tmp_path):
    xray = np.full((320, 320), 0.5, dtype=np.float32)
    report.save_saliency_overlay(tmp_path / "one.png", xray, np.zeros((8, 8)), "a title", 64)
    texts = " ".join(_texts(drawn["one.png"]))
    assert "shown at 320x320" in texts and "the model sees it at 64x64 pixels" in texts
    assert "as the model sees it" not in texts


@pytest.mark.slow
def test_the_saliency_grid_scales_each_map_by_its_probability(tiny_run, xray_root, drawn, tmp_path, monkeypatch):
    """The report hands each X-ray's stored P(pneumonia) to Grad-CAM, and its captions give the
    model's input size."""
    calls = []
    real = report.load_classifier(tiny_run / "model.npz")
    grad_cam = real.grad_cam

    def recorded(images, probability):
        calls.append(list(probability))
        return grad_cam(images, probability)

    monkeypatch.setattr(real, "grad_cam", recorded)
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    report.make_report(run_dir, data_root=xray_root, log=lambda *a: None, classifier=real)
    with np.load(run_dir / "test_predictions.npz") as npz:
        stored = set(np.round(npz["probability"], 12))
    assert calls and all(round(p, 12) in stored for call in calls for p in call)
    assert any(f"the model sees it at {real.image_size}x{real.image_size}" in t
               for t in _texts(drawn[report.PICTURES["saliency"]]))


@pytest.mark.slow
def test_a_run_reports_into_another_folder_leaving_the_run_as_it_was(tiny_run, xray_root, tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    before = sorted(p.name for p in run_dir.iterdir())
    assert report.main([str(run_dir), "--out", str(tmp_path / "pictures"), "--data", str(xray_root)]) == 0
    assert sorted(p.name for p in run_dir.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == sorted(report.PICTURES.values())


@pytest.mark.slow
@pytest.mark.parametrize("argv, complaint", [
    (["{model}"], "need --out DIR"),
    (["{model}", "--out", "{tmp}/a-file.txt"], "--out: "),
    (["{run}", "--out", "{tmp}/a-file.txt/pictures"], "is not a folder"),
])
def test_a_bad_out_target_is_refused_before_any_work_in_one_line(tiny_run, tmp_path, capsys, monkeypatch,
                                                                 argv, complaint):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    (tmp_path / "a-file.txt").write_text("already here\n")
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.setattr(report, "load_classifier", lambda *a: pytest.fail("loaded a model"))
    argv = [a.format(model=run_dir / "model.npz", run=run_dir, tmp=tmp_path) for a in argv]
    assert report.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and complaint in err
    assert sorted(tmp_path.rglob("*")) == before


def test_a_folder_of_model_files_is_pointed_to_the_model_file(tmp_path, capsys):
    from fast.inference import SHIPPED_MODEL
    assert report.main([str(SHIPPED_MODEL.parent)]) == 1
    err = capsys.readouterr().err
    assert "not a run directory" in err and f"python -m fast.report {SHIPPED_MODEL} --out DIR" in err


def test_the_reliability_diagram_sizes_points_by_their_bins_counts_and_names_an_upward_bias(drawn, tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.uniform(0, 1, 400) < 0.4).astype(int)
    prob = np.clip(0.4 + 0.3 + rng.normal(0, 0.05, 400), 0, 1)  # about 0.7 for a 0.4 share: biased upward
    report.plot_reliability({"test": (y, prob)}, tmp_path / "r.png")
    fig = drawn["r.png"]
    texts = _texts(fig)
    assert any("biased upward" in t for t in texts)
    points = [c for c in fig.axes[0].collections if len(c.get_offsets())]
    sizes = points[0].get_sizes()
    counts = [int(t) for t in texts if t.isdigit()]  # the count over each bar
    assert sum(counts) == 400
    assert len(sizes) == len(counts) and np.argmax(sizes) == np.argmax(counts)
    prob = rng.uniform(0, 1, 20000)
    calibrated = (rng.uniform(0, 1, 20000) < prob).astype(int)  # mean within 0.01 of its share
    report.plot_reliability({"calibrated": (calibrated, prob)}, tmp_path / "c.png")
    assert not any("biased" in t for t in _texts(drawn["c.png"]))


def test_the_roc_curve_marks_the_operating_point_and_the_models_own(drawn, tmp_path):
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(50, int), np.ones(50, int)]
    prob = np.clip(0.3 * y + rng.uniform(0, 0.7, 100), 0, 1)
    report.plot_roc(y, prob, 0.4, tmp_path / "roc.png", own_threshold=0.6)
    texts = " ".join(_texts(drawn["roc.png"]))
    assert "operating point, threshold 0.400" in texts and "model's own, threshold 0.600" in texts
    report.plot_roc(y, prob, 0.4, tmp_path / "one.png")
    assert "model's own" not in " ".join(_texts(drawn["one.png"]))


@pytest.mark.slow
def test_feature_maps_have_a_colour_bar_and_the_grad_cam_grid_says_what_it_shows(tiny_run, xray_root, drawn,
                                                                                 tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    report.make_report(run_dir, data_root=xray_root, log=lambda *a: None)
    features = drawn[report.PICTURES["features"]]
    assert any("activation after ReLU" in t for t in _texts(features))  # the colour bar's label
    grid = " ".join(_texts(drawn[report.PICTURES["saliency"]]))
    assert "not where\ndisease is" in grid and "most confident about" in grid
    assert "Where the network sees pneumonia" not in grid


def test_the_stress_picture_marks_each_view_beyond_its_limit(drawn, tmp_path):
    from fast.scoring import stress
    y = np.array([0] * 20 + [1] * 20)
    base = np.r_[np.full(20, 0.2), np.full(20, 0.8)]
    moved = base.copy()
    moved[:4] = 0.9  # +0.20 of NORMAL: beyond any limit
    summary = stress.summarise(y, {"as is": base, "crop 0.9": base, "noise 0.01": moved}, 0.5)
    report.plot_stress(summary, tmp_path / "s.png")
    fig = drawn["s.png"]
    labels = {t.get_text(): t.get_color() for t in fig.axes[0].get_xticklabels()}
    assert labels["noise 0.01"] == "tab:red" and labels["crop 0.9"] == "black"
    assert any("1 of 2 views beyond their limits" in t for t in _texts(fig))
    report.plot_stress(summary, tmp_path / "f.png", family="framing")
    assert [t.get_text() for t in drawn["f.png"].axes[0].get_xticklabels()] == ["as is", "crop 0.9"]


def test_every_picture_is_listed_where_pictures_are_listed():
    """docs/using.md (the list the README links to) and report --help name every picture a run draws."""
    helped = subprocess.run([sys.executable, "-m", "fast.report", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True).stdout
    assert "docs/using.md#pictures" in (REPO_ROOT / "README.md").read_text()
    for place, text in (("docs/using.md", (REPO_ROOT / "docs" / "using.md").read_text()),
                        ("report --help", helped)):
        for name in report.PICTURES.values():
            assert name in text, f"{name} missing from {place}"
