"""Score a saved model on a data split: ``python -m fast.evaluate [--model RUN_DIR_OR_NPZ] [--help]``.

The images are chosen and prepared as the trainer did for the run (same ``--limit`` subset,
same seed and validation carving, the model's stored mean/std and threshold), so on the test
split the table equals the run's metrics.json.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from fast.cli import (MODEL_HELP, add_data_flags, add_operating_point_flags, one_line_warnings,
                      open_classifier, operating_point)
from fast.data.errors import DataError
from fast.data.folders import resolve_data_root
from fast.data.splits import load_splits
from fast.runs import RunDir
from fast.scoring import metrics
from fast.training.config import TrainConfig, carved_fraction

SPLITS = ("test", "val", "train")

DESCRIPTION = """Recompute the metric table of a saved model (by default the shipped one) on one
split of the chest X-ray data, at the decision threshold stored in the model, and print it as the
trainer does. --threshold or --sensitivity scores it at another operating point, the model's own
column beside it. The X-rays the model's typicality check flags (unlike its training X-rays) are
counted and named.

With a run directory, the data folder, --limit, --seed and --val-fraction default to the
run's config.json, so the same images are scored as in training: the test numbers equal
the run's metrics.json."""


def split_images(root, split, size, limit=None, seed=TrainConfig.seed,
                 val_fraction=TrainConfig.val_fraction, cache_dir=None, progress=False):
    """The images of ``split`` as the trainer picks them (``fast.data.splits.load_splits``)
    -> (images: ``fast.data.pixels.Pixels``, read as (n, S, S) in [0, 1] when sliced, y, paths)."""
    splits, _ = load_splits(root, (split,), size, seed=seed, val_fraction=val_fraction, limit=limit,
                            cache_dir=cache_dir, progress=progress)
    return splits[split]


def evaluate(classifier, images, y, threshold=None):
    """metrics.scored of the classifier on ``images`` ((N, S, S) in [0, 1], or ``Pixels``, read
    a batch at a time) at ``threshold`` (default: its own) -> (that, a boolean mask of the images
    its typicality check flags, or None for a model without one)."""
    probability, typical = classifier.scores(images)
    threshold = classifier.threshold if threshold is None else threshold
    flagged = None if typical is None else classifier.record.typicality.flagged(typical)
    return metrics.scored(y, probability, threshold), flagged


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
                        f"carving (default: the run's, else {TrainConfig.seed})")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="share of train patients carved out as val (default: the run's, else "
                             f"{TrainConfig.val_fraction})")
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
    config = run.read_config()

    def setting(name, default=None):
        """The flag when given, else the run's setting, else ``default``."""
        value = getattr(args, name)
        if value is None:
            value = config.get(name)
        return default if value is None else value

    # fold models saw every training image: no validation was carved out of them
    folds = max(config.get("folds") or 1, len(classifier.members))
    if folds > 1 and args.split == "val":
        print(f"error: {_no_val_split(classifier.path)}", file=sys.stderr)
        return 1
    limit = setting("limit")
    try:
        root = resolve_data_root(args.data if args.data is not None else config.get("data"))
        # the images are decoded first (a while without a cache): say that the work began
        print(f"scoring the {args.split} split of {root}", file=sys.stderr, flush=True)
        with one_line_warnings():
            images, y, paths = split_images(root, args.split, classifier.image_size, limit=limit,
                                        seed=setting("seed", TrainConfig.seed),
                                        val_fraction=carved_fraction(folds, setting(
                                            "val_fraction", TrainConfig.val_fraction)),
                                        cache_dir=args.cache_dir, progress=sys.stderr.isatty())
        result, flagged = evaluate(classifier, images, y, threshold)
        own = None if threshold == classifier.threshold else evaluate(classifier, images, y)[0]
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # e.g. a split holding one class only: no sensitivity or AUC
        print(f"error: cannot score the {args.split} split of {root}: {err}", file=sys.stderr)
        return 1
    _print_result(classifier, run, args.split, root, limit, (threshold, result, own))
    _print_flagged(flagged, paths)
    return 0


FLAGGED_NAMED = 10  # flagged X-rays named by path; the rest counted


def _print_flagged(flagged, paths):
    """How many of the split's X-rays the typicality check flags, the first few by name."""
    if flagged is None:
        print("typicality: this model file keeps no typicality model, so no X-ray is flagged")
        return
    print(f"typicality: {flagged.sum()} of {len(flagged)} X-rays ({flagged.mean():.1%}) flagged as unlike "
          "the model's training X-rays (their answers are in the table)")
    named = [str(p) for p, f in zip(paths, flagged) if f]
    for path in named[:FLAGGED_NAMED]:
        print(f"  flagged: {path}")
    if len(named) > FLAGGED_NAMED:
        print(f"  and {len(named) - FLAGGED_NAMED} more")


def _print_result(classifier, run, split, root, limit, scored):
    """The metric table at the operating point (the model's own beside it when another is used),
    and whether the model's own figures equal the run's."""
    threshold, result, own = scored
    subset = f", at most {limit} images (--limit)" if limit else ""
    print(f"model {classifier.path}, {split} split of {root}{subset}: {result['n']} images, "
          f"threshold {threshold:.4f}" + ("" if own is None else
                                         f" (the model's own: {classifier.threshold:.4f})"))
    if own is None:
        print(metrics.format_metrics_table({split: result}))
    else:
        print(metrics.format_metrics_table({f"at {threshold:.4f}": result,
                                            f"own {classifier.threshold:.4f}": own}))
        result = own
    stored = run.read_metrics().get(split)
    if stored is not None:
        differ = _differences(result, stored)
        print(f"{'differs from' if differ else 'equals'} the run's {run.metrics}"
              + (f" in {', '.join(differ)}" if differ else ""))


if __name__ == "__main__":
    sys.exit(main())
