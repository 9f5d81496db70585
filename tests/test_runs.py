"""The run directory (``fast.runs``): its file names, spelled once, and what a finished run holds."""
import json

from fast.runs import RUNS_DIR, RunDir


def test_a_run_directory_names_its_files(tmp_path):
    run = RunDir(tmp_path)
    assert (run.config, run.history, run.checkpoint, run.model, run.metrics) == (
        tmp_path / "config.json", tmp_path / "history.csv", tmp_path / "checkpoint.npz",
        tmp_path / "model.npz", tmp_path / "metrics.json")
    assert run.predictions("val") == tmp_path / "val_predictions.npz"
    assert run.predictions("test") == tmp_path / "test_predictions.npz"
    assert run.fold(2).checkpoint == tmp_path / "fold2" / "checkpoint.npz"


def test_a_finished_run_holds_its_files_and_says_which_are_missing(tmp_path):
    run = RunDir(tmp_path)
    assert run.missing() == list(RunDir.FINISHED)
    for name in RunDir.FINISHED:
        (tmp_path / name).write_text("{}")
    assert run.missing() == []


def test_a_run_has_begun_where_any_checkpoint_is(tmp_path):
    run = RunDir(tmp_path)
    assert not run.holds_a_run()
    run.fold(3).path.mkdir()
    run.fold(3).checkpoint.write_bytes(b"")
    assert run.holds_a_run()


def test_stored_settings_and_metrics_read_as_dicts_or_nothing(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_config() == {} and run.read_metrics() == {}
    run.config.write_text(json.dumps({"seed": 3}))
    assert run.read_config() == {"seed": 3}


def test_a_new_run_goes_under_runs_named_by_the_time():
    run = RunDir.new()
    assert run.path.parent == RUNS_DIR and len(run.path.name) == len("20240101-120000")
