"""Predict pneumonia on chest X-ray files: ``python -m fast.predict IMAGE... [--help]``.

A thin layer over ``fast.inference``: the images are prepared and scored there exactly as in
training. matplotlib is imported only for ``--saliency``, so the command starts quickly.
"""
import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from fast.cli import open_classifier
from fast.data import find_images
from fast.files import atomic_write_text
from fast.inference import MODEL_FILE, RUNS_DIR, SHIPPED_MODEL

DESCRIPTION = """Say whether chest X-rays show pneumonia, with a trained model.

For each image (JPEG, PNG, BMP and the other formats OpenCV reads, 8- or 16-bit, grey, colour
or with alpha, and DICOM, recognised by its content) prints its path, P(pneumonia) (calibrated)
and the label at the model's stored decision threshold (PNEUMONIA when the probability is >= the
threshold). A PATH that is a folder stands for every image under it, sub-folders included. A
file that cannot be read gets an error line instead; the other files are still predicted, and
the exit status is 1. A model that cannot be loaded stops the command with exit status 2."""

EPILOG = """examples:
  python -m fast.predict scan1.jpeg scan2.dcm
  python -m fast.predict --model runs/20240101-120000 --json xrays/*.jpeg
  python -m fast.predict --csv results.csv studies/          # a folder, searched recursively
  python -m fast.predict --saliency heatmaps/ scan1.jpeg"""

CSV_FIELDS = ("path", "probability", "label", "error")
PROGRESS_FROM = 20  # files: a progress bar from this many on


# --------------------------------------------------------------------------- files

def expand(paths):
    """Command-line PATHs -> files: a folder becomes every image under it (sorted), anything
    else stays as given (a missing or unreadable file then gets its error line)."""
    files = []
    for path in map(Path, paths):
        files += find_images(path) if path.is_dir() else [path]
    return files


def write_csv(path, results):
    """One row per file: path, probability, label, error (empty where they do not apply)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in results:
        row = dict(result)
        if "probability" in row:
            row["probability"] = f"{row['probability']:.6f}"
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


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
    from fast import report  # matplotlib only when pictures are asked for

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
    parser.add_argument("images", nargs="+", metavar="PATH",
                        help="chest X-ray image files, or folders of them (searched recursively)")
    parser.add_argument("--model", metavar="RUN_DIR_OR_NPZ", default=None,
                        help="a run directory (its model.npz is used) or a model .npz file; "
                             f"default: the newest run under {RUNS_DIR}/ that has a {MODEL_FILE}, "
                             f"else the shipped model (models/{SHIPPED_MODEL.name})")
    parser.add_argument("--csv", metavar="FILE", default=None,
                        help="also write one row per file to FILE: " + ",".join(CSV_FIELDS))
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
    if args.model is not None:
        how = ""
    elif classifier.path == SHIPPED_MODEL:
        how = " (the shipped model; choose another with --model)"
    else:
        how = " (newest run; choose another with --model)"
    print(f"model {classifier.path}{how}, threshold {classifier.threshold:.4f}", file=sys.stderr)

    if args.csv is not None and not Path(args.csv).resolve().parent.is_dir():
        print(f"error: cannot write {args.csv}: its folder does not exist", file=sys.stderr)
        return 2
    files = expand(args.images)
    if not files:
        print("error: no image files found in " + ", ".join(args.images), file=sys.stderr)
        return 1
    results, images = classifier.predict_files(files, progress=len(files) >= PROGRESS_FROM
                                               and sys.stderr.isatty(),
                                               keep_images=args.saliency is not None)
    if args.saliency is not None:
        write_saliency(results, images, classifier, args.saliency)
    if args.csv is not None:
        write_csv(args.csv, results)
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
