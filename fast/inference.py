"""Using a trained classifier: its record, its test-time views, finding and loading it, preparing
images, probabilities, labels and Grad-CAM.

``predict``, ``evaluate`` and ``report`` all go through this module, so an image is prepared one
way everywhere: ``read_xray`` (decoding, grey, resize) then ``normalise`` as the model's record
says (by default with the training pixels' mean and std stored in it). Probabilities come from the
networks' own forward passes, averaged over the record's test-time views, and the trainer scores
its held-out and test images through the same ``ensemble_proba``, so predicting a run's test
images gives back its ``test_predictions.npz``.
"""
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from tqdm import tqdm

from fast.data.augment import about_centre, warp
from fast.data.errors import ImageError
from fast.data.images import from_pixels, read_checked, read_xray, resize_xray, to_pixels
from fast.data.screening import cheap_checks, colour_reason
from fast.data.normalise import NORMALISATIONS, normalise
from fast.nn.model import Architecture, softmax
from fast.nn.model_file import ModelFileError, load_model_file, save_model
from fast.recorded import recorded
from fast.runs import RUNS_DIR, RunDir
from fast.scoring.calibration import apply_platt, temperature_map
from fast.scoring.metrics import called_positive, sensitivity_threshold
from fast.scoring.typicality import Typicality

# The model shipped with the project (see models/MODEL_CARD.md): used unless another is named.
SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "pneumonia_cnn.npz"
LATEST = "latest"  # the name that asks for the newest run under runs/
_LOG_ODDS = (-1.0, 1.0)  # logit_PNEUMONIA - logit_NORMAL, the score P(PNEUMONIA) is the sigmoid of


# --------------------------------------------------------------------------- test-time views

IMAGE_ALONE = (1.0,)  # no test-time augmentation: the image as it is
TEST_TIME_ZOOMS = (1.0, 0.95, 1.05)  # with it (``--tta``): the image and two zooms of it


def zoomed(x, zoom):
    """x (N, C, H, W) zoomed about the image centre by ``zoom`` (> 1 enlarges), the border
    replicated, as in training: one of the fixed views a prediction can be averaged over
    (test-time augmentation). ``zoom`` 1 returns x itself."""
    if zoom == 1:
        return x
    h, w = x.shape[-2:]
    m = about_centre(np.diag([zoom, zoom]), w, h)
    out = np.empty_like(x)
    for i in range(len(x)):
        warp(x[i], m, out=out[i])
    return out


def ensemble_proba(members, x, chunk=256, zooms=IMAGE_ALONE):
    """The members' mean P(class 1) on x, evaluation mode, float64 (N,): how an ensemble, or a
    single model (a list of one), scores before calibration. x: (N, C, H, W), or anything that
    slices into such arrays (``fast.data.pixels.Inputs``): it is read ``chunk`` images at a
    time. ``zooms``: each image is also seen zoomed by these factors about its centre
    (``zoomed``; 1 is the image as it is), and the mean is over members and views."""
    return ensemble_scores(members, x, chunk, zooms)[0]


def ensemble_scores(members, x, chunk=256, zooms=IMAGE_ALONE):
    """``ensemble_proba`` and, from the same forward passes, each member's features of the images
    as they are (``ConvNet.logits_and_features``) -> ((N,) float64, [{name: (N, D)} of each
    member], or None in place of the features when ``zooms`` lacks the image as it is)."""
    parts, features = [], [[] for _ in members]
    for i in range(0, len(x), chunk):
        batch = x[i:i + chunk]
        probabilities = []
        for view in (zoomed(batch, z) for z in zooms):
            for m, mine in zip(members, features):
                if view is batch:  # the image as it is: its features too, from the same pass
                    logits, seen = m.logits_and_features(view)
                    mine.append(seen)
                else:
                    logits = m.predict_logits(view)
                probabilities.append(softmax(logits.astype(np.float64))[:, 1])
        parts.append(np.mean(probabilities, axis=0))
    if not parts:
        return np.zeros(0), [member_features(m, x) for m in members]
    if not features[0]:
        return np.concatenate(parts), None
    return np.concatenate(parts), [_joined(f) for f in features]


def _joined(parts):
    """[{name: (n_i, D)}] -> {name: (sum n_i, D)}."""
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def member_features(member, x, chunk=256):
    """What ``member`` sees of each image of x (``ConvNet.logits_and_features``, as
    ``ensemble_proba`` reads x) -> {name: (N, D)}: the typicality model's input."""
    if not len(x):
        return member.logits_and_features(np.zeros((0, *member.arch.input_shape), member.dtype))[1]
    return _joined([member.logits_and_features(x[i:i + chunk])[1] for i in range(0, len(x), chunk)])


# --------------------------------------------------------------------------- the record

@dataclass(frozen=True)
class Calibration:
    """P(PNEUMONIA) calibrated as sigmoid(scale * log-odds + bias), fitted on held-out
    predictions by ``method`` (``fast.scoring.calibration``)."""
    method: str
    scale: float
    bias: float

    def apply(self, prob):
        return apply_platt(prob, self.scale, self.bias)

    def to_dict(self):
        return {"method": self.method, "scale": self.scale, "bias": self.bias}


_REQUIRED = ("mean", "std", "threshold")


@dataclass(frozen=True)
class ModelRecord:
    """What a trained classifier is besides its weights, one typed record: the networks'
    architecture, how images are normalised (``normalise``, with the training pixels' ``mean``
    and ``std``), the test-time views, the calibration, the decision threshold (P(PNEUMONIA) >=
    ``threshold`` means PNEUMONIA), the class names, and how the run chose them.

    ``to_dict`` is the JSON record a model file stores beside the weights (the architecture
    has a record of its own there); ``from_dict`` reads it back, a file from an older version
    with what it was made with for what it lacks (``fast.recorded``). ValueError for a record no model of this project
    has: a missing field, an unknown normalisation, a view that is no zoom, std <= 0, or an
    architecture other than one-channel square images in, two classes out.
    """
    architecture: Architecture
    mean: float
    std: float
    normalise: str
    test_time_zooms: tuple
    threshold: float
    calibration: Calibration
    class_names: tuple
    best_epoch: Optional[int]
    threshold_rule: Optional[str]
    held_out: str  # what calibration and threshold were chosen on: "validation" or "out-of-fold"
    # how far an image may lie from the training X-rays (None: a file made before it was kept)
    typicality: Optional[Typicality] = field(default=None, compare=False)
    # the calibrated held-out probabilities and their labels, for other operating points
    held_out_probability: Optional[np.ndarray] = field(default=None, compare=False)
    held_out_label: Optional[np.ndarray] = field(default=None, compare=False)

    def __post_init__(self):
        channels, height, width = self.architecture.input_shape
        if channels != 1 or self.architecture.num_classes != 2 or height != width:
            raise ValueError(f"another architecture (input {self.architecture.input_shape}, "
                             f"{self.architecture.num_classes} classes); expected a 1-channel square "
                             "input and 2 classes")
        if not self.std > 0:
            raise ValueError(f"corrupt metadata (std {self.std})")
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.normalise!r} (written by a newer version?)")
        if not self.test_time_zooms or not all(0 < z < 10 for z in self.test_time_zooms):
            raise ValueError(f"unusable test-time zooms {list(self.test_time_zooms)}")

    def arrays(self):
        """The record's arrays, stored beside its JSON (``fast.nn.model_file``)."""
        arrays = {} if self.typicality is None else self.typicality.arrays()
        if self.held_out_probability is not None:
            arrays["held_out_probability"] = np.asarray(self.held_out_probability, np.float64)
            arrays["held_out_label"] = np.asarray(self.held_out_label, np.int8)
        return arrays

    def to_dict(self):
        return {"mean": self.mean, "std": self.std, "normalise": self.normalise,
                "test_time_zooms": list(self.test_time_zooms), "threshold": self.threshold,
                "calibration": self.calibration.to_dict(), "class_names": list(self.class_names),
                "best_epoch": self.best_epoch, "threshold_rule": self.threshold_rule,
                "held_out": self.held_out}

    @classmethod
    def from_dict(cls, architecture, values, arrays=None):
        arrays = arrays or {}
        missing = [k for k in _REQUIRED if k not in values]
        if missing:
            raise ValueError(f"not a trained X-ray model (its metadata lacks {', '.join(missing)})")
        values = recorded("classifier", values)
        stored = values["calibration"]
        if stored:
            calibration = Calibration(stored["method"], float(stored["scale"]), float(stored["bias"]))
        else:  # a file from before calibration was fitted: its temperature
            calibration = Calibration("temperature", *temperature_map(values["temperature"]))
        return cls(architecture=architecture, mean=float(values["mean"]), std=float(values["std"]),
                   normalise=values["normalise"],
                   test_time_zooms=tuple(float(z) for z in values["test_time_zooms"]),
                   threshold=float(values["threshold"]), calibration=calibration,
                   class_names=tuple(values["class_names"]), best_epoch=values["best_epoch"],
                   threshold_rule=values["threshold_rule"], held_out=values["held_out"],
                   typicality=Typicality.from_arrays(arrays),
                   held_out_probability=arrays.get("held_out_probability"),
                   held_out_label=arrays.get("held_out_label"))


def save_classifier(path, members, record):
    """Write the networks ``members`` (one, or an ensemble used as their mean probability) and
    their ``record`` to the model file ``path`` (``fast.nn.model_file``)."""
    if any(m.arch != record.architecture for m in members):
        raise ValueError("the record's architecture is not the networks'")
    save_model(path, members, record.to_dict(), record.arrays())


def read_classifier(path):
    """The networks and the record of the model file ``path`` -> (members, ModelRecord).
    ModelFileError for a file that is not a trained classifier of this project."""
    members, metadata, arrays = load_model_file(path)
    try:
        return members, ModelRecord.from_dict(members[0].arch, metadata, arrays)
    except (ValueError, TypeError, KeyError) as err:
        raise ModelFileError(f"{path}: {err}") from None


# --------------------------------------------------------------------------- the classifier

class Classifier:
    """Trained networks, used as their mean probability over the record's test-time views, with
    their ``ModelRecord``: preprocessing, calibration and decision threshold.

    ``images`` below are (N, S, S) float arrays in [0, 1], S = ``image_size``, as
    ``read_xray`` returns them; P(PNEUMONIA) >= ``threshold`` means PNEUMONIA. ``model`` is
    the first member (for pictures of one network's filters and feature maps).
    """

    def __init__(self, members, record, path=None):
        members = list(members) if isinstance(members, (list, tuple)) else [members]
        self.members, self.model, self.record, self.path = members, members[0], record, path

    @property
    def threshold(self):
        return self.record.threshold

    @property
    def zooms(self):
        """The test-time views: each image is also seen zoomed by these factors."""
        return self.record.test_time_zooms

    @property
    def class_names(self):
        return self.record.class_names

    @property
    def image_size(self):
        return self.model.arch.input_shape[1]

    @property
    def shipped(self):
        """Whether this is the model shipped with the project (models/, see its card)."""
        return self.path is not None and Path(self.path).resolve() == Path(SHIPPED_MODEL).resolve()

    def describe(self):
        """Which model answers, in one line: its file, input size, threshold, members, views."""
        where = "a model in memory" if self.path is None else shown_path(self.path)
        members = len(self.members)
        return (f"{where}{' (the shipped model)' if self.shipped else ''}: "
                f"{self.image_size}x{self.image_size} px input, threshold {self.threshold:.4f}, "
                f"{'one network' if members == 1 else f'an ensemble of {members} networks'}, "
                f"{len(self.zooms)} test-time view{'s' if len(self.zooms) != 1 else ''}")

    def __repr__(self):
        return f"<Classifier {self.describe()}>"

    def read(self, path):
        """One image file -> (S, S) float32 in [0, 1]. Raises ImageError naming the file."""
        return read_xray(path, self.image_size)

    def prepare(self, images):
        """(N, S, S) images in [0, 1] -> (N, 1, S, S) network input, exactly as in training."""
        images = np.array(images, dtype=np.float32).reshape(-1, self.image_size, self.image_size)
        r = self.record
        return normalise(images, r.normalise, r.mean, r.std)[:, None]

    def probability(self, images, chunk=256):
        """(N, S, S) images in [0, 1] (an array, or ``fast.data.pixels.Pixels``) -> (N,) float64
        P(PNEUMONIA): the mean over the members and the stored test-time views (``zooms``),
        calibrated. Read and prepared ``chunk`` at a time."""
        return self.scores(images, chunk)[0]

    def scores(self, images, chunk=256):
        """``probability`` and, from the same forward passes, each image's typicality score (how
        far it lies from the training X-rays, ``fast.scoring.typicality``) -> ((N,) float64,
        (N,) float64, or None for a model file that keeps no typicality model)."""
        typicality = self.record.typicality
        raw, typical = [], []
        for i in range(0, len(images), chunk):
            x = self.prepare(images[i:i + chunk])
            p, features = ensemble_scores(self.members, x, zooms=self.zooms)
            raw.append(p)
            if typicality is not None:
                if features is None:  # no view of the image as it is
                    features = [member_features(m, x) for m in self.members]
                typical.append(typicality.score(features))
        probability = self.record.calibration.apply(np.concatenate(raw)) if raw else np.zeros(0)
        if typicality is None:
            return probability, None
        return probability, np.concatenate(typical) if typical else np.zeros(0)

    def typicality_warnings(self, scores):
        """Typicality scores (or None) -> for each image, the list of its warnings (empty or one)."""
        if scores is None:
            return None
        limit = self.record.typicality.threshold
        return [[f"unlike the chest X-rays the model learned from (typicality {s:.2f}, flagged above "
                 f"{limit:.2f})"] if s > limit else [] for s in scores]

    def operating_point(self, threshold=None, sensitivity=None):
        """The decision threshold to use -> (threshold, what it is, in words): ``threshold`` when
        given (in [0, 1]); with ``sensitivity`` (screening, in (0, 1]) the highest threshold whose
        sensitivity on the model's held-out X-rays is at least that; else the model's own.
        ValueError for both at once, a value out of range, or a sensitivity the model file
        cannot answer (it keeps no held-out predictions)."""
        if threshold is not None and sensitivity is not None:
            raise ValueError("give a threshold or a sensitivity, not both")
        if threshold is not None:
            if not 0 <= threshold <= 1:
                raise ValueError(f"a threshold is a probability in [0, 1], got {threshold}")
            return float(threshold), f"threshold {threshold:.4f}, as given"
        if sensitivity is not None:
            if not 0 < sensitivity <= 1:
                raise ValueError(f"a sensitivity is in (0, 1], got {sensitivity}")
            r = self.record
            if r.held_out_probability is None:
                raise ValueError(f"{self.path or 'this model'} keeps no held-out predictions (made before "
                                 "they were stored), so it cannot choose a threshold by sensitivity; "
                                 "give a threshold instead")
            chosen = sensitivity_threshold(r.held_out_label, r.held_out_probability, sensitivity)
            return chosen, (f"threshold {chosen:.4f}: the highest whose {r.held_out} sensitivity is at "
                            f"least {sensitivity:g}")
        rule = f", {self.record.threshold_rule}" if self.record.threshold_rule else ""
        return self.threshold, f"the model's own threshold {self.threshold:.4f}{rule}"

    def images(self, inputs):
        """Paths or images -> (N, S, S) float32 in [0, 1], as the model sees them.

        ``inputs``: a path (str or Path), a list of paths, or an array: (H, W) one grey image;
        (H, W, 3) or (H, W, 4) one colour image (BGR or BGRA, as OpenCV reads it; made grey as
        a file is, alpha dropped); (N, H, W) grey images. A 3-D array is read as one colour image
        when its last axis holds 3 or 4 values, else as N grey images. Floats in [0, 1], or
        integers divided by their type's maximum (255, 65535) as a file's pixels are; resized to
        S x S and rounded to 8-bit levels as files are. Raises ImageError naming a file that
        cannot be read, ValueError for an array of another shape or range.
        """
        return self.checked_images(inputs)[0]

    def checked_images(self, inputs):
        """``images`` and the cheap checks of each (``fast.data.screening``) -> (images, [reasons
        of each image])."""
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(i, (str, Path)) for i in inputs):
            read = [read_checked(p, self.image_size) for p in inputs]
            return (from_pixels(np.reshape([levels for levels, _ in read], (-1, self.image_size, self.image_size))),
                    [reasons for _, reasons in read])
        array = np.asarray(inputs)
        if array.ndim == 3 and array.shape[-1] in (3, 4):  # one colour image, (H, W, C)
            colour = colour_reason(array)
            array = _unit_grey(array)[None]
            checks = [[colour] if colour else []]
        else:
            array = _unit_grey(array)
            if array.ndim == 2:
                array = array[None]
            if array.ndim != 3:
                raise ValueError(f"images must be (H, W) or (N, H, W) grey arrays, or one (H, W, 3) "
                                 f"or (H, W, 4) colour image, got shape {array.shape}")
            checks = [[] for _ in array]
        h, w = array.shape[1:]
        if array.shape[1:] != (self.image_size, self.image_size):
            array = np.reshape([resize_xray(a, self.image_size) for a in array],
                               (-1, self.image_size, self.image_size))
        images = from_pixels(to_pixels(array))  # the 8-bit levels a file's pixels end in
        return images, [c + cheap_checks(h, w, None, image) for c, image in zip(checks, images)]

    def predict_proba(self, inputs, with_warnings=False):
        """P(PNEUMONIA), calibrated, for paths or images (see ``images``) -> (N,) float64; with
        ``with_warnings``, (that, [each image's warnings: a list of short reasons, empty when
        none]): the cheap checks, then the typicality score's (``predict_files`` says more)."""
        images, checks = self.checked_images(inputs)
        probability, typical = self.scores(images)
        if not with_warnings:
            return probability
        return probability, _merged(checks, self.typicality_warnings(typical))

    def predict(self, inputs, threshold=None, sensitivity=None):
        """The label (class name) of each of the paths or images -> list of str, at the model's
        stored threshold, or the operating point ``threshold`` or ``sensitivity`` gives
        (``operating_point``)."""
        return self.labels(self.predict_proba(inputs), self.operating_point(threshold, sensitivity)[0])

    def labels(self, probability, threshold=None):
        """P(PNEUMONIA) per image -> class names at ``threshold`` (default: the stored one)."""
        threshold = self.threshold if threshold is None else threshold
        return [self.class_names[int(c)] for c in called_positive(np.atleast_1d(probability), threshold)]

    def feature_maps(self, images):
        """The first member's -> (logits (N, 2), [ReLU(conv_i output) (N, F_i, H_i, W_i) for each
        conv layer])."""
        maps = []
        logits, _ = self.model.forward(self.prepare(images), feature_maps=maps)
        return logits, maps

    def saliency(self, inputs):
        """Grad-CAM maps for paths or images (see ``images``) -> (N, h, w) in [0, 1], each
        peaking at its image's P(pneumonia) (see ``grad_cam``)."""
        return self.grad_cam(self.images(inputs))

    def grad_cam(self, images, probability=None):
        """Grad-CAM of the PNEUMONIA-vs-NORMAL log-odds at the last conv layer.

        images: (N, S, S) in [0, 1]; probability: their P(pneumonia) (N,), computed when not
        given. -> (N, h, w) float64 maps in [0, 1], h, w the last conv layer's size. A member's
        map is the ReLU of its activations weighted by their mean gradient per channel; an
        ensemble's is the mean of its members' maps. Each map is scaled so that its peak is its
        image's P(pneumonia): the shape says where the evidence lies, the brightness how strong
        it is, so an X-ray the model finds healthy shows no bright spot (scaled to its own
        maximum, every map would have one). All zero where nothing speaks for pneumonia.
        """
        x = self.prepare(images)
        probability = self.probability(images) if probability is None else np.asarray(probability, np.float64)
        if probability.shape != (len(x),):
            raise ValueError(f"need one probability per image ({len(x)}), got shape {probability.shape}")
        cams = []
        for member in self.members:
            activation, gradient, _ = member.last_conv_gradient(x, _LOG_ODDS)
            weights = gradient.astype(np.float64).mean(axis=(2, 3), keepdims=True)  # (N, F, 1, 1)
            cams.append(np.maximum((weights * activation.astype(np.float64)).sum(axis=1), 0))
        cam = np.mean(cams, axis=0)  # (N, h, w)
        peak = cam.max(axis=(1, 2), keepdims=True)
        unit = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)  # each peak at 1
        return unit * np.clip(probability, 0, 1)[:, None, None]

    def predict_files(self, paths, progress=False, keep_images=True, chunk=256, threshold=None):
        """Predict each file -> (results, images), in the order of ``paths``.

        results[i] is {"path", "probability", "label", "warnings"}, or {"path", "error"} for a
        file that cannot be read; "warnings" is the list of reasons the file may not be a chest
        X-ray as the model knows one (the cheap checks of its decoded pixels, then the
        typicality score), empty when none: its label stands, the warning beside it. Labels are
        at ``threshold`` (default: the model's own). images holds the (S, S) arrays of the files
        that could be read, in order (an empty list unless ``keep_images``: then files are read
        and predicted ``chunk`` at a time, so any number of them fits in memory). ``progress``
        shows a progress bar (on stderr) while the files are read.
        """
        results, kept = [], []
        size = self.image_size
        with tqdm(total=len(paths), desc="reading", unit="file", disable=not progress,
                  file=sys.stderr) as bar:
            for start in range(0, len(paths), chunk):
                part, images, checks = [], [], []
                for path in paths[start:start + chunk]:
                    try:
                        levels, reasons = read_checked(path, size)
                        images.append(from_pixels(levels))
                        checks.append(reasons)
                        part.append({"path": str(path)})
                    except ImageError as err:
                        part.append({"path": str(path), "error": _reason(err, path)})
                    bar.update()
                probability, typical = self.scores(np.reshape(images, (-1, size, size)))
                good = (r for r in part if "error" not in r)
                found = _merged(checks, self.typicality_warnings(typical))
                for result, p, label, warned in zip(good, probability, self.labels(probability, threshold), found):
                    result["probability"] = float(p)
                    result["label"] = label
                    result["warnings"] = warned
                results += part
                if keep_images:
                    kept += images
        return results, kept


def _merged(checks, typical):
    """Each image's cheap-check reasons, then its typicality warning (``typical`` None: none)."""
    return [c + t for c, t in zip(checks, typical)] if typical is not None else [list(c) for c in checks]


def _unit_grey(array):
    """An array of pixels -> float32 grey values in [0, 1]: integers divided by their type's
    maximum, floats checked to lie in [0, 1]; a trailing axis of 3 or 4 (BGR, BGRA) made grey."""
    if np.issubdtype(array.dtype, np.integer):  # 0..255 or 0..65535, as a file's pixels are
        array = from_pixels(array)
    array = np.asarray(array, dtype=np.float32)
    if array.size and not (np.isfinite(array).all() and 0 <= array.min() and array.max() <= 1):
        raise ValueError("float images must hold grey values in [0, 1] (integer images are "
                         "divided by their type's maximum)")
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = cv2.cvtColor(array, cv2.COLOR_BGR2GRAY if array.shape[-1] == 3 else cv2.COLOR_BGRA2GRAY)
    return array


def shown_path(path):
    """``path`` as a user would write it: relative to the working folder when it lies under it
    (the shipped model, found by the project itself), else as it is."""
    path = Path(path)
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return str(path)


def _reason(err, path):
    """An ImageError's message without the path it starts with."""
    text = str(err)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def find_model(spec=None, runs_dir=RUNS_DIR, shipped=None):
    """The model file meant by ``spec``: None, the shipped model (``shipped``, by default
    SHIPPED_MODEL); "latest", the model of the newest run under ``runs_dir`` (by modification
    time); a run directory, its model; anything else, the file it names. A training run never
    replaces the shipped model unless asked for. Raises ModelFileError when there is none."""
    if spec is None:
        shipped = SHIPPED_MODEL if shipped is None else Path(shipped)
        if not shipped.is_file():
            raise ModelFileError(f"the shipped model {shipped} is missing; name a run directory or a "
                                 f"model file (--model), or {LATEST!r} for the newest run under {runs_dir}/")
        return shipped
    if str(spec) == LATEST:
        runs_dir = Path(runs_dir)
        candidates = sorted(runs_dir.glob(f"*/{RunDir.MODEL}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ModelFileError(f"{LATEST!r}: {runs_dir.resolve()} holds no finished run (no "
                                 f"*/{RunDir.MODEL}); train one (python -m fast.train) or name a model")
        return candidates[-1]
    path = Path(spec)
    return RunDir(path).model if path.is_dir() else path


def load_classifier(path=None):
    """A model -> Classifier: ``path`` a model file or a run directory; None: the shipped model;
    "latest": the newest run under runs/ (``find_model``). Refuses (ModelFileError) a file
    whose record is not a trained classifier's (``ModelRecord``)."""
    path = find_model(path)
    members, record = read_classifier(path)
    if record.typicality is None:
        warnings.warn(f"{path} keeps no typicality model (it was made before models kept one): "
                      "only the cheap checks (colour, blank, size, aspect) can flag an input that "
                      "is not a chest X-ray", OldModelWarning, stacklevel=2)
    return Classifier(members, record, Path(path))


class OldModelWarning(UserWarning):
    """A model file made before a safeguard existed: it still answers, without that safeguard."""
