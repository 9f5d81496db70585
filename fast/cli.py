"""What the command-line tools share: opening a model for a command, the flags of the data they
read, and one-line warnings."""
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
