"""Calibration metrics, operating points at a target sensitivity, temperature scaling and
patient-grouped folds: hand-worked cases, brute-force oracles and properties."""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from fast.scoring import calibration
from fast.scoring.calibration import EPS, T_MAX, T_MIN, apply_temperature, fit_temperature, log_odds, negative_log_likelihood
from fast.data.folders import list_split
from fast.data.splits import patient_folds, patient_id
from fast.scoring.metrics import brier_score, expected_calibration_error, reliability_curve, sensitivity_threshold

# --------------------------------------------------------------------------- ECE and Brier

# Six probabilities in 5 bins (edges 0, 0.2, 0.4, 0.6, 0.8, 1.0), worked by hand:
#   bin 0 [0.0, 0.2): p 0.1             y 0      mean p 0.1,   positives 0    gap 0.1
#   bin 1 [0.2, 0.4): p 0.3, 0.35       y 0, 1   mean p 0.325, positives 1/2  gap 0.175
#   bin 4 [0.8, 1.0]: p 0.9, 0.95, 1.0  y 1,1,0  mean p 0.95,  positives 2/3  gap 0.28333...
# ECE = (1 * 0.1 + 2 * 0.175 + 3 * 0.283333) / 6 = (0.1 + 0.35 + 0.85) / 6 = 1.3 / 6 = 0.216667
# Brier: (0.1^2 + 0.3^2 + 0.65^2 + 0.1^2 + 0.05^2 + 1^2) / 6
#      = (0.01 + 0.09 + 0.4225 + 0.01 + 0.0025 + 1) / 6 = 1.535 / 6 = 0.255833
P6 = np.array([0.1, 0.3, 0.35, 0.9, 0.95, 1.0])
Y6 = np.array([0, 0, 1, 1, 1, 0])


def test_ece_and_reliability_curve_match_the_hand_computation():
    assert expected_calibration_error(Y6, P6, bins=5) == pytest.approx(1.3 / 6, abs=1e-12)
    curve = reliability_curve(Y6, P6, bins=5)
    assert_allclose(curve.edges, [0, 0.2, 0.4, 0.6, 0.8, 1.0], rtol=0, atol=1e-15)
    assert curve.count.dtype == np.int64
    assert_array_equal(curve.count, [1, 2, 0, 0, 3])
    assert_allclose(curve.mean_prob[[0, 1, 4]], [0.1, 0.325, 0.95], rtol=1e-12)
    assert_allclose(curve.frac_pos[[0, 1, 4]], [0, 0.5, 2 / 3], rtol=1e-12)


def test_reliability_curve_gives_nan_for_empty_bins():
    curve = reliability_curve(Y6, P6, bins=5)
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
    assert brier_score(Y6, P6) == pytest.approx(1.535 / 6, abs=1e-12)
    assert brier_score([0, 1], [0.0, 1.0]) == 0.0
    assert brier_score([0, 1, 1], [0.5, 0.5, 0.5]) == 0.25
    assert brier_score([0, 1], [1.0, 0.0]) == 1.0


@pytest.mark.parametrize("prob", [[0.5, 1.5], [-0.1, 0.5], [0.5, np.nan]])
@pytest.mark.parametrize("metric", [expected_calibration_error, brier_score, reliability_curve])
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


# --------------------------------------------------------------------------- sensitivity target

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


# --------------------------------------------------------------------------- temperature scaling

def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def calibrated_sample(seed, n=20_000, spread=2.0):
    """True log-odds z ~ N(0, spread^2) and labels drawn with P(y = 1) = sigmoid(z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, spread, n)
    return z, (rng.random(n) < sigmoid(z)).astype(np.int64)


def test_log_odds_by_hand_and_clipped_at_eps():
    # log(0.75 / 0.25) = log 3; log(0.2 / 0.8) = -log 4; 0 and 1 become log(EPS / (1 - EPS)).
    z = log_odds(np.array([0.5, 0.75, 0.2, 0.0, 1.0], dtype=np.float32))
    assert z.dtype == np.float64
    edge = math.log(EPS / (1 - EPS))  # about -27.631
    assert_allclose(z, [0.0, math.log(3), -math.log(4), edge, -edge], rtol=1e-6, atol=1e-12)
    assert log_odds(np.zeros((2, 3))).shape == (2, 3)


def test_negative_log_likelihood_by_hand():
    # -(log 0.8 + log(1 - 0.4)) / 2 = (0.223144 + 0.510826) / 2 = 0.366985
    assert negative_log_likelihood([1, 0], [0.8, 0.4]) == pytest.approx(
        -(math.log(0.8) + math.log(0.6)) / 2, rel=1e-12)
    # A confident mistake is clipped, not infinite: -log(EPS) = 27.631.
    assert negative_log_likelihood([1], [0.0]) == pytest.approx(-math.log(EPS), rel=1e-9)
    assert negative_log_likelihood([0, 1], [0.0, 1.0]) == pytest.approx(-math.log1p(-EPS),
                                                                        abs=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_temperature_undoes_an_over_confident_model(seed):
    z, y = calibrated_sample(seed)
    prob = sigmoid(4.0 * z)  # log-odds four times too large
    temperature = fit_temperature(prob, y)
    assert temperature == pytest.approx(4.0, abs=0.3)
    calibrated = apply_temperature(prob, temperature)
    assert negative_log_likelihood(y, calibrated) < negative_log_likelihood(y, prob) - 0.1
    assert (expected_calibration_error(y, calibrated)
            < expected_calibration_error(y, prob) / 4)


def test_temperature_sharpens_an_under_confident_model():
    z, y = calibrated_sample(3)
    assert fit_temperature(sigmoid(z / 3.0), y) == pytest.approx(1 / 3, abs=0.03)


@pytest.mark.parametrize("seed", [0, 1])
def test_temperature_of_a_calibrated_model_is_about_one(seed):
    z, y = calibrated_sample(seed)
    assert fit_temperature(sigmoid(z), y) == pytest.approx(1.0, abs=0.08)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 200), st.integers(0, 2**32 - 1))
def test_fitted_temperature_minimises_the_nll(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.r_[[0, 1], rng.integers(0, 2, n - 2)])
    prob = sigmoid(rng.normal(0, 3, n) + 2 * (y - 0.5) * rng.random())
    temperature = fit_temperature(prob, y)
    assert T_MIN <= temperature <= T_MAX

    def nll(t):
        return negative_log_likelihood(y, apply_temperature(prob, t))
    best = nll(temperature)
    for factor in (0.999, 1.001):
        t = temperature * factor
        if T_MIN <= t <= T_MAX:
            assert best <= nll(t) + 1e-12, (temperature, t)


def test_temperature_stops_at_the_range_ends_for_degenerate_data():
    # Separated classes: sharper is always better, up to T_MIN. Reversed: as flat as allowed.
    assert fit_temperature([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == T_MIN
    assert fit_temperature([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == T_MAX


def test_apply_temperature_one_returns_the_clipped_probabilities():
    p = np.r_[0.0, 1e-13, EPS, 1e-6, np.linspace(0.01, 0.99, 99), 1 - 1e-6, 1.0]
    out = apply_temperature(p, 1.0)
    assert out.dtype == np.float64 and out.shape == p.shape
    assert_allclose(out, np.clip(p, EPS, 1 - EPS), rtol=1e-12, atol=0)


def test_apply_temperature_keeps_the_ranking_and_moves_towards_one_half():
    p = np.linspace(0.01, 0.99, 50)
    soft, sharp = apply_temperature(p, 3.0), apply_temperature(p, 0.5)
    assert np.all(np.diff(soft) > 0) and np.all(np.diff(sharp) > 0)
    assert np.all(np.abs(soft - 0.5) <= np.abs(p - 0.5) + 1e-15)
    assert np.all(np.abs(sharp - 0.5) >= np.abs(p - 0.5) - 1e-15)
    # The mean probability of an ensemble of shape (models, N) works the same.
    ensemble = np.stack([p, p[::-1]]).mean(axis=0)
    assert_allclose(apply_temperature(ensemble, 2.0), 0.5, rtol=0, atol=1e-12)


def test_temperature_functions_reject_bad_input():
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature([0.2, 0.7], [1, 1])
    for t in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="temperature"):
            apply_temperature([0.5], t)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        log_odds([0.5, 1.2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_temperature([0.5, np.nan], [0, 1])


# --------------------------------------------------------------------------- patient folds

def patient_files(sizes_by_class):
    """File names following the data set's patterns: NORMAL patients 'IM-iiii-jjjj', PNEUMONIA
    patients 'personI_bacteria_J'; sizes_by_class[c] lists each patient's image count."""
    names, labels = [], []
    for i, size in enumerate(sizes_by_class[0]):
        names += [f"IM-{i:04d}-{j + 1:04d}.jpeg" for j in range(size)]
        labels += [0] * size
    for i, size in enumerate(sizes_by_class[1]):
        names += [f"person{i}_bacteria_{j}.jpeg" for j in range(size)]
        labels += [1] * size
    return names, np.asarray(labels, dtype=np.int64)


def assert_valid_folds(folds, paths, labels, k):
    """Patients whole, every image held out exactly once, each class spread evenly."""
    assert folds.dtype == np.int64 and folds.shape == (len(paths),)
    assert folds.min() >= 0 and folds.max() < k
    held_out = np.concatenate([np.flatnonzero(folds == f) for f in range(k)])
    assert_array_equal(np.sort(held_out), np.arange(len(paths)))
    fold_of, size_of = {}, {}
    for path, fold in zip(paths, folds):
        pid = patient_id(path)
        assert fold_of.setdefault(pid, fold) == fold, pid  # a patient in one fold only
        size_of[pid] = size_of.get(pid, 0) + 1
    for label in (0, 1):
        counts = np.bincount(folds[labels == label], minlength=k)
        largest = max(size_of[patient_id(p)] for p, c in zip(paths, labels) if c == label)
        assert counts.min() >= 1 and counts.max() - counts.min() <= largest, (label, counts)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_patient_folds_keep_patients_whole_and_balance_each_class(data):
    k = data.draw(st.integers(2, 6))
    sizes = [data.draw(st.lists(st.integers(1, 6), min_size=k, max_size=k + 20))
             for _ in range(2)]
    seed = data.draw(st.integers(0, 2**32 - 1))
    names, labels = patient_files(sizes)
    folds = patient_folds(names, labels, k, seed)
    assert_valid_folds(folds, names, labels, k)
    assert_array_equal(patient_folds(names, labels, k, seed), folds)  # deterministic
    perm = np.random.default_rng(seed).permutation(len(names))
    shuffled = patient_folds([names[i] for i in perm], labels[perm], k, seed)
    assert_array_equal(shuffled, folds[perm])  # the input order does not matter


def test_patient_folds_change_with_the_seed():
    names, labels = patient_files([[1, 2, 3] * 10, [2, 1, 1] * 10])
    assert not np.array_equal(patient_folds(names, labels, 3, seed=0),
                              patient_folds(names, labels, 3, seed=1))


def test_patient_folds_count_a_tied_patient_as_pneumonia():
    # person9 has one NORMAL and one PNEUMONIA image: a tie, so a PNEUMONIA patient. With it
    # PNEUMONIA has two patients and k = 2 works, one per fold; as NORMAL it would have one.
    names = ["IM-0001-0001", "IM-0002-0001", "person1_virus_1", "person9_virus_1",
             "person9_bacteria_2"]
    labels = [0, 0, 1, 0, 1]
    folds = patient_folds(names, labels, 2, seed=0)
    assert folds[3] == folds[4] and folds[2] != folds[3]
    # Two NORMAL images out of three make person9 a NORMAL patient: one PNEUMONIA patient left.
    with pytest.raises(ValueError, match="2 PNEUMONIA patients, got 1"):
        patient_folds(names + ["person9_virus_3"], labels + [0], 2, seed=0)


def test_patient_folds_reject_bad_k():
    names, labels = patient_files([[1, 1, 1], [2, 2, 2, 2]])
    for k in (1, 0, 2.0, True):
        with pytest.raises(ValueError, match="k must be"):
            patient_folds(names, labels, k, seed=0)
    with pytest.raises(ValueError, match="4 NORMAL patients, got 3"):
        patient_folds(names, labels, 4, seed=0)
    assert_valid_folds(patient_folds(names, labels, 3, seed=0), names, labels, 3)
    with pytest.raises(ValueError, match="labels"):
        patient_folds(names, labels[:-1], 2, seed=0)


def test_patient_folds_on_the_real_training_split(xray_root):
    paths, labels = list_split(xray_root, "train")
    assert len(paths) == 5216
    folds = patient_folds(paths, labels, 5, seed=0)
    assert_valid_folds(folds, paths, labels, 5)
    # No patient on both sides of any fold's train / held-out cut.
    for f in range(5):
        held = {patient_id(p) for p, g in zip(paths, folds) if g == f}
        rest = {patient_id(p) for p, g in zip(paths, folds) if g != f}
        assert held.isdisjoint(rest), f


# --------------------------------------------------------------------------- Platt scaling

def _prior_shifted(n=20000, scale=0.5, bias=1.5, seed=0):
    """Probabilities p = sigmoid(z) of a model whose true log-odds are scale * z + bias."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(scale * z + bias)))).astype(np.int64)
    return 1 / (1 + np.exp(-z)), y


def test_platt_recovers_a_known_scale_and_bias():
    prob, y = _prior_shifted()
    scale, bias = calibration.fit_platt(prob, y)
    assert scale == pytest.approx(0.5, abs=0.03) and bias == pytest.approx(1.5, abs=0.08)


def test_platt_fixes_a_prior_shift_that_temperature_cannot():
    # A class-weighted model leans towards the rarer class: a bias, not a scale, is wrong.
    prob, y = _prior_shifted(scale=1.0, bias=1.2)
    before = calibration.negative_log_likelihood(y, prob)
    by_temperature = calibration.negative_log_likelihood(
        y, calibration.apply_temperature(prob, calibration.fit_temperature(prob, y)))
    by_platt = calibration.negative_log_likelihood(
        y, calibration.apply_platt(prob, *calibration.fit_platt(prob, y)))
    assert by_platt < by_temperature <= before
    assert expected_calibration_error(
        y, calibration.apply_platt(prob, *calibration.fit_platt(prob, y))) < 0.01


def test_platt_is_finite_on_perfectly_separated_classes():
    prob, y = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])
    scale, bias = calibration.fit_platt(prob, y)
    assert np.isfinite(scale) and np.isfinite(bias) and scale > 1  # sharpened, not infinite


def test_fit_maps_temperature_to_a_scale_of_one_over_t_and_refuses_unknown_methods():
    prob, y = _prior_shifted(scale=0.25, bias=0.0, n=5000)
    scale, bias = calibration.fit("temperature", prob, y)
    assert bias == 0 and scale == pytest.approx(1 / calibration.fit_temperature(prob, y))
    assert_allclose(calibration.apply_platt(prob, scale, 0.0),
                    calibration.apply_temperature(prob, 1 / scale), rtol=1e-12)
    with pytest.raises(ValueError, match="isotonic"):
        calibration.fit("isotonic", prob, y)
