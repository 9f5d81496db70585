"""DICOM X-rays -> (H, W) grey images in [0, 1], bright = dense, as a JPEG X-ray reads.

``fast.data.images.read_pixels`` sends a file here when it is DICOM (by content, or by a .dcm name) and
resizes the result exactly as it resizes every other format.

pydicom (3.0 or newer) is optional: it is imported only when a DICOM file is read, so the rest
of the project works without it. Compressed pixel data also needs a decoder package for its
transfer syntax (Pillow, which matplotlib brings, covers JPEG baseline and JPEG 2000; the error
for any other names the package to install).
"""
import warnings
from pathlib import Path

import numpy as np

from fast.data.errors import ImageError

DICOM_EXTENSION = ".dcm"
_PREAMBLE = 128
_MAGIC = b"DICM"
HEADER_SIZE = _PREAMBLE + len(_MAGIC)  # a file's first 132 bytes say whether it is DICOM
_GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UNDEFINED_LENGTH = 0xFFFFFFFF
_INSTALL = "pip install 'pydicom>=3' (or pip install -e '.[dicom]')"


def _pydicom(name):
    """The pydicom module, or an ImageError for ``name`` saying how to install it."""
    try:
        import pydicom
        import pydicom.pixels  # new in pydicom 3
    except ImportError as err:
        raise ImageError(f"{name}: reading DICOM needs pydicom 3 or newer ({err}); "
                         f"{_INSTALL}") from None
    return pydicom


def _head(path):
    with open(path, "rb") as f:
        return f.read(HEADER_SIZE)


def _has_magic(head):
    return bytes(head[_PREAMBLE:HEADER_SIZE]) == _MAGIC


def is_dicom(source):
    """Whether ``source`` is a DICOM file: a path, or a file's first bytes (bytes or uint8 array).

    Recognised by content: a 128-byte preamble, then b"DICM". A path ending in .dcm without
    them (a file written before DICOM Part 10 fixed the preamble) counts too when pydicom,
    forced, reads a standard DICOM element from it; without pydicom such a file is not
    recognised. An unreadable path is not DICOM.
    """
    if isinstance(source, np.ndarray):
        return _has_magic(source.reshape(-1)[:HEADER_SIZE].tobytes())
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _has_magic(source)
    path = Path(source)
    try:
        if _has_magic(_head(path)):
            return True
        if path.suffix.lower() == DICOM_EXTENSION:
            _read_dataset(path)
            return True
    except (OSError, ImageError):
        pass
    return False


def read_dicom(path):
    """Read one single-frame greyscale DICOM file -> (H, W) float32 in [0, 1], bright = dense.

    Stored values go through the modality LUT (Rescale Slope/Intercept), then through the
    first VOI LUT or window (Window Center/Width) when the file has one. The window is the
    scaling the file's author chose for viewing, so its whole output range maps to [0, 1] and
    values outside it clip. Without one, the range the file can store (Bits Stored, signed or
    not, through the modality LUT) maps to [0, 1]: the rule by which an 8-bit JPEG is divided
    by 255, so a radiograph exported both ways reads the same, and an image's brightness
    does not depend on its own darkest and brightest pixel. MONOCHROME1 (stored inverted:
    bright = low) is flipped, so the result reads like MONOCHROME2.

    Raises ImageError, its message starting with the path, when pydicom is not installed or the
    file is empty, not DICOM, truncated or corrupt, has no pixel data, several frames, colour
    pixels, or compressed pixel data whose decoder is not installed (the message names the
    transfer syntax and the package to install).
    """
    name = str(path)
    pydicom = _pydicom(name)
    ds = _read_dataset(Path(path))
    photometric = _check_single_grey_frame(ds, name)
    transfer_syntax = _check_decoder(ds, name)
    try:
        pixels = ds.pixel_array
    except Exception as err:  # pydicom's decoders raise many types on bad data
        hint = f"; another decoder may read it: {_decoder_packages(transfer_syntax)}" \
            if transfer_syntax is not None else ""
        raise ImageError(f"{name}: corrupt or truncated pixel data ({_one_line(err)}){hint}") \
            from err
    if pixels.ndim != 2:
        raise ImageError(f"{name}: expected one 2-D image, decoded shape {pixels.shape}")
    try:
        values = pydicom.pixels.apply_modality_lut(pixels, ds)
        voi_range = _voi_range(ds)
        if voi_range is None:
            low, high = _stored_range(ds, pydicom)
        else:
            values = pydicom.pixels.apply_voi_lut(values, ds, index=0)
            low, high = voi_range
    except Exception as err:  # a malformed LUT, window or rescale element
        raise ImageError(f"{name}: cannot apply its modality or VOI LUT ({_one_line(err)})") \
            from err
    unit = _stretch(values, low, high)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return unit


def _one_line(err):
    """An exception as one line: pydicom's messages can span several."""
    return " ".join(str(err).split()) or type(err).__name__


def _read_dataset(path):
    """The dataset in ``path``; raises ImageError naming it when it cannot be read whole.

    The preamble-less read (pydicom's force=True) is only tried for a .dcm name: forced,
    pydicom reads almost any bytes as some dataset.
    """
    name = str(path)
    pydicom = _pydicom(name)
    from pydicom.datadict import dictionary_has_tag

    try:
        head = _head(path)
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except OSError as err:
        raise ImageError(f"{name}: cannot read it ({err.strerror or err})") from err
    if not head:
        raise ImageError(f"{name}: empty file")
    forced = not _has_magic(head)
    if forced and path.suffix.lower() != DICOM_EXTENSION:
        raise ImageError(f"{name}: not a DICOM file (no 'DICM' marker at byte {_PREAMBLE})")
    # pydicom reports a file that ends inside an element of undefined length only with a
    # warning; caught here it becomes this file's error instead of a stray line of output.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, force=forced)
        except Exception as err:  # struct.error, EOFError, ValueError... on damaged headers
            raise ImageError(f"{name}: corrupt or truncated DICOM file ({_one_line(err)})") \
                from err
    for warning in caught:
        if "end of file" in str(warning.message).lower():
            raise ImageError(f"{name}: truncated DICOM file ({_one_line(warning.message)})")
        warnings.warn(f"{name}: {warning.message}", warning.category, stacklevel=3)
    if forced and not any(dictionary_has_tag(tag) for tag in ds.keys()):
        raise ImageError(f"{name}: not a DICOM file (no 'DICM' marker, and no DICOM element "
                         f"read without it)")
    _check_complete(ds, path)
    if "TransferSyntaxUID" not in ds.file_meta:
        # No file meta (or one without it): the encoding pydicom found while reading says
        # how the pixels are stored.
        implicit, little = ds.original_encoding
        uid = pydicom.uid
        ds.file_meta.TransferSyntaxUID = (uid.ImplicitVRLittleEndian if implicit else
                                          uid.ExplicitVRLittleEndian if little else
                                          uid.ExplicitVRBigEndian)
    return ds


def _check_complete(ds, path):
    """Raise ImageError when ``path`` ends inside an element pydicom read.

    pydicom reads a file cut inside an element of defined length without complaint: it keeps
    the short value, or drops a header of under 8 bytes. A file cut anywhere loses everything
    after the cut, so the last element read must end where the file does. (A cut inside an
    element of undefined length makes pydicom warn, which _read_dataset turns into an error.)
    """
    from pydicom.datadict import keyword_for_tag

    transfer_syntax = ds.file_meta.get("TransferSyntaxUID")
    if transfer_syntax is not None and transfer_syntax.is_transfer_syntax \
            and transfer_syntax.is_deflated:
        return  # positions count in the inflated data set; zlib reports a cut stream itself
    size = path.stat().st_size
    where, end = None, None
    if getattr(ds, "preamble", None):
        where, end = "the 'DICM' marker", HEADER_SIZE
        if "FileMetaInformationGroupLength" in ds.file_meta:  # the meta's byte count after it
            where = "the file meta information"
            end += 12 + ds.file_meta.FileMetaInformationGroupLength  # 12: that element's own
    tags = list(ds.keys())  # file order
    if tags:
        element = ds.get_item(tags[-1])  # a raw element still has its length and position
        if not getattr(element, "is_raw", False) or not isinstance(element.value, bytes):
            return
        length = element.length
        if length == _UNDEFINED_LENGTH:  # the value read, then the 8-byte delimiter
            length = len(element.value) + 8
        where = f"element {element.tag} {keyword_for_tag(element.tag)}".rstrip()
        end = element.value_tell + length
    if end is None:
        return
    if size < end:
        raise ImageError(f"{path}: truncated DICOM file (it has {size} bytes but {where} "
                         f"runs to byte {end})")
    if size - end < 8 and size != end:  # too short for the next element's header
        raise ImageError(f"{path}: truncated DICOM file ({size - end} bytes after {where}, "
                         f"too few for an element)")


def _check_single_grey_frame(ds, name):
    """Raise ImageError unless ``ds`` holds one greyscale frame; returns its photometric
    interpretation."""
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise ImageError(f"{name}: no pixel data (a DICOM file without an image, such as a "
                         f"report or a plan)")
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise ImageError(f"{name}: invalid Number of Frames {ds.NumberOfFrames!r}") from None
    if frames > 1:
        raise ImageError(f"{name}: multi-frame image ({frames} frames); only single-frame "
                         f"X-rays are read")
    samples = ds.get("SamplesPerPixel", 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if samples != 1 or photometric not in _GREYSCALE:
        described = photometric or "missing"
        raise ImageError(f"{name}: colour or non-greyscale image (Photometric Interpretation "
                         f"{described}, Samples per Pixel {samples}); only MONOCHROME1 and "
                         f"MONOCHROME2 X-rays are read")
    return photometric


def _check_decoder(ds, name):
    """Raise ImageError when the pixel data is compressed and no installed package decodes
    it; returns the compressed transfer syntax, or None for uncompressed data."""
    from pydicom.pixels import get_decoder

    transfer_syntax = ds.file_meta.get("TransferSyntaxUID")
    if transfer_syntax is None or not transfer_syntax.is_transfer_syntax:
        raise ImageError(f"{name}: no valid Transfer Syntax UID ({transfer_syntax}), so its "
                         f"pixel encoding is unknown")
    if not transfer_syntax.is_compressed:
        return None
    described = f"{transfer_syntax.name} ({transfer_syntax})"
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        raise ImageError(f"{name}: pixel data compressed as {described}, which pydicom cannot "
                         f"decode") from None
    if not decoder.is_available:
        raise ImageError(f"{name}: pixel data compressed as {described} and no decoder for it "
                         f"is installed; {_decoder_packages(transfer_syntax)}")
    return transfer_syntax


def _decoder_packages(transfer_syntax):
    """The pip command that gives pydicom a decoder for ``transfer_syntax`` (after pydicom's
    table of pixel data handlers)."""
    from pydicom import uid

    libjpeg = "pip install pylibjpeg pylibjpeg-libjpeg"
    if transfer_syntax in (uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL, uid.HTJ2K):
        return "pip install pylibjpeg pylibjpeg-openjpeg"
    if transfer_syntax in uid.JPEG2000TransferSyntaxes:
        return "pip install pylibjpeg pylibjpeg-openjpeg, or pip install python-gdcm"
    if transfer_syntax in uid.JPEGLSTransferSyntaxes:
        return f"{libjpeg}, pip install pyjpegls, or pip install python-gdcm"
    if transfer_syntax in uid.JPEGTransferSyntaxes:
        return f"{libjpeg}, or pip install python-gdcm"
    if transfer_syntax in uid.RLETransferSyntaxes:
        return "pip install pylibjpeg pylibjpeg-rle"
    return "see pydicom's list of pixel data handlers"


def _voi_range(ds):
    """(low, high) that the VOI transform ``apply_voi_lut`` would apply to ``ds`` maps onto,
    or None when it applies none. The conditions are apply_voi_lut's own: a VOI LUT comes
    before a window."""
    from pydicom.pixels import apply_voi_lut

    lut = ds.get("VOILUTSequence")
    if lut and None not in (lut[0].get("LUTDescriptor"), lut[0].get("LUTData")):
        return 0.0, float(2 ** lut[0].LUTDescriptor[2] - 1)  # its entries' bit depth
    if None in (ds.get("WindowCenter"), ds.get("WindowWidth")):
        return None
    # A window sends everything below it to one end of its output range and everything above
    # to the other; pydicom derives that range (from Bits Stored, the sign and the rescale), so
    # ask it for the two ends rather than restate its rule. A negative slope gives low > high.
    low, high = apply_voi_lut(np.array([-np.inf, np.inf]), ds, index=0)
    return float(low), float(high)


def _stored_range(ds, pydicom):
    """(low, high): the smallest and largest value the pixel data can hold (Bits Stored, Pixel
    Representation), after the modality LUT (a negative slope swaps the two ends)."""
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        ends = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1], dtype=np.float64)
    else:
        ends = np.array([0, 2 ** bits - 1], dtype=np.float64)
    ends = np.asarray(pydicom.pixels.apply_modality_lut(ends, ds), dtype=np.float64)
    return float(ends.min()), float(ends.max())


def _stretch(values, low, high):
    """Map ``low``..``high`` linearly onto 0..1 (high < low flips), clipped -> float32;
    all 0.5 when low == high."""
    if high == low:
        return np.full(values.shape, 0.5, dtype=np.float32)
    unit = (np.asarray(values, dtype=np.float64) - low) / (high - low)
    return np.clip(unit, 0.0, 1.0).astype(np.float32)
