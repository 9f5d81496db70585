"""Cheap checks that an image could be a chest radiograph, made on its decoded pixels before the
network sees it: a colour picture, a blank or nearly constant image, one too small to be a
radiograph, an extreme aspect ratio. Each check that fails gives a short reason; the model's
learned typicality score (``fast.scoring.typicality``) catches what these cannot.

The limits sit well outside the training split's 5,216 X-rays, none of which they flag: as
stored here every one is 224 x 224 px with three identical channels (the originals were about
400 to 2,900 px a side), and the standard deviation of their grey values is 0.078 or more.
"""
import numpy as np

MIN_SIDE = 64  # pixels a side: the network reads 224, and a radiograph has hundreds at least
MAX_ASPECT = 3.0  # longer side / shorter side: a chest film or detector is at most about 4:3
MIN_SPREAD = 0.02  # standard deviation of the grey values in [0, 1]
COLOUR_LEVELS = 12  # a pixel is coloured when its channels differ by more than this many 8-bit levels
COLOUR_SHARE = 0.01  # ... and an image is a colour picture when more than this share of pixels is

COLOUR = "colour picture (its channels differ): radiographs are grey"
BLANK = "blank or nearly constant image"


def colour_reason(image):
    """A decoded (H, W, C) image, any integer or float depth -> COLOUR when its colour channels
    differ (more than COLOUR_SHARE of pixels, sampled every 4th row and column, by more than
    COLOUR_LEVELS of 255), else None. A grey image stored as RGB is not a colour picture."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] < 3:
        return None
    sample = image[::4, ::4, :3]
    if np.issubdtype(sample.dtype, np.integer):
        scale = 255 / np.iinfo(sample.dtype).max
    else:
        scale = 255.0
    spread = (sample.max(axis=2).astype(np.float64) - sample.min(axis=2)) * scale
    return COLOUR if np.mean(spread > COLOUR_LEVELS) > COLOUR_SHARE else None


def size_reasons(height, width):
    """Reasons an image of ``height`` x ``width`` pixels cannot be a radiograph, in words."""
    reasons = []
    if min(height, width) < MIN_SIDE:
        reasons.append(f"too small to be a radiograph ({width}x{height} px; under {MIN_SIDE} px a side)")
    if max(height, width) > MAX_ASPECT * min(height, width):
        reasons.append(f"extreme aspect ratio ({width}x{height} px; a chest X-ray is within "
                       f"{MAX_ASPECT:g}:1)")
    return reasons


def spread_reason(grey):
    """BLANK when the grey values (any shape, in [0, 1]) hardly vary, else None."""
    return BLANK if float(np.std(grey, dtype=np.float64)) < MIN_SPREAD else None


def cheap_checks(height, width, colour, grey):
    """Every reason the cheap checks find: the decoded size, ``colour`` (``colour_reason``'s answer
    for the decoded image) and the grey image at the network's size -> list of str."""
    reasons = [colour] if colour else []
    reasons += size_reasons(height, width)
    blank = spread_reason(grey)
    return reasons + ([blank] if blank else [])
