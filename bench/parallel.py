"""Epoch time of 2 MPI processes x 1 thread against 1 process x 2 threads: ``python -m bench.parallel``.

Both run the same command, ``python -m fast.train --folds 1 --epochs E`` on the real data (one model,
the default network at the default 64 px), once as one process using both cores and once as
``mpiexec -n 2`` (each process then takes one core: ``fast.runtime.configure_process``), in
alternating rounds so that a change in the machine's speed hits both alike. Each epoch's training
time comes from the run's history.csv (evaluation excluded); the table gives medians over every
epoch of every round, next to the float32 GEMM yardstick (``bench/yardstick.py``) measured in this process.
Needs the MPI extra (pip install -e '.[mpi]'). A benchmark, not a test: it takes minutes.
"""
import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.yardstick import FLOP, Yardstick
from fast.runs import RunDir

REPO_ROOT = Path(__file__).resolve().parent.parent


def epoch_seconds(run_dir):
    with open(RunDir(run_dir).history) as f:
        return [float(row["seconds"]) for row in csv.DictReader(f)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.parallel", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="data folder (default: as training finds it)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs a run (default: 2)")
    args = parser.parse_args(argv)
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("mpiexec not found: install the MPI extra, pip install -e '.[mpi]'")
    work = Path(tempfile.mkdtemp(prefix="xray-parallel-"))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    base = [sys.executable, "-m", "fast.train", "--folds", "1", "--epochs", str(args.epochs),
            "--cache-dir", str(work / "cache")] + (["--data", args.data] if args.data else [])
    contenders = {"1 process x 2 threads": [], "2 processes x 1 thread": []}
    gflops, yardstick = [], Yardstick()
    try:
        subprocess.run(base + ["--epochs", "1", "--out", str(work / "warm-up")], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fills the cache
        for r in range(args.rounds):
            gflops.append(FLOP / statistics.median(yardstick.seconds() for _ in range(5)) / 1e9)
            for name, epochs in contenders.items():
                run = work / f"{name[0]}-{r}"
                launch = [mpiexec, "-n", "2"] if name.startswith("2") else []
                subprocess.run(launch + base + ["--out", str(run)], env=env, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                epochs += epoch_seconds(run)
                print(f"round {r + 1}: {name}: epochs {epoch_seconds(run)} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cores = len(os.sched_getaffinity(0))
    print(f"\n{cores} cores, float32 GEMM 2048^3 median {statistics.median(gflops):.0f} GFLOP/s "
          f"(each round: {', '.join(f'{g:.0f}' for g in gflops)})")
    print("| contender | median epoch (s) | epochs |\n|---|---|---|")
    medians = {name: statistics.median(e) for name, e in contenders.items()}
    for name, epochs in contenders.items():
        print(f"| {name} | {medians[name]:.2f} | {len(epochs)} |")
    one, two = medians.values()
    print(f"2 processes take {two / one:.2f}x the epoch time of 1 process with 2 threads")


if __name__ == "__main__":
    main()
