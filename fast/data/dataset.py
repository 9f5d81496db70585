"""The data set a run trains on: its splits decoded (``fast.data.splits.load_splits``), the
training pixels' statistics, and network inputs normalised as they are drawn."""
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fast.data.errors import DataError
from fast.data.folders import CLASS_NAMES, SPLITS, resolve_data_root
from fast.data.normalise import pixel_mean_std
from fast.data.pixels import Inputs
from fast.data.splits import load_splits


@dataclass
class Dataset:
    """Normalised splits. x: ``Inputs`` that hand over (n, 1, size, size) float32 batches
    as they are drawn; y: (N,) int64 (1 = PNEUMONIA)."""
    x_train: Inputs
    y_train: np.ndarray
    x_val: Inputs
    y_val: np.ndarray
    x_test: Inputs
    y_test: np.ndarray
    paths_train: list
    paths_val: list
    paths_test: list
    mean: float  # of the raw [0, 1] training pixels (validation excluded)
    std: float
    skipped: list = field(default_factory=list)  # (path, reason) of undecodable files
    class_names: tuple = CLASS_NAMES


def load_dataset(root, image_size, *, val_fraction, seed, normalisation, cache_dir=None, limit=None,
                 progress=True):
    """Decode, split (``load_splits``) and normalise the data set under ``root``.

    mean/std come from the training part only; ``normalisation`` is how batches are
    ``normalise``d. The images stay 8-bit (a memory map of the
    cache when there is one); batches are standardised as they are drawn (``Inputs``).
    """
    root = resolve_data_root(root)
    splits, skipped = load_splits(root, SPLITS, image_size, seed=seed, val_fraction=val_fraction,
                                  limit=limit, cache_dir=cache_dir, progress=progress)
    (x_tr, y_tr, p_tr), (x_va, y_va, p_va), (x_te, y_te, p_te) = (splits[s] for s in SPLITS)
    if len(p_tr) == 0:
        raise DataError(f"no decodable training images in {Path(root) / 'train'}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s); see the warnings above",
              file=sys.stderr)

    mean, std = pixel_mean_std(x_tr)
    if not std > 0:
        raise DataError(f"the training images under {root} are all one constant value")
    return Dataset(x_train=Inputs(x_tr, mean, std, normalisation), y_train=y_tr,
                   x_val=Inputs(x_va, mean, std, normalisation), y_val=y_va,
                   x_test=Inputs(x_te, mean, std, normalisation), y_test=y_te, paths_train=p_tr,
                   paths_val=p_va, paths_test=p_te, mean=mean, std=std, skipped=skipped)
