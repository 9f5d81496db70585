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

With ``crop_area`` set (the default since the framing study; see ``fast.training.framing``), the
geometry is wider: each image is cropped to a random window keeping ``crop_area`` to all of
its area, or shrunk as far the other way with the border replicated around it (a zoom-out),
the window's aspect ratio jittered by up to 4:3 and the window placed anywhere in the image.
How tightly a chest is framed (collimated) then says nothing about its class: in the training
split PNEUMONIA X-rays are framed more tightly than NORMAL ones, a cue a network learns
otherwise. With per-image normalisation each image is standardised again after it is moved,
as a tightly framed file would be on its own.

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
MAX_ASPECT = 4 / 3  # with crop_area: the window's width/height ratio, up to this either way


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


def _geometry(rng, total, w, h, crop_area, area_scale=1.0):
    """Per-image zooms (along x, y) and shifts (pixels) for a batch of ``total``: the small
    zooms of 0.9 to 1.1 when ``crop_area`` is None, else the random windows described above.

    A zoom z > 1 keeps a window of 1/z of the side; z < 1 shrinks the image to z of the
    side. Either way the window (or the shrunken image) can move by up to |z - 1| / 2 of
    the side before it leaves the frame, and by the small shift of MAX_SHIFT on top.
    ``area_scale`` (a number, or one per image) multiplies the share of the area each window
    keeps: below 1, tighter framing."""
    if crop_area is None:
        zooms = rng.uniform(1 - MAX_ZOOM, 1 + MAX_ZOOM, (total, 2))
        return zooms, rng.uniform(-MAX_SHIFT, MAX_SHIFT, (total, 2)) * (w, h)
    # area kept (crop) or taken up (zoom-out), log-uniform between crop_area and 1 / crop_area
    area = np.exp(rng.uniform(np.log(crop_area), -np.log(crop_area), total)) * area_scale
    aspect = np.exp(rng.uniform(-np.log(MAX_ASPECT), np.log(MAX_ASPECT), total))
    zooms = np.stack([np.sqrt(aspect / area), 1 / np.sqrt(aspect * area)], axis=1)  # (x, y)
    reach = np.abs(zooms - 1) / 2 + MAX_SHIFT
    return zooms, rng.uniform(-1, 1, (total, 2)) * reach * (w, h)


def restandardise(x):
    """Each image of x (N, C, H, W) standardised again with its own mean and std, in place."""
    centre = x.mean(axis=(1, 2, 3), keepdims=True, dtype=np.float64)
    spread = x.std(axis=(1, 2, 3), keepdims=True, dtype=np.float64)
    x -= centre.astype(x.dtype)
    x /= np.where(spread > 0, spread, 1.0).astype(x.dtype)
    return x


def augment_batch(x, rng, rows=None, acquisition=False, crop_area=None, per_image=False,
                  labels=None, reframe=1.0):
    """A randomly transformed copy of x: (N, C, H, W) float, already standardised.

    ``rows``: (lo, hi, total) when x holds rows lo..hi of a batch of ``total`` images split
    between processes; the transforms are drawn for the whole batch and rows lo..hi applied,
    so every image gets the transform it would get in one piece. ``acquisition``: blur or
    sharpen, and add noise, too (drawn after the other transforms, which stay as without it).
    ``crop_area``: the smallest share of the area a random crop keeps (see the module's
    docstring); None: the small zooms of earlier versions, drawn as they were drawn.
    ``per_image``: with ``crop_area``, each moved image is standardised again by itself.
    ``labels`` (of the whole batch, all ``total`` rows) and ``reframe``: with ``crop_area``, the
    windows of class-0 (NORMAL) images keep 1 / ``reframe`` of the area they would otherwise
    keep, so that they are framed as tightly, on average, as the PNEUMONIA images are in the
    training split (see ``fast.training.framing``). The draws are the same whatever ``reframe`` is.
    """
    n, c, h, w = x.shape
    lo, hi, total = (0, n, n) if rows is None else rows
    if hi - lo != n:
        raise ValueError(f"rows {lo}..{hi} do not fit a batch part of {n} images")
    out = np.empty_like(x)
    angles = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, total))[lo:hi]
    area_scale = 1.0
    if reframe != 1 and crop_area is not None:
        if labels is None or len(labels) != total:
            raise ValueError(f"reframe needs the labels of the whole batch of {total} images")
        area_scale = np.where(np.asarray(labels) == 0, 1 / reframe, 1.0)
    zooms, shifts = (draw[lo:hi] for draw in _geometry(rng, total, w, h, crop_area, area_scale))
    contrast = rng.uniform(1 - MAX_CONTRAST, 1 + MAX_CONTRAST, total)[lo:hi].astype(x.dtype)
    brightness = rng.uniform(-MAX_BRIGHTNESS, MAX_BRIGHTNESS, total)[lo:hi].astype(x.dtype)
    for i in range(n):
        cos, sin = np.cos(angles[i]), np.sin(angles[i])
        # Rotate, then zoom x and y separately, about the image centre, then shift.
        linear = np.diag(zooms[i]) @ np.array([[cos, sin], [-sin, cos]])
        warp(x[i], about_centre(linear, w, h, shifts[i]), out=out[i])
    if crop_area is not None and per_image:
        restandardise(out)
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
