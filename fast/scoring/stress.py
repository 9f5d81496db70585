"""The stress battery: does the network read the lungs, or how the X-ray was taken?

A network can learn cues that tell the classes apart inside the training split without saying
anything about the lungs: how tightly the chest is framed (PNEUMONIA X-rays are collimated more
tightly), how sharp the image is (the NORMAL originals were larger, so downscaling left them
sharper), burned-in markers and labels, noise, exposure. Out-of-fold scores reward such cues,
because they hold inside the split. The battery takes each cue away in turn: held-out X-rays (the
validation split, or each fold's held-out images) are predicted again with one property changed
and the anatomy left alone (``VIEWS``, in two families: framing and acquisition), and for each
class and view it reports the share called PNEUMONIA at the run's threshold, the mean
P(pneumonia) and the ROC AUC. A network that reads the lungs calls the same share of each class
PNEUMONIA whatever the view; each view's ``limit`` is how far the shares may move (``STRONG``
views, which change the image more, may move twice as far).

Views are made from the stored 8-bit images in [0, 1] at the network's size and then normalised
as the run normalises (with per-image normalisation, each view by its own statistics), as a file
taken that way would be. Views with a random part (the corner a letter goes in, where the
electrode discs sit, the noise) draw it from the image's own content, so an image gets the same
view however the held-out images are split into folds, chunks or processes.

The trainer calls ``summarise`` on the predictions it makes of ``views_of`` its held-out images;
``python -m studies.stress_study`` makes the same battery for a saved model.
"""
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from fast.data.augment import about_centre, paste_discs, paste_letter, warp
from fast.data.folders import CLASS_NAMES
from fast.data.images import from_pixels, to_pixels
from fast.data.normalise import normalise
from fast.scoring import metrics
from fast.scoring.metrics import called_positive

LIMIT, STRONG_LIMIT = 0.05, 0.10  # how far a view may move a class's share called PNEUMONIA
PER_CLASS = 600  # the battery predicts at most this many held-out X-rays of each class (seeded)


@dataclass(frozen=True)
class View:
    """One way of taking an X-ray: ``make(images, rngs)`` turns (n, H, W) float32 grey images in
    [0, 1] into the same images taken so, drawing anything random for image i from ``rngs[i]``.
    ``strong``: a large change, allowed ``STRONG_LIMIT``."""
    name: str
    family: str  # "framing" or "acquisition"
    make: object
    strong: bool = False

    @property
    def limit(self):
        return STRONG_LIMIT if self.strong else LIMIT


# --------------------------------------------------------------------------- the views

def framed(images, zoom, centre=(0.0, 0.0), border=cv2.BORDER_REPLICATE):
    """(N, H, W) images in [0, 1] as if framed otherwise: zoom > 1 keeps a window of 1/zoom of
    the side (a tighter collimation), resized back to H x W; zoom < 1 shrinks the image to
    zoom of the side, ``border`` around it (replicated, reflected, or constant: black).
    ``centre``: where the window's centre sits, as a share of the room it has to move (-1 to 1
    across and down; 0 is the middle, (0, -1) a window against the top edge)."""
    h, w = images.shape[-2:]
    shift = np.array(centre) * abs(zoom - 1) / 2 * (w, h)
    # a window (zoom > 1) moves against its shift, a shrunken image (zoom < 1) with it
    m = about_centre(np.diag([zoom, zoom]), w, h, -shift * np.sign(zoom - 1))
    if border == cv2.BORDER_REPLICATE:
        return warp(images, m, out=np.empty_like(images))
    return np.stack([cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border,
                                    borderValue=0.0) for image in images])


def turned(images, degrees=0.0, shift=(0.0, 0.0)):
    """Rotated by ``degrees`` (anticlockwise) about the centre, then moved by ``shift`` (a share
    of the side, across and down), the border replicated."""
    h, w = images.shape[-2:]
    angle = np.deg2rad(degrees)
    linear = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    return warp(images, about_centre(linear, w, h, np.array(shift) * (w, h)), out=np.empty_like(images))


def _each(images, change):
    """``change(image)`` of each (H, W) image, stacked, in float32."""
    return np.stack([change(image) for image in images]).astype(np.float32, copy=False)


def noisy(images, rngs, sd):
    """Gaussian noise of ``sd`` (a share of the grey range) added, clipped to [0, 1]."""
    grain = np.stack([rng.standard_normal(images.shape[-2:], dtype=np.float32) for rng in rngs])
    return np.clip(images + np.float32(sd) * grain, 0, 1)


def gamma(images, power):
    """Exposure: grey x -> x ** power (below 1 a brighter film, above 1 a darker one)."""
    return np.power(images, np.float32(power), dtype=np.float32)


def blurred(images, sigma):
    return _each(images, lambda x: cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE))


def sharpened(images, sigma=2.0, amount=0.8):
    """Unsharp masking: x + amount (x - blur(x)), clipped to [0, 1]."""
    return np.clip(images + np.float32(amount) * (images - blurred(images, sigma)), 0, 1)


def resampled(images, scale):
    """Down to ``scale`` of the side (area averaging) and back up (bilinear): a lower resolution."""
    h, w = images.shape[-2:]
    small = (max(1, round(w * scale)), max(1, round(h * scale)))
    return _each(images, lambda x: cv2.resize(cv2.resize(x, small, interpolation=cv2.INTER_AREA), (w, h),
                                              interpolation=cv2.INTER_LINEAR))


def jpeg(images, quality):
    """Through an 8-bit JPEG file at ``quality`` and back."""
    def once(x):
        ok, data = cv2.imencode(".jpg", to_pixels(x), [cv2.IMWRITE_JPEG_QUALITY, quality])
        return from_pixels(cv2.imdecode(data, cv2.IMREAD_GRAYSCALE))
    return _each(images, once)


def lettered(images, rngs, height, letter="R"):
    """A white laterality letter ``height`` of the side high, in a corner drawn for each image."""
    out = images.copy()
    for image, rng in zip(out, rngs):
        paste_letter(image, letter, height * min(image.shape), int(rng.integers(4)))
    return out


def with_discs(images, rngs, count=3, radius=0.025):
    """``count`` white ECG electrode discs of ``radius`` of the side on the chest wall: drawn for
    each image in the outer thirds of the width, between a fifth and four fifths of the height."""
    out = images.copy()
    for image, rng in zip(out, rngs):
        h, w = image.shape
        side = rng.integers(2, size=count)  # left or right chest wall
        across = np.where(side == 0, rng.uniform(0.1, 0.3, count), rng.uniform(0.7, 0.9, count))
        centres = np.stack([across * w, rng.uniform(0.2, 0.8, count) * h], axis=1)
        paste_discs(image, centres, radius * min(h, w))
    return out


def corners_masked(images, height=0.15, width=0.30):
    """The top corners (``height`` of the height, ``width`` of the width) filled with the image's
    median grey."""
    out = images.copy()
    h, w = images.shape[-2:]
    rows, cols = slice(0, round(height * h)), round(width * w)
    for image in out:
        fill = np.median(image)
        image[rows, :cols] = fill
        image[rows, w - cols:] = fill
    return out


def _view(name, family, make, strong=False, random=False):
    """A View whose ``make`` takes (images, rngs), from a function of the images alone unless
    ``random``."""
    return View(name, family, make if random else (lambda images, rngs: make(images)), strong)


AS_IS = View("as is", "as is", lambda images, rngs: images)
VIEWS = (
    # framing: how tightly the chest is collimated, and what surrounds a smaller image
    _view("crop 0.9", "framing", lambda x: framed(x, 1 / 0.9)),
    _view("crop 0.8", "framing", lambda x: framed(x, 1 / 0.8)),
    _view("crop 0.7", "framing", lambda x: framed(x, 1 / 0.7), strong=True),
    _view("crop 0.8 top", "framing", lambda x: framed(x, 1 / 0.8, (0.0, -1.0))),
    _view("crop 0.8 bottom", "framing", lambda x: framed(x, 1 / 0.8, (0.0, 1.0))),
    _view("zoom-out 0.8", "framing", lambda x: framed(x, 0.8), strong=True),
    _view("zoom-out 0.8 black", "framing", lambda x: framed(x, 0.8, border=cv2.BORDER_CONSTANT), strong=True),
    _view("zoom-out 0.8 reflected", "framing", lambda x: framed(x, 0.8, border=cv2.BORDER_REFLECT_101),
          strong=True),
    # acquisition: the detector, the exposure, the processing and what is burned in
    _view("noise 0.01", "acquisition", lambda x, r: noisy(x, r, 0.01), random=True),
    _view("noise 0.03", "acquisition", lambda x, r: noisy(x, r, 0.03), strong=True, random=True),
    _view("gamma 1/1.5 (brighter)", "acquisition", lambda x: gamma(x, 1 / 1.5), strong=True),
    _view("gamma 1.5 (darker)", "acquisition", lambda x: gamma(x, 1.5), strong=True),
    _view("blur 1.5", "acquisition", lambda x: blurred(x, 1.5)),
    _view("sharpen", "acquisition", sharpened),
    _view("half resolution", "acquisition", lambda x: resampled(x, 0.5)),
    _view("JPEG 15", "acquisition", lambda x: jpeg(x, 15)),
    _view("letter 1/10", "acquisition", lambda x, r: lettered(x, r, 1 / 10), strong=True, random=True),
    _view("letter 1/20", "acquisition", lambda x, r: lettered(x, r, 1 / 20), random=True),
    _view("electrode discs", "acquisition", with_discs, random=True),
    _view("corners masked", "acquisition", corners_masked),
    _view("rotated +7", "acquisition", lambda x: turned(x, 7.0)),
    _view("rotated -7", "acquisition", lambda x: turned(x, -7.0)),
    _view("shifted 10%", "acquisition", lambda x: turned(x, shift=(0.1, 0.1))),
    _view("mirrored", "acquisition", lambda x: np.ascontiguousarray(x[..., ::-1])),
)
FAMILIES = ("framing", "acquisition")
BY_NAME = {view.name: view for view in (AS_IS, *VIEWS)}


def image_rngs(levels, view):
    """One generator per stored image (n, H, W) uint8, seeded by its content and the view's name:
    the same image gets the same draws wherever it is predicted."""
    salt = zlib.crc32(view.name.encode())
    return [np.random.default_rng([salt, zlib.crc32(np.ascontiguousarray(image).tobytes())])
            for image in levels]


class ViewedInputs:
    """``fast.data.pixels.Inputs`` seen through a ``View``: ``viewed[index]`` is (n, 1, S, S)
    float32, the stored images taken as the view says, then normalised as ``inputs`` normalises."""

    dtype = np.dtype(np.float32)

    def __init__(self, inputs, view):
        self.inputs, self.view = inputs, view

    def __len__(self):
        return len(self.inputs)

    @property
    def shape(self):
        return self.inputs.shape

    def subset(self, index):
        return ViewedInputs(self.inputs.subset(index), self.view)

    def __getitem__(self, index):
        i = self.inputs
        levels = i.pixels.levels(index)
        images = self.view.make(from_pixels(levels), image_rngs(levels, self.view))
        return normalise(np.array(images, dtype=np.float32), i.how, i.mean, i.std)[..., None, :, :]


def views_of(inputs):
    """{view name: ``inputs`` seen so} for every view of the battery but the X-rays as they are."""
    return {view.name: ViewedInputs(inputs, view) for view in VIEWS}


def study_rows(y, seed, per_class=PER_CLASS):
    """Which held-out images the battery predicts -> a boolean mask over ``y``: at most
    ``per_class`` of each class, drawn with ``seed``."""
    y = np.asarray(y)
    rng = np.random.default_rng([seed, 0xF8A3])  # its own stream: the run's draws stay as they were
    chosen = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        chosen[rng.permutation(members)[:per_class]] = True
    return chosen


# --------------------------------------------------------------------------- the figures

def summarise(y, probability, threshold, class_names=CLASS_NAMES):
    """The battery's figures -> {"threshold", "images": {class: n}, "views": {view name:
    {"family", "limit", class: {"called_pneumonia", "mean_probability", "change"}, "roc_auc"}},
    "breaches": [...]}.

    ``probability``: {view name: calibrated P(pneumonia) of the same images}, the X-rays as they
    are under ``AS_IS.name``. ``change`` is the view's share called PNEUMONIA minus the share as
    they are; ``breaches`` lists, in words, every change beyond its view's limit (empty: the
    network passes the battery). Views not in ``BY_NAME`` are reported without a limit."""
    y = np.asarray(y)
    base = probability[AS_IS.name]
    views, breaches = {}, []
    for name, prob in probability.items():
        view = BY_NAME.get(name)
        limit = None if view is None or view is AS_IS else view.limit
        row = {"family": view.family if view else None, "limit": limit}
        for c, cls in enumerate(class_names):
            mine, base_mine = prob[y == c], base[y == c]
            if len(mine):
                share = float(np.mean(called_positive(mine, threshold)))
                change = share - float(np.mean(called_positive(base_mine, threshold)))
                mean = float(np.mean(mine))
            else:
                share = change = mean = float("nan")
            row[cls] = {"called_pneumonia": share, "mean_probability": mean, "change": change}
            if limit is not None and abs(change) > limit:
                breaches.append(f"{name}: {cls} called PNEUMONIA {change:+.3f} (limit {limit:.2f})")
        row["roc_auc"] = metrics.roc_auc(y, prob) if len(np.unique(y)) == 2 else None
        views[name] = row
    return {"threshold": float(threshold),
            "images": {cls: int(np.sum(y == c)) for c, cls in enumerate(class_names)},
            "views": views, "breaches": breaches}


def worst_change(summary, family=None):
    """The largest |change| of any class under any view (of ``family``, if given): one number to
    compare candidates by."""
    changes = [abs(row[cls]["change"]) for name, row in summary["views"].items()
               if name != AS_IS.name and (family is None or row.get("family") == family)
               for cls in summary["images"]]
    return max(changes, default=0.0)


def format_summary(summary, class_names=CLASS_NAMES):
    """The battery as an aligned text table, one row per view, a mark on each breach."""
    head = f"{'view':<24}" + "".join(f"  {cls + ' called P':>20}" for cls in class_names) + "  ROC AUC  limit"
    lines = [head]
    for name, row in summary["views"].items():
        cells = ""
        for cls in class_names:
            change = row[cls]["change"]
            mark = "!" if row["limit"] is not None and abs(change) > row["limit"] else " "
            cells += f"  {row[cls]['called_pneumonia']:>11.3f} ({change:+.3f}){mark}"
        auc = "        " if row["roc_auc"] is None else f"  {row['roc_auc']:.4f}"
        limit = "" if row["limit"] is None else f"  {row['limit']:.2f}"
        lines.append(f"{name:<24}{cells}{auc}{limit}")
    verdict = ("every view within its limit" if not summary["breaches"]
               else f"{len(summary['breaches'])} beyond the limits (!): " + "; ".join(summary["breaches"]))
    return "\n".join(lines + [verdict])
