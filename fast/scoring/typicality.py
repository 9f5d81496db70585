"""Typicality: how far an image lies from the training X-rays in what the network sees.

A classifier answers every input, a blank square or a photograph as readily as an X-ray. This
module gives each image a score of how unlike the training X-rays it looks to the network, so
that an answer can carry a warning. The features are what the network's last layer reads (the
hidden layer's activations: a summary of the whole image that still knows where things are,
since the default head flattens the last maps before it), one vector per network.

For each network a Gaussian is fitted to the features of the X-rays it trained on: their mean and
a covariance shrunk towards a multiple of the identity by the Ledoit-Wolf rule (Ledoit and Wolf,
"A well-conditioned estimator for large-dimensional covariance matrices", J. Multivariate Anal.
88(2), 2004), so that 128 dimensions from a few thousand images, some never active, still give an
invertible matrix. An image's score is its squared Mahalanobis distance from that Gaussian divided
by the dimension (about 1 for an image like the training ones), averaged over the networks of an
ensemble. Why this rather than an energy or maximum-probability score: those read the two logits,
which a confident wrong answer makes large (the black square's 0.999), while the distance asks
where the image sits among the training X-rays, whatever the logits say (Lee et al., "A simple
unified framework for detecting out-of-distribution samples and adversarial attacks", NeurIPS
2018, used the same class-free idea per layer).

The threshold is a high quantile (``QUANTILE``) of the scores of training X-rays the network did
not train on (the validation split, or each fold's held-out images scored by the fold model that
did not see them), so that about 1 % of real training X-rays are flagged. An ensemble's score
averages several networks' distances, whose noise partly cancels, so new X-rays like the training
ones are flagged at most about as often as held-out ones.
"""
from dataclasses import dataclass

import numpy as np

QUANTILE = 0.99  # the threshold: this quantile of held-out training X-rays' scores


def shrunk_covariance(features):
    """(N, D) features -> (their mean (D,), Ledoit-Wolf covariance (D, D), the shrinkage in [0, 1]).

    With S the sample covariance (divided by N) and m = trace(S) / D, the estimate is
    a m I + (1 - a) S, a = min(b2, d2) / d2, where d2 = ||S - m I||_F^2 and b2 =
    (mean_i ||x_i||^4 - ||S||_F^2) / N estimates how much of d2 is the sample's noise."""
    x = np.asarray(features, dtype=np.float64)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"need at least 2 feature vectors to fit a covariance, got {n}")
    mean = x.mean(axis=0)
    x = x - mean
    s = x.T @ x / n  # (D, D)
    m = np.trace(s) / d
    d2 = np.sum(np.square(s)) - 2 * m * np.trace(s) + m * m * d  # ||S - m I||_F^2
    b2 = (np.mean(np.sum(x * x, axis=1) ** 2) - np.sum(np.square(s))) / n
    shrinkage = 1.0 if d2 <= 0 else float(np.clip(b2 / d2, 0.0, 1.0))
    return mean, shrinkage * m * np.eye(d) + (1 - shrinkage) * s, shrinkage


def gaussian_distance(features, mean, precision):
    """Squared Mahalanobis distance of each row of (N, D) ``features`` divided by D -> (N,)."""
    x = np.asarray(features, dtype=np.float64) - mean
    return np.einsum("nd,de,ne->n", x, precision, x) / x.shape[1]


@dataclass(frozen=True)
class Typicality:
    """One Gaussian per network (``means`` (K, D), ``precisions`` (K, D, D): inverse covariances)
    and the ``threshold`` above which an image's score (``score``) flags it as unlike the
    training X-rays; ``held_out_rate`` is the share of held-out training X-rays above it."""
    means: np.ndarray
    precisions: np.ndarray
    threshold: float
    held_out_rate: float

    def score(self, features):
        """features: one (N, D) array per network -> (N,) the mean over the networks of each
        image's scaled distance (``gaussian_distance``)."""
        if len(features) != len(self.means):
            raise ValueError(f"need the features of {len(self.means)} networks, got {len(features)}")
        return np.mean([gaussian_distance(f, m, p) for f, m, p in zip(features, self.means, self.precisions)],
                       axis=0)

    def flagged(self, scores):
        """Which scores lie above the threshold -> boolean array."""
        return np.asarray(scores) > self.threshold

    def arrays(self):
        """The arrays a model file stores (``from_arrays`` reads them back)."""
        return {"typicality_means": self.means.astype(np.float32),
                "typicality_precisions": self.precisions.astype(np.float32),
                "typicality_threshold": np.array(self.threshold),
                "typicality_held_out_rate": np.array(self.held_out_rate)}

    @classmethod
    def from_arrays(cls, arrays):
        """The Typicality stored by ``arrays``, or None when they hold none (an older file)."""
        if "typicality_means" not in arrays:
            return None
        means, precisions = np.asarray(arrays["typicality_means"]), np.asarray(arrays["typicality_precisions"])
        if means.ndim != 2 or precisions.shape != means.shape + means.shape[-1:]:
            raise ValueError(f"unusable typicality arrays: means {means.shape}, precisions {precisions.shape}")
        return cls(means.astype(np.float64), precisions.astype(np.float64),
                   float(arrays["typicality_threshold"]), float(arrays["typicality_held_out_rate"]))


def fit(trained_on, held_out, quantile=QUANTILE):
    """A Typicality from each network's features: ``trained_on[k]`` (N_k, D) of the images network k
    trained on, which fit its Gaussian, and ``held_out[k]`` (M_k, D) of images it did not see, scored
    by network k alone, whose ``quantile`` is the threshold."""
    if len(trained_on) != len(held_out) or not len(trained_on):
        raise ValueError("need the trained-on and held-out features of the same networks")
    means, precisions, scores = [], [], []
    for inside, outside in zip(trained_on, held_out):
        mean, covariance, _ = shrunk_covariance(inside)
        # as a model file stores them (float32), so that the threshold is the stored model's own
        mean = mean.astype(np.float32).astype(np.float64)
        precision = np.linalg.inv(covariance).astype(np.float32).astype(np.float64)
        means.append(mean)
        precisions.append(precision)
        scores.append(gaussian_distance(outside, mean, precision))
    scores = np.concatenate(scores)
    if not len(scores):
        raise ValueError("no held-out features to choose the threshold on")
    threshold = float(np.quantile(scores, quantile))
    return Typicality(np.stack(means), np.stack(precisions), threshold, float(np.mean(scores > threshold)))
