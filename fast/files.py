"""Atomic file writing: every file the project writes goes through ``atomic_open``.

A file is written under a temporary name in its destination folder, flushed to disk, then
renamed over the destination in one step. A crash (or Ctrl-C) at any moment leaves either the
old file or the new one, never half of one, and the temporary file is removed on error.
"""
import os
import tempfile
from contextlib import contextmanager

import numpy as np


@contextmanager
def atomic_open(path, mode="wb"):
    """``with atomic_open(path) as f:`` write to f; on success the file replaces ``path``.

    mode: "wb" or "w" (text, UTF-8). The file gets the permissions a plain ``open`` would
    give it (mkstemp's own 0600 would hide models and pictures from other users).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_savez(path, **arrays):
    """np.savez of ``arrays`` (plain arrays only, loadable without pickle) to ``path``, atomically."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
