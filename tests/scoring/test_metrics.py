"""Clinical metrics (``fast.scoring.metrics``): hand-worked cases, AUC against two independent
formulas, the thresholds' rules, and the calibration figures (reliability curve, ECE, Brier)."""
import json
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from fast.scoring.metrics import (binary_metrics, brier_score, called_positive, choose_threshold,
                                  confusion_matrix, expected_calibration_error, format_metrics_table, log_loss,
                                  prevalence_threshold, reliability_curve, roc_auc, roc_curve, scored,
                                  sensitivity_threshold, youden_threshold)

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


# Ten positives scored 1..10 and five negatives scored 0.5, 2.5, ..., 8.5. Sensitivity at
# threshold t counts the positives scored >= t: t = 10 -> 1/10, t = 2 -> 9/10, t = 1 -> 10/10.
#   target 0.1  -> 1 positive needed   -> 10.0
#   target 0.9  -> 9 positives needed  -> 2.0 (9/10 meets 0.9 exactly, although the double
#                  0.9 is 0.90000000000000002: an exact comparison with it would demand 10)
#   target 0.91 -> 9.1 -> 10 positives -> 1.0, the lowest positive score
Y_SENS = np.r_[np.ones(10, dtype=np.int64), np.zeros(5, dtype=np.int64)]


S_SENS = np.r_[np.arange(1.0, 11.0), [0.5, 2.5, 4.5, 6.5, 8.5]]


@pytest.mark.parametrize("target, threshold", [
    (0.1, 10.0), (0.15, 9.0), (0.9, 2.0), (Fraction(9, 10), 2.0), (0.91, 1.0), (1.0, 1.0),
    (1, 1.0), (1e-300, 10.0),
])
def test_sensitivity_threshold_on_the_hand_worked_example(target, threshold):
    assert sensitivity_threshold(Y_SENS, S_SENS, target) == threshold


@pytest.mark.parametrize("target", [0, 0.0, -0.1, 1.0000001, 1.5, Fraction(11, 10), np.nan,
                                    np.inf])
def test_sensitivity_threshold_rejects_a_target_outside_zero_to_one(target):
    with pytest.raises(ValueError, match="target"):
        sensitivity_threshold(Y_SENS, S_SENS, target)


def test_sensitivity_threshold_meets_a_target_reached_exactly_where_floats_round_up():
    # 25 positives scored 1..25 (so threshold 19 gives 7 / 25) and one negative. Target 0.28
    # is exactly 7/25, but in floats 0.28 * 25 = 7.000000000000001 > 7: the float test
    # tp >= target * n_pos would reject 7 positives and return 18.0.
    y = np.r_[np.ones(25, dtype=np.int64), 0]
    s = np.r_[np.arange(1.0, 26.0), 0.0]
    assert 0.28 * 25 > 7
    assert sensitivity_threshold(y, s, 0.28) == 19.0


def test_sensitivity_threshold_counts_tied_scores_together():
    # Positives at 0.8, 0.5, 0.5, 0.2 and a negative at 0.5: target 1/2 is met at 0.5, where
    # both tied positives enter together (3/4), and not at 0.8 (1/4).
    y, s = [1, 1, 1, 1, 0], [0.8, 0.5, 0.5, 0.2, 0.5]
    assert sensitivity_threshold(y, s, 0.5) == 0.5
    assert sensitivity_threshold(y, s, 0.75) == 0.5
    assert sensitivity_threshold(y, s, 0.76) == 0.2


@st.composite
def target_cases(draw):
    n_pos, n_neg = draw(st.integers(1, 25)), draw(st.integers(1, 25))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.permutation(np.r_[np.ones(n_pos, dtype=np.int64), np.zeros(n_neg, dtype=np.int64)])
    # Few distinct values force ties, between the classes and within them.
    s = rng.integers(0, draw(st.integers(1, 8)), size=len(y)) / 8 + 0.5 * y
    target = draw(st.one_of(
        st.fractions(min_value=Fraction(1, 10**6), max_value=1),
        st.floats(min_value=0, max_value=1, exclude_min=True),
        st.integers(1, n_pos).map(lambda k: k / n_pos),  # exactly reachable, as a double
    ))
    return y, s, target


@settings(max_examples=300, deadline=None)
@given(target_cases())
def test_sensitivity_threshold_is_the_highest_score_meeting_the_target(case):
    y, s, target = case
    t = target if isinstance(target, Fraction) else Fraction(repr(float(target)))
    n_pos = int(y.sum())

    def sensitivity(threshold):  # exact, by counting
        return Fraction(int(np.sum((s >= threshold) & (y == 1))), n_pos)

    threshold = sensitivity_threshold(y, s, target)
    assert threshold in s
    assert sensitivity(threshold) >= t
    higher = s[s > threshold]
    if higher.size:
        assert sensitivity(higher.min()) < t  # the next distinct score up misses the target


@settings(max_examples=100, deadline=None)
@given(target_cases())
def test_sensitivity_target_one_gives_the_lowest_positive_score(case):
    y, s, _ = case
    assert sensitivity_threshold(y, s, 1.0) == s[y == 1].min()


# Six probabilities in 5 bins (edges 0, 0.2, 0.4, 0.6, 0.8, 1.0), worked by hand:
#   bin 0 [0.0, 0.2): p 0.1             y 0      mean p 0.1,   positives 0    gap 0.1
#   bin 1 [0.2, 0.4): p 0.3, 0.35       y 0, 1   mean p 0.325, positives 1/2  gap 0.175
#   bin 4 [0.8, 1.0]: p 0.9, 0.95, 1.0  y 1,1,0  mean p 0.95,  positives 2/3  gap 0.28333...
# ECE = (1 * 0.1 + 2 * 0.175 + 3 * 0.283333) / 6 = (0.1 + 0.35 + 0.85) / 6 = 1.3 / 6 = 0.216667
# Brier: (0.1^2 + 0.3^2 + 0.65^2 + 0.1^2 + 0.05^2 + 1^2) / 6
#      = (0.01 + 0.09 + 0.4225 + 0.01 + 0.0025 + 1) / 6 = 1.535 / 6 = 0.255833
P_BINNED = np.array([0.1, 0.3, 0.35, 0.9, 0.95, 1.0])


Y_BINNED = np.array([0, 0, 1, 1, 1, 0])


def test_ece_and_reliability_curve_match_the_hand_computation():
    assert expected_calibration_error(Y_BINNED, P_BINNED, bins=5) == pytest.approx(1.3 / 6, abs=1e-12)
    curve = reliability_curve(Y_BINNED, P_BINNED, bins=5)
    assert_allclose(curve.edges, [0, 0.2, 0.4, 0.6, 0.8, 1.0], rtol=0, atol=1e-15)
    assert curve.count.dtype == np.int64
    assert_array_equal(curve.count, [1, 2, 0, 0, 3])
    assert_allclose(curve.mean_prob[[0, 1, 4]], [0.1, 0.325, 0.95], rtol=1e-12)
    assert_allclose(curve.frac_pos[[0, 1, 4]], [0, 0.5, 2 / 3], rtol=1e-12)


def test_reliability_curve_gives_nan_for_empty_bins():
    curve = reliability_curve(Y_BINNED, P_BINNED, bins=5)
    assert np.isnan(curve.mean_prob[[2, 3]]).all() and np.isnan(curve.frac_pos[[2, 3]]).all()
    assert np.isfinite(curve.mean_prob[[0, 1, 4]]).all()


def test_ece_with_the_default_fifteen_bins_by_hand():
    # Edges k/15: 0.05 is in bin 0 [0, 1/15), 0.5 in bin 7 [7/15, 8/15) = [0.467, 0.533),
    # 0.97 and 1.0 in bin 14 [14/15, 1] = [0.933, 1].
    #   bin 0: p 0.05, y 0 -> gap 0.05; bin 7: p 0.5, 0.5, y 1, 0 -> gap 0;
    #   bin 14: p 0.97, 1.0, y 1, 1 -> mean 0.985, gap 0.015.
    # ECE = (1 * 0.05 + 2 * 0 + 2 * 0.015) / 5 = 0.08 / 5 = 0.016
    p = [0.05, 0.5, 0.5, 0.97, 1.0]
    y = [0, 1, 0, 1, 1]
    assert expected_calibration_error(y, p) == pytest.approx(0.016, abs=1e-12)
    assert_array_equal(np.flatnonzero(reliability_curve(y, p).count), [0, 7, 14])


def test_probability_one_lands_in_the_last_bin():
    for bins in (1, 2, 10, 15):
        curve = reliability_curve([1], [1.0], bins=bins)
        assert curve.count[-1] == 1 and curve.count.sum() == 1, bins
    assert expected_calibration_error([1], [1.0]) == 0.0


def test_probability_on_a_bin_edge_goes_to_the_bin_above():
    # p = i / B goes to bin i and the double just below it to bin i - 1. Computing the bin as
    # floor(p * B) gets some of these wrong: (15 / 22) * 22 rounds to 14.999..., bin 14.
    for bins in range(1, 61):
        for i in range(bins):
            edge = i / bins
            assert reliability_curve([0], [edge], bins).count[i] == 1, (bins, i)
            if i > 0:
                below = np.nextafter(edge, -np.inf)
                assert reliability_curve([0], [below], bins).count[i - 1] == 1, (bins, i)
    assert_array_equal(reliability_curve([0, 0], [0.2, 0.4], bins=5).count, [0, 1, 1, 0, 0])


@st.composite
def calibrated_groups(draw):
    """Groups of m samples with r positives, each predicted r / m: every bin's mean
    probability is sum(r) / sum(m), its fraction of positives, whatever the binning."""
    groups = draw(st.lists(st.tuples(st.integers(1, 8), st.integers(0, 8)), min_size=1,
                           max_size=12))
    y, p = [], []
    for m, r in groups:
        r = min(r, m)
        y += [1] * r + [0] * (m - r)
        p += [r / m] * m
    return np.array(y), np.array(p)


@settings(max_examples=100, deadline=None)
@given(calibrated_groups(), st.integers(1, 20))
def test_ece_is_zero_for_perfectly_calibrated_predictions(case, bins):
    y, p = case
    assert expected_calibration_error(y, p, bins) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_ece_with_one_bin_is_the_gap_between_mean_probability_and_prevalence(n, seed):
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 2, n), rng.random(n)
    assert expected_calibration_error(y, p, bins=1) == pytest.approx(abs(p.mean() - y.mean()),
                                                                     abs=1e-12)
    curve = reliability_curve(y, p, bins=7)
    assert curve.count.sum() == n
    full = curve.count > 0
    # Each non-empty bin's mean probability lies inside the bin.
    assert np.all(curve.mean_prob[full] >= curve.edges[:-1][full] - 1e-12)
    assert np.all(curve.mean_prob[full] <= curve.edges[1:][full] + 1e-12)


def test_brier_score_matches_the_hand_computation():
    assert brier_score(Y_BINNED, P_BINNED) == pytest.approx(1.535 / 6, abs=1e-12)
    assert brier_score([0, 1], [0.0, 1.0]) == 0.0
    assert brier_score([0, 1, 1], [0.5, 0.5, 0.5]) == 0.25
    assert brier_score([0, 1], [1.0, 0.0]) == 1.0


def test_log_loss_matches_the_hand_computation_and_stays_finite_on_a_certain_miss():
    # -(log 0.8 + log 0.5 + log 0.9) / 3: a positive at 0.8, a negative at 0.5, a negative at 0.1
    assert log_loss([1, 0, 0], [0.8, 0.5, 0.1]) == pytest.approx(-(np.log(0.8) + np.log(0.5) + np.log(0.9)) / 3)
    assert log_loss([0, 1], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert log_loss([0, 1], [0.0, 1.0]) == pytest.approx(0.0, abs=1e-14)
    assert log_loss([1], [0.0]) == pytest.approx(-np.log(1e-15))  # clipped, not infinite


@pytest.mark.parametrize("prob", [[0.5, 1.5], [-0.1, 0.5], [0.5, np.nan]])
@pytest.mark.parametrize("metric", [expected_calibration_error, brier_score, log_loss, reliability_curve])
def test_calibration_metrics_reject_values_outside_the_unit_interval(metric, prob):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metric([0, 1], prob)


def test_calibration_metrics_reject_bad_bins_labels_and_empty_input():
    for bins in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="bins"):
            expected_calibration_error([0, 1], [0.2, 0.8], bins=bins)
    with pytest.raises(ValueError, match="0 and 1"):
        brier_score([0, 2], [0.2, 0.8])
    with pytest.raises(ValueError, match="shape"):
        brier_score([0, 1], [0.2, 0.8, 0.5])
    with pytest.raises(ValueError, match="no samples"):
        expected_calibration_error([], [])


def test_a_score_exactly_at_the_threshold_is_called_positive():
    assert called_positive([0.29, 0.3, 0.31], 0.3).tolist() == [False, True, True]
    assert binary_metrics([0, 1, 1], [0.29, 0.3, 0.31], 0.3)["confusion_matrix"] == [[1, 0], [0, 2]]


def test_the_ece_and_the_scored_figures_use_fifteen_bins_unless_told():
    # p 0.1 and 0.14, y 0 and 1. With 15 bins (edges k/15) they fall in bins 1 [0.067, 0.133) and
    # 2 [0.133, 0.2): gaps 0.1 and 0.86, ECE (0.1 + 0.86) / 2 = 0.48. With 10 bins both fall in
    # [0.1, 0.2): mean 0.12 against a fraction positive of 0.5, ECE 0.38.
    y, p = [0, 1], [0.1, 0.14]
    assert expected_calibration_error(y, p) == pytest.approx(0.48, abs=1e-12)
    assert expected_calibration_error(y, p, bins=10) == pytest.approx(0.38, abs=1e-12)
    assert scored(y, p, 0.5)["ece"] == pytest.approx(0.48, abs=1e-12)
    assert len(reliability_curve(y, p).count) == 15


def test_the_threshold_rules_by_name():
    y, p = np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.6, 0.4, 0.7, 0.9])
    assert choose_threshold(y, p, "prevalence") == (0.6, "the share of PNEUMONIA among the validation images")
    threshold, words = choose_threshold(y, p, "youden", held_out="out-of-fold")
    assert threshold == youden_threshold(y, p) and words == "Youden's J on out-of-fold predictions"
    assert choose_threshold(y, p, "prevalence", target_sensitivity=1.0)[0] == 0.4  # the target first
    with pytest.raises(ValueError, match="unknown threshold rule 'median'"):
        choose_threshold(y, p, "median")
