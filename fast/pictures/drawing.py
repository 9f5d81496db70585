"""The pictures of a training run or of a model file alone, drawn together.

``make_report`` reads a run directory (config.json, history.csv, metrics.json, model.npz,
test_predictions.npz) and draws every picture of ``PICTURES`` next to them (or into
``out_dir``). ``report_model`` draws those of a model file alone (the shipped one, say) from its
answers on the test split, which the caller scores (``fast.cli.score_split``): every picture but
the training curves and the stress battery, which are a run's own. The pictures that show X-rays
need the data folder; without it they are skipped with a note. The drawing itself is
``fast.pictures.plots``'s.
"""
import csv
from pathlib import Path

import numpy as np

from fast.data.errors import DataError, ImageError
from fast.data.folders import resolve_data_root
from fast.data.images import read_xray
from fast.inference import load_classifier
from fast.pictures.plots import (SALIENCY_PER_KIND, display_image, plot_confusion, plot_feature_maps,
                                 plot_filters, plot_reliability, plot_roc, plot_saliency, plot_stress,
                                 plot_training_curves)
from fast.runs import RunDir
from fast.scoring.metrics import called_positive

# {key: (file name, what it shows)}: every picture of a run, in the order they are listed
_LISTED = {
    "curves": ("training_curves.png", "loss and held-out AUC per epoch"),
    "filters": ("conv1_filters.png", "the first layer's filters"),
    "features": ("feature_maps.png", "each conv layer's most active channels, a colour bar"),
    "roc": ("roc_test.png", "the test ROC curve, the operating point (and the model's own)"),
    "confusion": ("confusion_matrix_test.png", "counts at the operating point"),
    "reliability": ("reliability.png", "probabilities against outcome, counts per bin, bias named"),
    "saliency": ("saliency_test.png", "Grad-CAM: what moved the network, not where disease is"),
    "framing": ("framing.png", "the stress battery's framing views of the held-out X-rays"),
    "stress": ("stress.png", "the whole stress battery (framing and acquisition views)"),
}
PICTURES = {key: name for key, (name, _) in _LISTED.items()}  # {key: file name}
RUN_ONLY = ("curves", "framing", "stress")  # a run's own: a model file alone has no history or battery


def picture_list(indent="  "):
    """Every picture, a line each: its file name and what it shows (``report --help``'s list)."""
    width = max(len(name) for name, _ in _LISTED.values()) + 3
    return "\n".join(f"{indent}{name:<{width}}{what}" for name, what in _LISTED.values())


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


def report_model(classifier, test, out_dir, log=print, threshold=None):
    """The pictures of a model file alone (no run directory: the shipped model, say) into
    ``out_dir`` (made if missing), from its answers on the test split ``test`` (``y``,
    ``probability``, ``paths``, ``root``: ``fast.cli.score_split``) -> the PNG paths written:
    every picture but a run's own (``RUN_ONLY``). The reliability diagram has the held-out
    predictions too where the model file keeps them. ``threshold``: another operating point
    than the model's own, marked beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    own = classifier.threshold
    threshold = own if threshold is None else threshold
    curves = {"test": (test.y, test.probability)}
    record = classifier.record
    if record.held_out_probability is not None:
        curves = {record.held_out: (record.held_out_label.astype(np.int64), record.held_out_probability), **curves}
    written = _draw_model_pictures(classifier, curves, (test.y, test.probability, test.paths), (threshold, own),
                                   test.root, out_dir, log)
    for path in written:
        log(f"wrote {path}")
    return written


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

