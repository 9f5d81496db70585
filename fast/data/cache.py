"""Decoding many X-rays, into a cache on disk: a memory-mapped uint8 ``.npy`` file of grey levels,
indexed by the file list, so a rerun maps it at once and a data set larger than memory is read a
batch at a time (``fast.data.pixels.Pixels``)."""
import errno
import hashlib
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fast.data.errors import DataError, ImageError, SkippedImageWarning
from fast.data.images import read_pixels
from fast.data.pixels import Pixels
from fast.files import atomic_savez
from fast.runtime import cpu_threads

# Bumped whenever the preprocessing changes, so old caches are never served.
_CACHE_VERSION = 2

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


def decode_images(paths, size, cache_dir, progress, desc):
    """``load_images`` without the warnings -> (Pixels of the kept files, kept, reasons ('' when
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


def warn_skipped(reasons, kept):
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
    images, kept, reasons = decode_images(paths, size, cache_dir, progress, desc)
    warn_skipped(reasons, kept)
    return images, kept
