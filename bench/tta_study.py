"""Which test-time views help, judged out of fold: ``python bench/tta_study.py RUN_DIR``.

RUN_DIR is a finished K-fold run of ``python -m fast.train`` (its model file holds the K fold
models, member k trained without fold k). Each member predicts its own held-out fold again, as
the image is and as fixed zooms and shifts of it; the mean probability of each set of views is
scored over all training X-rays (ROC AUC, log loss, ECE; uncalibrated). The test split is not read.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fast import data as xray_data  # noqa: E402
from fast import metrics  # noqa: E402
from fast.augment import about_centre, warp  # noqa: E402
from fast.model import ensemble_proba, load_models  # noqa: E402

# (zoom, shift across, shift down), shifts as fractions of the side
VIEWS = ((1.0, 0, 0), (0.95, 0, 0), (1.05, 0, 0), (1.0, 0.03, 0), (1.0, -0.03, 0), (1.0, 0, 0.03), (1.0, 0, -0.03))
SETS = {"the image alone": (0,), "and zooms 0.95, 1.05": (0, 1, 2), "and shifts of 3 %": (0, 3, 4, 5, 6),
        "and both (7 views)": tuple(range(7))}


def view(x, zoom, across, down):
    """x (N, 1, S, S) zoomed about the centre, then shifted, as ``augment`` moves images."""
    h, w = x.shape[-2:]
    m = about_centre(np.diag([zoom, zoom]), w, h, (across * w, down * h))
    out = np.empty_like(x)
    for i in range(len(x)):
        warp(x[i], m, out=out[i])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    args = parser.parse_args(argv)
    config = json.loads((args.run / "config.json").read_text())
    if config.get("limit") is not None or config.get("folds", 1) < 2:
        sys.exit(f"{args.run}: a K-fold run on the whole training split is needed (this one has "
                 f"--limit {config.get('limit')}, --folds {config.get('folds')})")
    members, meta = load_models(args.run / "model.npz")
    root = xray_data.resolve_data_root(config["data"])
    paths, labels = xray_data.list_split(root, "train")
    pixels, kept = xray_data.load_images(paths, config["image_size"], config["cache_dir"], progress=False)
    paths, labels = [str(p) for p, k in zip(paths, kept) if k], labels[kept]
    folds = xray_data.patient_folds(paths, labels, len(members), config["seed"])
    x = xray_data.Inputs(pixels, meta["mean"], meta["std"], meta.get("normalise", "dataset"))
    prob = np.empty((len(VIEWS), len(labels)))
    for k, member in enumerate(members):
        held = np.flatnonzero(folds == k)
        images = x[held]
        for v, spec in enumerate(VIEWS):
            prob[v, held] = ensemble_proba([member], view(images, *spec))
    for name, chosen in SETS.items():
        p = prob[list(chosen)].mean(axis=0)
        clipped = np.clip(p, 1e-7, 1 - 1e-7)
        nll = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
        print(f"{name:24s} AUC {metrics.roc_auc(labels, p):.5f}  NLL {nll:.4f}  "
              f"ECE {metrics.expected_calibration_error(labels, p):.4f}")


if __name__ == "__main__":
    main()
