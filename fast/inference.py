"""Using a trained classifier: find and load it, prepare images, probabilities, Grad-CAM.

``predict``, ``evaluate`` and ``report`` all go through this module, so an image is prepared
one way everywhere: ``read_xray`` (decoding, grey, resize) then ``normalise`` as the model file
says (by default with the training pixels' mean and std stored in it). Probabilities come from
the model's own forward pass, so predicting a run's test images gives back its ``test_predictions.npz``.
"""
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fast.calibration import apply_platt, temperature_map
from fast.data import (CLASS_NAMES, NORMALISATIONS, ImageError, from_pixels, normalise, read_xray,
                       resize_xray, to_pixels)
from fast.model import ModelFileError, ensemble_proba, load_models

RUNS_DIR = Path("runs")
MODEL_FILE = "model.npz"
# The model shipped with the project (see models/MODEL_CARD.md): used when no run exists.
SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "models" / "pneumonia_cnn.npz"
_REQUIRED_METADATA = ("mean", "std", "threshold")
_LOG_ODDS = (-1.0, 1.0)  # logit_PNEUMONIA - logit_NORMAL, the score P(PNEUMONIA) is the sigmoid of


class Classifier:
    """A trained network, or an ensemble of networks used as their mean probability, with its
    preprocessing record, calibration (sigmoid(scale * log-odds + bias)) and decision threshold.

    ``images`` below are (N, S, S) float arrays in [0, 1], S = ``image_size``, as
    ``read_xray`` returns them; P(PNEUMONIA) >= ``threshold`` means PNEUMONIA. ``model`` is
    the first member (for pictures of one network's filters and feature maps).
    """

    def __init__(self, members, metadata, path=None):
        members = list(members) if isinstance(members, (list, tuple)) else [members]
        self.members, self.model, self.metadata, self.path = members, members[0], metadata, path
        self.mean, self.std = float(metadata["mean"]), float(metadata["std"])
        # files from before the choice was offered were standardised with the data set's
        self.normalisation = metadata.get("normalise", "dataset")
        if self.normalisation not in NORMALISATIONS:
            raise ModelFileError(f"{path}: unknown normalisation {self.normalisation!r} "
                                 "(written by a newer version?)")
        # each image is also seen zoomed by these factors, and the probabilities averaged
        self.zooms = tuple(float(z) for z in metadata.get("test_time_zooms", [1.0]))
        if not self.zooms or not all(0 < z < 10 for z in self.zooms):
            raise ModelFileError(f"{path}: unusable test-time zooms {list(self.zooms)}")
        self.threshold = float(metadata["threshold"])
        # sigmoid(scale * log-odds + bias): fitted on held-out predictions; a model file
        # from before calibration, or with a plain temperature T, maps to it too.
        stored = metadata.get("calibration")
        self.calibration = ((float(stored["scale"]), float(stored["bias"])) if stored
                            else temperature_map(metadata.get("temperature", 1.0)))
        self.class_names = tuple(metadata.get("class_names", CLASS_NAMES))

    @property
    def image_size(self):
        return self.model.arch.input_shape[1]

    @property
    def shipped(self):
        """Whether this is the model shipped with the project (models/, see its card)."""
        return self.path is not None and Path(self.path).resolve() == Path(SHIPPED_MODEL).resolve()

    def describe(self):
        """Which model answers, in one line: its file, input size, threshold, members, views."""
        where = "a model in memory" if self.path is None else str(self.path)
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
        return normalise(images, self.normalisation, self.mean, self.std)[:, None]

    def probability(self, images, chunk=256):
        """(N, S, S) images in [0, 1] (an array, or ``data.Pixels``) -> (N,) float64
        P(PNEUMONIA): the mean over the members and the stored test-time views (``zooms``),
        calibrated. Read and prepared ``chunk`` at a time."""
        raw = [ensemble_proba(self.members, self.prepare(images[i:i + chunk]), zooms=self.zooms)
               for i in range(0, len(images), chunk)]
        return apply_platt(np.concatenate(raw), *self.calibration) if raw else np.zeros(0)

    def images(self, inputs):
        """Paths or images -> (N, S, S) float32 in [0, 1], as the model sees them.

        ``inputs``: a path (str or Path), a list of paths, an (H, W) grey image, or (N, H, W)
        images: floats in [0, 1], or integers divided by their type's maximum (255, 65535) as
        a file's pixels are; resized to S x S and rounded to 8-bit levels as files are.
        Raises ImageError naming a file that cannot be read.
        """
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        if isinstance(inputs, (list, tuple)) and all(isinstance(i, (str, Path)) for i in inputs):
            return np.reshape([self.read(p) for p in inputs], (-1, self.image_size, self.image_size))
        array = np.asarray(inputs)
        if np.issubdtype(array.dtype, np.integer):  # 0..255 or 0..65535, as a file's pixels are
            array = array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)
        array = np.asarray(array, dtype=np.float32)
        if array.size and not (np.isfinite(array).all() and 0 <= array.min() and array.max() <= 1):
            raise ValueError("float images must hold grey values in [0, 1] (integer images are "
                             "divided by their type's maximum)")
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(f"images must be (H, W) or (N, H, W) grey arrays in [0, 1], got shape {array.shape}")
        if array.shape[1:] != (self.image_size, self.image_size):
            array = np.reshape([resize_xray(a, self.image_size) for a in array],
                               (-1, self.image_size, self.image_size))
        return from_pixels(to_pixels(array))  # the 8-bit levels a file's pixels end in

    def predict_proba(self, inputs):
        """P(PNEUMONIA), calibrated, for paths or images (see ``images``) -> (N,) float64."""
        return self.probability(self.images(inputs))

    def predict(self, inputs):
        """The label (class name) at the stored threshold for paths or images -> list of str."""
        return self.labels(self.predict_proba(inputs))

    def labels(self, probability):
        """P(PNEUMONIA) per image -> class names at the stored threshold."""
        return [self.class_names[int(p >= self.threshold)] for p in np.atleast_1d(probability)]

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

    def predict_files(self, paths, progress=False, keep_images=True, chunk=256):
        """Predict each file -> (results, images), in the order of ``paths``.

        results[i] is {"path", "probability", "label"}, or {"path", "error"} for a file that
        cannot be read; images holds the (S, S) arrays of the files that could, in order (an
        empty list unless ``keep_images``: then files are read and predicted ``chunk`` at a
        time, so any number of them fits in memory). ``progress`` shows a progress bar (on
        stderr) while the files are read.
        """
        results, kept = [], []
        size = self.image_size
        with tqdm(total=len(paths), desc="reading", unit="file", disable=not progress,
                  file=sys.stderr) as bar:
            for start in range(0, len(paths), chunk):
                part, images = [], []
                for path in paths[start:start + chunk]:
                    try:
                        images.append(self.read(path))
                        part.append({"path": str(path)})
                    except ImageError as err:
                        part.append({"path": str(path), "error": _reason(err, path)})
                    bar.update()
                probability = self.probability(np.reshape(images, (-1, size, size)))
                good = (r for r in part if "error" not in r)
                for result, p, label in zip(good, probability, self.labels(probability)):
                    result["probability"] = float(p)
                    result["label"] = label
                results += part
                if keep_images:
                    kept += images
        return results, kept


def _reason(err, path):
    """An ImageError's message without the path it starts with."""
    text = str(err)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


LATEST = "latest"  # the name that asks for the newest run under runs/


def find_model(spec=None, runs_dir=RUNS_DIR, shipped=None):
    """The model file meant by ``spec``: None, the shipped model (``shipped``, by default
    SHIPPED_MODEL); "latest", the newest ``runs_dir/*/model.npz`` (by modification time); a run
    directory, its model.npz; anything else, the file it names. A training run never replaces
    the shipped model unless asked for. Raises ModelFileError when there is none."""
    if spec is None:
        shipped = SHIPPED_MODEL if shipped is None else Path(shipped)
        if not shipped.is_file():
            raise ModelFileError(f"the shipped model {shipped} is missing; name a run directory or a "
                                 f"model file (--model), or {LATEST!r} for the newest run under {runs_dir}/")
        return shipped
    if str(spec) == LATEST:
        runs_dir = Path(runs_dir)
        candidates = sorted(runs_dir.glob(f"*/{MODEL_FILE}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ModelFileError(f"{LATEST!r}: {runs_dir.resolve()} holds no finished run (no "
                                 f"*/{MODEL_FILE}); train one (python -m fast.train) or name a model")
        return candidates[-1]
    path = Path(spec)
    return path / MODEL_FILE if path.is_dir() else path


def load_classifier(path=None):
    """A model -> Classifier: ``path`` a model file or a run directory; None: the shipped model;
    "latest": the newest run under runs/ (``find_model``). Refuses (ModelFileError) a file
    without the preprocessing record, or one that is not a one-channel, two-class classifier
    of square images."""
    path = find_model(path)
    members, metadata = load_models(path)
    model = members[0]
    missing = [k for k in _REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ModelFileError(f"{path}: not a trained X-ray model (its metadata lacks "
                             f"{', '.join(missing)})")
    channels, height, width = model.arch.input_shape
    if channels != 1 or model.arch.num_classes != 2 or height != width:
        raise ModelFileError(f"{path}: another architecture (input {model.arch.input_shape}, "
                             f"{model.arch.num_classes} classes); expected a 1-channel square "
                             "input and 2 classes")
    if not metadata["std"] > 0:
        raise ModelFileError(f"{path}: corrupt metadata (std {metadata['std']})")
    return Classifier(members, metadata, Path(path))
