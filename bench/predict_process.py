"""The shipped model's prediction over the test split, timed in a process started as a user starts one.

    python -m bench.predict_process            # every X-ray of the test split
    python -m bench.predict_process 100        # the first 100 (sorted by path)
    OPENBLAS_NUM_THREADS=1 python -m bench.predict_process

No process settings are made (no ``runtime.configure_process``): the process gets whatever the
package does by itself, as ``python -m fast.predict`` or a notebook calling ``load_classifier()``
does. One untimed call on a few X-rays loads what a first call loads; then one
``Classifier.predict_proba`` over the files is timed: reading and decoding them, every member of
the ensemble, every test-time view. Prints one JSON line: the X-rays, the seconds, X-rays per
second and the BLAS threads the environment asked for. ``bench/test_speed.py`` runs it in
alternating rounds, with and without ``OPENBLAS_NUM_THREADS=1``, on an idle machine and beside
a training run.
"""
import json
import os
import sys
import time

from fast.data.folders import find_images, resolve_data_root
from fast.inference import load_classifier

WARM_UP = 4  # X-rays predicted once, untimed, before the timed call


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else None
    files = find_images(resolve_data_root() / "test")[:limit]
    classifier = load_classifier()  # the shipped model
    classifier.predict_proba(files[:WARM_UP])
    start = time.perf_counter()
    probability = classifier.predict_proba(files)
    seconds = time.perf_counter() - start
    assert len(probability) == len(files)
    print(json.dumps({"xrays": len(files), "seconds": seconds, "xrays_per_second": len(files) / seconds,
                      "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "as BLAS chooses")}))


if __name__ == "__main__":
    main()
