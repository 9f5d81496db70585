"""Calibration of a binary classifier's probabilities: temperature scaling and Platt scaling.

Everything takes P(PNEUMONIA) rather than a network's logits, so the same code calibrates one
model and an ensemble's mean probability alike: the probability is mapped back to log-odds
z = log(p / (1 - p)), divided by a temperature T > 0 and squashed again, p' = sigmoid(z / T).
T > 1 softens an over-confident model, T < 1 sharpens an under-confident one, and T = 1 leaves
it unchanged. The ranking of the scores (and so the ROC curve) never changes.
"""
import numpy as np

from fast.scoring.metrics import check_labelled_probabilities, check_probabilities

# Probabilities are clipped to [EPS, 1 - EPS] before taking log-odds, so 0 and 1 (a saturated
# float32 sigmoid gives both) map to about -/+27.6 instead of infinity. 1e-12 is far below
# any probability a model on this data set means, and 1 - 1e-12 is still distinct from 1
# in float64 (its spacing there is 1.1e-16).
EPS = 1e-12

# The search range of T. The optimum lies outside it only for degenerate data: perfectly
# separated classes (the likelihood keeps improving as T -> 0) or scores that rank the
# classes backwards (the best positive temperature is T -> infinity).
T_MIN, T_MAX = 0.05, 20.0


def log_odds(prob):
    """log(p / (1 - p)) of ``prob`` (any shape, values in [0, 1]) clipped to [EPS, 1 - EPS];
    float64, same shape. ValueError for values outside [0, 1] or NaN."""
    p = np.clip(check_probabilities(prob), EPS, 1.0 - EPS)
    # log1p(-p) keeps its precision as p -> 0 and is exact for p near 1, where 1 - p is.
    return np.log(p) - np.log1p(-p)


def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow for large |z|."""
    return np.exp(-np.logaddexp(0.0, -z))


def _check_temperature(temperature):
    t = float(temperature)
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    return t


def apply_temperature(prob, temperature):
    """sigmoid(log_odds(prob) / T): calibrated probabilities, float64, same shape as ``prob``.
    T = 1 returns ``prob`` clipped to [EPS, 1 - EPS] (to rounding)."""
    return _sigmoid(log_odds(prob) / _check_temperature(temperature))


def _nll_of_log_odds(y, z):
    """Mean of -log sigmoid(z) over positives and -log sigmoid(-z) over negatives, written as
    softplus(z) - y z, which never takes the log of a rounded probability."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def negative_log_likelihood(y, prob):
    """Mean binary negative log-likelihood (natural log) of labels ``y`` (N,) under ``prob``
    (N,), with ``prob`` clipped to [EPS, 1 - EPS] as in ``log_odds``, so it stays finite."""
    y, p = check_labelled_probabilities(y, prob)
    return _nll_of_log_odds(y, log_odds(p))


def fit_temperature(prob, y, max_iter=100):
    """Temperature T in [T_MIN, T_MAX] minimising the mean NLL of sigmoid(log_odds(prob) / T).

    prob: (N,) uncalibrated P(positive); y: (N,) 0/1 with both classes present (else
    ValueError). With s = 1/T the NLL f(s) = mean(softplus(s z) - y s z) is convex in s, so
    its derivative f'(s) = mean((sigmoid(s z) - y) z) rises with s and has at most one root.
    The root is found by Newton's method on f' kept inside a shrinking bracket that always
    holds a sign change; a step that would leave the bracket is replaced by bisection. When f'
    does not change sign over the range, the nearer end is returned (see T_MIN, T_MAX).
    Deterministic: the same data always gives the same T.
    """
    y, p = check_labelled_probabilities(y, prob)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError(f"need both classes in y, got {n_pos} positives out of {len(y)}")
    z = log_odds(p)

    def slope_and_curvature(s):
        q = _sigmoid(s * z)
        return float(np.mean((q - y) * z)), float(np.mean(q * (1.0 - q) * z * z))

    lo, hi = 1.0 / T_MAX, 1.0 / T_MIN  # bracket on s
    if slope_and_curvature(lo)[0] >= 0:  # f rises over the whole range: smallest s
        return T_MAX
    if slope_and_curvature(hi)[0] <= 0:  # f falls over the whole range: largest s
        return T_MIN
    s = 1.0  # T = 1, the untouched model, is the natural start
    for _ in range(max_iter):
        slope, curvature = slope_and_curvature(s)
        if slope == 0.0:
            break
        if slope < 0:
            lo = s
        else:
            hi = s
        step = s - slope / curvature if curvature > 0 else np.nan
        # Newton when it stays strictly inside the bracket, bisection otherwise (this also
        # catches the NaN of a zero curvature).
        s_next = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(s_next - s) <= 1e-13 * s or hi - lo <= 1e-13 * hi:
            s = s_next
            break
        s = s_next
    return 1.0 / s


# --------------------------------------------------------------------------- Platt scaling

def fit_platt(prob, y, max_iter=100, ridge=1e-6):
    """Scale a and bias b minimising the mean NLL of sigmoid(a log_odds(prob) + b): Platt
    scaling on the log-odds, temperature scaling (a = 1/T) with a bias term.

    The bias is what temperature alone cannot give: a model trained with class weights sees
    the classes as equally frequent, so its probabilities lean towards the rarer class by the
    log of the weights' ratio; b moves them back to the frequencies of the data it is fitted
    on. A logistic regression of y on z = log_odds(prob): convex, solved by Newton's method
    with step halving, from a = 1, b = 0. ``ridge`` (on a - 1 and b) keeps the solution finite
    when the classes are perfectly separated. -> (a, b) as floats. Needs both classes.
    """
    y, p = check_labelled_probabilities(y, prob)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError(f"need both classes in y, got {n_pos} positives out of {len(y)}")
    z = log_odds(p)
    design = np.stack([z, np.ones_like(z)], axis=1)  # (N, 2)

    def objective(theta):
        return _nll_of_log_odds(y, design @ theta) + ridge * float(np.sum((theta - (1, 0)) ** 2))

    theta = np.array([1.0, 0.0])
    value = objective(theta)
    for _ in range(max_iter):
        q = _sigmoid(design @ theta)
        gradient = design.T @ (q - y) / len(y) + 2 * ridge * (theta - (1, 0))
        hessian = (design * (q * (1 - q))[:, None]).T @ design / len(y) + 2 * ridge * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-10:  # halve the step until the objective does not rise
            candidate = theta - size * step
            new_value = objective(candidate)
            if new_value <= value:
                break
            size /= 2
        else:
            break
        converged = abs(value - new_value) <= 1e-15 * max(1.0, abs(value))
        theta, value = candidate, new_value
        if converged:
            break
    return float(theta[0]), float(theta[1])


def apply_platt(prob, scale, bias):
    """sigmoid(scale * log_odds(prob) + bias), float64, same shape as ``prob``."""
    return _sigmoid(float(scale) * log_odds(prob) + float(bias))


METHODS = ("temperature", "platt")


def temperature_map(temperature):
    """A temperature T as the (scale, bias) of sigmoid(scale * log-odds + bias): (1/T, 0)."""
    return 1.0 / _check_temperature(temperature), 0.0


def fit(method, prob, y):
    """Fit ``method`` ("temperature" or "platt") on held-out probabilities -> (scale, bias) of
    the map sigmoid(scale * log_odds(p) + bias): 1/T and 0 for temperature scaling."""
    if method == "temperature":
        return temperature_map(fit_temperature(prob, y))
    if method == "platt":
        return fit_platt(prob, y)
    raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
