"""Calibration (``fast.scoring.calibration``): temperature and Platt scaling, by hand and on
samples whose calibration is known."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from fast.scoring import calibration
from fast.scoring.calibration import (EPS, T_MAX, T_MIN, apply_temperature, fit_temperature, log_odds,
                                      negative_log_likelihood)
from fast.scoring.metrics import expected_calibration_error


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
