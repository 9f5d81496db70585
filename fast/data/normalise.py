"""How grey values become the network's input: standardised with the training pixels' statistics,
with each image's own, or histogram-equalised first."""
import cv2
import numpy as np

from fast.data.images import LEVELS, from_pixels, to_pixels

def standardise(images, mean, std, in_place=False):
    """(images - mean) / std, in the images' dtype: the one standardisation, used by training,
    evaluation and prediction. ``in_place`` overwrites ``images`` instead of making a copy."""
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    dtype = images.dtype
    if in_place:
        images -= dtype.type(mean)
        out = images
    else:
        out = np.subtract(images, dtype.type(mean), dtype=dtype)  # one new array, then in place
    out /= dtype.type(std)
    return out


NORMALISATIONS = ("dataset", "image", "equalise")


def normalise(images, how="dataset", mean=None, std=None):
    """(n, S, S) float32 images in [0, 1] -> the network's input, overwriting ``images``.

    ``how``: "dataset" standardises with the training pixels' ``mean`` and ``std`` (one pair
    for every image); "image" standardises each image with its own mean and standard
    deviation, so an X-ray's overall exposure and contrast say nothing; "equalise" first
    spreads each image's grey levels evenly over 0..255 (histogram equalisation, on its 8-bit
    levels), then standardises it with its own statistics, so any monotone change of the
    grey scale (exposure, contrast, gamma, the detector's response) says nothing either.
    With "image" and "equalise" a constant image becomes all zeros.
    """
    if how == "dataset":
        return standardise(images, mean, std, in_place=True)
    if how not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {how!r}; choose from {', '.join(NORMALISATIONS)}")
    if how == "equalise":
        levels = to_pixels(images)
        for image in levels.reshape(-1, *levels.shape[-2:]):
            cv2.equalizeHist(image, dst=image)
        images[...] = from_pixels(levels)
    pixels = (-2, -1)  # each image's own statistics, written into ``images`` whatever its layout
    centre = images.mean(axis=pixels, keepdims=True, dtype=np.float64)
    spread = images.std(axis=pixels, keepdims=True, dtype=np.float64)
    images -= centre.astype(images.dtype)
    images /= np.where(spread > 0, spread, 1.0).astype(images.dtype)
    return images


def pixel_mean_std(pixels, chunk=1024):
    """Mean and standard deviation of all grey values of ``pixels``, exactly: from a histogram of
    the 256 levels, counted a chunk of images at a time (never the whole set in memory)."""
    counts = np.zeros(LEVELS + 1, dtype=np.int64)
    for i in range(0, len(pixels), chunk):
        counts += np.bincount(pixels.levels(slice(i, i + chunk)).ravel(), minlength=LEVELS + 1)
    values = from_pixels(np.arange(LEVELS + 1, dtype=np.uint8)).astype(np.float64)
    total = counts.sum()
    mean = float(counts @ values) / total
    return mean, float(counts @ np.square(values - mean) / total) ** 0.5
