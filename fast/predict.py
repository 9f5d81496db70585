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

from fast.cli import MODEL_HELP, add_operating_point_flags, open_classifier, operating_point
from fast.data.dicom import is_dicom
from fast.data.folders import OVERLAY_SUFFIX, find_images
from fast.files import atomic_write_text, file_problem, folder_problem

DESCRIPTION = """Say whether chest X-rays show pneumonia, with a trained model.

For each image (JPEG, PNG, BMP and the other formats OpenCV reads, 8- or 16-bit, grey, colour
or with alpha, and DICOM, recognised by its content) prints its path, P(pneumonia) (calibrated)
and the label at the operating point: the model's stored decision threshold unless --threshold
or --sensitivity sets another (PNEUMONIA when the probability is >= the threshold). A PATH that
is a folder stands for every image under it, sub-folders included (but the pictures this
project draws, which are no X-rays).

Warnings: an image that may not be a chest X-ray as the model knows one (a colour picture, a
blank, tiny or oddly shaped image, or one whose features lie far from the training X-rays'; an
inverted or turned X-ray, say) keeps its probability and label, with the reasons beside them,
and stderr names it in one line; --strict makes it an error line instead. A file that cannot be
read gets an error line; the other files are still predicted, and the exit status is 1. A model
that cannot be loaded, or a --csv or --saliency target that is unsafe or cannot be written
(one of the inputs, an image, a file that is not a CSV, a folder of inputs), stops the command
before any work with exit status 2, nothing written.

The model is the shipped one (models/MODEL_CARD.md) unless --model names another; which model
answers (its file, input size, threshold, networks and views) is said on stderr."""

EPILOG = """examples:
  python -m fast.predict scan1.jpeg scan2.dcm
  python -m fast.predict --model runs/20240101-120000 --json xrays/*.jpeg
  python -m fast.predict --model latest scan1.jpeg           # the newest run under runs/
  python -m fast.predict --csv results.csv studies/          # a folder, searched recursively
  python -m fast.predict --sensitivity 0.98 studies/          # screening: few missed cases
  python -m fast.predict --threshold 0.9 scan1.jpeg           # confirmation: few false alarms
  python -m fast.predict --strict studies/                    # a flagged image is an error
  python -m fast.predict --saliency heatmaps/ scan1.jpeg"""

CSV_FIELDS = ("path", "probability", "label", "warnings", "error")
# What --csv must never overwrite: image files by their extension (DICOM too), whatever OpenCV reads
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".gif", ".webp",
                  ".jp2", ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".exr", ".hdr",
                  ".pic", ".avif", ".dcm", ".dicom", ".npz", ".npy"}
# ... and by their first bytes: JPEG, PNG, BMP, TIFF (both byte orders), GIF, JPEG 2000
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"BM", b"II*\x00", b"MM\x00*", b"GIF8",
                    b"\x00\x00\x00\x0cjP")
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
        row["warnings"] = "; ".join(row.get("warnings", ()))
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


def _unique_png(out_dir, path, taken):
    """out_dir/<stem>.saliency.png, with a number added when two inputs share a stem or a file
    of that name is there already: nothing is overwritten."""
    stem, k = Path(path).stem, 1
    name = f"{stem}{OVERLAY_SUFFIX}"
    while name in taken or (Path(out_dir) / name).exists():
        k += 1
        name = f"{stem}-{k}{OVERLAY_SUFFIX}"
    taken.add(name)
    return Path(out_dir) / name


def write_saliency(results, images, classifier, out_dir):
    """A Grad-CAM overlay PNG per answered image into ``out_dir`` (``results`` and ``images``
    in the same order; rows with an error are skipped); adds "saliency" to results -> how many
    were written."""
    from fast.pictures import plots  # matplotlib only when pictures are asked for

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    good = [r for r in results if "error" not in r]
    if not good:
        return 0
    cams = classifier.grad_cam(np.stack(images), [r["probability"] for r in good])
    taken = set()
    for result, cam in zip(good, cams):
        xray = plots.display_image(result["path"])
        out = _unique_png(out_dir, result["path"], taken)
        title = (f"{Path(result['path']).name}\nP(pneumonia) = {result['probability']:.3f}, "
                 f"predicted {result['label']} (threshold {classifier.threshold:.3f})")
        plots.save_saliency_overlay(out, xray, cam, title, classifier.image_size)
        result["saliency"] = str(out)
    return len(good)


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
                        help='print one JSON array of {"path", "probability", "label", "warnings"} '
                             'objects ({"path", "error"} for a file that cannot be read)')
    parser.add_argument("--saliency", metavar="OUT_DIR", default=None,
                        help="also write a Grad-CAM heat map over each X-ray as "
                             "OUT_DIR/<name>.saliency.png (what moved the network towards "
                             "pneumonia, its peak as bright as P(pneumonia) is high; not where "
                             "disease is): never inside a folder of inputs, never over a file "
                             "(a name taken gets a number)")
    add_operating_point_flags(parser)
    parser.add_argument("--strict", action="store_true",
                        help="a file with a warning (it may not be a chest X-ray as the model knows "
                             "one) gets an error line instead of its answer, and the exit status is 1")
    return parser.parse_args(argv)


def format_result(result):
    if "error" in result:
        return f"{result['path']}  error: {result['error']}"
    line = f"{result['path']}  {result['probability']:.4f}  {result['label']}"
    if result.get("warnings"):
        line += "  warning: " + "; ".join(result["warnings"])
    return line


def _same_file(a, b):
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def csv_problem(target, files):
    """Why --csv ``target`` must not be written, in words, or None: it is one of the input
    ``files``, an image or DICOM file by its extension or content, or a file that exists and is
    not a CSV (text named .csv)."""
    target = Path(target)
    if any(_same_file(target, f) for f in files):
        return f"{target} is one of the inputs; writing the CSV there would destroy it"
    if target.suffix.lower() in IMAGE_SUFFIXES:
        return f"{target} is named as an image; give the CSV a name ending in .csv"
    if target.is_file():
        with open(target, "rb") as f:
            head = f.read(4096)
        if head.startswith(IMAGE_SIGNATURES) or head[8:12] == b"WEBP" or is_dicom(target):
            return f"{target} is an image (by its content); give the CSV a name ending in .csv"
        if target.suffix.lower() != ".csv" or b"\x00" in head:
            return f"{target} exists and is not a CSV file; choose a new name, or a .csv file to replace"
    return file_problem(target)


def saliency_problem(target, paths, files):
    """Why --saliency ``target`` must not be written, in words, or None: it is inside (or is) a
    folder given as input, or the folder of an input file, or cannot be a folder."""
    target = Path(target)
    for given in map(Path, paths):
        if given.is_dir() and (_same_file(target, given) or given.resolve() in target.resolve().parents):
            return f"{target} is inside the input folder {given}; write the overlays elsewhere"
    for f in files:
        if _same_file(target, Path(f).parent):
            return f"{target} is the folder of the input {f}; write the overlays elsewhere"
    return folder_problem(target)


def target_problem(args, files):
    """Why --csv or --saliency must not or cannot be written, in words, or None: checked before
    any work."""
    for flag, value, problem in (("--csv", args.csv, lambda t: csv_problem(t, files)),
                                 ("--saliency", args.saliency, lambda t: saliency_problem(t, args.images, files))):
        found = value is not None and problem(value)
        if found:
            return f"{flag}: {found}"
    return None


def apply_strict(results):
    """--strict: each result with warnings becomes an error row -> how many did."""
    flagged = 0
    for result in results:
        if result.get("warnings"):
            path, reasons = result["path"], "; ".join(result["warnings"])
            result.clear()
            result.update(path=path, error=f"flagged (--strict): {reasons}")
            flagged += 1
    return flagged


def main(argv=None):
    args = parse_args(argv)
    files = expand(args.images)
    if not files:
        print("error: no image files found in " + ", ".join(args.images), file=sys.stderr)
        return 1
    problem = target_problem(args, files)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    classifier = open_classifier(args.model)
    if classifier is None:
        return 2
    threshold = operating_point(classifier, args)
    if threshold is None:
        return 2
    many, bar = len(files) >= PROGRESS_FROM, sys.stderr.isatty()
    if many and not bar:  # no progress bar where stderr is not a terminal: say that work began
        print(f"predicting {len(files)} files", file=sys.stderr, flush=True)
    results, images = classifier.predict_files(files, progress=many and bar,
                                               keep_images=args.saliency is not None, threshold=threshold)
    flagged = [r for r in results if r.get("warnings")]
    for result in flagged:
        print(f"warning: {result['path']}: {'; '.join(result['warnings'])}", file=sys.stderr)
    readable = [r for r in results if "error" not in r]  # in the order of ``images``
    if args.strict:
        apply_strict(results)
    if args.saliency is not None:
        answered = [(r, image) for r, image in zip(readable, images) if "error" not in r]
        written = write_saliency([r for r, _ in answered], [image for _, image in answered],
                                 classifier, args.saliency)
        print(f"wrote {written} Grad-CAM overlay(s) to {args.saliency}", file=sys.stderr)
    if args.csv is not None:
        write_csv(args.csv, results)
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(format_result(result))
    if flagged and not args.strict:
        print(f"{len(flagged)} of {len(results)} file(s) flagged: they may not be chest X-rays as the "
              "model knows them (their answers stand, the warnings beside them)", file=sys.stderr)
    failed = sum("error" in r for r in results)
    if failed:
        print(f"{failed} of {len(results)} file(s) could not be read" +
              (" or were flagged (--strict)" if args.strict and flagged else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
