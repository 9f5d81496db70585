"""Typicality: how far an image lies from the training X-rays in what the network sees.

A classifier answers every input, a blank square or a photograph as readily as an X-ray. This
module gives each image a score of how unlike the training X-rays it looks to the network, so
that an answer can carry a warning. The features are the network's own summaries of an image
at each depth (``ConvNet.logits_and_features``): each conv layer's activations averaged over the
four quadrants of the image (what it found, and roughly where: an X-ray turned by 90 degrees or
with its grey scale inverted changes them), and what the last layer reads (the hidden layer).

For each network and each of these layers a Gaussian is fitted to the features of the X-rays
the network trained on: their mean and a covariance shrunk towards a multiple of the identity by
the Ledoit-Wolf rule (Ledoit and Wolf, "A well-conditioned estimator for large-dimensional
covariance matrices", J. Multivariate Anal. 88(2), 2004), so that hundreds of dimensions from a
few thousand images, some never active, still give an invertible matrix. At one layer an image's
distance is its squared Mahalanobis distance divided by the dimension, then by the median of the
held-out X-rays' (so 1 is a typical X-ray at every layer); its score for the network is the
largest over the layers (unlike the training X-rays at any depth), and an ensemble's score is the
mean over its networks. Why this rather than an energy or maximum-probability score: those read
the two logits, which a confident wrong answer makes large (the black square's 0.999), while the
distances ask where the image sits among the training X-rays, whatever the logits say (Lee et
al., "A simple unified framework for detecting out-of-distribution samples and adversarial
attacks", NeurIPS 2018, use Mahalanobis distances at several layers in the same way).

The threshold is a high quantile (``QUANTILE``) of the scores of training X-rays the network did
not train on (the validation split, or each fold's held-out images scored by the fold model that
did not see them), so that about 1 % of real training X-rays are flagged. An ensemble's score
averages several networks', whose noise partly cancels, so new X-rays like the training ones are
flagged at most about as often as held-out ones.
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
    """For each layer (``layers``) and network k: a Gaussian (``means[layer]`` (K, D),
    ``precisions[layer]`` (K, D, D): inverse covariances) and the median held-out distance
    (``scales[layer]`` (K,)); the ``threshold`` above which an image's score (``score``) flags it
    as unlike the training X-rays; ``held_out_rate``, the share of held-out training X-rays above it."""
    layers: tuple
    means: dict
    precisions: dict
    scales: dict
    threshold: float
    held_out_rate: float

    def network_score(self, features, k):
        """Network k's features {layer: (N, D)} -> (N,) its score: the largest over the layers of
        the scaled distance divided by the layer's held-out median."""
        return np.max([gaussian_distance(features[layer], self.means[layer][k], self.precisions[layer][k])
                       / self.scales[layer][k] for layer in self.layers], axis=0)

    def score(self, features):
        """features: one {layer: (N, D)} dict per network -> (N,) the mean of the networks' scores."""
        if len(features) != len(self.scales[self.layers[0]]):
            raise ValueError(f"need the features of {len(self.scales[self.layers[0]])} networks, "
                             f"got {len(features)}")
        return np.mean([self.network_score(f, k) for k, f in enumerate(features)], axis=0)

    def flagged(self, scores):
        """Which scores lie above the threshold -> boolean array."""
        return np.asarray(scores) > self.threshold

    def arrays(self):
        """The arrays a model file stores (``from_arrays`` reads them back)."""
        arrays = {"typicality_layers": np.array(self.layers), "typicality_threshold": np.array(self.threshold),
                  "typicality_held_out_rate": np.array(self.held_out_rate)}
        for layer in self.layers:
            arrays[f"typicality_{layer}_means"] = self.means[layer].astype(np.float32)
            arrays[f"typicality_{layer}_precisions"] = self.precisions[layer].astype(np.float32)
            arrays[f"typicality_{layer}_scales"] = np.asarray(self.scales[layer], np.float64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays):
        """The Typicality stored by ``arrays``, or None when they hold none (an older file)."""
        if "typicality_layers" not in arrays:
            return None
        layers = tuple(str(name) for name in arrays["typicality_layers"])
        means, precisions, scales = {}, {}, {}
        for layer in layers:
            means[layer] = np.asarray(arrays[f"typicality_{layer}_means"], np.float64)
            precisions[layer] = np.asarray(arrays[f"typicality_{layer}_precisions"], np.float64)
            scales[layer] = np.asarray(arrays[f"typicality_{layer}_scales"], np.float64)
            k, d = means[layer].shape
            if precisions[layer].shape != (k, d, d) or scales[layer].shape != (k,):
                raise ValueError(f"unusable typicality arrays for {layer}: means {means[layer].shape}, "
                                 f"precisions {precisions[layer].shape}, scales {scales[layer].shape}")
        return cls(layers, means, precisions, scales, float(arrays["typicality_threshold"]),
                   float(arrays["typicality_held_out_rate"]))


def fit(trained_on, held_out, quantile=QUANTILE):
    """A Typicality from each network's features: ``trained_on[k]`` {layer: (N_k, D)} of the images
    network k trained on, which fit its Gaussians, and ``held_out[k]`` {layer: (M_k, D)} of images it
    did not see, scored by network k alone: their median distance scales each layer, and the
    ``quantile`` of their scores is the threshold."""
    if len(trained_on) != len(held_out) or not len(trained_on):
        raise ValueError("need the trained-on and held-out features of the same networks")
    layers = tuple(trained_on[0])
    means = {layer: [] for layer in layers}
    precisions = {layer: [] for layer in layers}
    scales = {layer: [] for layer in layers}
    for inside, outside in zip(trained_on, held_out):
        for layer in layers:
            mean, covariance, _ = shrunk_covariance(inside[layer])
            # as a model file stores them (float32), so that the threshold is the stored model's own
            mean = mean.astype(np.float32).astype(np.float64)
            precision = np.linalg.inv(covariance).astype(np.float32).astype(np.float64)
            means[layer].append(mean)
            precisions[layer].append(precision)
            scales[layer].append(float(np.median(gaussian_distance(outside[layer], mean, precision))))
    model = Typicality(layers, {n: np.stack(v) for n, v in means.items()},
                       {n: np.stack(v) for n, v in precisions.items()},
                       {n: np.array(v) for n, v in scales.items()}, np.inf, 0.0)
    scores = np.concatenate([model.network_score(outside, k) for k, outside in enumerate(held_out)])
    if not len(scores):
        raise ValueError("no held-out features to choose the threshold on")
    threshold = float(np.quantile(scores, quantile))
    return Typicality(model.layers, model.means, model.precisions, model.scales, threshold,
                      float(np.mean(scores > threshold)))
