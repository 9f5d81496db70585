"""Decoding many X-rays into the cache (``fast.data.cache``): skipped files named, a memory map of
8-bit levels, rebuilt when a file changes or the cache is unreadable, decoded on every core."""
import os
import re
import threading
import time

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fast.data.cache
from fast.data.cache import load_images
from fast.data.errors import DataError
from fast.data.images import read_pixels, read_xray

from helpers import smooth_image, to_u8, write

SIZE = 16


def test_load_images_skips_bad_files_with_a_warning_naming_them(tmp_path):
    good = [write(tmp_path / f"good{i}.png", to_u8(smooth_image(shift=i))) for i in range(2)]
    whole = write(tmp_path / "whole.jpeg", to_u8(smooth_image())).read_bytes()
    truncated, corrupt, empty = tmp_path / "cut.jpeg", tmp_path / "junk.jpeg", tmp_path / "e.png"
    truncated.write_bytes(whole[:len(whole) // 2])
    corrupt.write_bytes(np.random.default_rng(2).integers(0, 256, 500, dtype=np.uint8).tobytes())
    empty.write_bytes(b"")
    paths = [good[0], truncated, corrupt, good[1], empty]
    with pytest.warns(UserWarning) as record:
        images, kept = load_images(paths, SIZE, progress=False)
    assert_array_equal(kept, [True, False, False, True, False])
    assert images.shape == (2, SIZE, SIZE) and images.dtype == np.float32
    assert_array_equal(images[1], read_xray(good[1], SIZE))
    messages = " ".join(str(w.message) for w in record)
    for bad in (truncated, corrupt, empty):
        assert str(bad) in messages


def test_second_load_is_served_from_cache_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    paths = [write(tmp_path / f"img{i}.png", to_u8(smooth_image(shift=i))) for i in range(3)]
    paths.append(tmp_path / "empty.jpeg")
    paths[-1].write_bytes(b"")
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="empty.jpeg"):
        first, kept = load_images(paths, SIZE, cache_dir=cache, progress=False)

    def must_not_decode(path, size):
        raise AssertionError(f"decoded {path} although it is cached")
    monkeypatch.setattr(fast.data.cache, "read_pixels", must_not_decode)
    with pytest.warns(UserWarning, match="empty.jpeg"):  # skipped files are re-reported
        again, kept_again = load_images(paths, SIZE, cache_dir=cache, progress=False)
    assert_array_equal(again, first)
    assert_array_equal(kept_again, kept)
    # Another order of the same files is served from the same cache, in that order.
    with pytest.warns(UserWarning):
        reordered, kept_reordered = load_images(paths[::-1], SIZE, cache_dir=cache,
                                                progress=False)
    assert_array_equal(kept_reordered, kept[::-1])
    assert_array_equal(reordered, np.asarray(first)[::-1])
    # the pixels and their index, no temporary file left behind
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 2
    assert sum(n.endswith(".index.npz") for n in names) == 1 and sum(n.endswith(".npy") for n in names) == 1

    monkeypatch.undo()
    write(paths[1], to_u8(1 - smooth_image()))
    os.utime(paths[1], ns=(1, 1))  # a distinct mtime even on coarse-clock file systems
    decoded = []

    def counting_read(path, size):
        decoded.append(path)
        return read_pixels(path, size)
    monkeypatch.setattr(fast.data.cache, "read_pixels", counting_read)
    with pytest.warns(UserWarning):
        changed, _ = load_images(paths, SIZE, cache_dir=cache, progress=False)
    assert len(decoded) == len(paths)
    # the same index, new pixels (named by the new key), the old ones removed
    now = sorted(p.name for p in cache.iterdir())
    assert len(now) == 2 and set(now) & set(names) == {n for n in names if n.endswith(".index.npz")}
    assert_array_equal(changed[0], first[0])
    assert not np.allclose(changed[1], first[1])


def test_the_cache_is_8_bit_levels_memory_mapped_from_disk(tmp_path):
    paths = [write(tmp_path / f"img{i}.png", to_u8(smooth_image(shift=i))) for i in range(3)]
    for attempt in ("decoded", "cached"):
        images, _ = load_images(paths, SIZE, cache_dir=tmp_path / "cache", progress=False)
        assert isinstance(images.store, np.memmap), attempt  # read from disk, not held in memory
        assert images.store.dtype == np.uint8 and images.store.shape == (3, SIZE, SIZE)
        assert not images.store.flags.writeable
        assert_array_equal(images.levels(), [read_pixels(p, SIZE) for p in paths])
        assert_array_equal(images[1:], [read_xray(p, SIZE) for p in paths[1:]])
        assert images[[2, 0]].dtype == np.float32 and images.shape == (3, SIZE, SIZE)


def test_decoding_runs_on_as_many_threads_as_cores(tmp_path, monkeypatch):
    paths = [write(tmp_path / f"img{i}.png", to_u8(smooth_image(shift=i))) for i in range(8)]
    threads = set()

    def slow_read(path, size):
        threads.add(threading.get_ident())
        time.sleep(0.05)  # long enough that one thread cannot take every file
        return read_pixels(path, size)
    monkeypatch.setattr(fast.data.cache, "read_pixels", slow_read)
    monkeypatch.setenv("XRAY_THREADS", "2")
    images, kept = load_images(paths, SIZE, progress=False)
    assert kept.all() and len(threads) == 2
    monkeypatch.undo()
    assert_array_equal(images, [read_xray(p, SIZE) for p in paths])


def test_an_unwritable_cache_folder_is_a_data_error_naming_it(tmp_path):
    paths = [write(tmp_path / "a.png", to_u8(smooth_image()))]
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    with pytest.raises(DataError, match=re.escape(str(not_a_folder))):
        load_images(paths, SIZE, cache_dir=not_a_folder, progress=False)


@pytest.mark.parametrize("broken", [".index.npz", ".npy"])
def test_load_images_rebuilds_an_unreadable_cache(tmp_path, broken):
    paths = [write(tmp_path / "a.png", to_u8(smooth_image()))]
    cache = tmp_path / "cache"
    first, _ = load_images(paths, SIZE, cache_dir=cache, progress=False)
    first = np.asarray(first)  # read before the file under the memory map is overwritten
    (cache_file,) = [p for p in cache.iterdir() if p.name.endswith(broken)]
    cache_file.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="ignoring unreadable cache"):
        again, _ = load_images(paths, SIZE, cache_dir=cache, progress=False)
    assert_array_equal(again, first)
