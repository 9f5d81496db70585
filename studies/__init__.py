"""The studies behind the defaults and the README's results, each a module run from the checkout
(``python -m studies.three_seeds``): what was tried, on which images, and what it showed."""
import sys

from fast.data.errors import DataError
from fast.nn.model_file import ModelFileError


def run(main):
    """Run a study's ``main`` as a command: a model or data folder that cannot be read is one line
    on stderr and exit status 1, not a traceback."""
    try:
        return main()
    except (ModelFileError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
