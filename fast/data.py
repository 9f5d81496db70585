"""Chest X-ray data pipeline: find the folders, decode the images, split by patient, cache.

Layout: ``root/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg`` (PNG and DICOM files are read too; an
optional ``root/val/`` is used as the validation split when present). Label 0 is NORMAL, label 1
is PNEUMONIA.

``read_xray`` is the one preprocessing path: training and prediction both call it, so a model
never sees pixels prepared in two different ways.
"""
import hashlib
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fast.config import TrainConfig
from fast.dicom import DICOM_EXTENSION, HEADER_SIZE, is_dicom, read_dicom
from fast.errors import DataError, ImageError
from fast.files import atomic_savez

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
SPLITS = ("train", "val", "test")
DEFAULT_DATA = "data/chest_xray"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", DICOM_EXTENSION)

# Bumped whenever the preprocessing changes, so old caches are never served.
_CACHE_VERSION = 1

_DATA_SOURCE = (
    "The data set is Kermany et al. (2018), \"Labeled Optical Coherence Tomography (OCT) and "
    "Chest X-Ray Images for Classification\", Mendeley Data, doi:10.17632/rscbjbr9sj (the same "
    "images as the Kaggle data set \"Chest X-Ray Images (Pneumonia)\"). Download it, then pass "
    "--data PATH, set XRAY_DATA=PATH, or put it at data/chest_xray; the folder must hold train/ "
    "and test/, each with NORMAL/ and PNEUMONIA/ inside."
)


class SkippedImageWarning(UserWarning):
    """An unreadable image was left out of a data set; the message names it and says why."""


# --------------------------------------------------------------------------- finding files

def resolve_data_root(data=None):
    """Data folder: ``data`` if given, else ``$XRAY_DATA``, else ``DEFAULT_DATA`` (from the cwd).

    Raises DataError naming the path tried and where the data comes from.
    """
    if data is not None:
        root, how = Path(data).expanduser(), "given explicitly"
    elif os.environ.get("XRAY_DATA"):
        root, how = Path(os.environ["XRAY_DATA"]).expanduser(), "from $XRAY_DATA"
    else:
        root, how = Path(DEFAULT_DATA), f"the default, relative to {Path.cwd()}"
    if not root.is_dir():
        raise DataError(f"chest X-ray data folder not found: tried {root} ({how}).\n{_DATA_SOURCE}")
    return root


def _find_class_dir(split_dir, class_name):
    """The subfolder of ``split_dir`` named ``class_name`` in any letter case."""
    matches = [p for p in split_dir.iterdir() if p.is_dir() and p.name.upper() == class_name]
    if not matches:
        raise DataError(f"class folder {split_dir / class_name} not found "
                        f"(looked for a folder named {class_name}, any case, in {split_dir})")
    if len(matches) > 1:
        names = ", ".join(sorted(p.name for p in matches))
        raise DataError(f"{split_dir} holds several {class_name} folders ({names}); keep one")
    return matches[0]


def is_image_file(path):
    """Whether the pipeline reads ``path`` as an image: a file named with an IMAGE_EXTENSIONS
    suffix (any case), or any other file that is DICOM by content; hidden files (names
    starting with '.', e.g. macOS '._x.jpeg' forks) are not."""
    path = Path(path)
    return (not path.name.startswith(".") and path.is_file()
            and (path.suffix.lower() in IMAGE_EXTENSIONS or is_dicom(path)))


def find_images(folder):
    """Every image file (``is_image_file``) under ``folder``, sub-folders included, sorted by
    path; hidden folders are skipped."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        relative = path.relative_to(folder).parts
        if not any(part.startswith(".") for part in relative[:-1]) and is_image_file(path):
            found.append(path)
    return found


def list_split(root, split):
    """Image paths and labels of ``root/split``: NORMAL files first, each class sorted by name.

    Images are the files named with an IMAGE_EXTENSIONS suffix, and the other files that are
    DICOM by content (DICOM files are often named by a UID, or have no suffix). Hidden files
    (names starting with '.', e.g. macOS '._x.jpeg' forks) are ignored.
    Returns (paths: list[Path], labels: (N,) int64).
    """
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DataError(f"split folder {split_dir} not found (expected {split}/ inside {root})")
    paths, labels = [], []
    for label, class_name in enumerate(CLASS_NAMES):
        class_dir = _find_class_dir(split_dir, class_name)
        files = sorted((p for p in class_dir.iterdir() if is_image_file(p)), key=lambda p: p.name)
        if not files:
            raise DataError(f"class folder {class_dir} holds no images (looked for "
                            f"{', '.join(IMAGE_EXTENSIONS)}, any case, and DICOM content)")
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


# --------------------------------------------------------------------------- decoding

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bytes some writers pad a file with after its last marker.
_PADDING = b"\x00 \t\r\n"


def _truncation_reason(data):
    """Why the encoded bytes look cut short, or None.

    Some OpenCV builds decode a truncated JPEG halfway (grey bottom rows) and only print a
    warning, so completeness is checked here: a JPEG must end with its EOI marker (after
    optional padding) and a PNG must hold its IEND chunk.
    """
    raw = data.tobytes()
    if raw.startswith(_JPEG_SOI) and not raw.rstrip(_PADDING).endswith(_JPEG_EOI):
        return "truncated JPEG (no end-of-image marker FF D9)"
    if raw.startswith(_PNG_SIGNATURE) and b"IEND" not in raw.rstrip(_PADDING)[-64:]:
        return "truncated PNG (no IEND chunk)"
    return None


def _to_unit_gray(image):
    """Decoded image (H, W) or (H, W, C), any depth -> (H, W) float32 in [0, 1]."""
    if np.issubdtype(image.dtype, np.integer):
        # Scale by the dtype's range so 8-bit and 16-bit files of one X-ray agree.
        unit = image.astype(np.float32) / np.float32(np.iinfo(image.dtype).max)
    elif np.issubdtype(image.dtype, np.floating):
        unit = image.astype(np.float32)
        if np.isnan(unit).any():
            raise ValueError("NaN pixel values")
    else:
        raise ValueError(f"unsupported pixel type {image.dtype}")
    if unit.ndim == 3:
        channels = unit.shape[2]
        if channels == 1:
            unit = unit[:, :, 0]
        elif channels == 3:
            unit = cv2.cvtColor(unit, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            unit = cv2.cvtColor(unit, cv2.COLOR_BGRA2GRAY)  # drops alpha
        else:
            raise ValueError(f"unsupported channel count {channels}")
    elif unit.ndim != 2:
        raise ValueError(f"unsupported image shape {image.shape}")
    return np.clip(unit, 0.0, 1.0)


def resize_xray(gray, size):
    """(H, W) grey image in [0, 1] -> (size, size) float32 in [0, 1]: every format's last step
    (and what an image handed over as an array goes through)."""
    if size < 1:
        raise ValueError(f"image size must be >= 1, got {size}")
    # INTER_AREA averages the source pixels under each output pixel: no aliasing on shrink.
    resized = cv2.resize(np.asarray(gray, dtype=np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(resized, 0.0, 1.0).astype(np.float32, copy=False)


def decode_xray_bytes(data, size, name="<bytes>"):
    """Encoded image bytes (1-D uint8 array) -> (size, size) float32 in [0, 1].

    ``name`` only labels error messages. Raises ImageError when the bytes are empty,
    truncated or not an image OpenCV can decode (DICOM is read from a path, by read_xray).
    """
    return resize_xray(_decode_unit_gray(data, name), size)


def _decode_unit_gray(data, name):
    """Encoded image bytes (1-D uint8 array) -> (H, W) float32 in [0, 1], at full size."""
    data = np.asarray(data, dtype=np.uint8).reshape(-1)
    if data.size == 0:
        raise ImageError(f"{name}: empty file")
    reason = _truncation_reason(data)
    if reason:
        raise ImageError(f"{name}: {reason}")
    try:
        # UNCHANGED keeps 16-bit depth (the default flag squeezes it to 8 bits). It also
        # ignores EXIF rotation, which X-ray exports do not use.
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise ImageError(f"{name}: OpenCV could not decode it ({err})") from err
    if image is None or image.size == 0:
        raise ImageError(f"{name}: not an image OpenCV can decode (corrupt or unknown format)")
    try:
        return _to_unit_gray(image)
    except ValueError as err:
        raise ImageError(f"{name}: {err}") from err


def read_xray(path, size):
    """Read one X-ray file -> (size, size) float32 in [0, 1], whatever its format and depth.

    Colour files are converted to grey (alpha dropped); pixel values are divided by the
    dtype's maximum (255, 65535), floats are clipped. A DICOM file (by content, or named .dcm)
    is read by ``fast.dicom.read_dicom`` instead. Raises ImageError naming the file.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except OSError as err:
        raise ImageError(f"{path}: cannot read it ({err.strerror or err})") from err
    if path.suffix.lower() == DICOM_EXTENSION or is_dicom(data[:HEADER_SIZE]):
        return resize_xray(read_dicom(path), size)
    return decode_xray_bytes(data, size, name=str(path))


# --------------------------------------------------------------------------- patients

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


# --------------------------------------------------------------------------- decoding many, cache

def _cache_key(paths, size):
    """(file name, key) of the cache for these files at this size.

    The name hashes the size and the sorted paths, so an edited data set overwrites its old
    cache instead of piling up new ones; the key stored inside also hashes every file's byte
    count and mtime, so any changed, added or removed file forces a rebuild.
    """
    entries = []
    for path in sorted(paths):
        try:
            st = os.stat(path)
            entries.append((path, st.st_size, st.st_mtime_ns))
        except OSError:
            entries.append((path, -1, -1))
    name = hashlib.sha256(repr((_CACHE_VERSION, int(size), [e[0] for e in entries])).encode())
    key = hashlib.sha256(repr((_CACHE_VERSION, int(size), entries)).encode())
    return f"xray_{size}px_{name.hexdigest()[:20]}.npz", key.hexdigest()


def _read_cache(cache_file, key):
    """(paths, images, kept, reasons) stored under ``key``, or None when absent or unusable."""
    try:
        with np.load(cache_file, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            return (list(npz["paths"]), npz["images"], npz["kept"], list(npz["reasons"]))
    except FileNotFoundError:
        return None
    except Exception as err:  # a half-written or foreign file: rebuild rather than crash
        warnings.warn(f"ignoring unreadable cache {cache_file}: {err}", stacklevel=3)
        return None


def _write_cache(cache_file, key, paths, images, kept, reasons):
    """Written atomically, so an interrupted run never leaves a bad cache."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_savez(cache_file, key=np.asarray(key), paths=np.asarray(paths, dtype=str), images=images,
                 kept=kept, reasons=np.asarray(reasons, dtype=str))


def _decode_all(paths, size, progress, desc):
    """Decode every path -> (images of the kept files, kept mask, reasons ('' when kept))."""
    images = np.empty((len(paths), size, size), dtype=np.float32)
    kept = np.zeros(len(paths), dtype=bool)
    reasons = [""] * len(paths)
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=not progress)):
        try:
            images[i] = read_xray(path, size)
            kept[i] = True
        except ImageError as err:
            reasons[i] = str(err)
    return images[kept], kept, reasons


def _load_images(paths, size, cache_dir, progress, desc):
    """load_images without the warnings -> (images, kept, reasons ('' when kept))."""
    paths = [os.path.abspath(p) for p in paths]
    cached = None
    if cache_dir is not None:
        name, key = _cache_key(paths, size)
        cache_file = Path(cache_dir) / name
        cached = _read_cache(cache_file, key)
    if cached is None:
        stored_paths = sorted(set(paths))
        stored_images, stored_kept, stored_reasons = _decode_all(stored_paths, size, progress, desc)
        if cache_dir is not None:
            _write_cache(cache_file, key, stored_paths, stored_images, stored_kept, stored_reasons)
    else:
        stored_paths, stored_images, stored_kept, stored_reasons = cached

    if paths == stored_paths:  # the usual case: list_split order is already sorted
        return stored_images, stored_kept, [str(r) for r in stored_reasons]
    # The cache holds the sorted unique paths; hand them back in the order asked for.
    position = {p: i for i, p in enumerate(stored_paths)}
    rows = np.cumsum(stored_kept) - 1  # row of each kept file in stored_images
    where = np.asarray([position[p] for p in paths], dtype=np.int64)
    kept = stored_kept[where]
    images = stored_images[rows[where[kept]]]
    return images, kept, [str(stored_reasons[i]) for i in where]


def _warn_skipped(reasons, kept):
    for reason in (r for r, k in zip(reasons, kept) if not k):
        warnings.warn(f"skipping unreadable image: {reason}", SkippedImageWarning, stacklevel=3)


def load_images(paths, size, cache_dir=None, progress=True, desc="decoding"):
    """Decode ``paths`` -> (images: (M, size, size) float32 in [0, 1], kept: (N,) bool).

    Unreadable files are skipped with a warning naming them (kept[i] is False); M = kept.sum().
    With ``cache_dir`` the result is stored as an .npz keyed by the size and every file's
    path, byte count and mtime, so a rerun loads it at once and any change to a file rebuilds
    it. Skipped files are cached too, and warned about again.
    """
    images, kept, reasons = _load_images(paths, size, cache_dir, progress, desc)
    _warn_skipped(reasons, kept)
    return images, kept


# --------------------------------------------------------------------------- the data set

@dataclass
class Dataset:
    """Standardised splits. x: (N, 1, size, size) float32, y: (N,) int64 (1 = PNEUMONIA)."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    paths_train: list
    paths_val: list
    paths_test: list
    mean: float  # of the raw [0, 1] training pixels (validation excluded)
    std: float
    skipped: list = field(default_factory=list)  # (path, reason) of undecodable files
    class_names: tuple = CLASS_NAMES


def standardise(images, mean, std, in_place=False):
    """(images - mean) / std, in the images' dtype: the one standardisation, used by training,
    evaluation and prediction. ``in_place`` overwrites ``images`` (at 128 px the training
    images alone are 300 MB: a copy each is too many)."""
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


def _pixel_mean_std(images, chunk=256):
    """Mean and standard deviation of all pixels, accumulated in float64 a chunk at a time
    (a float64 copy of 5,000 224x224 images would take 2 GB). One pass of sum and sum of
    squares is exact enough here: pixels lie in [0, 1] and their spread is not tiny."""
    total = squares = 0.0
    for i in range(0, len(images), chunk):
        flat = images[i:i + chunk].astype(np.float64).ravel()
        total += float(flat.sum())
        squares += float(flat @ flat)
    mean = total / images.size
    return mean, max(squares / images.size - mean * mean, 0.0) ** 0.5


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
    images, kept, reasons = _load_images(paths, size, cache_dir, progress, f"decoding {split}")
    _warn_skipped(reasons, kept)
    skipped = [(str(p), r) for p, r, k in zip(paths, reasons, kept) if not k]
    return images, labels[kept], [str(p) for p, k in zip(paths, kept) if k], skipped


def load_splits(root, names, image_size, limit=None, seed=TrainConfig.seed,
                val_fraction=TrainConfig.val_fraction, cache_dir=TrainConfig.cache_dir,
                progress=True):
    """The images of each split in ``names``, chosen as training chooses them -- the one rule.

    "test" is root/test. "val" is root/val when it exists, otherwise ``val_fraction`` of
    root/train carved out by patient (``split_by_patient`` with ``seed``), and "train" is what
    is left. ``limit`` keeps a seeded stratified subset of at most that many images per folder.
    Each folder is decoded once. Returns ({name: (images (N, S, S) float32 in [0, 1], labels,
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
        splits[name] = (images[keep], labels[keep], [paths[i] for i in keep])
    return splits, skipped


def load_dataset(root, image_size, val_fraction=TrainConfig.val_fraction, seed=TrainConfig.seed,
                 cache_dir=TrainConfig.cache_dir, limit=None, progress=True):
    """Decode, split (``load_splits``) and standardise the data set under ``root``.

    mean/std come from the training part only.
    """
    root = resolve_data_root(root)
    splits, skipped = load_splits(root, SPLITS, image_size, limit, seed, val_fraction, cache_dir,
                                  progress)
    (x_tr, y_tr, p_tr), (x_va, y_va, p_va), (x_te, y_te, p_te) = (splits[s] for s in SPLITS)
    if len(p_tr) == 0:
        raise DataError(f"no decodable training images in {Path(root) / 'train'}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s); see the warnings above",
              file=sys.stderr)

    mean, std = _pixel_mean_std(x_tr)
    if not std > 0:
        raise DataError(f"the training images under {root} are all one constant value")

    def prepared(images):  # (N, 1, size, size)
        return standardise(images, mean, std, in_place=True)[:, None]

    return Dataset(x_train=prepared(x_tr), y_train=y_tr, x_val=prepared(x_va), y_val=y_va,
                   x_test=prepared(x_te), y_test=y_te, paths_train=p_tr, paths_val=p_va,
                   paths_test=p_te, mean=mean, std=std, skipped=skipped)
