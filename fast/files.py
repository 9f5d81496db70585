"""Atomic file writing: every file the project writes goes through ``atomic_open``.

A file is written under a temporary name in its destination folder, flushed to disk, then
renamed over the destination in one step. A crash (or Ctrl-C) at any moment leaves either the
old file or the new one, never half of one, and the temporary file is removed on error.
"""
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

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


def folder_problem(path):
    """Why files cannot be written into the folder ``path`` (made if missing), in words, or None.

    For a command to refuse a bad target before its work, not after: ``path`` exists and is
    not a folder, or the nearest existing folder above it is a file or cannot be written to.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            return f"{path} exists and is not a folder"
        return None if os.access(path, os.W_OK | os.X_OK) else f"{path} is not writable"
    above = path.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        return f"cannot make the folder {path}: {above} is not a folder"
    if not os.access(above, os.W_OK | os.X_OK):
        return f"cannot make the folder {path}: {above} is not writable"
    return None


def file_problem(path):
    """Why the file ``path`` cannot be written, in words, or None: it is a folder, or its
    folder does not exist or cannot be written to."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder"
    folder = path.absolute().parent
    if not folder.is_dir():
        return f"cannot write {path}: its folder does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write {path}: its folder is not writable"
    return None


def atomic_write_text(path, text):
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_savez(path, **arrays):
    """np.savez of ``arrays`` (plain arrays only, loadable without pickle) to ``path``, atomically."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


# Every picture the project draws carries this in its PNG "Software" text chunk, so that a
# folder of X-rays with the project's pictures in it is never read back as X-rays.
PICTURE_MARK = "xray-cnn"
_MARK_BYTES = b"Software\x00" + PICTURE_MARK.encode()
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def written_by_project(path):
    """Whether ``path`` is a PNG picture this project drew (its mark in the file's first 4 KiB,
    where the text chunks come before the pixels)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head.startswith(_PNG_SIGNATURE) and _MARK_BYTES in head
