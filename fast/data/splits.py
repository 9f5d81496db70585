"""Which images form each split: patients read from file names, the validation split and the
folds grouped by patient, a stratified subset, and ``load_splits``, the one rule that training,
evaluation and the report all follow."""
import re
from pathlib import Path

import numpy as np

from fast.data.cache import decode_images, warn_skipped
from fast.data.folders import CLASS_NAMES, SPLITS, list_split

# The training defaults of the choice of images (``TrainConfig.seed`` and ``val_fraction`` are
# these): the seed that draws the validation patients and any --limit subset, and the share of the
# training patients carved out for validation.
DEFAULT_SEED = 0
DEFAULT_VAL_FRACTION = 0.1

_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)_\d+"),  # person1_virus_6, person447_virus_921_1
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+"),            # IM-0115-0001, NORMAL2-IM-0395-0001-0002
)


def patient_id(path):
    """Patient a file belongs to, read from its name; an unknown name is its own patient.

    'person123_bacteria_45.jpeg' -> 'person123', 'IM-0115-0001.jpeg' -> 'IM-0115',
    'NORMAL2-IM-0395-0001-0002.jpeg' -> 'NORMAL2-IM-0395', 'scan.png' -> 'scan'.
    """
    stem = Path(path).stem
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(stem)
        if match:
            return match.group(1)
    return stem


def _patients(paths, labels):
    """Images grouped by patient -> ({id: image indices}, sorted ids, {id: label}).

    A patient with both labels counts with its majority label (ties: PNEUMONIA). The ids are
    sorted, so what is drawn from them depends on the seed only, not on the input order.
    """
    groups = {}
    for i, path in enumerate(paths):
        groups.setdefault(patient_id(path), []).append(i)
    ids = sorted(groups)
    return groups, ids, {pid: int(np.mean(labels[groups[pid]]) >= 0.5) for pid in ids}


def carved_fraction(folds, val_fraction):
    """The share of the training patients carved out as a validation split: ``val_fraction`` for
    one model, none for K fold models (K > 1), whose held-out images are their folds."""
    return 0.0 if folds > 1 else val_fraction


def split_by_patient(paths, labels, val_fraction, seed):
    """Stratified, patient-grouped train/validation split.

    About ``val_fraction`` of each class's images go to validation; all images of one patient
    land on the same side. A patient with both labels counts with its majority label (ties:
    PNEUMONIA) and still stays whole. Every class with at least two patients gets at least one
    patient in validation when ``val_fraction > 0``. Returns (train_idx, val_idx), sorted int64.
    """
    labels = np.asarray(labels)
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups, ids, group_label = _patients(paths, labels)

    rng = np.random.default_rng(seed)
    val = []
    for label in range(len(CLASS_NAMES)):
        class_ids = [pid for pid in ids if group_label[pid] == label]
        if not class_ids or val_fraction == 0.0:
            continue
        target = val_fraction * sum(len(groups[pid]) for pid in class_ids)
        order = [class_ids[k] for k in rng.permutation(len(class_ids))]
        count, chosen = 0, []
        for pid in order:
            # Take a patient when it brings the count no further from the target: big
            # patients are skipped near the end instead of overshooting.
            if abs(count + len(groups[pid]) - target) <= abs(count - target):
                chosen.append(pid)
                count += len(groups[pid])
        if not chosen and len(order) > 1:
            chosen = [min(order, key=lambda pid: len(groups[pid]))]
        for pid in chosen:
            val += groups[pid]
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(paths), dtype=np.int64), val_idx)
    return train_idx, val_idx


def patient_folds(paths, labels, k, seed):
    """Fold index in [0, k) of each image for patient-grouped, stratified k-fold validation.

    paths: N file paths; labels: (N,) 0/1. All images of one patient share a fold. Each
    patient counts with its majority label (ties: PNEUMONIA), as in ``split_by_patient``, and
    the patients of each class are dealt in a seeded random order, each to the fold holding
    the fewest images of that class so far (ties: the lowest fold). So every fold gets at
    least one patient of each class, and per class the folds' image counts (images of that
    class's patients) differ by at most the largest such patient's image count. The result
    depends on the seed, not on the input order. ValueError when k < 2 or k exceeds a class's
    number of patients. Returns (N,) int64.
    """
    labels = np.asarray(labels)
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must hold only 0 and 1, got values {np.unique(labels)[:10]}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    groups, ids, group_label = _patients(paths, labels)

    rng = np.random.default_rng(seed)
    folds = np.empty(len(paths), dtype=np.int64)
    for label, class_name in enumerate(CLASS_NAMES):
        class_ids = [pid for pid in ids if group_label[pid] == label]
        if len(class_ids) < k:
            raise ValueError(f"k = {k} folds need at least {k} {class_name} patients, "
                             f"got {len(class_ids)}")
        load = np.zeros(k, dtype=np.int64)  # images of this class in each fold so far
        for j in rng.permutation(len(class_ids)):
            members = groups[class_ids[j]]
            fold = int(np.argmin(load))  # the first of the least loaded folds
            folds[members] = fold
            load[fold] += len(members)
    return folds


def _stratified_subset(labels, limit, seed):
    """Sorted indices of at most ``limit`` items, class proportions kept, every class present
    when ``limit`` allows it."""
    labels = np.asarray(labels)
    if limit is None or limit >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    classes, counts = np.unique(labels, return_counts=True)
    share = limit * counts / counts.sum()
    take = np.floor(share).astype(np.int64)
    if limit >= len(classes):
        take = np.maximum(take, 1)
    # Hand out what flooring left over by largest remainder, ties to the lower class.
    for k in np.argsort(-(share - np.floor(share)), kind="stable"):
        if take.sum() >= limit:
            break
        take[k] += 1
    while take.sum() > limit:  # the minimum of one per class overshot: trim the biggest
        take[np.argmax(take)] -= 1
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:t] for c, t in zip(classes, take)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _decode_split(root, split, size, limit, seed, cache_dir, progress):
    """Decode one folder split -> (images, labels, paths as str, skipped (path, reason) list)."""
    paths, labels = list_split(root, split)
    subset = _stratified_subset(labels, limit, seed)
    paths, labels = [paths[i] for i in subset], labels[subset]
    images, kept, reasons = decode_images(paths, size, cache_dir, progress, f"decoding {split}")
    warn_skipped(reasons, kept)
    skipped = [(str(p), r) for p, r, k in zip(paths, reasons, kept) if not k]
    return images, labels[kept], [str(p) for p, k in zip(paths, kept) if k], skipped


def load_splits(root, names, image_size, *, seed, val_fraction, limit=None, cache_dir=None,
                progress=True):
    """The images of each split in ``names``, chosen as training chooses them -- the one rule.

    "test" is root/test. "val" is root/val when it exists, otherwise ``val_fraction`` of
    root/train carved out by patient (``split_by_patient`` with ``seed``), and "train" is what
    is left. ``limit`` keeps a seeded stratified subset of at most that many images per folder.
    Each folder is decoded once. Returns ({name: (images: Pixels of N (S, S) images, labels,
    paths as str)}, skipped (path, reason) list).
    """
    unknown = [n for n in names if n not in SPLITS]
    if unknown:
        raise ValueError(f"unknown split {unknown[0]!r}; choose from {', '.join(SPLITS)}")
    root = Path(root)
    has_val = (root / "val").is_dir()
    decoded, skipped = {}, []

    def folder(split):
        if split not in decoded:
            *arrays, skips = _decode_split(root, split, image_size, limit, seed, cache_dir, progress)
            decoded[split] = arrays
            skipped.extend(skips)
        return decoded[split]

    splits = {}
    for name in names:
        if name == "test" or has_val:
            splits[name] = tuple(folder(name))
            continue
        images, labels, paths = folder("train")
        train_idx, val_idx = split_by_patient(paths, labels, val_fraction, seed)
        keep = val_idx if name == "val" else train_idx
        splits[name] = (images.subset(keep), labels[keep], [paths[i] for i in keep])
    return splits, skipped
