"""Clinical metrics against hand-worked cases and brute-force oracles."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from fast.scoring.metrics import binary_metrics, confusion_matrix, format_metrics_table, prevalence_threshold, roc_auc, roc_curve, youden_threshold

# The 6-sample example, worked by hand:
#   score  0.1  0.3  0.4  0.6  0.7  0.9
#   truth   0    0    1    0    1    1
# At threshold 0.5 the predictions are 0 0 0 1 1 1, so
#   TN = 2 (0.1, 0.3), FP = 1 (0.6), FN = 1 (0.4), TP = 2 (0.7, 0.9)
#   accuracy = 4/6, sensitivity = 2/3, specificity = 2/3, precision = 2/3, F1 = 2/3.
# AUC over the 3 x 3 (positive, negative) pairs: 0.4 beats 0.1 and 0.3 (2), 0.7 beats all
# three (3), 0.9 beats all three (3): 8/9.
# ROC points from threshold +inf down (fpr, tpr):
#   inf (0, 0); 0.9 (0, 1/3); 0.7 (0, 2/3); 0.6 (1/3, 2/3); 0.4 (1/3, 1); 0.3 (2/3, 1); 0.1 (1, 1)
# Trapezoids: 1/3 * 2/3 + 1/3 * 1 + 1/3 * 1 = 8/9, the same area.
# Youden J = tpr - fpr: 1/3, 2/3, 1/3, 2/3, 1/3, 0 -> 0.7 and 0.4 tie at 2/3; the rule picks the
# highest threshold, 0.7. (In floats 2/3 - 0 and 1 - 1/3 differ by one ulp: a real trap.)
Y6 = np.array([0, 0, 1, 0, 1, 1])
S6 = np.array([0.1, 0.3, 0.4, 0.6, 0.7, 0.9])


def trapezoid_area(x, y):
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def brute_force_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * ties) / (len(pos) * len(neg))


@st.composite
def labelled_scores(draw, distinct_values=None):
    """Labels with both classes present, and scores; few distinct values force ties."""
    n_pos = draw(st.integers(1, 30))
    n_neg = draw(st.integers(1, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.permutation(np.r_[np.ones(n_pos, dtype=np.int64), np.zeros(n_neg, dtype=np.int64)])
    if distinct_values is None:
        s = rng.normal(size=len(y)) + y
    else:
        s = rng.integers(0, distinct_values, size=len(y)) / distinct_values
    return y, s


def test_confusion_matrix_layout_is_tn_fp_fn_tp():
    # 3 TN, 1 FP, 2 FN, 4 TP: every cell distinct so a transposed layout fails.
    y_true = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    y_pred = [0, 0, 0, 1, 0, 0, 1, 1, 1, 1]
    cm = confusion_matrix(y_true, y_pred)
    assert cm.dtype == np.int64
    assert_array_equal(cm, [[3, 1], [2, 4]])


def test_confusion_matrix_rejects_labels_other_than_0_and_1():
    with pytest.raises(ValueError, match="0 and 1"):
        confusion_matrix([0, 2], [0, 1])


def test_six_sample_example_matches_the_hand_computation():
    m = binary_metrics(Y6, S6, 0.5)
    assert m["confusion_matrix"] == [[2, 1], [1, 2]]
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    for key in ("sensitivity", "specificity", "precision", "f1"):
        assert m[key] == pytest.approx(2 / 3), key
    assert m["roc_auc"] == pytest.approx(8 / 9)
    fpr, tpr, thresholds = roc_curve(Y6, S6)
    assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1], rtol=0, atol=1e-12)
    assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1], rtol=0, atol=1e-12)
    assert_array_equal(thresholds, [np.inf, 0.9, 0.7, 0.6, 0.4, 0.3, 0.1])
    assert trapezoid_area(fpr, tpr) == pytest.approx(8 / 9)
    assert youden_threshold(Y6, S6) == 0.7


def test_binary_metrics_are_python_numbers_and_json_serialisable():
    m = binary_metrics(Y6, S6, 0.5)
    assert set(m) == {"n", "accuracy", "sensitivity", "specificity", "precision", "f1",
                      "roc_auc", "confusion_matrix"}
    assert all(type(m[k]) is float for k in m if k not in ("n", "confusion_matrix"))
    assert type(m["n"]) is int
    assert all(type(c) is int for row in m["confusion_matrix"] for c in row)
    assert json.loads(json.dumps(m)) == m


def test_precision_and_f1_are_zero_when_nothing_is_predicted_positive():
    m = binary_metrics(Y6, S6, 2.0)
    assert m["confusion_matrix"] == [[3, 0], [3, 0]]
    assert m["precision"] == 0.0 and m["f1"] == 0.0
    assert m["sensitivity"] == 0.0 and m["specificity"] == 1.0


def test_auc_of_all_equal_scores_is_one_half_and_the_curve_is_the_diagonal():
    y = [0, 1, 1, 0, 1]
    assert roc_auc(y, [0.3] * 5) == 0.5
    fpr, tpr, thresholds = roc_curve(y, [0.3] * 5)
    assert_array_equal(fpr, [0, 1])
    assert_array_equal(tpr, [0, 1])
    assert_array_equal(thresholds, [np.inf, 0.3])


def test_auc_counts_a_tie_as_half_a_pair():
    # Scores 0.2 (neg), 0.5 (pos), 0.5 (neg), 0.8 (pos). Pairs (pos, neg):
    # (0.5, 0.2) 1, (0.5, 0.5) 1/2, (0.8, 0.2) 1, (0.8, 0.5) 1 -> 3.5 / 4 = 0.875.
    # Mid-ranks 1, 2.5, 2.5, 4; positives sum 6.5; U = 6.5 - 2 * 3 / 2 = 3.5.
    # ROC: inf (0, 0); 0.8 (0, 1/2); 0.5 (1/2, 1) in one diagonal step; 0.2 (1, 1).
    y, s = [0, 1, 0, 1], [0.2, 0.5, 0.5, 0.8]
    assert roc_auc(y, s) == 0.875
    fpr, tpr, _ = roc_curve(y, s)
    assert_array_equal(fpr, [0, 0, 0.5, 1])
    assert_array_equal(tpr, [0, 0.5, 1, 1])


def test_auc_is_one_for_a_perfect_ranking_and_zero_for_a_reversed_one():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0


@pytest.mark.parametrize("y", [[1, 1, 1], [0, 0]])
def test_auc_with_a_single_class_raises(y):
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(y, np.linspace(0, 1, len(y)))


def test_scores_must_be_finite():
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0, 1], [0.5, np.nan])


@settings(max_examples=200, deadline=None)
@given(labelled_scores())
def test_auc_equals_trapezoid_area_under_roc_curve(case):
    y, s = case
    fpr, tpr, thresholds = roc_curve(y, s)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(thresholds) < 0)
    assert roc_auc(y, s) == pytest.approx(trapezoid_area(fpr, tpr), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(labelled_scores(distinct_values=4))
def test_auc_equals_brute_force_pair_count_with_ties(case):
    y, s = case
    assert roc_auc(y, s) == pytest.approx(brute_force_auc(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s)
    assert trapezoid_area(fpr, tpr) == pytest.approx(brute_force_auc(y, s), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(labelled_scores(distinct_values=6))
def test_youden_threshold_maximises_j_over_every_score(case):
    y, s = case
    threshold = youden_threshold(y, s)
    assert np.isfinite(threshold) and threshold in s

    def j(t):
        pred = s >= t
        return pred[y == 1].mean() - pred[y == 0].mean()
    best = max(j(t) for t in s)
    assert j(threshold) == pytest.approx(best, abs=1e-12)
    # Highest threshold among the ties.
    assert all(t <= threshold for t in s if j(t) >= best - 1e-12)


def test_format_metrics_table_aligns_one_column_per_split():
    metrics = {"val": binary_metrics(Y6, S6, 0.5), "test": binary_metrics(Y6, S6, 0.65)}
    table = format_metrics_table(metrics)
    lines = table.splitlines()
    assert lines[0].split() == ["val", "test"]
    assert len({len(line) for line in lines}) == 1  # a rectangle: columns line up
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["accuracy"] == ["0.6667", "0.8333"]
    assert rows["ROC"] == ["AUC", "0.8889", "0.8889"]
    assert [rows[k] for k in ("TN", "FP", "FN", "TP")] == [["2", "3"], ["1", "0"],
                                                           ["1", "1"], ["2", "2"]]
    for label in ("sensitivity", "specificity", "precision", "F1"):
        assert label in rows


def test_prevalence_threshold_is_the_share_of_positives():
    assert prevalence_threshold([0, 1, 1, 1]) == 0.75
    with pytest.raises(ValueError, match="both classes"):
        prevalence_threshold([1, 1])
    with pytest.raises(ValueError, match="only 0 and 1"):
        prevalence_threshold([0, 2])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), share=st.floats(0.15, 0.85))
def test_for_calibrated_probabilities_youdens_j_peaks_at_the_prevalence(seed, share):
    """Images whose P(positive) is drawn first and whose label is then drawn with that
    probability are calibrated by construction. Over many of them, no threshold beats the
    share of positives in sensitivity + specificity by more than sampling noise, while
    thresholds well away from it lose clearly."""
    rng = np.random.default_rng(seed)
    n = 200_000
    # log-odds spread around the log-odds of the wanted share: calibrated, of that prevalence
    prob = 1 / (1 + np.exp(-(np.log(share / (1 - share)) + 1.5 * rng.standard_normal(n))))
    y = (rng.uniform(size=n) < prob).astype(np.int64)

    def j(threshold):
        called = prob >= threshold
        return called[y == 1].mean() - called[y == 0].mean()

    at_prevalence = j(prevalence_threshold(y))
    best = j(youden_threshold(y, prob))
    assert best - at_prevalence < 0.01
    pi = y.mean()
    for away in (pi / 2, (1 + pi) / 2):
        assert j(away) < at_prevalence - 0.01
