"""Which test-time views help, judged out of fold: ``python -m studies.tta_study RUN_DIR``.

RUN_DIR is a finished K-fold run of ``python -m fast.train`` (its model file holds the K fold
models, member k trained without fold k). Each member predicts its own held-out fold again, as
the image is and as fixed zooms and shifts of it; the mean probability of each set of views is
scored over all training X-rays (ROC AUC, log loss, ECE; uncalibrated). The test split is not read.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from fast.data.augment import about_centre, warp
from fast.data.cache import load_images
from fast.data.folders import list_split, resolve_data_root
from fast.data.pixels import Inputs
from fast.data.splits import patient_folds
from fast.inference import ensemble_proba, read_classifier
from fast.runs import RunDir
from fast.scoring import metrics

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
    parser = argparse.ArgumentParser(prog="python -m studies.tta_study", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("run", type=Path)
    args = parser.parse_args(argv)
    run = RunDir(args.run)
    config = run.read_config()
    if config.get("limit") is not None or config.get("folds", 1) < 2:
        sys.exit(f"{args.run}: a K-fold run on the whole training split is needed (this one has "
                 f"--limit {config.get('limit')}, --folds {config.get('folds')})")
    members, record = read_classifier(run.model)
    root = resolve_data_root(config["data"])
    paths, labels = list_split(root, "train")
    pixels, kept = load_images(paths, config["image_size"], config["cache_dir"], progress=False)
    paths, labels = [str(p) for p, k in zip(paths, kept) if k], labels[kept]
    folds = patient_folds(paths, labels, len(members), config["seed"])
    x = Inputs(pixels, record.mean, record.std, record.normalise)
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
