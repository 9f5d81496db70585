"""Decoding one X-ray: encoded bytes or a file -> grey levels, whatever its format and depth.

``read_pixels`` is the one preprocessing path: training and prediction both go through it, so a
model never sees pixels prepared in two different ways. It ends in 8-bit grey levels (the cache
stores them, ``fast.data.cache``), and ``read_xray`` hands the same levels over as floats.
"""
import threading
from pathlib import Path

import cv2
import numpy as np

from fast.data.dicom import DICOM_EXTENSION, HEADER_SIZE, is_dicom, read_dicom
from fast.data.errors import ImageError
from fast.data.screening import cheap_checks, colour_reason

LEVELS = 255  # grey levels 0..255 stand for 0..1
_DICOM_LOCK = threading.Lock()

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
        unit = from_pixels(image)
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
    """Integer grey levels -> float32 grey values in [0, 1], divided by their type's maximum
    (255 for the cache's uint8 levels, 65535 for a 16-bit file), so every depth of one X-ray
    agrees: the one scaling of integer pixels, for files, the cache and arrays handed over."""
    return np.divide(levels, np.float32(np.iinfo(levels.dtype).max), dtype=np.float32)


def decode_xray_bytes(data, size, name="<bytes>"):
    """Encoded image bytes (1-D uint8 array) -> (size, size) float32 in [0, 1], in 8-bit levels.

    ``name`` only labels error messages. Raises ImageError when the bytes are empty,
    truncated or not an image OpenCV can decode (DICOM is read from a path, by read_xray).
    """
    return from_pixels(to_pixels(resize_xray(_decode_unit_gray(data, name), size)))


def _decode_unit_gray(data, name):
    """Encoded image bytes (1-D uint8 array) -> (H, W) float32 in [0, 1], at full size."""
    return _decode(data, name)[0]


def _decode(data, name):
    """Encoded image bytes -> ((H, W) float32 grey in [0, 1] at full size, ``colour_reason`` of
    the decoded image before it was made grey)."""
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
        return _to_unit_gray(image), colour_reason(image)
    except ValueError as err:
        raise ImageError(f"{name}: {err}") from err


def read_pixels(path, size):
    """Read one X-ray file -> (size, size) uint8 grey levels, whatever its format and depth.

    Colour files are converted to grey (alpha dropped); pixel values are divided by the
    dtype's maximum (255, 65535), floats are clipped; after resizing, the grey values in [0, 1]
    are rounded to 8-bit levels (the source JPEGs have 8 bits; at the model's sizes a level is
    far below the noise). A DICOM file (by content, or named .dcm) is read by
    ``fast.data.dicom.read_dicom`` instead. Raises ImageError naming the file.
    """
    return read_checked(path, size)[0]


def read_checked(path, size):
    """``read_pixels`` and the cheap checks of the decoded image (``fast.data.screening``) ->
    ((size, size) uint8 levels, list of reasons it may not be a chest radiograph)."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except OSError as err:
        raise ImageError(f"{path}: cannot read it ({err.strerror or err})") from err
    if path.suffix.lower() == DICOM_EXTENSION or is_dicom(data[:HEADER_SIZE]):
        with _DICOM_LOCK:  # read_dicom watches pydicom's warnings, which are process-wide
            unit, colour = read_dicom(path), None  # colour DICOM is refused by read_dicom
    else:
        unit, colour = _decode(data, str(path))
    levels = to_pixels(resize_xray(unit, size))
    return levels, cheap_checks(*unit.shape, colour, from_pixels(levels))


def read_xray(path, size):
    """Read one X-ray file -> (size, size) float32 in [0, 1]: ``read_pixels``' levels / 255."""
    return from_pixels(read_pixels(path, size))
