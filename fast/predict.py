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

from fast.cli import MODEL_HELP, open_classifier
from fast.data.folders import find_images
from fast.files import atomic_write_text, file_problem, folder_problem

DESCRIPTION = """Say whether chest X-rays show pneumonia, with a trained model.

For each image (JPEG, PNG, BMP and the other formats OpenCV reads, 8- or 16-bit, grey, colour
or with alpha, and DICOM, recognised by its content) prints its path, P(pneumonia) (calibrated)
and the label at the model's stored decision threshold (PNEUMONIA when the probability is >= the
threshold). A PATH that is a folder stands for every image under it, sub-folders included. A
file that cannot be read gets an error line instead; the other files are still predicted, and
the exit status is 1. A model that cannot be loaded, or a --csv or --saliency target that
cannot be written, stops the command before any work with exit status 2.

The model is the shipped one (models/MODEL_CARD.md) unless --model names another; which model
answers (its file, input size, threshold, networks and views) is said on stderr."""

EPILOG = """examples:
  python -m fast.predict scan1.jpeg scan2.dcm
  python -m fast.predict --model runs/20240101-120000 --json xrays/*.jpeg
  python -m fast.predict --model latest scan1.jpeg           # the newest run under runs/
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
    cams = classifier.grad_cam(np.stack(images), [r["probability"] for r in good])
    taken = set()
    for result, cam in zip(good, cams):
        xray = report.display_image(result["path"])
        out = _unique_png(out_dir, result["path"], taken)
        title = (f"{Path(result['path']).name}\nP(pneumonia) = {result['probability']:.3f}, "
                 f"predicted {result['label']} (threshold {classifier.threshold:.3f})")
        report.save_saliency_overlay(out, xray, cam, title, classifier.image_size)
        result["saliency"] = str(out)


# --------------------------------------------------------------------------- command line

def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fast.predict", description=DESCRIPTION,
                                     epilog=EPILOG, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", metavar="PATH",
                        help="chest X-ray image files, or folders of them (searched recursively)")
    parser.add_argument("--model", metavar="RUN_DIR_NPZ_OR_LATEST", default=None, help=MODEL_HELP)
    parser.add_argument("--csv", metavar="FILE", default=None,
                        help="also write one row per file to FILE: " + ",".join(CSV_FIELDS))
    parser.add_argument("--json", action="store_true",
                        help='print one JSON array of {"path", "probability", "label"} objects '
                             '({"path", "error"} for a file that cannot be read)')
    parser.add_argument("--saliency", metavar="OUT_DIR", default=None,
                        help="also write a Grad-CAM heat map over each X-ray as "
                             "OUT_DIR/<name>.saliency.png (where the evidence for pneumonia lies, "
                             "its peak as bright as P(pneumonia) is high)")
    return parser.parse_args(argv)


def format_result(result):
    if "error" in result:
        return f"{result['path']}  error: {result['error']}"
    return f"{result['path']}  {result['probability']:.4f}  {result['label']}"


def target_problem(args):
    """Why --csv or --saliency cannot be written, in words, or None: checked before any work."""
    for flag, value, problem in (("--csv", args.csv, file_problem),
                                 ("--saliency", args.saliency, folder_problem)):
        found = value is not None and problem(value)
        if found:
            return f"{flag}: {found}"
    return None


def main(argv=None):
    args = parse_args(argv)
    problem = target_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    classifier = open_classifier(args.model)
    if classifier is None:
        return 2
    files = expand(args.images)
    if not files:
        print("error: no image files found in " + ", ".join(args.images), file=sys.stderr)
        return 1
    many, bar = len(files) >= PROGRESS_FROM, sys.stderr.isatty()
    if many and not bar:  # no progress bar where stderr is not a terminal: say that work began
        print(f"predicting {len(files)} files", file=sys.stderr, flush=True)
    results, images = classifier.predict_files(files, progress=many and bar,
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
