"""The data set a run trains on (``fast.data.dataset``): statistics of the training split only,
a val folder when present, a fixed stratified subset."""
import warnings
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from fast.data.dataset import load_dataset
from fast.data.folders import CLASS_NAMES
from fast.data.images import read_xray
from fast.data.normalise import normalise, standardise
from fast.data.splits import patient_id

from helpers import make_tree

SIZE = 16


def test_load_dataset_standardises_with_training_statistics_only(tmp_path):
    normal = [f"IM-{k:04d}-0001.jpeg" for k in range(10)]
    pneumonia = [f"person{k}_bacteria_{k}.jpeg" for k in range(10)]
    make_tree(tmp_path, "train", normal, pneumonia)
    make_tree(tmp_path, "test", normal[:3], pneumonia[:3])
    bad = tmp_path / "test" / "NORMAL" / "IM-9999-0001.jpeg"
    bad.write_bytes(b"")
    with pytest.warns(UserWarning, match="IM-9999-0001.jpeg"):
        ds = load_dataset(tmp_path, SIZE, val_fraction=0.2, seed=0, cache_dir=None,
                          progress=False, normalisation="dataset")
    assert ds.x_train.shape == (len(ds.y_train), 1, SIZE, SIZE)
    assert ds.x_train.dtype == ds.x_val.dtype == ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == ds.y_val.dtype == ds.y_test.dtype == np.int64
    assert len(ds.y_train) == 16 and len(ds.y_val) == 4 and len(ds.y_test) == 6
    assert set(ds.y_val.tolist()) == {0, 1}
    assert ds.skipped == [(str(bad), ds.skipped[0][1])] and "empty" in ds.skipped[0][1]
    assert ds.class_names == CLASS_NAMES

    raw_train = np.stack([read_xray(p, SIZE) for p in ds.paths_train]).astype(np.float64)
    assert ds.mean == pytest.approx(raw_train.mean(), rel=1e-9)
    assert ds.std == pytest.approx(raw_train.std(), rel=1e-9)
    x_train = np.asarray(ds.x_train)
    assert_allclose(x_train.mean(), 0.0, atol=1e-5)
    assert_allclose(x_train.std(), 1.0, atol=1e-5)
    raw_val = np.stack([read_xray(p, SIZE) for p in ds.paths_val])
    assert_allclose(np.asarray(ds.x_val)[:, 0], standardise(raw_val, ds.mean, ds.std), rtol=0, atol=1e-6)
    train_patients = {patient_id(p) for p in ds.paths_train}
    assert train_patients.isdisjoint(patient_id(p) for p in ds.paths_val)
    # the default normalises each image by itself; the statistics are still the training split's
    with pytest.warns(UserWarning, match="IM-9999-0001.jpeg"):
        by_image = load_dataset(tmp_path, SIZE, val_fraction=0.2, seed=0, normalisation="image",
                                cache_dir=None, progress=False)
    assert by_image.x_val.how == "image" and by_image.mean == ds.mean and by_image.std == ds.std
    assert_allclose(np.asarray(by_image.x_val)[:, 0], normalise(raw_val.copy(), "image"), rtol=0, atol=1e-6)


def test_load_dataset_uses_a_val_folder_when_present(tmp_path):
    make_tree(tmp_path, "train")
    make_tree(tmp_path, "val", ["IM-0100-0001.png"], ["person100_virus_1.png"])
    make_tree(tmp_path, "test")
    ds = load_dataset(tmp_path, SIZE, val_fraction=0.1, seed=0, normalisation="image", cache_dir=None,
                      progress=False)
    assert [Path(p).name for p in ds.paths_val] == ["IM-0100-0001.png", "person100_virus_1.png"]
    assert len(ds.paths_train) == 4


def test_load_dataset_limit_takes_a_fixed_stratified_subset(tmp_path):
    make_tree(tmp_path, "train", [f"IM-{k:04d}-0001.png" for k in range(6)],
              [f"person{k}_virus_{k}.png" for k in range(18)])
    make_tree(tmp_path, "test")
    first = load_dataset(tmp_path, SIZE, val_fraction=0.0, seed=0, normalisation="image", limit=8,
                         cache_dir=None, progress=False)
    assert np.bincount(first.y_train).tolist() == [2, 6]
    assert len(first.y_test) == 4
    again = load_dataset(tmp_path, SIZE, val_fraction=0.0, seed=0, normalisation="image", limit=8,
                         cache_dir=None, progress=False)
    assert again.paths_train == first.paths_train


def test_load_dataset_on_a_small_real_subset(xray_root, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real data decodes without a single warning
        ds = load_dataset(xray_root, 32, val_fraction=0.1, seed=0, normalisation="image", limit=40,
                          cache_dir=tmp_path, progress=False)
    assert len(ds.y_train) + len(ds.y_val) == 40 and len(ds.y_test) == 40
    assert set(ds.y_val.tolist()) == {0, 1} and ds.skipped == []
    assert 0.0 < ds.mean < 1.0 and ds.std > 0.0
