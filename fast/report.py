"""Draw the pictures of a run or a model file: ``python -m fast.report RUN_DIR_OR_MODEL [--help]``.

A thin command: a run directory's pictures are drawn from its own files
(``fast.pictures.drawing.make_report``); a model file's test split is scored first
(``fast.cli.score_split``), its table printed, and its pictures drawn from those answers
(``report_model``).
"""
import argparse
import sys
from pathlib import Path

from fast.cli import (add_data_flags, add_operating_point_flags, open_classifier, operating_point, print_scores,
                      score_split)
from fast.data.errors import DataError
from fast.files import folder_problem
from fast.nn.model_file import ModelFileError
from fast.pictures.drawing import ReportError, make_report, picture_list, report_model
from fast.runs import RunDir

DESCRIPTION = """Draw the pictures of a finished training run, or of a model file alone, as PNG files.

A run directory: from the run's own files, into the run directory (or --out DIR):
{pictures}

A model file (the shipped models/pneumonia_cnn.npz, say): the test split is scored first and
its metric table printed (the test figures of the model's card); then every picture but the
training curves and the held-out stress battery (a run's own) goes into --out DIR.
--threshold or --sensitivity scores and draws another operating point, the model's own beside it.""".format(
    pictures=picture_list())

EPILOG = """examples:
  python -m fast.report runs/20240101-120000
  python -m fast.report models/pneumonia_cnn.npz --out report/shipped"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fast.report", description=DESCRIPTION, epilog=EPILOG,
                                     allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="RUN_DIR_OR_MODEL",
                        help="a run directory written by python -m fast.train, or a model .npz file")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where the pictures go (made if missing); default: the run directory. "
                             "Needed for a model file")
    add_data_flags(parser, "for the test split and the pictures that show X-rays",
                   "a model file's test images")
    add_operating_point_flags(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    target = Path(args.target)
    model_file = target.is_file()
    problem = None
    if not target.exists():
        print(f"error: {target}: no such run directory or model file", file=sys.stderr)
        return 1
    if model_file and args.out is None:
        problem = f"a model file's pictures need --out DIR (they do not go beside {target})"
    elif args.out is not None:
        problem = folder_problem(args.out)
        problem = problem and f"--out: {problem}"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        run_model = RunDir(target).model if not model_file else target
        if not model_file and not run_model.is_file():
            make_report(target, args.data, out_dir=args.out)  # says what the run directory lacks
            return 0
        classifier = open_classifier(str(run_model))
        if classifier is None:
            return 1
        threshold = operating_point(classifier, args)
        if threshold is None:
            return 2
        if not model_file:
            make_report(target, args.data, out_dir=args.out, classifier=classifier, threshold=threshold)
            return 0
        answers = score_split(classifier, "test", args.data, cache_dir=args.cache_dir,
                              progress=sys.stderr.isatty())
        print_scores(classifier, answers, threshold, f"test split of {answers.root}")
        report_model(classifier, answers, args.out, threshold=threshold)
    except (ReportError, ModelFileError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
