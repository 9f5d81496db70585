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
