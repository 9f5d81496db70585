"""Train the pneumonia classifier: ``python -m fast.train [--help]``."""
import sys

from fast.cli import one_line_warnings
from fast.data.errors import DataError
from fast.pictures.drawing import ReportError, make_report
from fast.runtime import configure_process
from fast.training import distributed
from fast.training.config import TrainConfig, build_parser
from fast.training.loop import TrainingError
from fast.training.trainer import train

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
    config = TrainConfig(**vars(args))
    if resume is None and config.conflict():
        parser.error(config.conflict())
    return config, resume


def main(argv=None):
    config, resume = parse_args(argv)
    group = distributed.Group()
    try:
        with one_line_warnings():
            group = distributed.world()  # the processes mpiexec started, or this one alone
            run_dir = train(config, resume=resume, group=group)
            if group.lead:
                make_report(run_dir, config.data)
    except (DataError, TrainingError, ReportError) as e:
        where = f" (process {group.rank} of {group.size})" if group.size > 1 else ""
        print(f"error{where}: {e}", file=sys.stderr)
        group.abort(1)  # the other processes must not wait for this one
        return 1
    except KeyboardInterrupt:  # the trainer has said how to resume
        return 130
    return 0


if __name__ == "__main__":
    try:
        configure_process()  # BLAS threads, malloc: the process-wide settings of a training run
    except ValueError as err:  # e.g. XRAY_THREADS=abc
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
