"""The stress battery (``fast.scoring.stress``) of a saved model, on X-rays it never saw.

    python -m studies.stress_study                                  # the shipped model, out of fold
    python -m studies.stress_study --model runs/X --split test      # an ensemble on the test split

``--split train`` (the default) needs an ensemble of K fold models saved by a K-fold run: fold
model k predicts the training X-rays of fold k, the fold it did not train on, with the folds
drawn as the run drew them (its seed, from config.json beside the model or ``--seed``), exactly
as the training run's own study. ``--split test`` asks the whole model about the test X-rays:
a measurement to report once with the model's test figures, never one to choose anything on.
Each view goes through the model as it is used: its test-time views, calibration and threshold.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fast.data.folders import resolve_data_root
from fast.data.pixels import Inputs
from fast.files import atomic_write_text
from fast.data.splits import load_splits, patient_folds
from fast.inference import SHIPPED_MODEL, ensemble_proba, load_classifier
from fast.runs import RunDir
from fast.scoring import stress
from studies import run


def held_out_predictions(classifier, inputs, y, paths, seed):
    """{view name: calibrated P(pneumonia)} of the study's training X-rays, each predicted by
    the fold model that did not train on it -> (that dict, their labels)."""
    members = classifier.members
    folds = patient_folds(paths, y, len(members), seed)
    rows = stress.study_rows(y, seed)
    raw = {name: np.empty(rows.sum()) for name in [stress.AS_IS.name, *stress.views_of(inputs)]}
    for k, member in enumerate(members):
        mine = folds[rows] == k
        part = inputs.subset((folds == k) & rows)
        views = {stress.AS_IS.name: part, **stress.views_of(part)}
        for name, x in views.items():
            raw[name][mine] = ensemble_proba([member], x, zooms=classifier.zooms)
    return raw, y[rows]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m studies.stress_study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--model", default=str(SHIPPED_MODEL), help="a model file or run directory "
                        "(default: the shipped model)")
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--seed", type=int, default=None,
                        help="the run's seed (default: its config.json's, else 0)")
    parser.add_argument("--data", default=None, help="data folder (default: as the trainer finds it)")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the summary as JSON")
    args = parser.parse_args(argv)
    if args.json and (Path(args.json).suffix.lower() != ".json" or Path(args.json).is_dir()):
        parser.error(f"--json {args.json}: name a .json file (it is written over; never a model or an image)")

    path = Path(args.model)
    classifier = load_classifier(path)
    seed = args.seed if args.seed is not None else RunDir(classifier.path.parent).read_config().get("seed", 0)
    root = resolve_data_root(args.data)
    splits, _ = load_splits(root, (args.split,), classifier.image_size, seed=seed, val_fraction=0.0,
                            cache_dir=args.cache_dir, progress=False)
    pixels, y, paths = splits[args.split]
    record = classifier.record
    inputs = Inputs(pixels, record.mean, record.std, record.normalise)
    if args.split == "train":
        if len(classifier.members) < 2:
            parser.error(f"{classifier.path} holds one model, not fold models: use --split test")
        raw, y = held_out_predictions(classifier, inputs, y, paths, seed)
        where = f"out-of-fold training X-rays (seed {seed}, {len(classifier.members)} folds)"
    else:
        views = {stress.AS_IS.name: inputs, **stress.views_of(inputs)}
        raw = {name: ensemble_proba(classifier.members, x, zooms=classifier.zooms) for name, x in views.items()}
        where = "test X-rays (a measurement, not a choice)"
    calibrated = {name: record.calibration.apply(p) for name, p in raw.items()}
    summary = stress.summarise(y, calibrated, classifier.threshold, classifier.class_names)
    print(f"model {classifier.path}, {where}:")
    print(stress.format_summary(summary, classifier.class_names))
    if args.json:
        atomic_write_text(args.json, json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
