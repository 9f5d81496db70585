"""The README's results table: the default training run for seeds 0, 1 and 2, scored once.

    python -m studies.three_seeds                 # trains runs/seed0..2 (skips finished ones), prints the table
    python -m studies.three_seeds --flags "--image-size 96"   # the same for another setting

Each run is ``python -m fast.train --seed S --out OUT/seedS`` plus ``--flags``, in its own
process. The table is computed here from each run's ``test_predictions.npz`` (the calibrated
test probabilities and the labels) and its stored threshold, independently of the trainer's own
metrics.json, with mean and standard deviation over the seeds. A second table gives each run's
held-out figures: the out-of-fold ROC AUC and the stress battery (``fast.scoring.stress``): how far
the share of each class called PNEUMONIA moves, at most, when the held-out X-rays are framed or
taken otherwise, and how many views move it beyond their limits. A benchmark, not a test: each
seed is one full default training run.
"""
import argparse
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fast.runs import RunDir
from fast.scoring import metrics, stress

COLUMNS = ("roc_auc", "accuracy", "sensitivity", "specificity", "ece", "brier")


def held_out(run_dir):
    """(held-out ROC AUC, log loss, {family: the largest change of a share called PNEUMONIA},
    the battery's breaches)."""
    results = RunDir(run_dir).read_metrics()
    battery = results["stress"]
    worst = {family: stress.worst_change(battery, family) for family in stress.FAMILIES}
    return results["val"]["roc_auc"], results["val"]["log_loss"], worst, battery["breaches"]


def score(run_dir):
    """The test figures of a finished run, recomputed from its predictions."""
    run = RunDir(run_dir)
    with np.load(run.predictions("test"), allow_pickle=False) as npz:
        prob, y = npz["probability"], npz["label"].astype(np.int64)
    threshold = run.read_metrics()["threshold"]
    return metrics.scored(y, prob, threshold), threshold


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m studies.three_seeds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument("--out", default="runs", help="folder for the runs (default: runs)")
    parser.add_argument("--flags", default="", help="extra flags for python -m fast.train")
    args = parser.parse_args(argv)

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        run_dir = Path(args.out) / f"seed{seed}"
        if not RunDir(run_dir).metrics.is_file():
            command = [sys.executable, "-m", "fast.train", "--seed", str(seed), "--out", str(run_dir),
                       *shlex.split(args.flags)]
            if RunDir(run_dir).config.is_file():  # interrupted earlier: continue it
                command = [sys.executable, "-m", "fast.train", "--resume", str(run_dir)]
            start = time.perf_counter()
            subprocess.run(command, check=True)
            print(f"seed {seed}: {time.perf_counter() - start:.0f} s of wall time", file=sys.stderr)
        figures, threshold = score(run_dir)
        rows.append((seed, threshold, figures))

    print("| seed | threshold | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for seed, threshold, figures in rows:
        print(f"| {seed} | {threshold:.3f} | " + " | ".join(f"{figures[c]:.3f}" for c in COLUMNS) + " |")
    cells = []
    for c in COLUMNS:
        values = [figures[c] for _, _, figures in rows]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        cells.append(f"{statistics.mean(values):.3f} +- {sd:.3f}")
    print("| mean +- sd | | " + " | ".join(cells) + " |")

    print()
    print("| seed | held-out AUC | log loss | " + " | ".join(f"largest {f} change" for f in stress.FAMILIES)
          + " | views beyond their limits |")
    print("|---" * (len(stress.FAMILIES) + 4) + "|")
    for seed, _, _ in rows:
        auc, loss, worst, breaches = held_out(Path(args.out) / f"seed{seed}")
        print(f"| {seed} | {auc:.4f} | {loss:.4f} | " + " | ".join(f"{worst[f]:.3f}" for f in stress.FAMILIES)
              + f" | {len(breaches)}: {'; '.join(breaches) or 'none'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
