"""What the command-line tools share: opening a model for a command, and one-line warnings."""
import sys
import warnings
from contextlib import contextmanager

from fast.inference import find_model, load_classifier
from fast.model import ModelFileError


def open_classifier(spec):
    """find_model + load_classifier for a command -> Classifier, or None after printing why the
    model is refused (the caller then exits with status 2)."""
    try:
        return load_classifier(find_model(spec))
    except ModelFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def _one_line(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr if file is None else file)


@contextmanager
def one_line_warnings():
    """Within the block, warnings print as ``warning: <message>``: a user of a command needs the
    message (which names the file), not the line of the project's source that raised it."""
    with warnings.catch_warnings():
        warnings.showwarning = _one_line
        yield
