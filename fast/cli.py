"""What the command-line tools share: opening a model for a command, the flags of the data they
read, the operating point, and one-line warnings."""
import argparse
import sys
import warnings
from contextlib import contextmanager

from fast.inference import LATEST, SHIPPED_MODEL, load_classifier
from fast.nn.model_file import ModelFileError
from fast.runs import RUNS_DIR, RunDir

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
