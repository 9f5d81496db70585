"""What the model flags: inputs that are not chest X-rays as it knows them, and real ones.

    python -m studies.odd_inputs                          # the shipped model
    python -m studies.odd_inputs --model runs/X --test    # a run's model, and the test split once

The odd inputs are made here, from the training split and from nothing: blank black and white
images, uniform noise, a colour picture, a page of text, a tiny image, a checkerboard and
stripes, and training X-rays with their grey scale inverted (a misread MONOCHROME1) or turned by
90 degrees. Each kind is handed to the classifier as an array, as a user of the Python API would
hand it over, and the share of each kind that gets a warning is printed, beside the share of
the real training X-rays the model did not train on (out of fold: each fold network's own fold,
as the threshold was chosen) that gets one. ``--test`` also gives the test split's share: a
figure to report once, never one to tune the threshold on.
"""
import argparse
import sys

import cv2
import numpy as np

from fast.data.folders import resolve_data_root
from fast.data.splits import load_splits, patient_folds
from fast.inference import SHIPPED_MODEL, load_classifier, member_features
from fast.runs import RunDir
from studies import run

PER_KIND = 40  # images of each kind
SIDE = 512  # pixels a side of the synthetic images: the size of a small radiograph file


def _text_page(rng):
    page = np.full((SIDE, int(SIDE * 0.75)), 245, np.uint8)
    for line in range(14):
        words = " ".join("".join(chr(rng.integers(97, 123)) for _ in range(rng.integers(2, 9)))
                         for _ in range(4))
        cv2.putText(page, words, (20, 40 + 33 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 20, 2, cv2.LINE_AA)
    return page


def _colour_picture(rng):
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    picture = np.stack([x, y, 1 - x * y], axis=2) * 200 + rng.uniform(0, 40, 3)
    for _ in range(6):
        centre = tuple(int(v) for v in rng.integers(0, SIDE, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(picture, centre, int(rng.integers(20, 120)), colour, -1)
    return np.clip(picture, 0, 255).astype(np.uint8)


def _pattern(rng, stripes=False):
    period = int(rng.integers(8, 48))
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    on = (x // period) % 2 if stripes else ((x // period) + (y // period)) % 2
    return (on * 200 + 30).astype(np.uint8)


SYNTHETIC = {
    "black": lambda rng: np.zeros((SIDE, SIDE), np.uint8),
    "white": lambda rng: np.full((SIDE, SIDE), 255, np.uint8),
    "uniform noise": lambda rng: rng.integers(0, 256, (SIDE, SIDE), dtype=np.uint8),
    "colour picture": _colour_picture,
    "page of text": _text_page,
    "tiny (3x3 grey)": lambda rng: np.full((3, 3), int(rng.integers(60, 200)), np.uint8),
    "checkerboard": _pattern,
    "stripes": lambda rng: _pattern(rng, stripes=True),
}
FROM_XRAYS = {
    "X-ray, grey scale inverted": lambda x: 255 - x,
    "X-ray, turned 90 degrees": lambda x: np.ascontiguousarray(np.rot90(x)),
}


def odd_inputs(xrays, seed=0):
    """{kind: list of images (uint8 arrays)}: PER_KIND of each synthetic kind, and each way of
    spoiling the ``xrays`` (uint8 (n, S, S) training X-rays)."""
    rng = np.random.default_rng(seed)
    kinds = {kind: [make(rng) for _ in range(PER_KIND)] for kind, make in SYNTHETIC.items()}
    kinds.update({kind: [spoil(x) for x in xrays] for kind, spoil in FROM_XRAYS.items()})
    return kinds


def flagged_share(classifier, images):
    """The share of ``images`` (a list of arrays) that gets at least one warning, and the share
    the typicality score alone flags."""
    warned, typical = [], []
    for image in images:
        _, warnings = classifier.predict_proba(image, with_warnings=True)
        warned.append(bool(warnings[0]))
        typical.append(any(w.startswith("unlike") for w in warnings[0]))
    return float(np.mean(warned)), float(np.mean(typical))


def out_of_fold_share(classifier, pixels, y, paths, seed):
    """The share of the training X-rays flagged by the fold network that did not train on them,
    its own Gaussians alone (the held-out set the typicality threshold was chosen on)."""
    typicality = classifier.record.typicality
    folds = patient_folds(paths, y, len(classifier.members), seed)
    flagged = np.zeros(len(y), dtype=bool)
    for k, member in enumerate(classifier.members):
        mine = np.flatnonzero(folds == k)
        features = member_features(member, classifier.prepare(pixels[mine]))
        flagged[mine] = typicality.flagged(typicality.network_score(features, k))
    return float(flagged.mean())


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m studies.odd_inputs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model", default=str(SHIPPED_MODEL), help="a model file or run directory "
                        "(default: the shipped model)")
    parser.add_argument("--seed", type=int, default=None, help="the run's seed (default: its config.json's, else 0)")
    parser.add_argument("--data", default=None, help="data folder (default: as the trainer finds it)")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--test", action="store_true", help="also the test split's share flagged (report once)")
    args = parser.parse_args(argv)

    classifier = load_classifier(args.model)
    if classifier.record.typicality is None:
        parser.error(f"{classifier.path} keeps no typicality model")
    seed = args.seed if args.seed is not None else RunDir(classifier.path.parent).read_config().get("seed", 0)
    root = resolve_data_root(args.data)
    splits, _ = load_splits(root, ("train", "test") if args.test else ("train",), classifier.image_size,
                            seed=seed, val_fraction=0.0, cache_dir=args.cache_dir, progress=False)
    pixels, y, paths = splits["train"]
    rows = np.random.default_rng([seed, 0x0DD]).choice(len(y), PER_KIND, replace=False)
    kinds = odd_inputs(pixels.levels(np.sort(rows)), seed)
    print(f"model {classifier.path}: typicality threshold {classifier.record.typicality.threshold:.3f}")
    print(f"| input | images | flagged | by the typicality score |")
    print("|---|---|---|---|")
    for kind, images in kinds.items():
        warned, typical = flagged_share(classifier, images)
        print(f"| {kind} | {len(images)} | {warned:.3f} | {typical:.3f} |", flush=True)
    if len(classifier.members) > 1:
        share = out_of_fold_share(classifier, pixels, y, paths, seed)
        print(f"| real training X-rays, out of fold | {len(y)} | {share:.3f} | {share:.3f} |")
    if args.test:
        test_pixels, test_y, _ = splits["test"]
        _, typical = classifier.scores(test_pixels)
        flagged = classifier.record.typicality.flagged(typical)
        print(f"| real test X-rays (measured once) | {len(test_y)} | {flagged.mean():.3f} | {flagged.mean():.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
