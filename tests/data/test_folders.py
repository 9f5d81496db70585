"""Finding the data (``fast.data.folders``): the data folder, its splits and class folders."""
import re
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from fast.data.errors import DataError
from fast.data.folders import list_split, resolve_data_root

from helpers import smooth_image, to_u8, write

SIZE = 16


def test_list_split_matches_class_folders_and_extensions_in_any_case(tmp_path):
    u8 = to_u8(smooth_image())
    write(tmp_path / "train" / "normal" / "b.JPG", u8)
    write(tmp_path / "train" / "normal" / "a.png", u8)
    write(tmp_path / "train" / "Pneumonia" / "c.Jpeg", u8)
    (tmp_path / "train" / "normal" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "normal" / "._a.png").write_bytes(b"macOS fork")
    paths, labels = list_split(tmp_path, "train")
    assert [p.name for p in paths] == ["a.png", "b.JPG", "c.Jpeg"]
    assert labels.dtype == np.int64
    assert_array_equal(labels, [0, 0, 1])


def test_list_split_rejects_missing_class_folder_with_its_path(tmp_path):
    write(tmp_path / "train" / "NORMAL" / "a.png", to_u8(smooth_image()))
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "train" / "PNEUMONIA"))):
        list_split(tmp_path, "train")


def test_list_split_rejects_empty_class_folder_with_its_path(tmp_path):
    write(tmp_path / "train" / "NORMAL" / "a.png", to_u8(smooth_image()))
    (tmp_path / "train" / "PNEUMONIA").mkdir()
    (tmp_path / "train" / "PNEUMONIA" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "train" / "PNEUMONIA"))
                       + ".*no images"):
        list_split(tmp_path, "train")


def test_list_split_rejects_missing_split_folder_with_its_path(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "test"))):
        list_split(tmp_path, "test")


def test_resolve_data_root_prefers_argument_then_env_then_default(tmp_path, monkeypatch):
    for name in ("arg", "env", "data/chest_xray"):
        (tmp_path / name).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XRAY_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("XRAY_DATA")
    assert resolve_data_root() == Path("data/chest_xray")


def test_resolve_data_root_error_names_the_path_and_where_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAY_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError) as err:
        resolve_data_root()
    message = str(err.value)
    for needle in (str(tmp_path / "missing"), "Kermany", "10.17632/rscbjbr9sj", "--data",
                   "XRAY_DATA", "data/chest_xray"):
        assert needle in message
