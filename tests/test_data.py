"""Data pipeline: decoding every format, rejecting bad files by name, folders, cache, patients."""
import os
import re
import threading
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import fast.data.cache
from fast.data.cache import load_images
from fast.data.dataset import load_dataset
from fast.data.errors import DataError, ImageError
from fast.data.folders import CLASS_NAMES, list_split, resolve_data_root
from fast.data.images import decode_xray_bytes, from_pixels, read_pixels, read_xray
from fast.data.normalise import normalise, standardise
from fast.data.pixels import Inputs, Pixels
from fast.data.splits import patient_id, split_by_patient

SIZE = 16


def smooth_image(h=60, w=80, shift=0.0):
    """A smooth blob on a ramp, in [0, 1] float64, so JPEG round-trips it faithfully."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (0.2 + 0.6 * np.exp(-(((yy - 30 - shift) / 18) ** 2 + ((xx - 40) / 25) ** 2))
            + 0.1 * xx / w)


def to_u8(image):
    return np.round(image * 255).astype(np.uint8)


def write(path, array, params=()):
    """Encode ``array`` in the format named by ``path``'s extension; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix.lower(), array, list(params))
    assert ok
    buf.tofile(path)
    return path


def make_tree(root, split="train", normal=("IM-0001-0001.jpeg", "IM-0002-0001.jpeg"),
              pneumonia=("person1_bacteria_1.jpeg", "person2_virus_2.jpeg")):
    """root/split/{NORMAL,PNEUMONIA}/ with distinct smooth images; returns the paths."""
    paths = []
    for k, (class_name, names) in enumerate(zip(CLASS_NAMES, (normal, pneumonia))):
        for i, name in enumerate(names):
            image = to_u8(smooth_image(shift=3 * i) * (0.7 + 0.3 * k))
            paths.append(write(root / split / class_name / name, image))
    return paths


# --------------------------------------------------------------------------- read_xray

def test_read_xray_gives_nearly_the_same_array_for_every_format(tmp_path):
    gray = smooth_image()
    u8, u16 = to_u8(gray), np.round(gray * 65535).astype(np.uint16)
    reference = read_xray(write(tmp_path / "ref.png", u8), SIZE)
    rng = np.random.default_rng(0)
    bgra = cv2.cvtColor(u8, cv2.COLOR_GRAY2BGRA)
    bgra[:, :, 3] = rng.integers(0, 256, u8.shape)  # alpha must be ignored
    level = 1 / 255 + 1e-6  # read_xray rounds to 8-bit levels: a difference can tip one level
    variants = {
        "gray.bmp": (u8, 1e-6),
        "bgr.png": (cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR), level),
        "bgra.png": (bgra, level),
        # 16-bit differs from 8-bit by at most half a grey level before the rounding
        "gray16.png": (u16, level),
        "bgr16.png": (cv2.cvtColor(u16, cv2.COLOR_GRAY2BGR), level),
        # JPEG at quality 95 on a smooth image: about two grey levels of error, and the rounding
        "gray.jpeg": (u8, 3 * level),
        "bgr.jpg": (cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR), 3 * level),
    }
    for name, (array, atol) in variants.items():
        image = read_xray(write(tmp_path / name, array, (cv2.IMWRITE_JPEG_QUALITY, 95)), SIZE)
        assert image.dtype == np.float32 and image.shape == (SIZE, SIZE), name
        assert_allclose(image, reference, rtol=0, atol=atol, err_msg=name)


def test_read_xray_scales_by_the_dtype_maximum(tmp_path):
    u16 = np.full((8, 8), 65535, dtype=np.uint16)
    u16[:4] = 257 * 51  # 51/255 = 0.2
    image = read_xray(write(tmp_path / "a.png", u16), 8)
    assert_allclose(image[4:], 1.0, rtol=0, atol=1e-6)
    assert_allclose(image[:4], 0.2, rtol=0, atol=1e-6)


def test_read_xray_clips_float_images_to_unit_range(tmp_path):
    ramp = np.linspace(-0.5, 1.5, 64, dtype=np.float32).reshape(8, 8)
    image = read_xray(write(tmp_path / "float.tiff", ramp), 8)
    assert image.min() == 0.0 and image.max() == 1.0
    # clipped, then rounded to the nearest of the 256 levels k / 255
    assert_allclose(image, np.round(np.clip(ramp, 0, 1) * 255) / 255, rtol=0, atol=1e-6)


def test_read_xray_resizes_non_square_images_by_area_averaging(tmp_path):
    # 4x8 halves: left black, right white; INTER_AREA to 2x2 keeps the halves exact.
    u8 = np.zeros((4, 8), dtype=np.uint8)
    u8[:, 4:] = 255
    image = read_xray(write(tmp_path / "a.png", u8), 2)
    assert_array_equal(image, np.array([[0, 1], [0, 1]], dtype=np.float32))


@pytest.mark.parametrize("name, content, reason", [
    ("random.jpeg", np.random.default_rng(1).integers(0, 256, 2000).astype(np.uint8).tobytes(),
     "not an image"),
    ("empty.jpeg", b"", "empty"),
    ("text.png", b"this is not a picture", "not an image"),
])
def test_read_xray_rejects_bad_file_with_its_path(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=re.escape(str(path)) + ".*" + reason):
        read_xray(path, SIZE)


def test_read_xray_rejects_missing_file_with_its_path(tmp_path):
    path = tmp_path / "nowhere.jpeg"
    with pytest.raises(ImageError, match=re.escape(str(path)) + ".*not found"):
        read_xray(path, SIZE)


@pytest.mark.parametrize("ext", [".jpeg", ".png"])
def test_read_xray_rejects_truncated_file_with_its_path(tmp_path, ext):
    whole = write(tmp_path / f"whole{ext}", to_u8(smooth_image())).read_bytes()
    path = tmp_path / f"cut{ext}"
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ImageError, match=re.escape(str(path)) + ".*truncated"):
        read_xray(path, SIZE)


def test_truncation_check_sees_a_cut_jpeg_even_if_opencv_would_decode_it():
    whole = cv2.imencode(".jpg", to_u8(smooth_image()))[1]
    assert decode_xray_bytes(whole, SIZE).shape == (SIZE, SIZE)
    with pytest.raises(ImageError, match="truncated JPEG"):
        decode_xray_bytes(whole[:-2], SIZE)  # only the end marker missing
    with pytest.raises(ImageError, match="truncated PNG"):
        decode_xray_bytes(cv2.imencode(".png", to_u8(smooth_image()))[1][:-12], SIZE)


def test_read_xray_accepts_jpeg_padded_after_its_end_marker(tmp_path):
    whole = write(tmp_path / "a.jpeg", to_u8(smooth_image())).read_bytes()
    padded = tmp_path / "padded.jpeg"
    padded.write_bytes(whole + b"\x00" * 7 + b"\n")
    assert_array_equal(read_xray(padded, SIZE), read_xray(tmp_path / "a.jpeg", SIZE))


def test_real_files_all_end_with_their_jpeg_marker(xray_root):
    paths = sorted(xray_root.glob("*/*/*.jpeg"))
    assert len(paths) > 1000
    bad = [p for p in paths if not np.fromfile(p, dtype=np.uint8).tobytes().rstrip(b"\x00 \t\r\n")
           .endswith(b"\xff\xd9")]
    assert bad == []


def test_read_xray_reads_a_real_xray(xray_root):
    path = next((xray_root / "train" / "NORMAL").glob("IM-*.jpeg"))
    image = read_xray(path, 64)
    assert image.shape == (64, 64) and image.dtype == np.float32
    assert 0.0 <= image.min() < image.max() <= 1.0


# --------------------------------------------------------------------------- folders

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


# --------------------------------------------------------------------------- load_images, cache

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


# --------------------------------------------------------------------------- patients

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


# --------------------------------------------------------------------------- normalise

def test_normalise_by_image_a_hand_worked_case():
    # grey values 0.2, 0.2, 0.6, 0.6: mean 0.4, standard deviation 0.2
    images = np.array([[[0.2, 0.2], [0.6, 0.6]]], dtype=np.float32)
    assert_allclose(normalise(images.copy(), "image"), [[[-1, -1], [1, 1]]], atol=1e-6)
    # and a constant image has nothing to scale: all zeros, not NaN
    assert_array_equal(normalise(np.full((1, 3, 3), 0.7, np.float32), "image"), np.zeros((1, 3, 3)))


def test_normalise_equalise_a_hand_worked_case():
    # levels 10, 10, 20, 200: equalisation sends the lowest to 0 and the highest to 255 and
    # spaces the levels by how many pixels lie below them: 10 -> 0, 20 -> 128 (255/2 rounded
    # half up), 200 -> 255, before standardising by the image's own mean and std.
    levels = np.array([[[10, 10], [20, 200]]], dtype=np.uint8)
    equalised = np.array([0, 0, 128, 255], dtype=np.float64) / 255
    expected = (equalised - equalised.mean()) / equalised.std()
    got = normalise(from_pixels(levels), "equalise")
    assert got.dtype == np.float32
    assert_allclose(got.ravel(), expected, atol=1e-6)
    # "image" alone keeps the uneven spacing
    assert not np.allclose(normalise(from_pixels(levels), "image").ravel(), expected, atol=1e-2)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.2, 1.0), offset=st.floats(0.0, 0.5))
def test_normalise_by_image_ignores_exposure_and_contrast(seed, scale, offset):
    """What a per-image normalisation is for: the same X-ray, brighter or flatter (a * x + b,
    a > 0), reaches the network the same."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (3, 8, 8)).astype(np.float32)
    changed = (offset + scale * (1 - offset) * images).astype(np.float32)
    assert_allclose(normalise(changed, "image"), normalise(images.copy(), "image"), atol=2e-4)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_normalise_equalise_ignores_any_increasing_change_of_grey_levels(seed):
    """Histogram equalisation reads only the order of the grey levels: any strictly
    increasing map of them (gamma, a detector's curve) leaves its output unchanged."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, 40, (2, 8, 8)).astype(np.uint8)
    curve = np.cumsum(rng.integers(1, 7, 256)).clip(max=255).astype(np.uint8)  # increasing below 40
    assert_allclose(normalise(from_pixels(curve[levels]), "equalise"),
                    normalise(from_pixels(levels), "equalise"), atol=1e-6)


@pytest.mark.parametrize("how", ["image", "equalise"])
def test_normalise_writes_into_a_strided_view_too(how):
    big = np.random.default_rng(4).integers(0, 256, (3, 8, 12)).astype(np.float32) / 255
    view = big[:, :, 2:10]  # not contiguous: each image's rows are 8 of 12 values apart
    expected = normalise(np.ascontiguousarray(view), how)
    assert normalise(view, how) is view
    assert_allclose(big[:, :, 2:10], expected, atol=1e-6)


def test_normalise_dataset_is_standardise_and_unknown_ways_are_refused():
    images = np.random.default_rng(1).uniform(0, 1, (2, 4, 4)).astype(np.float32)
    assert_array_equal(normalise(images.copy(), "dataset", 0.3, 0.2), standardise(images, 0.3, 0.2))
    with pytest.raises(ValueError, match="unknown normalisation 'histogram'.*dataset, image, equalise"):
        normalise(images, "histogram")


@pytest.mark.parametrize("how", ["dataset", "image", "equalise"])
def test_inputs_hand_over_normalised_batches_of_one_channel(how):
    levels = np.random.default_rng(2).integers(0, 256, (5, 6, 6)).astype(np.uint8)
    inputs = Inputs(Pixels(levels), 0.4, 0.25, how)
    assert inputs[1:4].shape == (3, 1, 6, 6) and inputs[1:4].dtype == np.float32
    assert_array_equal(inputs[1:4][:, 0], normalise(from_pixels(levels[1:4]), how, 0.4, 0.25))
    assert_array_equal(inputs.subset([4, 0])[:][:, 0], normalise(from_pixels(levels[[4, 0]]), how, 0.4, 0.25))


# --------------------------------------------------------------------------- load_dataset

def test_load_dataset_standardises_with_training_statistics_only(tmp_path):
    normal = [f"IM-{k:04d}-0001.jpeg" for k in range(10)]
    pneumonia = [f"person{k}_bacteria_{k}.jpeg" for k in range(10)]
    make_tree(tmp_path, "train", normal, pneumonia)
    make_tree(tmp_path, "test", normal[:3], pneumonia[:3])
    bad = tmp_path / "test" / "NORMAL" / "IM-9999-0001.jpeg"
    bad.write_bytes(b"")
    with pytest.warns(UserWarning, match="IM-9999-0001.jpeg"):
        ds = load_dataset(tmp_path, SIZE, val_fraction=0.2, seed=0, cache_dir=None,
                          progress=False, normalisation="dataset")
    assert ds.x_train.shape == (len(ds.y_train), 1, SIZE, SIZE)
    assert ds.x_train.dtype == ds.x_val.dtype == ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == ds.y_val.dtype == ds.y_test.dtype == np.int64
    assert len(ds.y_train) == 16 and len(ds.y_val) == 4 and len(ds.y_test) == 6
    assert set(ds.y_val.tolist()) == {0, 1}
    assert ds.skipped == [(str(bad), ds.skipped[0][1])] and "empty" in ds.skipped[0][1]
    assert ds.class_names == CLASS_NAMES

    raw_train = np.stack([read_xray(p, SIZE) for p in ds.paths_train]).astype(np.float64)
    assert ds.mean == pytest.approx(raw_train.mean(), rel=1e-9)
    assert ds.std == pytest.approx(raw_train.std(), rel=1e-9)
    x_train = np.asarray(ds.x_train)
    assert_allclose(x_train.mean(), 0.0, atol=1e-5)
    assert_allclose(x_train.std(), 1.0, atol=1e-5)
    raw_val = np.stack([read_xray(p, SIZE) for p in ds.paths_val])
    assert_allclose(np.asarray(ds.x_val)[:, 0], standardise(raw_val, ds.mean, ds.std), rtol=0, atol=1e-6)
    train_patients = {patient_id(p) for p in ds.paths_train}
    assert train_patients.isdisjoint(patient_id(p) for p in ds.paths_val)
    # the default normalises each image by itself; the statistics are still the training split's
    with pytest.warns(UserWarning, match="IM-9999-0001.jpeg"):
        by_image = load_dataset(tmp_path, SIZE, val_fraction=0.2, seed=0, normalisation="image",
                                cache_dir=None, progress=False)
    assert by_image.x_val.how == "image" and by_image.mean == ds.mean and by_image.std == ds.std
    assert_allclose(np.asarray(by_image.x_val)[:, 0], normalise(raw_val.copy(), "image"), rtol=0, atol=1e-6)


def test_load_dataset_uses_a_val_folder_when_present(tmp_path):
    make_tree(tmp_path, "train")
    make_tree(tmp_path, "val", ["IM-0100-0001.png"], ["person100_virus_1.png"])
    make_tree(tmp_path, "test")
    ds = load_dataset(tmp_path, SIZE, val_fraction=0.1, seed=0, normalisation="image", cache_dir=None,
                      progress=False)
    assert [Path(p).name for p in ds.paths_val] == ["IM-0100-0001.png", "person100_virus_1.png"]
    assert len(ds.paths_train) == 4


def test_load_dataset_limit_takes_a_fixed_stratified_subset(tmp_path):
    make_tree(tmp_path, "train", [f"IM-{k:04d}-0001.png" for k in range(6)],
              [f"person{k}_virus_{k}.png" for k in range(18)])
    make_tree(tmp_path, "test")
    first = load_dataset(tmp_path, SIZE, val_fraction=0.0, seed=0, normalisation="image", limit=8,
                         cache_dir=None, progress=False)
    assert np.bincount(first.y_train).tolist() == [2, 6]
    assert len(first.y_test) == 4
    again = load_dataset(tmp_path, SIZE, val_fraction=0.0, seed=0, normalisation="image", limit=8,
                         cache_dir=None, progress=False)
    assert again.paths_train == first.paths_train


def test_load_dataset_on_a_small_real_subset(xray_root, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real data decodes without a single warning
        ds = load_dataset(xray_root, 32, val_fraction=0.1, seed=0, normalisation="image", limit=40,
                          cache_dir=tmp_path, progress=False)
    assert len(ds.y_train) + len(ds.y_val) == 40 and len(ds.y_test) == 40
    assert set(ds.y_val.tolist()) == {0, 1} and ds.skipped == []
    assert 0.0 < ds.mean < 1.0 and ds.std > 0.0
