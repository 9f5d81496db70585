"""Atomic writing (``fast.files``): a write either replaces the file whole or leaves what was there,
and never leaves its temporary file behind; and the checks that refuse a bad target before work."""
import os
import stat

import numpy as np
import pytest

from fast.files import atomic_open, atomic_savez, atomic_write_text, file_problem, folder_problem


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("old\n")
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"the old model")
    with pytest.raises(RuntimeError, match="crashed"):
        with atomic_open(path, "wb") as f:
            f.write(b"half of a new mod")
            raise RuntimeError("crashed half way")
    assert path.read_bytes() == b"the old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"], "a temporary file was left behind"


def test_an_interrupted_write_removes_its_temporary_file_too(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(tmp_path / "metrics.json", "w") as f:
            f.write("{")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_the_file_gets_the_permissions_a_plain_open_would_give_it(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        (tmp_path / "b.txt").write_text("x")
    finally:
        os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644


def test_only_binary_and_text_writes_are_offered(tmp_path):
    with pytest.raises(ValueError, match="'a'"):
        with atomic_open(tmp_path / "x", "a"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_arrays_are_saved_as_plain_arrays_loadable_without_pickle(tmp_path):
    atomic_savez(tmp_path / "a.npz", x=np.arange(3), name=np.array("text"))
    with np.load(tmp_path / "a.npz", allow_pickle=False) as npz:
        assert npz["x"].tolist() == [0, 1, 2] and str(npz["name"]) == "text"


def test_a_bad_target_is_named_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    assert folder_problem(tmp_path / "new" / "deeper") is None  # made when needed
    assert "is not a folder" in folder_problem(tmp_path / "file")
    assert "is not a folder" in folder_problem(tmp_path / "file" / "below")
    assert file_problem(tmp_path / "out.csv") is None
    assert "is a folder" in file_problem(tmp_path)
    assert "does not exist" in file_problem(tmp_path / "missing" / "out.csv")
