"""Chest X-ray data pipeline: find the folders, decode the images, split by patient, cache.

Layout: ``root/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg`` (PNG and DICOM files are read too; an
optional ``root/val/`` is used as the validation split when present). Label 0 is NORMAL, label 1
is PNEUMONIA.

``read_pixels`` is the one preprocessing path: training and prediction both go through it, so a
model never sees pixels prepared in two different ways. It ends in 8-bit grey levels: the
decoded-image cache is a memory-mapped uint8 array on disk (``Pixels``), so a data set larger
than memory is read a batch at a time, and ``read_xray`` hands the same levels over as floats.
"""
import errno
import hashlib
import os
import re
import sys
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fast.config import TrainConfig
from fast.dicom import DICOM_EXTENSION, HEADER_SIZE, is_dicom, read_dicom
from fast.errors import DataError, ImageError
from fast.files import atomic_savez
from fast.runtime import cpu_threads

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
SPLITS = ("train", "val", "test")
DEFAULT_DATA = "data/chest_xray"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", DICOM_EXTENSION)

_DICOM_LOCK = threading.Lock()
# Bumped whenever the preprocessing changes, so old caches are never served.
_CACHE_VERSION = 2
LEVELS = 255  # grey levels 0..255 stand for 0..1

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


def to_pixels(unit):
    """Grey values in [0, 1] -> uint8 levels 0..255, rounded to the nearest."""
    return np.rint(np.asarray(unit, dtype=np.float32) * np.float32(LEVELS)).astype(np.uint8)


def from_pixels(levels):
    """uint8 levels -> float32 grey values in [0, 1] (level / 255): what the model is given."""
    return np.divide(levels, np.float32(LEVELS), dtype=np.float32)


def decode_xray_bytes(data, size, name="<bytes>"):
    """Encoded image bytes (1-D uint8 array) -> (size, size) float32 in [0, 1], in 8-bit levels.

    ``name`` only labels error messages. Raises ImageError when the bytes are empty,
    truncated or not an image OpenCV can decode (DICOM is read from a path, by read_xray).
    """
    return from_pixels(to_pixels(resize_xray(_decode_unit_gray(data, name), size)))


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


def read_pixels(path, size):
    """Read one X-ray file -> (size, size) uint8 grey levels, whatever its format and depth.

    Colour files are converted to grey (alpha dropped); pixel values are divided by the
    dtype's maximum (255, 65535), floats are clipped; after resizing, the grey values in [0, 1]
    are rounded to 8-bit levels (the source JPEGs have 8 bits; at the model's sizes a level is
    far below the noise). A DICOM file (by content, or named .dcm) is read by
    ``fast.dicom.read_dicom`` instead. Raises ImageError naming the file.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except OSError as err:
        raise ImageError(f"{path}: cannot read it ({err.strerror or err})") from err
    if path.suffix.lower() == DICOM_EXTENSION or is_dicom(data[:HEADER_SIZE]):
        with _DICOM_LOCK:  # read_dicom watches pydicom's warnings, which are process-wide
            unit = read_dicom(path)
    else:
        unit = _decode_unit_gray(data, str(path))
    return to_pixels(resize_xray(unit, size))


def read_xray(path, size):
    """Read one X-ray file -> (size, size) float32 in [0, 1]: ``read_pixels``' levels / 255."""
    return from_pixels(read_pixels(path, size))


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


# --------------------------------------------------------------------------- stored images

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


# --------------------------------------------------------------------------- decoding many, cache

def _cache_key(paths, size):
    """(file name stem, key) of the cache for these files at this size.

    The name hashes the size and the sorted paths; the key stored inside also hashes every
    file's byte count and mtime, so any changed, added or removed file forces a rebuild, and the
    rebuilt cache of the same file list replaces the old one.
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
    return f"xray_{size}px_{name.hexdigest()[:20]}", key.hexdigest()


def _index_file(cache_dir, name):
    """The index: paths, kept, reasons and the key, whose pixels are in ``_pixels_file``."""
    return Path(cache_dir) / f"{name}.index.npz"


def _pixels_file(cache_dir, name, key):
    """The pixels, an .npy file memory-mapped when read; named by the key too, so an index can
    only ever point at pixels decoded for it."""
    return Path(cache_dir) / f"{name}.{key[:16]}.npy"


def _open_store(pixels_file, count, size):
    """The stored levels, memory-mapped read-only (an empty set: an empty array, as an empty
    file cannot be mapped)."""
    if count == 0:
        return np.zeros((0, size, size), dtype=np.uint8)
    store = np.load(pixels_file, mmap_mode="r")
    if store.dtype != np.uint8 or store.shape != (count, size, size):
        raise ValueError(f"holds {store.dtype} {store.shape}, expected uint8 {(count, size, size)}")
    return store


def _read_cache(cache_dir, name, key, size):
    """(paths, store, kept, reasons) stored under ``key``, or None when absent or unusable."""
    index_file = _index_file(cache_dir, name)
    try:
        with np.load(index_file, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            paths, kept, reasons = list(npz["paths"]), npz["kept"], [str(r) for r in npz["reasons"]]
        return paths, _open_store(_pixels_file(cache_dir, name, key), len(paths), size), kept, reasons
    except (FileNotFoundError, NotADirectoryError):
        return None
    except Exception as err:  # a half-written or foreign file: rebuild rather than crash
        warnings.warn(f"ignoring unreadable cache {index_file}: {err}", stacklevel=4)
        return None


def _build_cache(cache_dir, name, key, paths, size, progress, desc):
    """Decode ``paths`` straight into the cache's memory-mapped file -> (store, kept, reasons).

    The pixels go to a temporary file, its disk space reserved first (a full disk is a clear
    error, not a crash while writing through the map), renamed when complete; the index is
    written after it, and then the pixels of older versions of this file list are removed.
    DataError when the cache folder cannot be written.
    """
    cache_dir = Path(cache_dir)
    pixels_file, index_file = _pixels_file(cache_dir, name, key), _index_file(cache_dir, name)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        if paths:
            handle, partial = tempfile.mkstemp(dir=cache_dir, prefix=f".{pixels_file.name}.", suffix=".partial")
            os.close(handle)
            try:
                store = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                                  shape=(len(paths), size, size))
                _reserve(partial)
                kept, reasons = _decode_all(paths, size, store, progress, desc)
                store.flush()
                del store
                os.replace(partial, pixels_file)
            finally:
                Path(partial).unlink(missing_ok=True)
        else:
            kept, reasons = np.zeros(0, dtype=bool), []
        atomic_savez(index_file, key=np.asarray(key), paths=np.asarray(paths, dtype=str), kept=kept,
                     reasons=np.asarray(reasons, dtype=str))
    except OSError as err:
        raise DataError(f"cannot write the image cache in {cache_dir} ({err.strerror or err}); "
                        "free some space or choose another --cache-dir") from err
    for old in cache_dir.glob(f"{name}.*.npy"):
        if old != pixels_file:  # a reader may still map it: the kernel keeps it until unmapped
            old.unlink(missing_ok=True)
    return _open_store(pixels_file, len(paths), size), kept, reasons


def _reserve(path):
    """Reserve the disk space of ``path``'s full size now, where the system can (ENOSPC then
    raises here, instead of a SIGBUS later in a write through the memory map)."""
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            # a file system without the call: the space is taken as the file is written


def _decode_all(paths, size, out, progress, desc):
    """Decode every path into ``out[i]`` (uint8 levels), one thread per core (OpenCV and file
    reads release the GIL) -> (kept mask, reasons ('' when kept))."""
    kept = np.zeros(len(paths), dtype=bool)
    reasons = [""] * len(paths)

    def decode(i):
        try:
            out[i] = read_pixels(paths[i], size)
            kept[i] = True
        except ImageError as err:
            reasons[i] = str(err)

    window = 1024  # images handed to the threads at a time: bounded bookkeeping for any set
    with ThreadPoolExecutor(max_workers=cpu_threads()) as pool, \
            tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), window):
            for _ in pool.map(decode, range(start, min(start + window, len(paths)))):
                bar.update()
    return kept, reasons


def _load_images(paths, size, cache_dir, progress, desc):
    """load_images without the warnings -> (Pixels of the kept files, kept, reasons ('' when
    kept))."""
    paths = [os.path.abspath(p) for p in paths]
    stored_paths = sorted(set(paths))
    cached = None
    if cache_dir is not None:
        name, key = _cache_key(paths, size)
        cached = _read_cache(cache_dir, name, key, size)
    if cached is not None:
        stored_paths, store, kept, reasons = cached
    elif cache_dir is not None:
        store, kept, reasons = _build_cache(cache_dir, name, key, stored_paths, size, progress, desc)
    else:
        store = np.zeros((len(stored_paths), size, size), dtype=np.uint8)
        kept, reasons = _decode_all(stored_paths, size, store, progress, desc)
    # The store holds the sorted unique paths; hand them over in the order asked for.
    position = {p: i for i, p in enumerate(stored_paths)}
    where = np.asarray([position[p] for p in paths], dtype=np.int64)
    kept_here = kept[where]
    return Pixels(store, where[kept_here]), kept_here, [reasons[i] for i in where]


def _warn_skipped(reasons, kept):
    for reason in (r for r, k in zip(reasons, kept) if not k):
        warnings.warn(f"skipping unreadable image: {reason}", SkippedImageWarning, stacklevel=3)


def load_images(paths, size, cache_dir=None, progress=True, desc="decoding"):
    """Decode ``paths`` -> (images: Pixels of M (size, size) images, kept: (N,) bool).

    Unreadable files are skipped with a warning naming them (kept[i] is False); M = kept.sum().
    With ``cache_dir`` the 8-bit levels are decoded straight into a memory-mapped .npy file
    there (never the whole set in memory), indexed by the size and every file's path, byte
    count and mtime: a rerun maps it at once, and any change to a file rebuilds it. Skipped
    files are remembered too, and warned about again.
    """
    images, kept, reasons = _load_images(paths, size, cache_dir, progress, desc)
    _warn_skipped(reasons, kept)
    return images, kept


# --------------------------------------------------------------------------- the data set

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
        np.divide(levels, np.float32(LEVELS), out=images, dtype=np.float32)
    pixels = (-2, -1)  # each image's own statistics, written into ``images`` whatever its layout
    centre = images.mean(axis=pixels, keepdims=True, dtype=np.float64)
    spread = images.std(axis=pixels, keepdims=True, dtype=np.float64)
    images -= centre.astype(images.dtype)
    images /= np.where(spread > 0, spread, 1.0).astype(images.dtype)
    return images


def _pixel_mean_std(pixels, chunk=1024):
    """Mean and standard deviation of all grey values of ``pixels``, exactly: from a histogram of
    the 256 levels, counted a chunk of images at a time (never the whole set in memory)."""
    counts = np.zeros(LEVELS + 1, dtype=np.int64)
    for i in range(0, len(pixels), chunk):
        counts += np.bincount(pixels.levels(slice(i, i + chunk)).ravel(), minlength=LEVELS + 1)
    values = from_pixels(np.arange(LEVELS + 1, dtype=np.uint8)).astype(np.float64)
    total = counts.sum()
    mean = float(counts @ values) / total
    return mean, float(counts @ np.square(values - mean) / total) ** 0.5


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


def load_dataset(root, image_size, val_fraction=TrainConfig.val_fraction, seed=TrainConfig.seed,
                 cache_dir=TrainConfig.cache_dir, limit=None, progress=True,
                 normalisation=TrainConfig.normalise):
    """Decode, split (``load_splits``) and normalise the data set under ``root``.

    mean/std come from the training part only; ``normalisation`` is how batches are
    ``normalise``d. The images stay 8-bit (a memory map of the
    cache when there is one); batches are standardised as they are drawn (``Inputs``).
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
    return Dataset(x_train=Inputs(x_tr, mean, std, normalisation), y_train=y_tr,
                   x_val=Inputs(x_va, mean, std, normalisation), y_val=y_va,
                   x_test=Inputs(x_te, mean, std, normalisation), y_test=y_te, paths_train=p_tr,
                   paths_val=p_va, paths_test=p_te, mean=mean, std=std, skipped=skipped)
