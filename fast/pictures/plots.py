"""Every picture the project draws, one function each, as PNG files: training curves, the first
layer's filters, feature maps, the ROC curve, the confusion matrix, the reliability diagram, the
stress battery, and Grad-CAM saliency (a grid of test X-rays, or one X-ray beside its overlay).

Each ``plot_*`` takes what it shows and a path, and returns the path. Every PNG carries
``fast.files.PICTURE_MARK`` in its text, so the project never reads one back as an X-ray. This is
the only module that imports matplotlib (headless, Agg backend): a command that draws nothing
starts without it.
"""
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from matplotlib import cm
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator

from fast.data.folders import CLASS_NAMES
from fast.data.images import read_xray
from fast.files import PICTURE_MARK, atomic_open
from fast.scoring import metrics

matplotlib.use("Agg")  # headless: no display needed, PNG only
import matplotlib.pyplot as plt  # noqa: E402  (pyplot after the backend is chosen)

DPI = 150
SALIENCY_SIZE = 320  # pixels of an X-ray shown under a saliency overlay
SALIENCY_CMAP = "jet"
FEATURE_MAPS_SHOWN = 8  # channels per conv layer in the feature-map picture
SALIENCY_PER_KIND = 2  # test X-rays per kind (TP, FP, FN) in the saliency picture

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

