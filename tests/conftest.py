"""Shared fixtures: the real data, a tiny trained run and its classifier, the figures a test draws; the
hypothesis profile.

A test that trains a network (``tiny_run`` included) or reads the whole data set carries the
``slow`` marker, so ``pytest -m "not slow"`` runs the proofs alone; plain ``pytest`` runs
everything. Helpers that are not fixtures live in ``helpers.py``.
"""
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from fast import inference
from fast.runs import RunDir
from fast.training.config import TrainConfig
from fast.training.trainer import train

REPO_ROOT = Path(__file__).resolve().parent.parent

# No per-example deadline anywhere: timing lives in bench/, never in a correctness test.
settings.register_profile("project", deadline=None)
settings.load_profile("project")


@pytest.fixture(scope="session")
def xray_root():
    """The real chest X-ray folder: $XRAY_DATA, else data/chest_xray in the repo, else
    ../shared/data/chest_xray next to it. Missing data skips the test, except in CI ($CI set),
    where real-data tests must run and so fail."""
    if os.environ.get("XRAY_DATA"):
        candidates = [Path(os.environ["XRAY_DATA"]).expanduser()]
    else:
        candidates = [REPO_ROOT / "data" / "chest_xray",
                      REPO_ROOT.parent / "shared" / "data" / "chest_xray"]
    for root in candidates:
        if (root / "train").is_dir():
            return root
    message = ("chest X-ray data not found (tried " + ", ".join(map(str, candidates))
               + "); set XRAY_DATA to its folder")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, xray_root):
    """A one-epoch 32-pixel run of one model (validation carved out) on 60 real train and 60
    test X-rays, trained once per session."""
    base = tmp_path_factory.getbasetemp()
    run_dir = base / "tiny_run"
    config = TrainConfig(limit=60, image_size=32, stem_stride=1, stem_kernel=3, epochs=1, folds=1,
                         out=str(run_dir), data=str(xray_root), cache_dir=str(base / "tiny_run_cache"))
    train(config, progress_bars=False, log=lambda *a: None)
    return run_dir


@pytest.fixture(scope="session")
def stored(tiny_run):
    """The tiny run's test predictions: (paths, probabilities, labels)."""
    with np.load(RunDir(tiny_run).predictions("test"), allow_pickle=False) as npz:
        return [str(p) for p in npz["paths"]], npz["probability"], npz["label"]


@pytest.fixture(scope="session")
def classifier(tiny_run):
    return inference.load_classifier(tiny_run / "model.npz")


def pytest_collection_modifyitems(items):
    """A test that needs the tiny run trains a network: it must say so (``slow``)."""
    unmarked = [item.nodeid for item in items
                if "tiny_run" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError("tests that need the tiny run (a trained network) lack the slow "
                                "marker: " + ", ".join(unmarked))


@pytest.fixture
def drawn(monkeypatch):
    """The figures ``fast.pictures.plots`` draws, kept open for inspection instead of saved: {file name: figure}."""
    from fast.pictures import plots  # matplotlib for the tests that draw, not for every test
    figures = {}

    def keep(fig, path):
        figures[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(plots, "_save", keep)
    yield figures
    for fig in figures.values():
        plots.plt.close(fig)
