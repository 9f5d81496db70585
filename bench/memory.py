"""Peak memory of training against the size of the data set: ``python -m bench.memory [--help]``.

Makes synthetic data sets from the real X-rays under new names (symbolic links named
``copy{k}_{name}``, so each counts as an image, and as a patient, of its own), then runs a one-epoch
training at 128 px (``python -m fast.train --folds 1 --epochs 1``) on each, first with an empty
cache (decoding fills it) and then with the cache warm, and samples the process's anonymous
resident memory (``RssAnon`` in /proc/PID/status: the heap, not the memory-mapped cache, which
is file-backed and can be dropped by the kernel at any time) every 10 ms. Prints one row a run
and the growth from the smallest set to the largest. A benchmark, not a test: it takes minutes.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

import numpy as np

from fast.data.folders import CLASS_NAMES, list_split, resolve_data_root


def make_dataset(source, target, train_images):
    """``target``/{train,test}/{NORMAL,PNEUMONIA}: ``train_images`` training links going round
    the real training images in a fixed shuffled order (so about their class shares), and the
    real test split."""
    for split, wanted in (("train", train_images), ("test", None)):
        paths, labels = list_split(source, split)
        count = len(paths) if wanted is None else wanted
        order = np.random.default_rng(0).permutation(len(paths))
        for name in CLASS_NAMES:
            (target / split / name).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            i = order[k % len(paths)]
            link = target / split / CLASS_NAMES[labels[i]] / f"copy{k // len(paths)}_{paths[i].name}"
            link.symlink_to(paths[i].resolve())


def _anonymous_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(command, env):
    """Run ``command`` -> (peak RssAnon in MiB, seconds, exit status), sampling every 10 ms."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    peak = 0
    stderr = []
    reader = threading.Thread(target=lambda: stderr.append(process.stderr.read()))
    reader.start()
    while process.poll() is None:
        peak = max(peak, _anonymous_kib(process.pid))
        time.sleep(0.01)
    reader.join()
    if process.returncode:
        print("".join(stderr)[-2000:], file=sys.stderr)
    return peak / 1024, time.perf_counter() - start, process.returncode


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="the real data set (default: as training finds it)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000],
                        help="training images of each synthetic set (default: 4000 16000)")
    parser.add_argument("--image-size", type=int, default=128, help="pixels a side (default: 128)")
    parser.add_argument("--work", default=None, help="where the sets, caches and runs go "
                        "(default: a temporary folder, removed afterwards)")
    args = parser.parse_args(argv)
    source = resolve_data_root(args.data)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="xray-memory-"))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    rows = []
    try:
        for size in args.sizes:
            data = work / f"set{size}"
            if not data.exists():
                make_dataset(source, data, size)
            for cache in ("cold", "warm"):
                if cache == "cold":
                    shutil.rmtree(work / f"cache{size}", ignore_errors=True)
                run = work / f"run{size}-{cache}"
                shutil.rmtree(run, ignore_errors=True)
                command = [sys.executable, "-m", "fast.train", "--data", str(data), "--folds", "1",
                           "--epochs", "1", "--image-size", str(args.image_size),
                           "--cache-dir", str(work / f"cache{size}"), "--out", str(run)]
                peak, seconds, status = measure(command, env)
                if status:
                    sys.exit(f"training on {data} failed (exit status {status})")
                rows.append((size, cache, peak, seconds))
                print(f"{size:6d} training images, {cache} cache: peak anonymous memory "
                      f"{peak:7.1f} MiB, {seconds:6.1f} s", flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n| training images | cache | peak anonymous memory (MiB) | wall time (s) |\n|---|---|---|---|")
    for size, cache, peak, seconds in rows:
        print(f"| {size:,} | {cache} | {peak:.1f} | {seconds:.1f} |")
    for cache in ("cold", "warm"):
        peaks = [(size, peak) for size, c, peak, _ in rows if c == cache]
        if len(peaks) > 1:
            (small, low), (large, high) = peaks[0], peaks[-1]
            print(f"growth from {small:,} to {large:,} images, {cache} cache: {high - low:+.1f} MiB")


if __name__ == "__main__":
    main()
