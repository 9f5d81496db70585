"""Train the pneumonia classifier: ``python -m fast.train [--help]``."""
import sys

from fast.cli import one_line_warnings
from fast.config import TrainConfig, build_parser
from fast.data import DataError
from fast.report import ReportError, make_report
from fast.trainer import TrainingError, train

DESCRIPTION = """Train a CNN written in NumPy to tell NORMAL from PNEUMONIA chest X-rays.
The validation split is carved from train by patient; the decision threshold is chosen
on it; the test split is scored once at the end. Outputs, pictures included, go to the
run directory."""


def parse_args(argv=None):
    parser = build_parser("python -m fast.train", DESCRIPTION)
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue an interrupted run from its last completed epoch, "
                             "with the configuration stored in RUN_DIR/config.json")
    args = parser.parse_args(argv)
    resume = args.resume
    del args.resume
    return TrainConfig(**vars(args)), resume


def main(argv=None):
    config, resume = parse_args(argv)
    try:
        with one_line_warnings():
            run_dir = train(config, resume=resume)
            make_report(run_dir, config.data)
    except (DataError, TrainingError, ReportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the trainer has said how to resume
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
