"""Clinical metrics for a binary classifier, in plain NumPy. Positive class: PNEUMONIA = 1.

y_true: (N,) of 0/1; scores: (N,) finite reals, higher meaning more likely PNEUMONIA; a sample
is predicted positive when ``score >= threshold`` (``called_positive``).
"""
import math
import numbers
from fractions import Fraction
from typing import NamedTuple

import numpy as np


def _check_labels(name, y):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1, got values {np.unique(y)[:10]}")
    return y.astype(np.int64)


def _check_scores(y_true, scores):
    y = _check_labels("y_true", y_true)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"y_true has shape {y.shape} but scores have shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError(f"need both classes in y_true, got {n_pos} positives out of {len(y)}")
    return y, s


def called_positive(scores, threshold):
    """Which scores are called positive (PNEUMONIA) -> bool array: those at or above
    ``threshold``, a score exactly at it included. The one decision rule: metrics, labels,
    pictures and the framing study all call it."""
    return np.asarray(scores) >= threshold


def confusion_matrix(y_true, y_pred):
    """(2, 2) int64 counts [[TN, FP], [FN, TP]]: rows are the truth, columns the prediction."""
    t = _check_labels("y_true", y_true)
    p = _check_labels("y_pred", y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    return np.bincount(2 * t + p, minlength=4).astype(np.int64).reshape(2, 2)


def _roc_counts(y, s):
    """Cumulative (false positives, true positives, thresholds), one entry per distinct
    score from the highest down, preceded by the empty prediction at threshold +inf."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Last index of each run of equal scores: a tie enters the curve all at once.
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tps = np.cumsum(y_sorted)[last]
    fps = last + 1 - tps
    zero = np.zeros(1, dtype=np.int64)
    return (np.r_[zero, fps], np.r_[zero, tps], np.r_[np.inf, s_sorted[last]])


def roc_curve(y_true, scores):
    """(fpr, tpr, thresholds), thresholds decreasing from +inf.

    Point k is the rate pair when predicting positive for ``score >= thresholds[k]``; the curve
    runs from (0, 0) to (1, 1), and tied scores make one diagonal step.
    """
    y, s = _check_scores(y_true, scores)
    fps, tps, thresholds = _roc_counts(y, s)
    return fps / fps[-1], tps / tps[-1], thresholds


def roc_auc(y_true, scores):
    """Area under the ROC curve = P(score_pos > score_neg) + 0.5 P(tie) (Mann-Whitney U).

    Computed from mid-ranks (tied scores share the mean of their ranks); raises ValueError
    when only one class is present.
    """
    y, s = _check_scores(y_true, scores)
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], len(s)]
    ranks = np.empty(len(s), dtype=np.float64)
    # 1-based ranks starts+1 .. ends share their mean.
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def youden_threshold(y_true, scores):
    """Finite threshold maximising Youden's J = sensitivity + specificity - 1.

    Candidates are the distinct scores (predict positive when ``score >= threshold``). Ties in
    J go to the highest threshold, the operating point with the fewest false alarms. J is
    compared in exact integer arithmetic, so equal J values from different fractions tie.
    """
    y, s = _check_scores(y_true, scores)
    fps, tps, thresholds = _roc_counts(y, s)
    n_neg, n_pos = fps[-1], tps[-1]
    # J * n_pos * n_neg = tp * n_neg - fp * n_pos; index 0 (threshold +inf) is skipped.
    j = tps[1:] * n_neg - fps[1:] * n_pos
    return float(thresholds[1:][np.argmax(j)])  # argmax takes the first = highest threshold


def prevalence_threshold(y_true):
    """The share of positives in ``y_true``: the threshold at which calibrated probabilities
    maximise Youden's J in expectation.

    Why: sensitivity + specificity - 1 = sum over images of [predicted positive] x
    (p(x | positive) - p(x | negative)), largest when exactly the images with likelihood ratio
    p(x | pos) / p(x | neg) >= 1 are called positive. For a calibrated probability P, that
    ratio is (P / (1 - P)) / (pi / (1 - pi)), with pi the share of positives, so the rule is
    P >= pi. Unlike ``youden_threshold``, it does not depend on which of many nearly equal
    empirical maxima a handful of images tips.
    """
    y = np.asarray(y_true)
    _check_labels("y_true", y)
    if not (y.size and 0 < y.mean() < 1):
        raise ValueError("the prevalence threshold needs both classes")
    return float(y.mean())


def binary_metrics(y_true, scores, threshold):
    """Metrics at ``threshold`` as a JSON-ready dict of Python floats and ints.

    Keys: n, accuracy, sensitivity (recall of PNEUMONIA), specificity, precision, f1, roc_auc,
    confusion_matrix [[TN, FP], [FN, TP]]. Precision and F1 are 0.0 when undefined (nothing
    predicted positive). Needs both classes (for sensitivity, specificity and AUC).
    """
    y, s = _check_scores(y_true, scores)
    cm = confusion_matrix(y, called_positive(s, threshold).astype(np.int64))
    (tn, fp), (fn, tp) = cm.tolist()
    return {
        "n": int(len(y)),
        "accuracy": (tp + tn) / len(y),
        "sensitivity": tp / (tp + fn),
        "specificity": tn / (tn + fp),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        # The harmonic mean of precision and recall, written so it is 0.0 (not 0/0) when
        # TP = 0; the denominator is positive because positives exist.
        "f1": 2 * tp / (2 * tp + fp + fn),
        "roc_auc": roc_auc(y, s),
        "confusion_matrix": cm.tolist(),
    }


def scored(y_true, prob, threshold):
    """``binary_metrics`` at ``threshold`` plus the calibration figures of the probabilities:
    the Brier score, the log loss and the ECE (15 bins)."""
    return {**binary_metrics(y_true, prob, threshold), "brier": brier_score(y_true, prob),
            "log_loss": log_loss(y_true, prob), "ece": expected_calibration_error(y_true, prob)}


_TABLE_ROWS = (("accuracy", "accuracy"), ("sensitivity", "sensitivity"),
               ("specificity", "specificity"), ("precision", "precision"), ("F1", "f1"),
               ("ROC AUC", "roc_auc"), ("Brier", "brier"), ("log loss", "log_loss"),
               ("ECE", "ece"))
_COUNT_ROWS = (("TN", 0, 0), ("FP", 0, 1), ("FN", 1, 0), ("TP", 1, 1))


def format_metrics_table(metrics_by_split):
    """Aligned text table of ``binary_metrics`` dicts, one column per split (e.g. val, test)."""
    if not metrics_by_split:
        raise ValueError("no splits to format")
    splits = list(metrics_by_split)
    width = max(8, *(len(name) for name in splits))
    label_width = max(len(label) for label, _ in _TABLE_ROWS)

    def line(label, cells):
        return f"{label:<{label_width}}" + "".join(f"  {c:>{width}}" for c in cells)

    lines = [line("", splits)]
    for label, key in _TABLE_ROWS:
        if all(key in metrics_by_split[n] for n in splits):  # calibration rows when known
            lines.append(line(label, [f"{metrics_by_split[n][key]:.4f}" for n in splits]))
    for label, i, j in _COUNT_ROWS:
        lines.append(line(label, [str(metrics_by_split[n]["confusion_matrix"][i][j])
                                  for n in splits]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- operating points

def _exact_fraction(target):
    """``target`` as an exact rational. Integers and Fractions are taken as they are; a float
    is read as the shortest decimal that prints it, so 0.9 means 9/10 and not the binary
    double 0.90000000000000002 just above it, which 9 positives out of 10 would miss."""
    if isinstance(target, numbers.Rational) and not isinstance(target, bool):
        return Fraction(target)
    value = float(target)
    if not math.isfinite(value):
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    return Fraction(repr(value))


def sensitivity_threshold(y_true, scores, target):
    """Highest threshold (a distinct score) whose sensitivity is at least ``target``.

    Predict positive when ``score >= threshold``; 0 < target <= 1, else ValueError. Target 1
    gives the lowest positive score. The comparison is exact: a float target is read as its
    decimal (0.9 is 9/10), so exactly 9 of 10 positives meets 0.9. Needs both classes.
    """
    t = _exact_fraction(target)
    if not 0 < t <= 1:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    y, s = _check_scores(y_true, scores)
    _, tps, thresholds = _roc_counts(y, s)
    n_pos = int(tps[-1])
    # tp / n_pos >= p / q  <=>  tp * q >= p * n_pos  <=>  tp >= ceil(p * n_pos / q) as tp is an
    # integer; Python integers make the ceiling exact whatever the size of q. need is in
    # [1, n_pos] because 0 < t <= 1.
    need = -(-t.numerator * n_pos // t.denominator)
    # tps rises as the threshold falls: the first index reaching ``need`` is the highest one.
    return float(thresholds[np.searchsorted(tps, need, side="left")])


THRESHOLD_RULES = ("youden", "prevalence")


def choose_threshold(y_true, prob, rule, target_sensitivity=None, held_out="validation"):
    """The decision threshold chosen on held-out probabilities -> (threshold, the rule in words).

    ``target_sensitivity``: the highest threshold whose sensitivity is at least that
    (``sensitivity_threshold``); otherwise ``rule``: "prevalence" (``prevalence_threshold``) or
    "youden" (``youden_threshold``). ``held_out`` names the predictions in the words.
    """
    if target_sensitivity is not None:
        words = (f"the highest threshold with sensitivity >= {target_sensitivity} on "
                 f"{held_out} predictions")
        return sensitivity_threshold(y_true, prob, target_sensitivity), words
    if rule == "prevalence":
        return prevalence_threshold(y_true), f"the share of PNEUMONIA among the {held_out} images"
    if rule == "youden":
        return youden_threshold(y_true, prob), f"Youden's J on {held_out} predictions"
    raise ValueError(f"unknown threshold rule {rule!r}; choose from {', '.join(THRESHOLD_RULES)}")


# --------------------------------------------------------------------------- calibration

class ReliabilityCurve(NamedTuple):
    """Per-bin summary of predicted P(positive) against outcome, for a reliability diagram.

    edges: (B + 1,) bin edges i / B; count: (B,) int64; mean_prob, frac_pos: (B,) float64,
    NaN for an empty bin (so the arrays stay aligned with the bins).
    """
    edges: np.ndarray
    count: np.ndarray
    mean_prob: np.ndarray
    frac_pos: np.ndarray


def check_probabilities(prob):
    """``prob`` as float64 (any shape); ValueError unless every value lies in [0, 1]."""
    p = np.asarray(prob, dtype=np.float64)
    if not np.all((p >= 0.0) & (p <= 1.0)):  # False for NaN as well
        bad = p[~((p >= 0.0) & (p <= 1.0))]
        raise ValueError(f"probabilities must lie in [0, 1], got values such as {bad[:5]}")
    return p


def check_labelled_probabilities(y_true, prob):
    """(y: (N,) int64 of 0/1, p: (N,) float64 in [0, 1]) with N >= 1, else ValueError.
    One class alone is allowed."""
    y = _check_labels("y_true", y_true)
    p = check_probabilities(prob)
    if p.shape != y.shape:
        raise ValueError(f"y_true has shape {y.shape} but prob has shape {p.shape}")
    if len(y) == 0:
        raise ValueError("no samples")
    return y, p


def reliability_curve(y_true, prob, bins=15):
    """Count, mean probability and fraction positive in each of ``bins`` equal-width bins.

    Bin i holds edges[i] <= p < edges[i + 1] with edges = arange(bins + 1) / bins in float64,
    so a p exactly on an edge goes to the bin above; the last bin is closed, holding p = 1.0.
    Empty bins get NaN means. Returns a ReliabilityCurve.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    y, p = check_labelled_probabilities(y_true, prob)
    edges = np.arange(bins + 1, dtype=np.float64) / bins
    # side="right": p == edges[i] counts as inside bin i. Only p == 1.0 would land past the
    # last bin; it joins it.
    which = np.minimum(np.searchsorted(edges, p, side="right") - 1, bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.int64)
    sum_prob = np.bincount(which, weights=p, minlength=bins)
    sum_pos = np.bincount(which, weights=y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 -> NaN for empty bins
        return ReliabilityCurve(edges, count, sum_prob / count, sum_pos / count)


def expected_calibration_error(y_true, prob, bins=15):
    """ECE = sum over non-empty bins of (n_bin / N) |mean prob - fraction positive|.

    prob: (N,) predicted P(positive) in [0, 1]; bins as in ``reliability_curve``.
    """
    curve = reliability_curve(y_true, prob, bins)
    full = curve.count > 0
    gaps = np.abs(curve.mean_prob[full] - curve.frac_pos[full])
    return float(np.sum(curve.count[full] * gaps) / np.sum(curve.count))


def brier_score(y_true, prob):
    """Mean squared error (p - y)^2 of the predicted P(positive); 0 is perfect."""
    y, p = check_labelled_probabilities(y_true, prob)
    return float(np.mean((p - y) ** 2))


LOG_LOSS_FLOOR = 1e-15  # probabilities are kept this far from 0 and 1, so one certain miss is finite


def log_loss(y_true, prob):
    """Mean negative log-likelihood -[y log p + (1 - y) log(1 - p)] of the predicted P(positive),
    in nats; p is clipped to [LOG_LOSS_FLOOR, 1 - LOG_LOSS_FLOOR]. 0 is perfect, log 2 a coin."""
    y, p = check_labelled_probabilities(y_true, prob)
    p = np.clip(p, LOG_LOSS_FLOOR, 1 - LOG_LOSS_FLOOR)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))
