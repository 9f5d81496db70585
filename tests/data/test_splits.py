"""Which images form each split (``fast.data.splits``): patients read from file names, the
validation split and the folds grouped by patient and stratified."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from fast.data.folders import list_split
from fast.data.splits import patient_folds, patient_id, split_by_patient


@pytest.mark.parametrize("name, patient", [
    ("person1000_bacteria_2931.jpeg", "person1000"),
    ("person1000_virus_1681.jpeg", "person1000"),
    ("person447_virus_921_1.jpeg", "person447"),
    ("IM-0115-0001.jpeg", "IM-0115"),
    ("IM-0429-0001-0002.jpeg", "IM-0429"),
    ("NORMAL2-IM-0383-0001.jpeg", "NORMAL2-IM-0383"),
    ("NORMAL2-IM-0395-0001-0002.jpeg", "NORMAL2-IM-0395"),
    ("some scan.png", "some scan"),
    ("IM-.jpeg", "IM-"),
])
def test_patient_id_reads_the_real_naming_patterns(name, patient):
    assert patient_id(Path("train/NORMAL") / name) == patient


def test_every_real_file_name_has_a_recognised_patient(xray_root):
    paths, _ = list_split(xray_root, "train")
    assert [p.name for p in paths if patient_id(p) == p.stem] == []


def test_split_by_patient_on_real_data_keeps_patients_whole_and_classes_balanced(xray_root):
    paths, labels = list_split(xray_root, "train")
    train_idx, val_idx = split_by_patient(paths, labels, 0.1, seed=0)
    assert_array_equal(np.sort(np.r_[train_idx, val_idx]), np.arange(len(paths)))
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(val_idx) > 0)
    train_patients = {patient_id(paths[i]) for i in train_idx}
    val_patients = {patient_id(paths[i]) for i in val_idx}
    assert train_patients.isdisjoint(val_patients)
    for label in (0, 1):
        fraction = np.mean(labels[val_idx] == label) * len(val_idx) / np.sum(labels == label)
        assert 0.09 <= fraction <= 0.11, (label, fraction)
    again = split_by_patient(paths, labels, 0.1, seed=0)
    assert_array_equal(again[1], val_idx)
    assert not np.array_equal(split_by_patient(paths, labels, 0.1, seed=1)[1], val_idx)


def test_split_by_patient_keeps_a_patient_with_both_labels_on_one_side():
    names = ["person1_virus_1", "person1_bacteria_2", "person1_virus_3"]
    names += [f"person{k}_virus_{k}" for k in range(2, 12)]
    names += [f"IM-{k:04d}-0001" for k in range(20)]
    labels = np.array([0, 1, 1] + [1] * 10 + [0] * 20)
    for seed in range(20):
        train_idx, val_idx = split_by_patient(names, labels, 0.3, seed)
        sides = {int(i in set(val_idx)) for i in (0, 1, 2)}
        assert len(sides) == 1, seed


def test_split_by_patient_with_zero_fraction_puts_everything_in_train():
    train_idx, val_idx = split_by_patient(["a", "b", "c"], [0, 1, 1], 0.0, seed=0)
    assert_array_equal(train_idx, [0, 1, 2])
    assert val_idx.size == 0 and val_idx.dtype == np.int64


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
