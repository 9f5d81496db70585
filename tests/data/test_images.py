"""Decoding one X-ray (``fast.data.images``): every format and depth to the same grey levels,
corrupt and truncated files refused with their path."""
import re

import cv2
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from fast.data.errors import ImageError
from fast.data.images import decode_xray_bytes, from_pixels, read_xray

from helpers import smooth_image, to_u8, write

SIZE = 16


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


@pytest.mark.slow
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


def test_integer_pixels_are_divided_by_their_types_maximum():
    assert from_pixels(np.array([0, 51, 255], np.uint8)).tolist() == pytest.approx([0, 0.2, 1])
    assert from_pixels(np.array([0, 13107, 65535], np.uint16)).tolist() == pytest.approx([0, 0.2, 1])
    assert from_pixels(np.array([255], np.uint8)).dtype == np.float32
