"""Predict pneumonia on chest X-ray files: ``python -m fast.predict IMAGE... [--help]``.

A thin layer over ``fast.inference``: the images are prepared and scored there exactly as in
training. matplotlib is imported only for ``--saliency``; without it the command starts in well
under a second.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fast.cli import open_classifier
from fast.inference import MODEL_FILE, RUNS_DIR

DESCRIPTION = """Say whether chest X-rays show pneumonia, with a trained model.

For each IMAGE (any format OpenCV reads: JPEG, PNG, BMP, 8- or 16-bit, grey, colour or with
alpha, any size) prints its path, P(pneumonia) and the label at the model's stored decision
threshold (PNEUMONIA when the probability is >= the threshold). A file that cannot be read
gets an error line instead; the other files are still predicted, and the exit status is 1.
A model that cannot be loaded stops the command with exit status 2."""

EPILOG = """examples:
  python -m fast.predict scan1.jpeg scan2.png
  python -m fast.predict --model runs/20240101-120000 --json xrays/*.jpeg
  python -m fast.predict --saliency heatmaps/ scan1.jpeg"""


# --------------------------------------------------------------------------- files

def _unique_png(out_dir, path, taken):
    """out_dir/<stem>.saliency.png, with a number added when two inputs share a stem."""
    stem, k = Path(path).stem, 1
    name = f"{stem}.saliency.png"
    while name in taken:
        k += 1
        name = f"{stem}-{k}.saliency.png"
    taken.add(name)
    return Path(out_dir) / name


def write_saliency(results, images, classifier, out_dir):
    """A Grad-CAM overlay PNG per predicted image into ``out_dir``; adds "saliency" to results."""
    from fast import report  # matplotlib only when pictures are asked for; report is above us

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    good = [r for r in results if "error" not in r]
    if not good:
        return
    cams = classifier.grad_cam(np.stack(images))
    taken = set()
    for result, cam in zip(good, cams):
        xray = report.display_image(result["path"])
        out = _unique_png(out_dir, result["path"], taken)
        title = (f"{Path(result['path']).name}\nP(pneumonia) = {result['probability']:.3f}, "
                 f"predicted {result['label']} (threshold {classifier.threshold:.3f})")
        report.save_saliency_overlay(out, xray, cam, title)
        result["saliency"] = str(out)


# --------------------------------------------------------------------------- command line

def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fast.predict", description=DESCRIPTION,
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="chest X-ray image files")
    parser.add_argument("--model", metavar="RUN_DIR_OR_NPZ", default=None,
                        help="a run directory (its model.npz is used) or a model .npz file; "
                             f"default: the newest run under {RUNS_DIR}/ that has a {MODEL_FILE}")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON array of {"path", "probability", "label"} objects '
                             '({"path", "error"} for a file that cannot be read)')
    parser.add_argument("--saliency", metavar="OUT_DIR", default=None,
                        help="also write a Grad-CAM heat map over each X-ray as "
                             "OUT_DIR/<name>.saliency.png (red: regions that raise P(pneumonia))")
    return parser.parse_args(argv)


def format_result(result):
    if "error" in result:
        return f"{result['path']}  error: {result['error']}"
    return f"{result['path']}  {result['probability']:.4f}  {result['label']}"


def main(argv=None):
    args = parse_args(argv)
    classifier = open_classifier(args.model)
    if classifier is None:
        return 2
    how = "" if args.model is not None else " (newest run; choose another with --model)"
    print(f"model {classifier.path}{how}, threshold {classifier.threshold:.4f}", file=sys.stderr)

    results, images = classifier.predict_files(args.images)
    if args.saliency is not None:
        write_saliency(results, images, classifier, args.saliency)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(format_result(result))
    failed = sum("error" in r for r in results)
    if failed:
        print(f"{failed} of {len(results)} file(s) could not be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
