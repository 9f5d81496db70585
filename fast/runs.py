"""The run directory: the files a training run writes, by name, and where runs go.

``python -m fast.train`` writes one (``--out``, by default ``runs/<timestamp>``); ``predict``,
``evaluate``, ``report`` and the studies read it. Its file names are spelled here and nowhere
else.
"""
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

RUNS_DIR = Path("runs")


class _InRun:
    """A file of a run directory: on a ``RunDir``, its path there (``run.config``)."""

    def __init__(self, name):
        self.name = name

    def __get__(self, run, owner=None):
        return self if run is None else run.path / self.name


@dataclass(frozen=True)
class RunDir:
    """A run directory at ``path``: ``config.json`` (the run's settings), ``history.csv`` (one row
    per epoch), ``checkpoint.npz`` (after every epoch; a K-fold run keeps one per fold, in
    ``fold1/`` ...), ``model.npz``, ``metrics.json``, and the calibrated held-out and test
    probabilities, ``val_predictions.npz`` and ``test_predictions.npz``. A run that stopped on an
    error after it began holds ``FAILED`` (the error, in words) until it is resumed; having no
    model, it is never taken for a finished run (``latest`` skips it)."""
    path: Path

    CONFIG = "config.json"
    HISTORY = "history.csv"
    CHECKPOINT = "checkpoint.npz"
    MODEL = "model.npz"
    METRICS = "metrics.json"
    FAILED = "FAILED"
    config, history, checkpoint, model, metrics, failed = (
        _InRun(name) for name in (CONFIG, HISTORY, CHECKPOINT, MODEL, METRICS, FAILED))
    # the files a finished run holds, which its pictures are drawn from
    FINISHED = (CONFIG, HISTORY, METRICS, MODEL, "test_predictions.npz")

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def new(cls, runs_dir=RUNS_DIR):
        """A run directory named by the time now, under ``runs_dir`` (not made yet)."""
        return cls(Path(runs_dir) / datetime.now().strftime("%Y%m%d-%H%M%S"))

    def predictions(self, split):
        """The calibrated probabilities of ``split``: "val" (the held-out images: validation, or
        out of fold) or "test"."""
        return self.path / f"{split}_predictions.npz"

    def fold(self, k):
        """Fold model k's own directory (1-based), for its checkpoint."""
        return RunDir(self.path / f"fold{k}")

    def missing(self):
        """The files of a finished run that are not there."""
        return [name for name in self.FINISHED if not (self.path / name).is_file()]

    def holds_a_run(self):
        """Whether a run has begun here: a checkpoint in it or in a fold's directory."""
        return any(self.path.glob(f"**/{self.CHECKPOINT}"))

    def read_config(self):
        """The run's settings as stored (a dict), {} when there is no config.json."""
        return json.loads(self.config.read_text()) if self.config.is_file() else {}

    def read_metrics(self):
        """metrics.json, {} when there is none."""
        return json.loads(self.metrics.read_text()) if self.metrics.is_file() else {}
