"""Shared fixtures."""
import os
from pathlib import Path

import pytest

from fast.training.config import TrainConfig
from fast.training.trainer import train

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    config = TrainConfig(limit=60, image_size=32, epochs=1, folds=1, out=str(run_dir),
                         data=str(xray_root), cache_dir=str(base / "tiny_run_cache"))
    train(config, progress_bars=False, log=lambda *a: None)
    return run_dir
