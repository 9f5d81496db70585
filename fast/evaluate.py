"""Score a saved model on a data split: ``python -m fast.evaluate [--model RUN_DIR_OR_NPZ] [--help]``.

The images are chosen and prepared as the trainer did for the run (same ``--limit`` subset,
same seed and validation carving, the model's stored mean/std and threshold), so on the test
split the table equals the run's metrics.json.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from fast.cli import (MODEL_HELP, add_data_flags, add_operating_point_flags, open_classifier, operating_point,
                      print_scores, run_folds, score_split)
from fast.data.errors import DataError
from fast.data.splits import DEFAULT_SEED, DEFAULT_VAL_FRACTION
from fast.runs import RunDir

SPLITS = ("test", "val", "train")

DESCRIPTION = """Recompute the metric table of a saved model (by default the shipped one) on one
split of the chest X-ray data, at the decision threshold stored in the model, and print it as the
trainer does. --threshold or --sensitivity scores it at another operating point, the model's own
column beside it. The X-rays the model's typicality check flags (unlike its training X-rays) are
counted and named.

With a run directory, the data folder, --limit, --seed and --val-fraction default to the
run's config.json, so the same images are scored as in training: the test numbers equal
the run's metrics.json."""


# Figures recomputed in another order of float operations (other batches, BLAS on other threads)
# differ from the stored ones in their last digits: beyond this relative difference they differ.
SAME_FIGURE_RTOL = 1e-6


def _differences(ours, stored):
    """Keys whose values differ between two binary_metrics dicts: counts exactly, floats by
    more than SAME_FIGURE_RTOL of their size."""
    return [k for k in ours if k in stored and ours[k] != stored[k]
            and not (isinstance(ours[k], float)
                     and np.isclose(ours[k], stored[k], rtol=SAME_FIGURE_RTOL, atol=1e-12))]


def _no_val_split(model_path):
    """Why an ensemble of fold models cannot be scored on a validation split, naming the run's
    files of held-out figures only where they exist."""
    run = RunDir(Path(model_path).parent)
    predictions, figures = run.predictions("val"), run.metrics
    found = []
    if predictions.is_file():
        found.append(f"its out-of-fold predictions are in {predictions}")
    if figures.is_file():
        found.append(f"its out-of-fold figures in {figures}")
    return (f"{model_path} is an ensemble of fold models that together saw every training image: it "
            "has no validation split" + (f"; {', and '.join(found)}" if found else ""))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fast.evaluate", description=DESCRIPTION,
                                     allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", metavar="RUN_DIR_NPZ_OR_LATEST", default=None, help=MODEL_HELP)
    add_data_flags(parser, "holding train/ and test/", "the images")
    parser.add_argument("--split", choices=SPLITS, default="test", help="split to score (default: test)")
    parser.add_argument("--limit", type=int, default=None,
                        help="score the trainer's stratified subset of at most this many images "
                             "(default: the run's --limit; none means every image)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the subset and the val "
                        f"carving (default: the run's, else {DEFAULT_SEED})")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="share of train patients carved out as val (default: the run's, else "
                             f"{DEFAULT_VAL_FRACTION})")
    add_operating_point_flags(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    classifier = open_classifier(args.model)
    if classifier is None:
        return 2
    threshold = operating_point(classifier, args)
    if threshold is None:
        return 2
    run = RunDir(Path(classifier.path).parent)
    # fold models saw every training image: no validation was carved out of them
    if args.split == "val" and run_folds(classifier) > 1:
        print(f"error: {_no_val_split(classifier.path)}", file=sys.stderr)
        return 1
    try:
        answers = score_split(classifier, args.split, args.data, args.limit, args.seed, args.val_fraction,
                              cache_dir=args.cache_dir, progress=sys.stderr.isatty())
        subset = f", at most {answers.limit} images (--limit)" if answers.limit else ""
        own = print_scores(classifier, answers, threshold,
                           f"model {classifier.path}, {args.split} split of {answers.root}{subset}")
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # e.g. a split holding one class only: no sensitivity or AUC
        print(f"error: cannot score the {args.split} split: {err}", file=sys.stderr)
        return 1
    stored = run.read_metrics().get(args.split)
    if stored is not None:
        differ = _differences(own, stored)
        print(f"{'differs from' if differ else 'equals'} the run's {run.metrics}"
              + (f" in {', '.join(differ)}" if differ else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
