"""The cheap checks (``fast.data.screening``): colour, size, aspect, blank, each at its boundary."""
import numpy as np

from fast.data import screening
from fast.data.screening import BLANK, COLOUR, cheap_checks, colour_reason, size_reasons, spread_reason


def test_a_grey_image_stored_as_rgb_is_not_colour_but_a_coloured_one_is():
    grey = np.repeat(np.random.default_rng(0).integers(0, 256, (40, 40, 1), dtype=np.uint8), 3, axis=2)
    assert colour_reason(grey) is None
    assert colour_reason(grey[:, :, 0]) is None  # (H, W): nothing to compare
    coloured = grey.copy()
    coloured[:, :, 2] = 255 - coloured[:, :, 2]
    assert colour_reason(coloured) == COLOUR
    # a few coloured pixels (an annotation) are below the share: 1 in 100 sampled is not more
    tinted = grey.copy()
    tinted[0, 0] = (0, 0, 255)  # one sampled pixel of 100 (every 4th row and column of 40 x 40)
    assert colour_reason(tinted) is None
    sixteen = grey.astype(np.uint16) * 257  # 16-bit: the same levels
    assert colour_reason(sixteen) is None
    assert colour_reason(coloured.astype(np.float32) / 255) == COLOUR


def test_size_and_aspect_limits():
    assert size_reasons(224, 224) == []
    assert size_reasons(screening.MIN_SIDE, screening.MIN_SIDE) == []
    assert "too small" in size_reasons(3, 3)[0]
    assert "3x3 px" in size_reasons(3, 3)[0]
    assert size_reasons(300, 900) == []  # exactly 3:1
    assert "aspect" in size_reasons(300, 901)[0]


def test_a_blank_image_is_named_and_an_xray_like_one_is_not():
    assert spread_reason(np.zeros((8, 8))) == BLANK
    assert spread_reason(np.full((8, 8), 0.5) + np.linspace(0, 0.01, 8)) == BLANK
    assert spread_reason(np.random.default_rng(1).random((8, 8))) is None


def test_the_checks_together():
    assert cheap_checks(3, 3, COLOUR, np.zeros((4, 4))) == [COLOUR, size_reasons(3, 3)[0], BLANK]
    assert cheap_checks(224, 224, None, np.random.default_rng(2).random((4, 4))) == []
