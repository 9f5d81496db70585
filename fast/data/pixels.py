"""Stored images and the network inputs drawn from them, a batch at a time."""
import numpy as np

from fast.data.images import from_pixels
from fast.data.normalise import normalise

class Pixels:
    """Images as stored: (N, S, S) uint8 grey levels, usually a read-only memory map of the cache
    file, so a data set larger than memory costs only the rows being read.

    ``rows`` picks and orders the stored images this set holds. Indexing reads those rows and
    hands them over as ``read_xray`` does, (S, S) or (n, S, S) float32 in [0, 1]:
    ``pixels[i]``, ``pixels[a:b]``, ``pixels[index_array]``. ``np.asarray(pixels)`` reads them
    all (small sets only).
    """

    def __init__(self, store, rows=None):
        self.store = store
        self.rows = np.arange(len(store), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)

    def __len__(self):
        return len(self.rows)

    @property
    def shape(self):
        return (len(self.rows),) + tuple(self.store.shape[1:])

    dtype = np.dtype(np.float32)

    def subset(self, index):
        """The images at ``index`` (indices or a boolean mask) of this set, nothing read."""
        return Pixels(self.store, self.rows[index])

    def levels(self, index=slice(None)):
        """The uint8 levels of the images at ``index``, read from the store."""
        return np.asarray(self.store[self.rows[index]])

    def __getitem__(self, index):
        return from_pixels(self.levels(index))

    def __array__(self, dtype=None, copy=None):
        images = self[:]
        return images if dtype is None else images.astype(dtype)


class Inputs:
    """Network inputs drawn from ``Pixels`` when asked for: ``inputs[index]`` is
    (n, 1, S, S) float32, ``normalise``d the way ``how`` says (by default standardised with
    the training pixels' mean and std). Batches are made as they are drawn, never the whole
    set at once."""

    dtype = np.dtype(np.float32)

    def __init__(self, pixels, mean, std, how="dataset"):
        self.pixels, self.mean, self.std, self.how = pixels, mean, std, how

    def __len__(self):
        return len(self.pixels)

    @property
    def shape(self):
        n, h, w = self.pixels.shape
        return n, 1, h, w

    def subset(self, index):
        return Inputs(self.pixels.subset(index), self.mean, self.std, self.how)

    def __getitem__(self, index):
        images = self.pixels[index]
        return normalise(images, self.how, self.mean, self.std)[..., None, :, :]

    def __array__(self, dtype=None, copy=None):
        x = self[:]
        return x if dtype is None else x.astype(dtype)
