"""Clinical metrics for a binary classifier, in plain NumPy. Positive class: PNEUMONIA = 1.

y_true: (N,) of 0/1; scores: (N,) finite reals, higher meaning more likely PNEUMONIA; a sample
is predicted positive when ``score >= threshold``.
"""
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


def binary_metrics(y_true, scores, threshold):
    """Metrics at ``threshold`` as a JSON-ready dict of Python floats and ints.

    Keys: n, accuracy, sensitivity (recall of PNEUMONIA), specificity, precision, f1, roc_auc,
    confusion_matrix [[TN, FP], [FN, TP]]. Precision and F1 are 0.0 when undefined (nothing
    predicted positive). Needs both classes (for sensitivity, specificity and AUC).
    """
    y, s = _check_scores(y_true, scores)
    cm = confusion_matrix(y, (s >= threshold).astype(np.int64))
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


_TABLE_ROWS = (("accuracy", "accuracy"), ("sensitivity", "sensitivity"),
               ("specificity", "specificity"), ("precision", "precision"), ("F1", "f1"),
               ("ROC AUC", "roc_auc"))
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
        lines.append(line(label, [f"{metrics_by_split[n][key]:.4f}" for n in splits]))
    for label, i, j in _COUNT_ROWS:
        lines.append(line(label, [str(metrics_by_split[n]["confusion_matrix"][i][j])
                                  for n in splits]))
    return "\n".join(lines)
