"""``python -m fast.report``: a run's pictures from its directory, a model file's after scoring the
test split; bad targets refused in one line before any work; every picture listed."""
import subprocess
import sys

import pytest

from fast import report
from fast.pictures.drawing import PICTURES, ReportError, make_report

from helpers import REPO_ROOT, assert_readable_png, fresh_copy

@pytest.mark.slow
def test_report_cli_on_an_existing_run_directory(tiny_run, tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    # The run's config.json names the data folder, so --data is not needed.
    result = subprocess.run([sys.executable, "-m", "fast.report", str(run_dir)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in PICTURES.values():
        assert f"wrote {run_dir / name}" in result.stdout
        assert_readable_png(run_dir / name)


@pytest.mark.slow
def test_report_refuses_an_unfinished_run_naming_what_is_missing(tiny_run, tmp_path, capsys):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    (run_dir / "metrics.json").unlink()
    with pytest.raises(ReportError, match="metrics.json"):
        make_report(run_dir)
    assert report.main([str(run_dir)]) == 1
    assert "metrics.json" in capsys.readouterr().err
    assert report.main([str(tmp_path / "no-such-run")]) == 1
    assert "no such run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_reports_into_another_folder_leaving_the_run_as_it_was(tiny_run, xray_root, tmp_path):
    run_dir = fresh_copy(tiny_run, tmp_path / "run")
    before = sorted(p.name for p in run_dir.iterdir())
    assert report.main([str(run_dir), "--out", str(tmp_path / "pictures"), "--data", str(xray_root)]) == 0
    assert sorted(p.name for p in run_dir.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "pictures").iterdir()) == sorted(PICTURES.values())


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
    monkeypatch.setattr(report, "open_classifier", lambda *a: pytest.fail("loaded a model"))
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


def test_every_picture_is_listed_where_pictures_are_listed(capsys):
    """docs/using.md (the list the README links to) and report --help name every picture a run draws."""
    with pytest.raises(SystemExit):
        report.parse_args(["--help"])
    helped = capsys.readouterr().out
    assert "docs/using.md#pictures" in (REPO_ROOT / "README.md").read_text()
    for place, text in (("docs/using.md", (REPO_ROOT / "docs" / "using.md").read_text()),
                        ("report --help", helped)):
        for name in PICTURES.values():
            assert name in text, f"{name} missing from {place}"
