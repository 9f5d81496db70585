"""Training-time augmentation suited to chest X-rays.

Geometry: small random rotations (up to 10 degrees), zooms (0.9 to 1.1, drawn
separately for width and height) and shifts (up to 6 % of the side): the
variation between real radiographs (patient position, distance to the detector),
and the separate zooms because the originals (400 to 2,900 px a side, of varying
aspect ratios) were all squeezed to a square, a distortion that says nothing
about the lungs. Intensity: contrast scaled by 0.8 to 1.2 and brightness moved
by up to 0.2 standard deviations, as exposure and detector settings vary.

With ``acquisition`` on, two more ways a detector and its processing show through: each
image is blurred or sharpened by a random amount (unsharp masking with a Gaussian of 1 pixel
per 64 of the side, its weight drawn from -1, the blurred image, to +1, twice the detail), as
originals of 400 to 2,900 px squeezed to one size differ in sharpness; and Gaussian noise of a
random strength (up to 0.1 standard deviations) is added, as exposures differ in quantum noise.
A network that could tell the classes apart by sharpness or noise texture, not by the lungs,
loses that shortcut.

No horizontal flips: the heart sits on the left, and a mirrored chest is not an
X-ray the model will ever be shown. No elastic warps or intensity inversions for
the same reason.
"""
import cv2
import numpy as np

MAX_ROTATION_DEG = 10.0
MAX_ZOOM = 0.10
MAX_SHIFT = 0.06
MAX_CONTRAST = 0.2
MAX_BRIGHTNESS = 0.2
MAX_DETAIL = 1.0  # unsharp-mask weight: -1 blurs, +1 doubles the detail
DETAIL_SIGMA_PER_PIXEL = 1 / 64  # the blur's sigma per pixel of the side
MAX_NOISE = 0.1


def about_centre(linear, w, h, shift=(0.0, 0.0)):
    """The 2x3 affine matrix that applies the 2x2 ``linear`` map about the centre of a w x h
    image, then moves it by ``shift`` (pixels, across and down)."""
    centre = np.array([w / 2 - 0.5, h / 2 - 0.5])
    return np.hstack([linear, (centre - linear @ centre + shift)[:, None]])


def warp(image, m, out):
    """Each (H, W) plane of ``image`` (C, H, W) moved by the affine matrix ``m`` into ``out``,
    bilinearly; replicating the border keeps the edge intensity instead of inventing black
    bands."""
    h, w = image.shape[-2:]
    for ch in range(len(image)):
        out[ch] = cv2.warpAffine(image[ch], m, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
    return out


def augment_batch(x, rng, rows=None, acquisition=False):
    """A randomly transformed copy of x: (N, C, H, W) float, already standardised.

    ``rows``: (lo, hi, total) when x holds rows lo..hi of a batch of ``total`` images split
    between processes; the transforms are drawn for the whole batch and rows lo..hi applied,
    so every image gets the transform it would get in one piece. ``acquisition``: blur or
    sharpen, and add noise, too (drawn after the other transforms, which stay as without it).
    """
    n, c, h, w = x.shape
    lo, hi, total = (0, n, n) if rows is None else rows
    if hi - lo != n:
        raise ValueError(f"rows {lo}..{hi} do not fit a batch part of {n} images")
    out = np.empty_like(x)
    angles = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, total))[lo:hi]
    zooms = rng.uniform(1 - MAX_ZOOM, 1 + MAX_ZOOM, (total, 2))[lo:hi]
    shifts = rng.uniform(-MAX_SHIFT, MAX_SHIFT, (total, 2))[lo:hi] * (w, h)
    contrast = rng.uniform(1 - MAX_CONTRAST, 1 + MAX_CONTRAST, total)[lo:hi].astype(x.dtype)
    brightness = rng.uniform(-MAX_BRIGHTNESS, MAX_BRIGHTNESS, total)[lo:hi].astype(x.dtype)
    for i in range(n):
        cos, sin = np.cos(angles[i]), np.sin(angles[i])
        # Rotate, then zoom x and y separately, about the image centre, then shift.
        linear = np.diag(zooms[i]) @ np.array([[cos, sin], [-sin, cos]])
        warp(x[i], about_centre(linear, w, h, shifts[i]), out=out[i])
    out *= contrast[:, None, None, None]
    out += brightness[:, None, None, None]
    if acquisition:
        detail = rng.uniform(-MAX_DETAIL, MAX_DETAIL, total)[lo:hi]
        noise = rng.uniform(0, MAX_NOISE, total)[lo:hi].astype(x.dtype)
        sigma = DETAIL_SIGMA_PER_PIXEL * max(h, w)
        for i in range(n):
            for ch in range(c):
                blurred = cv2.GaussianBlur(out[i, ch], (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
                # x + d (x - blur(x)): d = -1 gives the blurred image, d > 0 sharpens
                out[i, ch] += x.dtype.type(detail[i]) * (out[i, ch] - blurred)
        # one draw for the whole batch, so a part gets its rows of it
        grain = rng.standard_normal((total, c, h, w), dtype=np.float32)[lo:hi].astype(x.dtype, copy=False)
        out += noise[:, None, None, None] * grain
    return out


TEST_TIME_ZOOMS = (1.0, 0.95, 1.05)


def zoomed(x, zoom):
    """x (N, C, H, W) zoomed about the image centre by ``zoom`` (> 1 enlarges), the border
    replicated, as in training: one of the fixed views a prediction can be averaged over
    (test-time augmentation). ``zoom`` 1 returns x itself."""
    if zoom == 1:
        return x
    h, w = x.shape[-2:]
    m = about_centre(np.diag([zoom, zoom]), w, h)
    out = np.empty_like(x)
    for i in range(len(x)):
        warp(x[i], m, out=out[i])
    return out

