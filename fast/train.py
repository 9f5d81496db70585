"""Train the pneumonia classifier: ``python -m fast.train [--help]``."""
from fast.runtime import configure_process

if __name__ == "__main__":
    configure_process()  # before NumPy loads: OpenBLAS reads its settings then

import sys  # noqa: E402

from fast import distributed  # noqa: E402
from fast.cli import one_line_warnings  # noqa: E402
from fast.config import TrainConfig, build_parser  # noqa: E402
from fast.data import DataError  # noqa: E402
from fast.report import ReportError, make_report  # noqa: E402
from fast.trainer import TrainingError, train  # noqa: E402

DESCRIPTION = """Train a CNN written in NumPy to tell NORMAL from PNEUMONIA chest X-rays.
With --folds K, K models on patient-grouped folds of the training split; otherwise one model
with a validation split carved out by patient. The calibration and the decision threshold are
chosen on the held-out predictions; the test split is scored once at the end. Outputs,
pictures included, go to the run directory.

Data-parallel on several processes or machines (needs the MPI extra, pip install -e '.[mpi]'):
mpiexec -n N python -m fast.train [flags]; every batch is split between the N processes, and the
weights are those of one process, up to float round-off."""


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
            group = distributed.world()  # the processes mpiexec started, or this one alone
            run_dir = train(config, resume=resume, group=group)
            if group.lead:
                make_report(run_dir, config.data)
    except (DataError, TrainingError, ReportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the trainer has said how to resume
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
