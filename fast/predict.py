"""Predict pneumonia on chest X-ray files: ``python -m fast.predict IMAGE... [--help]``.

Preprocessing is the training pipeline's own (``read_xray`` then ``standardise`` with the
mean/std stored in the model), and probabilities come from the trainer's own forward pass,
so predicting a run's test images gives back its ``test_predictions.npz``.

matplotlib is imported only for ``--saliency``; without it the command starts in well under
a second.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fast.data import CLASS_NAMES, ImageError, read_xray, standardise
from fast.model import ModelFileError, load_model
from fast.trainer import predict_logits, softmax

RUNS_DIR = Path("runs")
MODEL_FILE = "model.npz"
SALIENCY_SIZE = 320  # pixels of the X-ray under a saliency overlay
_REQUIRED_METADATA = ("image_size", "mean", "std", "threshold")

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


# --------------------------------------------------------------------------- the model

def find_model(spec=None, runs_dir=RUNS_DIR):
    """The model file meant by ``spec`` (a run directory or a .npz), or without ``spec`` the
    newest ``runs_dir/*/model.npz`` (by modification time). Raises ModelFileError."""
    if spec is not None:
        path = Path(spec)
        return path / MODEL_FILE if path.is_dir() else path
    runs_dir = Path(runs_dir)
    candidates = sorted(runs_dir.glob(f"*/{MODEL_FILE}"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ModelFileError(f"no trained model found: {runs_dir.resolve()} holds no run with a "
                             f"{MODEL_FILE}; train one (python -m fast.train) or pass --model")
    return candidates[-1]


def load_classifier(path):
    """load_model plus the checks prediction needs -> (model, metadata).

    Refuses (ModelFileError) a model without the preprocessing record, or one that is not a
    one-channel, two-class X-ray classifier.
    """
    model, metadata = load_model(path)
    missing = [k for k in _REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ModelFileError(f"{path}: not a trained X-ray model (its metadata lacks "
                             f"{', '.join(missing)})")
    channels, height, width = model.arch.input_shape
    size = metadata["image_size"]
    if channels != 1 or model.arch.num_classes != 2 or height != width or height != size:
        raise ModelFileError(f"{path}: another architecture (input {model.arch.input_shape}, "
                             f"{model.arch.num_classes} classes); expected a 1-channel "
                             f"{size}x{size} input and 2 classes")
    if not metadata["std"] > 0:
        raise ModelFileError(f"{path}: corrupt metadata (std {metadata['std']})")
    return model, metadata


def open_classifier(spec):
    """find_model + load_classifier for a command -> (path, model, metadata), or None after
    printing why the model is refused (the caller then exits with status 2)."""
    try:
        path = find_model(spec)
        model, metadata = load_classifier(path)
    except ModelFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    return path, model, metadata


def class_names(metadata):
    return tuple(metadata.get("class_names", CLASS_NAMES))


def prepare(images, metadata):
    """(N, S, S) images in [0, 1] -> (N, 1, S, S) network input, as in training."""
    return standardise(np.asarray(images, dtype=np.float32), metadata["mean"], metadata["std"])[:, None]


def pneumonia_probability(model, x):
    """x: (N, 1, S, S) network input -> (N,) float64 P(PNEUMONIA), computed as the trainer does."""
    if len(x) == 0:
        return np.zeros(0, dtype=np.float64)
    return softmax(predict_logits(model, x).astype(np.float64))[:, 1]


# --------------------------------------------------------------------------- inside the network

def forward_features(model, x):
    """ConvNet.forward that also keeps what each conv layer sees.

    x: (N, C, S, S) -> (logits (N, K), caches as ConvNet.forward's, maps), where maps[i] is
    ReLU(conv_i output) before pooling: (N, F_i, H_i, W_i). Pooling commutes with the ReLU, so
    these maps, max-pooled, are exactly what block i hands on.
    """
    maps = []
    logits, caches = model.forward(x, feature_maps=maps)
    return logits, caches, maps


def log_odds_gradient_at_last_conv(model, x):
    """d(logit_PNEUMONIA - logit_NORMAL) / d(last conv output), by the network's own backward
    functions run from the logits down to that layer.

    x: (N, C, S, S) -> (ReLU(last conv output) (N, F, h, w), its gradient (N, F, h, w), the
    caches of ConvNet.forward). The difference of the logits is the log-odds that
    P(PNEUMONIA) is the sigmoid of.
    """
    L = model.layers
    logits, caches, maps = forward_features(model, x)
    dlogits = np.zeros_like(logits)
    dlogits[:, 1], dlogits[:, 0] = 1, -1
    fc1_cache, relu_cache, fc2_cache = caches[-1]
    d, _, _ = L.affine_backward(dlogits, fc2_cache)
    d = L.relu_backward(d, relu_cache)
    d, _, _ = L.affine_backward(d, fc1_cache)  # (N, F, h/pool, w/pool): the last block's output
    d = model.pool_relu_backward(d, caches[-2][1])  # (N, F, h, w)
    return maps[-1], d, caches


def grad_cam(model, x):
    """Grad-CAM of the PNEUMONIA-vs-NORMAL log-odds at the last conv layer.

    x: (N, 1, S, S) -> (N, h, w) float64 maps in [0, 1], h, w the last conv layer's size. Each
    map is divided by its maximum; it is all zero where nothing speaks for pneumonia.
    """
    activation, gradient, _ = log_odds_gradient_at_last_conv(model, x)
    weights = gradient.astype(np.float64).mean(axis=(2, 3), keepdims=True)  # (N, F, 1, 1)
    cam = np.maximum((weights * activation.astype(np.float64)).sum(axis=1), 0)  # (N, h, w)
    peak = cam.max(axis=(1, 2), keepdims=True)
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)


# --------------------------------------------------------------------------- files

def _reason(err, path):
    """An ImageError's message without the path it starts with."""
    text = str(err)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def predict_files(paths, model, metadata):
    """Predict each file -> (results, images), in the order of ``paths``.

    results[i] is {"path", "probability", "label"}, or {"path", "error"} for a file that cannot
    be read; images holds the (S, S) [0, 1] arrays of the files that could, in order.
    """
    size, threshold = metadata["image_size"], metadata["threshold"]
    names = class_names(metadata)
    results, images = [], []
    for path in paths:
        try:
            images.append(read_xray(path, size))
            results.append({"path": str(path)})
        except ImageError as err:
            results.append({"path": str(path), "error": _reason(err, path)})
    probability = pneumonia_probability(model, prepare(np.reshape(images, (-1, size, size)), metadata))
    good = (r for r in results if "error" not in r)
    for result, p in zip(good, probability):
        result["probability"] = float(p)
        result["label"] = names[int(p >= threshold)]
    return results, images


def _unique_png(out_dir, path, taken):
    """out_dir/<stem>.saliency.png, with a number added when two inputs share a stem."""
    stem, k = Path(path).stem, 1
    name = f"{stem}.saliency.png"
    while name in taken:
        k += 1
        name = f"{stem}-{k}.saliency.png"
    taken.add(name)
    return Path(out_dir) / name


def write_saliency(results, images, model, metadata, out_dir):
    """A Grad-CAM overlay PNG per predicted image into ``out_dir``; adds "saliency" to results."""
    from fast import report  # matplotlib only when pictures are asked for

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    good = [r for r in results if "error" not in r]
    if not good:
        return
    cams = grad_cam(model, prepare(np.stack(images), metadata))
    taken = set()
    for result, cam in zip(good, cams):
        xray = read_xray(result["path"], SALIENCY_SIZE)
        out = _unique_png(out_dir, result["path"], taken)
        title = (f"{Path(result['path']).name}\nP(pneumonia) = {result['probability']:.3f}, "
                 f"predicted {result['label']} (threshold {metadata['threshold']:.3f})")
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
    opened = open_classifier(args.model)
    if opened is None:
        return 2
    path, model, metadata = opened
    how = "" if args.model is not None else " (newest run; choose another with --model)"
    print(f"model {path}{how}, threshold {metadata['threshold']:.4f}", file=sys.stderr)

    results, images = predict_files(args.images, model, metadata)
    if args.saliency is not None:
        write_saliency(results, images, model, metadata, args.saliency)
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
