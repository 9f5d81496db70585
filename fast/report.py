"""Pictures of a training run or a model file: ``python -m fast.report RUN_DIR_OR_MODEL [--help]``.

``make_report`` reads a run directory (config.json, history.csv, metrics.json, model.npz,
test_predictions.npz) and writes PNGs next to them (or into ``out_dir``): training curves, the
first layer's filters, feature maps, the test ROC curve, the confusion matrix, the reliability
diagram and Grad-CAM saliency. The pictures that show X-rays need the data folder; without it
they are skipped with a note. ``report_model`` does the same for a model file alone (the shipped
one, say): it scores the test split itself and draws every picture but the training curves.

This is the only module that imports matplotlib (headless, Agg backend).
"""
import argparse
import csv
import sys
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from matplotlib import cm
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator

from fast.cli import add_data_flags, add_operating_point_flags, open_classifier, operating_point
from fast.data.errors import DataError, ImageError
from fast.data.folders import CLASS_NAMES, resolve_data_root
from fast.data.images import read_xray
from fast.data.splits import load_splits
from fast.files import PICTURE_MARK, atomic_open, folder_problem
from fast.inference import load_classifier
from fast.nn.model_file import ModelFileError
from fast.runs import RunDir
from fast.scoring import metrics
from fast.scoring.metrics import called_positive
from fast.training.config import TrainConfig

matplotlib.use("Agg")  # headless: no display needed, PNG only
import matplotlib.pyplot as plt  # noqa: E402  (pyplot after the backend is chosen)

DPI = 150
SALIENCY_SIZE = 320  # pixels of an X-ray shown under a saliency overlay
SALIENCY_CMAP = "jet"
FEATURE_MAPS_SHOWN = 8  # channels per conv layer in the feature-map picture
SALIENCY_PER_KIND = 2  # test X-rays per kind (TP, FP, FN) in the saliency picture

PICTURES = {
    "curves": "training_curves.png",
    "filters": "conv1_filters.png",
    "features": "feature_maps.png",
    "roc": "roc_test.png",
    "confusion": "confusion_matrix_test.png",
    "saliency": "saliency_test.png",
    "reliability": "reliability.png",
    "framing": "framing.png",
    "stress": "stress.png",
}


class ReportError(Exception):
    """The run directory lacks what the pictures are drawn from."""


# --------------------------------------------------------------------------- reading a run

def read_history(path):
    """history.csv -> dict of column name -> float array, one entry per epoch."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ReportError(f"{path}: no epochs recorded")
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]}


def _data_root(run_dir, data_root):
    """The data folder: the argument, else config.json's data, else the default; None if absent."""
    if data_root is None:
        data_root = RunDir(run_dir).read_config().get("data")
    try:
        return resolve_data_root(data_root)
    except DataError:
        return None


def locate(path, data_root):
    """A stored test path as a file that exists: under ``data_root`` (its last three parts,
    split/CLASS/name) when possible, else as stored; None when neither exists."""
    path = Path(str(path))
    if data_root is not None:
        candidate = Path(data_root).joinpath(*path.parts[-3:])
        if candidate.is_file():
            return candidate
    return path if path.is_file() else None


def _readable(indices, paths, data_root, size, count):
    """Up to ``count`` (index, file, image) of the given test indices whose files read cleanly."""
    found = []
    for i in indices:
        file = locate(paths[i], data_root)
        if file is None:
            continue
        try:
            found.append((int(i), file, read_xray(file, size)))
        except ImageError:
            continue
        if len(found) == count:
            break
    return found


# --------------------------------------------------------------------------- pictures

def display_image(path):
    """An X-ray file as shown under a Grad-CAM overlay: (SALIENCY_SIZE, SALIENCY_SIZE) in [0, 1]."""
    return read_xray(path, SALIENCY_SIZE)


def _save(fig, path):
    try:
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight", facecolor="white",
                        metadata={"Software": PICTURE_MARK})  # never read back as an X-ray
    finally:
        plt.close(fig)
    return Path(path)


def plot_training_curves(history, best_epoch, path):
    """Train/val loss and val AUC per epoch, the kept epoch marked. A K-fold run's history
    (a "fold" column) gets one line per fold, its held-out fold as "validation"."""
    epochs = history["epoch"]
    folds = np.unique(history["fold"]).astype(int) if "fold" in history else [None]
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for fold in folds:
        rows = slice(None) if fold is None else history["fold"] == fold
        tag = "" if fold is None else f", fold {fold}"
        line, = ax_loss.plot(epochs[rows], history["train_loss"][rows], "o-", label=f"train loss{tag}")
        ax_loss.plot(epochs[rows], history["val_loss"][rows], "s--", color=line.get_color(),
                     label=f"{'validation' if fold is None else 'held-out'} loss{tag}")
        ax_auc.plot(epochs[rows], history["val_auc"][rows], "o-",
                    color="tab:green" if fold is None else line.get_color(),
                    label=f"{'validation' if fold is None else 'held-out'} ROC AUC{tag}")
    ax_loss.set_ylabel("loss (class-weighted cross-entropy)")
    ax_loss.set_title("Loss")
    ax_auc.axhline(0.5, color="gray", linestyle=":", label="chance (0.5)")
    ax_auc.set_ylabel("ROC AUC")
    # On one scale from chance (or below) to perfect, so a flat curve reads as flat.
    ax_auc.set_ylim(min(0.5, float(history["val_auc"].min())) - 0.02, 1.01)
    auc = history["val_auc"]
    # The scale keeps chance in view; the title carries the range the kept epoch was chosen from.
    ax_auc.set_title(f"Validation ROC AUC (from {auc.min():.4f} to {auc.max():.4f})")
    for ax in (ax_loss, ax_auc):
        if best_epoch:
            kept_auc = float(auc[epochs == best_epoch][0]) if np.any(epochs == best_epoch) else None
            ax.axvline(best_epoch, color="tab:red", linestyle="--", zorder=1,
                       label=f"kept epoch {best_epoch}" + (
                           f" (val AUC {kept_auc:.4f})" if ax is ax_auc and kept_auc is not None else ""))
        ax.set_xlabel("epoch")
        ax.set_xlim(0.5, epochs.max() + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7 if len(folds) > 1 else None)
    fig.suptitle("Training curves", fontsize=14)
    fig.tight_layout()
    return _save(fig, path)


def plot_filters(model, path):
    """The first conv layer's kernels (input channel 0) on one symmetric colour scale."""
    w = model.params["conv1_w"].astype(np.float64)  # (F, C, KH, KW)
    F, _, KH, KW = w.shape
    cols = min(8, F)
    rows = -(-F // cols)
    limit = float(np.abs(w[:, 0]).max()) or 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(1.35 * cols + 1.4, 1.45 * rows + 1.1),
                             squeeze=False, layout="constrained")
    for f, ax in enumerate(axes.flat):
        if f >= F:
            ax.axis("off")
            continue
        image = ax.imshow(w[f, 0], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"filter {f + 1}", fontsize=10)
        ax.set_xticks(range(KW))
        ax.set_yticks(range(KH))
        ax.tick_params(labelsize=7, length=2)
    fig.colorbar(image, ax=axes, shrink=0.9, label="weight (red +, blue -)")
    fig.supxlabel("kernel column", fontsize=11)
    fig.supylabel("kernel row", fontsize=11)
    fig.suptitle(f"First convolution layer: the {F} learned {KH}x{KW} filters", fontsize=14)
    return _save(fig, path)


def plot_feature_maps(classifier, examples, path, shown=FEATURE_MAPS_SHOWN):
    """The ReLU feature maps of every conv layer for one NORMAL and one PNEUMONIA X-ray.

    examples: [(caption, (S, S) model-input image in [0, 1], (D, D) display image), ...]. Per
    layer the same channels (the most active over both X-rays) are shown for each, each
    channel on one colour scale, so the two X-rays compare directly.
    """
    _, maps = classifier.feature_maps(np.stack([e[1] for e in examples]))
    maps = [m.astype(np.float64) for m in maps]  # (N, F, H, W) per conv layer
    size = classifier.image_size
    picked = [np.argsort(-m.mean(axis=(0, 2, 3)), kind="stable")[:shown] for m in maps]
    layers = len(maps)
    fig = plt.figure(figsize=(1.35 * (shown + 3), 1.45 * layers * len(examples) + 1.2),
                     layout="constrained")
    for n, (subfig, (caption, _, display)) in enumerate(zip(fig.subfigures(len(examples), 1),
                                                            examples)):
        grid = subfig.add_gridspec(layers, shown + 3)
        ax = subfig.add_subplot(grid[:, :3])
        ax.imshow(display, cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"input, seen at {size}x{size} pixels", fontsize=9)
        subfig.suptitle(f"true {caption}", fontsize=11)
        for layer, (fmap, channels) in enumerate(zip(maps, picked)):
            for k, c in enumerate(channels):
                ax = subfig.add_subplot(grid[layer, 3 + k])
                ax.imshow(fmap[n, c] / (float(fmap[:, c].max()) or 1.0), cmap="viridis", vmin=0, vmax=1,
                          interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"ch {c + 1}", fontsize=8, pad=2)
                if k == 0:
                    ax.set_ylabel(f"conv{layer + 1}\n{fmap.shape[2]}x{fmap.shape[3]}", fontsize=9)
        subfig.colorbar(cm.ScalarMappable(norm=Normalize(0, 1), cmap="viridis"), ax=subfig.axes, shrink=0.8,
                        label="activation after ReLU,\nshare of the channel's\nlargest (both X-rays)")
    fig.suptitle("Feature maps after ReLU, per conv layer (rows): its most active channels;\n"
                 "bright = strong activation, each channel on one scale for both X-rays",
                 fontsize=12)
    return _save(fig, path)


def plot_roc(y, prob, threshold, path, own_threshold=None):
    """The test ROC curve, its AUC and the operating point at ``threshold``; with
    ``own_threshold`` (the model's own, when another operating point is used) that one too."""
    fpr, tpr, _ = metrics.roc_curve(y, prob)
    m = metrics.binary_metrics(y, prob, threshold)
    fig, ax = plt.subplots(figsize=(6.2, 6))
    ax.plot(fpr, tpr, color="tab:blue", linewidth=2, label=f"ROC curve (AUC = {m['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="chance (AUC = 0.5)")
    points = [(threshold, "o", "tab:red", "")]
    if own_threshold is not None and own_threshold != threshold:
        points = [(threshold, "o", "tab:red", "operating point, "), (own_threshold, "s", "tab:green", "model's own, ")]
    for t, marker, colour, what in points:
        at = metrics.binary_metrics(y, prob, t)
        ax.plot(1 - at["specificity"], at["sensitivity"], marker, color=colour, markersize=9,
                label=f"{what}threshold {t:.3f}: sensitivity {at['sensitivity']:.3f},\n"
                      f"specificity {at['specificity']:.3f}")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    positives = int(np.sum(y))
    ax.set_title(f"ROC curve, test split\n({len(y)} X-rays: {positives} PNEUMONIA, "
                 f"{len(y) - positives} NORMAL)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_confusion(y, prob, threshold, path, names=CLASS_NAMES):
    """Counts and the share of each true class, at ``threshold``."""
    m = metrics.binary_metrics(y, prob, threshold)
    counts = np.array(m["confusion_matrix"])  # [[TN, FP], [FN, TP]]
    rates = counts / counts.sum(axis=1, keepdims=True)
    kinds = [["true negatives", "false positives"], ["false negatives", "true positives"]]
    fig, ax = plt.subplots(figsize=(6.8, 5.6))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{counts[i, j]}\n{100 * rates[i, j]:.1f}% of {names[i]}\n({kinds[i][j]})",
                    ha="center", va="center", fontsize=11,
                    color="white" if rates[i, j] > 0.6 else "black")
    ax.set_xticks([0, 1], [f"predicted {n}" for n in names])
    ax.set_yticks([0, 1], [f"true {n}" for n in names])
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    fig.colorbar(image, ax=ax, label="share of the true class (row)")
    ax.set_title(f"Confusion matrix, test split (threshold {threshold:.3f})\n"
                 f"accuracy {m['accuracy']:.3f}, sensitivity {m['sensitivity']:.3f}, "
                 f"specificity {m['specificity']:.3f}")
    return _save(fig, path)


def plot_reliability(curves, path, threshold=None):
    """Reliability diagram: per bin of P(pneumonia), the share of PNEUMONIA against the mean
    probability, for each split in ``curves`` ({name: (y, prob)}); a calibrated model lies on
    the diagonal. Each point's area grows with the X-rays in its bin, and the bars below give
    the counts, so that a bin of 8 X-rays does not look like one of 400; a split whose bins lie
    below the diagonal on average, weighted by their counts, is said to be biased upward. A
    vertical line marks the decision ``threshold`` (PNEUMONIA at and right of it)."""
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(6.4, 7.6), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1]}, layout="constrained")
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="perfectly calibrated")
    if threshold is not None:
        for axis in (ax, ax_count):
            axis.axvline(threshold, color="tab:red", linestyle="--", linewidth=1.2, zorder=1,
                         label=f"threshold {threshold:.3f}: PNEUMONIA to the right" if axis is ax else None)
    width = 1 / 15
    for k, (name, (y, prob)) in enumerate(curves.items()):
        curve = metrics.reliability_curve(y, prob, bins=15)
        ece = metrics.expected_calibration_error(y, prob, bins=15)
        shown = curve.count > 0
        bias = float(np.mean(prob) - np.mean(y))  # > 0: P(pneumonia) above the share that has it
        leaning = (f"; biased upward (mean P {np.mean(prob):.2f}, PNEUMONIA {np.mean(y):.2f})" if bias > 0.02
                   else f"; biased downward (mean P {np.mean(prob):.2f}, PNEUMONIA {np.mean(y):.2f})"
                   if bias < -0.02 else "")
        line, = ax.plot(curve.mean_prob[shown], curve.frac_pos[shown], "-", alpha=0.6)
        ax.scatter(curve.mean_prob[shown], curve.frac_pos[shown], s=8 + 400 * curve.count[shown] / len(y),
                   color=line.get_color(), edgecolor="black", linewidth=0.5, zorder=3,
                   label=f"{name} ({len(y)} X-rays): ECE {ece:.3f}, Brier "
                         f"{metrics.brier_score(y, prob):.3f}{leaning}")
        offset = (k - (len(curves) - 1) / 2) * width / len(curves)
        centres = curve.edges[:-1] + width / 2 + offset
        ax_count.bar(centres, curve.count, width=width / len(curves), label=name, color=line.get_color())
        for x, count in zip(centres[shown], curve.count[shown]):
            ax_count.text(x, count, str(int(count)), ha="center", va="bottom", fontsize=6.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("fraction PNEUMONIA in the bin")
    ax.set_title("Reliability of P(pneumonia) (15 equal-width bins; point area: X-rays in the bin)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8.5)
    ax_count.set_yscale("log")
    ax_count.set_xlabel("predicted P(pneumonia), mean of the bin")
    ax_count.set_ylabel("X-rays in bin")
    ax_count.legend(fontsize=8)
    return _save(fig, path)


def _overlay(ax, xray, cam):
    """Draw the X-ray in grey with the Grad-CAM map (any size, in [0, 1]) over it."""
    h, w = xray.shape
    up = np.clip(cv2.resize(cam.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
    rgba = plt.get_cmap(SALIENCY_CMAP)(up)
    rgba[..., 3] = 0.6 * up  # weak evidence stays transparent: the X-ray shows through
    ax.imshow(xray, cmap="gray", vmin=0, vmax=1)
    ax.imshow(rgba)
    ax.set_xticks([])
    ax.set_yticks([])


def _saliency_colorbar(fig, ax):
    mappable = cm.ScalarMappable(norm=Normalize(0, 1), cmap=SALIENCY_CMAP)
    fig.colorbar(mappable, ax=ax, shrink=0.7,
                 label="Grad-CAM: what moved the network towards PNEUMONIA\n"
                       "(each map peaks at its X-ray's P(pneumonia))")


def seen_as(display_size, model_size, sep="\n"):
    """What an X-ray in a picture is: shown at one size, seen by the model at another."""
    return (f"X-ray squared, shown at {display_size}x{display_size};{sep}"
            f"the model sees it at {model_size}x{model_size} pixels")


def save_saliency_overlay(path, xray, cam, title, model_size):
    """One X-ray beside its Grad-CAM overlay, as a PNG. xray: (H, W) in [0, 1], as shown;
    cam: (h, w) (``Classifier.grad_cam``); model_size: the side of the model's input."""
    fig, (ax_plain, ax_cam) = plt.subplots(1, 2, figsize=(9.5, 5.0), layout="constrained")
    ax_plain.imshow(xray, cmap="gray", vmin=0, vmax=1)
    ax_plain.set_xticks([])
    ax_plain.set_yticks([])
    ax_plain.set_xlabel(seen_as(xray.shape[0], model_size))
    _overlay(ax_cam, xray, cam)
    ax_cam.set_xlabel("Grad-CAM over the X-ray")
    _saliency_colorbar(fig, [ax_plain, ax_cam])
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def plot_saliency(classifier, cases, path):
    """Grad-CAM of a few test X-rays, one row per kind (TP, FP, FN): X-ray, then overlay.

    cases: {kind: [(caption, model-input image, display image, P(pneumonia)), ...]}.
    """
    cols = 2 * SALIENCY_PER_KIND
    fig, axes = plt.subplots(len(cases), cols, figsize=(2.7 * cols + 1.3, 3.1 * len(cases) + 0.8),
                             squeeze=False, layout="constrained")
    for row, (kind, items) in zip(axes, cases.items()):
        cams = (classifier.grad_cam(np.stack([i[1] for i in items]), [i[3] for i in items])
                if items else [])
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        for k in range(SALIENCY_PER_KIND):
            ax_plain, ax_cam = row[2 * k], row[2 * k + 1]
            if k >= len(items):
                ax_plain.set_frame_on(False)
                ax_cam.axis("off")
                ax_plain.text(0.05, 0.5, "none in the test split" if k == 0 else "", fontsize=10,
                              transform=ax_plain.transAxes, va="center")
                continue
            caption, _, display, _ = items[k]
            ax_plain.imshow(display, cmap="gray", vmin=0, vmax=1)
            ax_plain.set_title(f"true {caption}", fontsize=8.5)
            _overlay(ax_cam, display, cams[k])
            ax_cam.set_title("Grad-CAM", fontsize=8.5)
        row[0].set_ylabel(kind, fontsize=12)
    _saliency_colorbar(fig, axes)
    fig.suptitle("What moved the network towards PNEUMONIA (Grad-CAM at the last conv layer), not where\n"
                 "disease is: a map may peak on a marker, a lead or the edge. Each row shows the test "
                 "X-rays\nthe model was most confident about of its kind: true positives, false "
                 f"positives, false negatives\n{seen_as(SALIENCY_SIZE, classifier.image_size, sep=' ')}",
                 fontsize=11)
    return _save(fig, path)


def plot_stress(summary, path, title="held-out X-rays", names=CLASS_NAMES, family=None):
    """The stress battery (``fast.scoring.stress.summarise``), or one ``family`` of its views: the
    share of each class called PNEUMONIA at the threshold, for the X-rays as they are and seen
    otherwise, one line per class; each view's limit is drawn as a band around the share as they
    are, and a view beyond it is marked with a cross and a red name."""
    views = [v for v, row in summary["views"].items()
             if family is None or row.get("family") in (family, "as is")]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.5 * len(views) + 2), 5))
    x = np.arange(len(views))
    colours = {names[0]: "tab:blue", names[1]: "tab:red"}
    failed = set()
    for cls in names:
        rows = [summary["views"][v] for v in views]
        shares = [row[cls]["called_pneumonia"] for row in rows]
        ax.plot(x, shares, "o-", color=colours[cls], label=f"{cls} ({summary['images'][cls]} X-rays)")
        base = summary["views"]["as is"][cls]["called_pneumonia"]
        for i, row in enumerate(rows):
            limit = row.get("limit")
            if limit is None:
                continue
            ax.plot([i, i], [base - limit, base + limit], color=colours[cls], alpha=0.25, lw=8,
                    solid_capstyle="butt")
            if abs(row[cls]["change"]) > limit:
                failed.add(i)
                ax.plot(i, shares[i], "x", color="black", ms=11, mew=2.5)
    ax.set_xticks(x, views, rotation=60, ha="right", fontsize=8)
    for i, label in enumerate(ax.get_xticklabels()):
        label.set_color("tab:red" if i in failed else "black")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("share called PNEUMONIA")
    what = "Stress battery" if family is None else f"Stress battery, {family} views"
    verdict = (f"{len(failed)} of {len(views) - 1} views beyond their limits (x, red names)" if failed
               else f"all {len(views) - 1} views within their limits")
    ax.set_title(f"{what}, {title}: threshold {summary['threshold']:.3f}\n"
                 f"bands: how far each share may move; {verdict}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def _most_confident(indices, score):
    """``indices`` ordered by ``score`` (high first), ties by index."""
    return indices[np.argsort(-score[indices], kind="stable")]


def make_report(run_dir, data_root=None, log=print, out_dir=None, classifier=None, threshold=None):
    """(Re)draw every picture of the run in ``run_dir`` -> list of the PNG paths written.

    Into ``out_dir`` (made if missing), by default the run directory itself. ``classifier``:
    the run's model, when the caller has loaded it already. The data folder (for the pictures
    showing X-rays) is ``data_root``, else config.json's ``data``, else the default; when it
    cannot be found, those pictures are skipped with a note. ``threshold``: another operating
    point than the run's own, which the ROC curve then marks beside it. Raises ReportError (or
    ModelFileError) when the run directory lacks a file it needs.
    """
    run = _finished_run(run_dir)
    out_dir = run.path if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = run.read_metrics()
    classifier = load_classifier(run.model) if classifier is None else classifier
    own = float(results.get("threshold", classifier.threshold))
    threshold = own if threshold is None else threshold
    best_epoch = int(results.get("best_epoch") or 0)  # none for a K-fold run: no epoch was chosen
    with np.load(run.predictions("test"), allow_pickle=False) as stored:
        prob, y, paths = stored["probability"], stored["label"].astype(np.int64), stored["paths"]

    written = [plot_training_curves(read_history(run.history), best_epoch, out_dir / PICTURES["curves"])]
    held_out = classifier.record.held_out  # "validation", or "out-of-fold" for K folds
    curves = {}
    for split, name in (("val", held_out), ("test", "test")):
        if run.predictions(split).is_file():
            with np.load(run.predictions(split), allow_pickle=False) as stored_split:
                curves[name] = (stored_split["label"].astype(np.int64), stored_split["probability"])
    if results.get("stress"):
        battery = results["stress"]
        written.append(plot_stress(battery, out_dir / PICTURES["framing"], held_out + " X-rays",
                                   classifier.class_names, family="framing"))
        written.append(plot_stress(battery, out_dir / PICTURES["stress"], held_out + " X-rays",
                                   classifier.class_names))
    written += _draw_model_pictures(classifier, curves, (y, prob, paths), (threshold, own),
                                    _data_root(run_dir, data_root), out_dir, log)
    for path in written:
        log(f"wrote {path}")
    return written


def _finished_run(run_dir):
    """``run_dir`` as a RunDir, refused (ReportError) unless training there has finished."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise ReportError(f"{run.path}: no such run directory")
    missing = run.missing()
    if missing:
        models = sorted(run.path.glob("*.npz")) if RunDir.MODEL in missing else []
        if models:
            raise ReportError(f"{run.path} is not a run directory; for a model file, name it: "
                              f"python -m fast.report {models[0]} --out DIR")
        raise ReportError(f"{run.path}: not a finished run (missing {', '.join(missing)}); "
                          "pictures are drawn once training has finished")
    return run


def score_test_split(classifier, data_root=None, cache_dir=None, progress=False):
    """The classifier's P(pneumonia) on the test split of ``data_root`` (else $XRAY_DATA, else
    the default; DataError when there is none) -> (y, probability, paths, the data folder, which
    X-rays its typicality check flags (None without one))."""
    root = resolve_data_root(data_root)
    splits, _ = load_splits(root, ("test",), classifier.image_size, seed=TrainConfig.seed,
                            val_fraction=TrainConfig.val_fraction, cache_dir=cache_dir, progress=progress)
    images, y, paths = splits["test"]
    probability, typical = classifier.scores(images)
    flagged = None if typical is None else classifier.record.typicality.flagged(typical)
    return y, probability, np.array(paths), root, flagged


def report_model(classifier, out_dir, data_root=None, log=print, cache_dir=None, progress=False,
                 threshold=None):
    """The pictures of a model file alone (no run directory: the shipped model, say): scores
    the test split, prints its metric table (the figures of the model's card) and draws every
    picture but the training curves into ``out_dir`` -> (PNG paths written, test metrics).

    The reliability diagram has the held-out predictions too where the model file keeps them.
    ``threshold``: another operating point than the model's own, scored and marked beside it.
    Raises DataError when the data folder cannot be found.
    """
    out_dir = Path(out_dir)
    y, prob, paths, root, flagged = score_test_split(classifier, data_root, cache_dir, progress)
    own = classifier.threshold
    threshold = own if threshold is None else threshold
    scored = metrics.scored(y, prob, threshold)
    log(f"test split of {root}: {scored['n']} images, threshold {threshold:.4f}"
        + ("" if threshold == own else f" (the model's own: {own:.4f})"))
    table = {"test": scored} if threshold == own else {f"at {threshold:.4f}": scored,
                                                       f"own {own:.4f}": metrics.scored(y, prob, own)}
    log(metrics.format_metrics_table(table))
    if flagged is not None:
        log(f"typicality: {flagged.sum()} of {len(flagged)} test X-rays ({flagged.mean():.1%}) flagged as "
            "unlike the model's training X-rays")
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = {"test": (y, prob)}
    record = classifier.record
    if record.held_out_probability is not None:
        curves = {record.held_out: (record.held_out_label.astype(np.int64), record.held_out_probability), **curves}
    written = _draw_model_pictures(classifier, curves, (y, prob, paths), (threshold, own), root, out_dir, log)
    for path in written:
        log(f"wrote {path}")
    return written, scored


def _draw_model_pictures(classifier, curves, test, thresholds, root, out_dir, log):
    """The pictures of a model and its test predictions ``test`` = (y, prob, paths): filters,
    ROC, confusion matrix, reliability (of ``curves``), and, when the X-rays can be read under
    ``root``, feature maps and Grad-CAM -> the PNG paths written. ``thresholds``: (the operating
    point used, the model's own), marked both on the ROC curve."""
    y, prob, paths = test
    threshold, own = thresholds
    names = classifier.class_names
    written = [
        plot_filters(classifier.model, out_dir / PICTURES["filters"]),
        plot_roc(y, prob, threshold, out_dir / PICTURES["roc"], own),
        plot_confusion(y, prob, threshold, out_dir / PICTURES["confusion"], names),
        plot_reliability(curves, out_dir / PICTURES["reliability"], threshold),
    ]
    size = classifier.image_size

    def examples(indices, count):
        """(caption, model-input image, display image, P) of up to ``count`` readable X-rays."""
        items = []
        for i, file, image in _readable(indices, paths, root, size, count):
            caption = f"{names[y[i]]} {file.name}\nP(pneumonia) = {prob[i]:.3f}"
            items.append((caption, image, display_image(file), float(prob[i])))
        return items

    # Margin from the threshold, negative when wrong: each class's clearest case comes first.
    margin = np.where(y == 1, prob - threshold, threshold - prob)
    pair = (examples(_most_confident(np.flatnonzero(y == 0), margin), 1)
            + examples(_most_confident(np.flatnonzero(y == 1), margin), 1))
    if len(pair) == 2:
        written.append(plot_feature_maps(classifier, [item[:3] for item in pair],
                                         out_dir / PICTURES["features"]))
        positive = called_positive(prob, threshold)
        cases = {
            "true positives": _most_confident(np.flatnonzero((y == 1) & positive), prob),
            "false positives": _most_confident(np.flatnonzero((y == 0) & positive), prob),
            "false negatives": _most_confident(np.flatnonzero((y == 1) & ~positive), -prob),
        }
        cases = {kind: examples(idx, SALIENCY_PER_KIND) for kind, idx in cases.items()}
        written.append(plot_saliency(classifier, cases, out_dir / PICTURES["saliency"]))
    else:
        where = root if root is not None else "no data folder found"
        log(f"note: the test X-rays cannot be read ({where}); skipped {PICTURES['features']} and "
            f"{PICTURES['saliency']} (pass --data PATH)")
    return written


DESCRIPTION = """Draw the pictures of a finished training run, or of a model file alone, as PNG files.

A run directory: from the run's own files, into the run directory (or --out DIR):
  training_curves.png          loss and held-out AUC per epoch
  conv1_filters.png            the first layer's filters
  feature_maps.png             each conv layer's most active channels, a colour bar
  roc_test.png                 the test ROC curve, the operating point (and the model's own)
  confusion_matrix_test.png    counts at the operating point
  reliability.png              probabilities against outcome, counts per bin, bias named
  saliency_test.png            Grad-CAM: what moved the network, not where disease is
  framing.png                  the stress battery's framing views of the held-out X-rays
  stress.png                   the whole stress battery (framing and acquisition views)

A model file (the shipped models/pneumonia_cnn.npz, say): the test split is scored first and
its metric table printed (the test figures of the model's card); then every picture but the
training curves and the held-out stress battery (a run's own) goes into --out DIR.
--threshold or --sensitivity scores and draws another operating point, the model's own beside it."""

EPILOG = """examples:
  python -m fast.report runs/20240101-120000
  python -m fast.report models/pneumonia_cnn.npz --out report/shipped"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fast.report", description=DESCRIPTION, epilog=EPILOG,
                                     allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="RUN_DIR_OR_MODEL",
                        help="a run directory written by python -m fast.train, or a model .npz file")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where the pictures go (made if missing); default: the run directory. "
                             "Needed for a model file")
    add_data_flags(parser, "for the test split and the pictures that show X-rays",
                   "a model file's test images")
    add_operating_point_flags(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    target = Path(args.target)
    model_file = target.is_file()
    problem = None
    if not target.exists():
        print(f"error: {target}: no such run directory or model file", file=sys.stderr)
        return 1
    if model_file and args.out is None:
        problem = f"a model file's pictures need --out DIR (they do not go beside {target})"
    elif args.out is not None:
        problem = folder_problem(args.out)
        problem = problem and f"--out: {problem}"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        run_model = RunDir(target).model if not model_file else target
        if not model_file and not run_model.is_file():
            make_report(target, args.data, out_dir=args.out)  # says what the run directory lacks
            return 0
        classifier = open_classifier(str(run_model))
        if classifier is None:
            return 1
        threshold = operating_point(classifier, args)
        if threshold is None:
            return 2
        if not model_file:
            make_report(target, args.data, out_dir=args.out, classifier=classifier, threshold=threshold)
            return 0
        print(f"scoring the test split of {resolve_data_root(args.data)}", file=sys.stderr, flush=True)
        report_model(classifier, args.out, args.data, cache_dir=args.cache_dir, progress=sys.stderr.isatty(),
                     threshold=threshold)
    except (ReportError, ModelFileError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
