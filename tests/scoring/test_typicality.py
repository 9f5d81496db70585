"""The typicality model (``fast.scoring.typicality``): the shrunk covariance by its formula, the
distance by hand, the threshold's quantile, the stored arrays."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from fast.scoring import typicality
from fast.scoring.typicality import Typicality, gaussian_distance, shrunk_covariance


def test_the_shrunk_covariance_follows_the_ledoit_wolf_formula_term_by_term():
    x = np.random.default_rng(0).standard_normal((40, 5)) * [1, 2, 3, 0.5, 1]
    mean, covariance, shrinkage = shrunk_covariance(x)
    # the formula written out with explicit loops over the samples
    c = x - x.mean(axis=0)
    s = sum(np.outer(v, v) for v in c) / len(c)
    m = np.trace(s) / 5
    d2 = np.linalg.norm(s - m * np.eye(5)) ** 2
    b2 = sum(np.linalg.norm(np.outer(v, v) - s) ** 2 for v in c) / len(c) ** 2
    a = min(b2, d2) / d2
    assert shrinkage == pytest.approx(a, rel=1e-10)
    assert 0 < shrinkage < 1
    assert_allclose(mean, x.mean(axis=0))
    assert_allclose(covariance, a * m * np.eye(5) + (1 - a) * s, rtol=1e-10)


def test_a_dimension_that_never_varies_still_gives_an_invertible_covariance():
    x = np.random.default_rng(1).standard_normal((100, 4))
    x[:, 2] = 0.0  # a ReLU unit never active
    _, covariance, shrinkage = shrunk_covariance(x)
    assert shrinkage > 0
    assert np.linalg.eigvalsh(covariance).min() > 0


def test_the_scaled_distance_by_hand():
    # mean (1, 0), precision diag(1, 1/4): (3, 2) lies (2^2 * 1 + 2^2 / 4) / 2 = 2.5 away
    d = gaussian_distance(np.array([[3.0, 2.0], [1.0, 0.0]]), np.array([1.0, 0.0]), np.diag([1.0, 0.25]))
    assert_allclose(d, [2.5, 0.0])


def _layers(rng, n, dims=(6, 3)):
    return {f"layer{i}": rng.standard_normal((n, d)) for i, d in enumerate(dims)}


def test_the_threshold_flags_the_quantile_of_held_out_scores_and_far_points_stand_out():
    rng = np.random.default_rng(2)
    inside = [_layers(rng, 2000) for _ in range(2)]
    unseen = [_layers(rng, 500) for _ in range(2)]
    model = typicality.fit(inside, unseen, quantile=0.99)
    assert model.layers == ("layer0", "layer1")
    assert model.held_out_rate == pytest.approx(0.01, abs=0.003)
    scores = np.concatenate([model.network_score(u, k) for k, u in enumerate(unseen)])
    assert np.mean(scores > model.threshold) == pytest.approx(model.held_out_rate)
    # each layer's held-out median distance is its scale: a typical X-ray scores about 1 there
    for layer in model.layers:
        for k, u in enumerate(unseen):
            d = gaussian_distance(u[layer], model.means[layer][k], model.precisions[layer][k])
            assert np.median(d / model.scales[layer][k]) == pytest.approx(1.0)
    near = {"layer0": np.zeros((1, 6)), "layer1": np.zeros((1, 3))}
    odd_at_one_layer = {"layer0": np.zeros((1, 6)), "layer1": np.full((1, 3), 6.0)}
    assert not model.flagged(model.score([near, near])).any()
    assert model.flagged(model.score([odd_at_one_layer] * 2)).all()  # the largest over the layers


def test_the_stored_arrays_give_back_the_same_scores_and_an_old_file_has_none():
    rng = np.random.default_rng(3)
    model = typicality.fit([_layers(rng, 300)], [_layers(rng, 100)])
    again = Typicality.from_arrays(model.arrays())
    x = [_layers(rng, 7)]
    assert_allclose(again.score(x), model.score(x), rtol=1e-12)  # fitted as stored: float32
    assert again.threshold == model.threshold and again.layers == model.layers
    assert Typicality.from_arrays({}) is None
    with pytest.raises(ValueError, match="need the features of 1 networks"):
        model.score(x * 2)
