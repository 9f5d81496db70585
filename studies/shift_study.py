"""Choose training settings on a shift built from the training split alone.

The test split's X-rays differ from the training split's in more than their class mix: models
that are near perfect out of fold (AUC 0.996) flag a third of its healthy children. Out-of-fold
scores cannot choose between settings that differ in how well they survive such a shift: they are
all near perfect. This study makes a shift out of the training split, without looking at the test
split: the training NORMAL X-rays come in two batches, named ``IM-*`` (597 images) and
``NORMAL2-IM-*`` (744). Each candidate setting trains twice:

- on the ``IM-*`` NORMAL images and half the PNEUMONIA patients, scored on the ``NORMAL2-*``
  images and the other half;
- the other way round.

So every healthy X-ray it is scored on comes from a batch it never saw, as a new hospital's would.
Scored on both held-out halves together (the two models' probabilities pooled): ROC AUC, the
specificity at the highest threshold that keeps sensitivity >= 0.95, and the log loss and ECE
of the probabilities (uncalibrated: both models train with balanced class weights).

    python -m studies.shift_study --name baseline
    python -m studies.shift_study --name image-norm --set normalise=image
    python -m studies.shift_study --name control --mix     # halves drawn regardless of batch

``--mix`` deals the NORMAL patients to the halves at random instead (no batch shift): the
control that shows how much of the drop is the shift. ``--split numbers`` tries another shift:
every class's patients with the lower half of the numbers against the upper half (a shift in
time, if the numbers follow the order in which the X-rays were taken). Results are appended, one
JSON line each, to ``--log`` (default runs/shift_study.jsonl), and the pooled probabilities to
``shift_NAME.npz`` beside it.
"""
import argparse
import dataclasses
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from fast.data.cache import load_images
from fast.data.folders import list_split, resolve_data_root
from fast.data.normalise import pixel_mean_std
from fast.data.pixels import Inputs
from fast.data.splits import patient_id
from fast.runs import RunDir
from fast.runtime import configure_process
from fast.scoring import metrics
from fast.training.config import TrainConfig
from fast.scoring.held_out import held_out_proba
from fast.training.loop import TrainingRun, fit
from fast.training.trainer import test_time_zooms


_NUMBERED = re.compile(r"^(.*?)(\d+)$")  # 'person12' -> ('person', '12'), 'IM-0115' -> ('IM-', '0115')


def _deal_at_random(ids, rng):
    """{id: 0 or 1}: the ids in a random order, the first half (rounded down) -> 1."""
    return {ids[j]: int(rank < len(ids) // 2) for rank, j in enumerate(rng.permutation(len(ids)))}


def _number_halves(ids, rng):
    """{id: 0 or 1}: within each naming scheme (``person``, ``IM-``, ``NORMAL2-IM-``), the
    patients with the lower half of the numbers -> 0, the upper half -> 1. Ids that end in no
    number (files named otherwise, each its own patient) are dealt at random, half to each."""
    schemes, dealt = {}, {}
    unnumbered = []
    for pid in ids:
        match = _NUMBERED.match(pid)
        if match:
            schemes.setdefault(match.group(1), []).append((int(match.group(2)), pid))
        else:
            unnumbered.append(pid)
    for members in schemes.values():
        members.sort()
        for rank, (_, pid) in enumerate(members):
            dealt[pid] = int(rank >= len(members) / 2)
    dealt.update(_deal_at_random(unnumbered, rng))
    return dealt


def halves(paths, labels, seed, mix, split="batch"):
    """(N,) 0/1: the half each image trains in; the other half scores it.

    ``split="batch"``: NORMAL images go by batch (``IM-*`` -> 0, ``NORMAL2-*`` -> 1), or with
    ``mix`` by patient at random; PNEUMONIA patients are dealt at random, half to each.
    ``split="numbers"``: every class by patient number, the lower half of each naming scheme's
    numbers against the upper half (if numbers follow the order of acquisition, a shift in time).
    """
    rng = np.random.default_rng(seed)
    patients = [patient_id(p) for p in paths]
    side = np.empty(len(paths), dtype=np.int64)
    for label in (0, 1):
        ids = sorted({pid for pid, y in zip(patients, labels) if y == label})
        if split == "numbers":
            dealt = _number_halves(ids, rng)
        elif label == 0 and not mix:
            dealt = {pid: int(pid.startswith("NORMAL2")) for pid in ids}
        else:
            dealt = _deal_at_random(ids, rng)
        for i, (pid, y) in enumerate(zip(patients, labels)):
            if y == label:
                side[i] = dealt[pid]
    return side


def parse_setting(text):
    key, _, value = text.partition("=")
    field = {f.name: f for f in dataclasses.fields(TrainConfig)}.get(key.replace("-", "_"))
    if field is None or not value:
        raise argparse.ArgumentTypeError(f"expected SETTING=VALUE with a field of TrainConfig, got {text!r}")
    convert = field.metadata.get("type")
    if isinstance(field.default, bool):
        parsed = value.lower() in ("1", "true", "on", "yes")
    elif convert is not None:
        parsed = convert(value)
    else:
        parsed = value
    choices = field.metadata.get("choices")
    if choices and parsed not in choices:
        raise argparse.ArgumentTypeError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return field.name, parsed


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m studies.shift_study", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--name", required=True, help="label of this candidate in the log")
    parser.add_argument("--set", type=parse_setting, action="append", default=[], metavar="SETTING=VALUE",
                        help="a training setting that differs from the default (repeatable)")
    parser.add_argument("--mix", action="store_true", help="control: NORMAL halves drawn at random")
    parser.add_argument("--split", choices=("batch", "numbers"), default="batch",
                        help="the shift: the two NORMAL batches (default), or every class's lower "
                             "against upper patient numbers")
    parser.add_argument("--log", default="runs/shift_study.jsonl")
    args = parser.parse_args(argv)
    if args.mix and args.split != "batch":
        parser.error("--mix is the control of --split batch")
    configure_process()
    config = dataclasses.replace(TrainConfig(), **dict(args.set))
    root = resolve_data_root(config.data)
    paths, labels = list_split(root, "train")
    pixels, kept = load_images(paths, config.image_size, config.cache_dir, progress=False)
    paths = [p for p, k in zip(paths, kept) if k]
    labels = labels[kept]
    side = halves(paths, labels, config.seed, args.mix, args.split)

    prob = np.empty(len(labels))
    seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for d in (0, 1):
            inside, outside = side == d, side != d
            mean, std = pixel_mean_std(pixels.subset(inside))
            x_in = Inputs(pixels.subset(inside), mean, std, config.normalise)
            x_out = Inputs(pixels.subset(outside), mean, std, config.normalise)
            start = time.perf_counter()
            job = TrainingRun(RunDir(Path(tmp) / f"half{d}"), config)
            model, _ = fit(job, (x_in, labels[inside]), (x_out, labels[outside]), config.seed + d,
                           (config.seed, d + 1), keep_best=False)
            seconds += time.perf_counter() - start
            prob[outside] = held_out_proba([model], x_out, job.group, test_time_zooms(config))
    threshold = metrics.sensitivity_threshold(labels, prob, 0.95)
    at = metrics.binary_metrics(labels, prob, threshold)
    clipped = np.clip(prob, 1e-7, 1 - 1e-7)
    row = {
        "name": args.name, "settings": {k: v for k, v in args.set}, "mix": args.mix, "split": args.split,
        "auc": round(metrics.roc_auc(labels, prob), 4),
        "spec_at_sens95": round(at["specificity"], 4),
        "spec_at_0.5": round(metrics.binary_metrics(labels, prob, 0.5)["specificity"], 4),
        "nll": round(float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))), 4),
        "ece": round(metrics.expected_calibration_error(labels, prob), 4),
        "normal_p_over_0.9": round(float(np.mean(prob[labels == 0] > 0.9)), 4),
        "train_seconds": round(seconds, 1),
    }
    print(json.dumps(row), flush=True)
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    np.savez(Path(args.log).with_name(f"shift_{args.name}.npz"), probability=prob, label=labels, side=side)
    with open(args.log, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
