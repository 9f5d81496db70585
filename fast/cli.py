"""What the command-line tools share: opening a model for a command, the flags of the data they
read, the operating point, scoring a split as the model's run chose it and printing its table, and
one-line warnings."""
import argparse
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from fast.data.folders import resolve_data_root
from fast.data.splits import DEFAULT_SEED, DEFAULT_VAL_FRACTION, carved_fraction, load_splits
from fast.inference import LATEST, SHIPPED_MODEL, load_classifier
from fast.nn.model_file import ModelFileError
from fast.runs import RUNS_DIR, RunDir
from fast.scoring import metrics

MODEL_HELP = (f"a run directory (its {RunDir.MODEL}), a model .npz file, or {LATEST!r} for the newest "
              f"run under {RUNS_DIR}/ (default: the shipped model, models/{SHIPPED_MODEL.name})")


def open_classifier(spec):
    """The model a command's --model names (``inference.find_model``) -> Classifier, after saying
    on stderr which model answers; None after printing why the model is refused (the caller
    then exits with status 2)."""
    try:
        with one_line_warnings():  # an older model file says once what it lacks
            classifier = load_classifier(spec)
    except ModelFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    how = {None: "; --model chooses another", LATEST: f"; the newest run under {RUNS_DIR}/"}
    print(f"model {classifier.describe()}{how.get(spec, '')}", file=sys.stderr)
    return classifier


def add_data_flags(parser, data_use, cache_use):
    """The flags of a command that reads X-rays: ``--data``, the data folder (``data_use``: what
    for), and ``--cache-dir``, where ``cache_use`` are kept decoded."""
    parser.add_argument("--data", metavar="PATH", default=None,
                        help=f"the chest X-ray data folder, {data_use} (default: the run's config.json, "
                             "else $XRAY_DATA, else data/chest_xray)")
    parser.add_argument("--cache-dir", metavar="DIR", default=None,
                        help=f"reuse/store {cache_use} there, decoded (default: no cache)")


def _one_line(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr if file is None else file)


@contextmanager
def one_line_warnings():
    """Within the block, warnings print as ``warning: <message>``: a user of a command needs the
    message (which names the file), not the line of the project's source that raised it."""
    with warnings.catch_warnings():
        warnings.showwarning = _one_line
        yield


def _probability(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text}")
    return value


def _sensitivity(text):
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


_probability.__name__ = _sensitivity.__name__ = "number"  # argparse's word in "invalid number value"


def add_operating_point_flags(parser):
    """--threshold and --sensitivity, one or neither: the operating point of a command's labels."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--threshold", metavar="T", type=_probability, default=None,
                       help="call PNEUMONIA when P(pneumonia) >= T (default: the model's own threshold, "
                            "chosen on its held-out X-rays)")
    group.add_argument("--sensitivity", metavar="S", type=_sensitivity, default=None,
                       help="screening: the highest threshold whose sensitivity on the model's held-out "
                            "(out-of-fold) X-rays is at least S, e.g. 0.98 to miss few cases")


def operating_point(classifier, args):
    """The threshold the command's --threshold or --sensitivity asks for (the model's own when
    neither), after saying on stderr which is used and the model's own beside it; None after
    printing why it cannot be had (the caller then exits with status 2)."""
    try:
        threshold, what = classifier.operating_point(args.threshold, args.sensitivity)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    own = "" if args.threshold is None and args.sensitivity is None else \
        f" (the model's own: {classifier.threshold:.4f})"
    print(f"operating point: {what}{own}", file=sys.stderr)
    return threshold


# --------------------------------------------------------------------------- scoring a split

class ScoredSplit(NamedTuple):
    """A classifier's answers on one split of the data folder ``root``."""
    split: str
    root: Path
    limit: Optional[int]  # at most this many images per folder (the run's --limit), or None
    y: np.ndarray
    probability: np.ndarray  # calibrated P(pneumonia)
    paths: np.ndarray
    flagged: Optional[np.ndarray]  # what the typicality check flags; None without a typicality model

    def scored(self, threshold):
        """``metrics.scored`` of these answers at ``threshold``."""
        return metrics.scored(self.y, self.probability, threshold)


def run_config(classifier):
    """The settings of the run that made the classifier: the config.json beside its model file, {}
    for a model file alone."""
    return RunDir(Path(classifier.path).parent).read_config()


def run_folds(classifier):
    """How many fold models the classifier's run trained (1: one model, with a validation split
    carved out): its config's --folds, or for a model file alone, its members."""
    return max(run_config(classifier).get("folds") or 1, len(classifier.members))


def score_split(classifier, split="test", data=None, limit=None, seed=None, val_fraction=None,
                cache_dir=None, progress=False):
    """The classifier's answers on ``split``, its images chosen as the model's run chose them
    (``fast.data.splits.load_splits``) -> ScoredSplit. Each of the data folder, ``limit``,
    ``seed`` and ``val_fraction`` is the argument when given, else the run's setting (its
    config.json beside the model file), else the training default; a validation split is carved
    only for a single model, as the trainer does. Says on stderr that the work began (decoding
    the images takes a while without a cache). DataError when there is no data folder."""
    config = run_config(classifier)

    def setting(name, given, default=None):
        value = config.get(name) if given is None else given
        return default if value is None else value

    root = resolve_data_root(setting("data", data))
    limit = setting("limit", limit)
    print(f"scoring the {split} split of {root}", file=sys.stderr, flush=True)
    fraction = carved_fraction(run_folds(classifier), setting("val_fraction", val_fraction, DEFAULT_VAL_FRACTION))
    with one_line_warnings():
        splits, _ = load_splits(root, (split,), classifier.image_size, seed=setting("seed", seed, DEFAULT_SEED),
                                val_fraction=fraction, limit=limit, cache_dir=cache_dir, progress=progress)
    images, y, paths = splits[split]
    probability, typical = classifier.scores(images)
    flagged = None if typical is None else classifier.record.typicality.flagged(typical)
    return ScoredSplit(split, root, limit, y, probability, np.array(paths), flagged)


FLAGGED_NAMED = 10  # flagged X-rays named by path; the rest counted


def print_scores(classifier, answers, threshold, heading):
    """The metric table of ``answers`` (a ScoredSplit) at ``threshold``, the model's own beside
    it when another operating point is used, then how many X-rays the typicality check flags
    (the first few by name) -> the figures at the model's own threshold. ``heading``: the line
    above the table, which says the number of images and the threshold after it."""
    own = classifier.threshold
    result = answers.scored(threshold)
    print(f"{heading}: {result['n']} images, threshold {threshold:.4f}"
          + ("" if threshold == own else f" (the model's own: {own:.4f})"))
    if threshold == own:
        print(metrics.format_metrics_table({answers.split: result}))
    else:
        result_own = answers.scored(own)
        print(metrics.format_metrics_table({f"at {threshold:.4f}": result, f"own {own:.4f}": result_own}))
        result = result_own
    flagged = answers.flagged
    if flagged is None:
        print("typicality: this model file keeps no typicality model, so no X-ray is flagged")
        return result
    print(f"typicality: {flagged.sum()} of {len(flagged)} X-rays ({flagged.mean():.1%}) flagged as unlike "
          "the model's training X-rays (their answers are in the table)")
    named = [str(p) for p, f in zip(answers.paths, flagged) if f]
    for path in named[:FLAGGED_NAMED]:
        print(f"  flagged: {path}")
    if len(named) > FLAGGED_NAMED:
        print(f"  and {len(named) - FLAGGED_NAMED} more")
    return result
