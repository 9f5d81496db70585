"""The framing stress study: does the network read the lungs, or how tightly the chest is framed?

In the training split PNEUMONIA X-rays are more often tightly collimated (lungs filling the
frame) than NORMAL ones, which show more neck, shoulders and abdomen. A network can learn that
cue, and out-of-fold scores reward it, because it holds inside the split. The study takes the
cue away: held-out X-rays (the validation split, or each fold's held-out images) are predicted
again as if framed otherwise (``VIEWS``: centre crops of 0.9, 0.8 and 0.7 of the side,
crops against the top and the bottom edge, a zoom-out with the border replicated), and for
each class and view it reports the share called PNEUMONIA at the run's threshold, the mean
P(pneumonia) and the ROC AUC. A network that reads the lungs calls the same share of each class
PNEUMONIA however the X-ray is framed; ``LIMITS`` are how far the shares may move.

Views are made from the stored 8-bit images in [0, 1] and then normalised as the run
normalises (with per-image normalisation, each view by its own statistics), as a file framed
that way would be. They are cut from the images at the network's size, so a crop is also a
little blurrier than a tighter collimation would be.
"""
from dataclasses import dataclass

import numpy as np

from fast.data.augment import about_centre, warp
from fast.data.folders import CLASS_NAMES
from fast.data.normalise import normalise
from fast.scoring import metrics
from fast.scoring.metrics import called_positive


@dataclass(frozen=True)
class View:
    """A way of framing an X-ray: ``zoom`` > 1 keeps a window of 1/zoom of the side, < 1
    shrinks the image; ``centre`` places the window (``framed``)."""
    name: str
    zoom: float = 1.0
    centre: tuple = (0.0, 0.0)


AS_IS = View("as is")
VIEWS = (View("crop 0.9", 1 / 0.9), View("crop 0.8", 1 / 0.8), View("crop 0.7", 1 / 0.7),
         View("crop 0.8 top", 1 / 0.8, (0.0, -1.0)), View("crop 0.8 bottom", 1 / 0.8, (0.0, 1.0)),
         View("zoom-out 0.8", 0.8))
# How far the share of a class called PNEUMONIA may move from the X-rays as they are, for a
# network to count as reading the lungs, not the framing: {view: {class: most change}}.
LIMITS = {"crop 0.9": {"NORMAL": 0.05, "PNEUMONIA": 0.05},
          "crop 0.8": {"NORMAL": 0.05, "PNEUMONIA": 0.05},
          "crop 0.7": {"NORMAL": 0.10}}
# The study predicts at most this many held-out X-rays of each class (drawn once, seeded).
PER_CLASS = 600


def framed(images, zoom, centre=(0.0, 0.0)):
    """(N, H, W) images in [0, 1] as if framed otherwise: zoom > 1 keeps a window of 1/zoom of
    the side (a tighter collimation), resized back to H x W; zoom < 1 shrinks the image to
    zoom of the side, the border replicated around it. ``centre``: where the window's centre
    sits, as a share of the room it has to move (-1 to 1 across and down; 0 is the middle,
    (0, -1) a window against the top edge). The framing study's views (``VIEWS``)."""
    h, w = images.shape[-2:]
    shift = np.array(centre) * abs(zoom - 1) / 2 * (w, h)
    # a window (zoom > 1) moves against its shift, a shrunken image (zoom < 1) with it
    m = about_centre(np.diag([zoom, zoom]), w, h, -shift * np.sign(zoom - 1))
    out = np.empty_like(images)
    warp(images, m, out=out)
    return out


class FramedInputs:
    """``fast.data.pixels.Inputs`` seen through a ``View``: ``framed[index]`` is (n, 1, S, S) float32, the
    stored images framed as the view says, then normalised as ``inputs`` normalises."""

    dtype = np.dtype(np.float32)

    def __init__(self, inputs, view):
        self.inputs, self.view = inputs, view

    def __len__(self):
        return len(self.inputs)

    @property
    def shape(self):
        return self.inputs.shape

    def subset(self, index):
        return FramedInputs(self.inputs.subset(index), self.view)

    def __getitem__(self, index):
        i = self.inputs
        images = i.pixels[index]
        if self.view.zoom != 1:
            images = framed(images, self.view.zoom, self.view.centre)
        return normalise(images, i.how, i.mean, i.std)[..., None, :, :]


def views_of(inputs):
    """{view name: ``inputs`` framed so} for every view of the study but the X-rays as they are."""
    return {view.name: FramedInputs(inputs, view) for view in VIEWS}


def study_rows(y, seed, per_class=PER_CLASS):
    """Which held-out images the study predicts -> a boolean mask over ``y``: at most
    ``per_class`` of each class, drawn with ``seed``."""
    y = np.asarray(y)
    rng = np.random.default_rng([seed, 0xF8A3])  # its own stream: the run's draws stay as they were
    chosen = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        chosen[rng.permutation(members)[:per_class]] = True
    return chosen


def summarise(y, probability, threshold, class_names=CLASS_NAMES):
    """The study's figures -> {"threshold", "images": {class: n}, "views": {view name: {class:
    {"called_pneumonia", "mean_probability", "change"}, "roc_auc"}}, "breaches": [...]}.

    ``probability``: {view name: calibrated P(pneumonia) of the same images}, the X-rays as they
    are under ``AS_IS.name``. ``change`` is the view's share called PNEUMONIA minus the share as
    they are; ``breaches`` lists, in words, every change beyond ``LIMITS`` (empty: the network is
    framing-invariant by this study)."""
    y = np.asarray(y)
    base = probability[AS_IS.name]
    views, breaches = {}, []
    for name, prob in probability.items():
        row = {}
        for c, cls in enumerate(class_names):
            mine, base_mine = prob[y == c], base[y == c]
            share = float(np.mean(called_positive(mine, threshold))) if len(mine) else float("nan")
            change = share - float(np.mean(called_positive(base_mine, threshold))) if len(mine) else float("nan")
            row[cls] = {"called_pneumonia": share, "mean_probability": float(np.mean(mine)) if len(mine)
                        else float("nan"), "change": change}
            limit = LIMITS.get(name, {}).get(cls)
            if limit is not None and abs(change) > limit:
                breaches.append(f"{name}: {cls} called PNEUMONIA {change:+.3f} (limit {limit:.2f})")
        both = len(np.unique(y)) == 2
        row["roc_auc"] = metrics.roc_auc(y, prob) if both else None
        views[name] = row
    return {"threshold": float(threshold),
            "images": {cls: int(np.sum(y == c)) for c, cls in enumerate(class_names)},
            "views": views, "breaches": breaches}


def format_summary(summary, class_names=CLASS_NAMES):
    """The study as an aligned text table, one row per view."""
    head = f"{'framing':<16}" + "".join(f"  {cls + ' called P':>20}" for cls in class_names) + "  ROC AUC"
    lines = [head]
    for name, row in summary["views"].items():
        cells = "".join(f"  {row[cls]['called_pneumonia']:>12.3f} ({row[cls]['change']:+.3f})"
                        for cls in class_names)
        auc = "" if row["roc_auc"] is None else f"  {row['roc_auc']:.4f}"
        lines.append(f"{name:<16}{cells}{auc}")
    verdict = ("framing-invariant by the study's limits" if not summary["breaches"]
               else "beyond the limits: " + "; ".join(summary["breaches"]))
    return "\n".join(lines + [verdict])
