"""Shared fixtures."""
import os
from pathlib import Path

import pytest

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
