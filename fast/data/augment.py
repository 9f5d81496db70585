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

With ``crop_area`` set (the training default; see ``fast.scoring.stress``), the geometry is
wider: each image is cropped to a random window keeping ``crop_area`` to all of
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
    docstring); None: the small zooms (MAX_ZOOM) alone.
    ``per_image``: with ``crop_area``, each moved image is standardised again by itself.
    ``labels`` (of the whole batch, all ``total`` rows) and ``reframe``: with ``crop_area``, the
    windows of class-0 (NORMAL) images keep 1 / ``reframe`` of the area they would otherwise
    keep, so that they are framed as tightly, on average, as the PNEUMONIA images are in the
    training split (see ``fast.scoring.stress``). The draws are the same whatever ``reframe`` is.
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


# --------------------------------------------------------------------------- acquisition cues
# How an X-ray was taken, shown to both classes alike (``--cues``): each cue is applied to an
# image with its chance, at a random strength, on the stored grey values in [0, 1] before the
# image is normalised, so that none of them can tell the classes apart.
CUE_CHANCE = {"border": 0.15, "gamma": 0.7, "detail": 0.5, "resolution": 0.2, "letter": 0.4,
              "discs": 0.25, "erase": 0.25, "noise": 0.5, "jpeg": 0.2}
MAX_GAMMA = 1.8  # grey x -> x ** g, g log-uniform between 1/MAX_GAMMA and MAX_GAMMA
MAX_GREY_NOISE = 0.05  # sd of added Gaussian noise, as a share of the grey range
LETTERS = "RLAPS"
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_HEIGHT = cv2.getTextSize("R", _FONT, 1.0, 2)[0][1]  # pixels of a capital at scale 1
_BORDERS = (cv2.BORDER_CONSTANT, cv2.BORDER_REPLICATE, cv2.BORDER_REFLECT_101)


def paste_letter(image, letter, height, corner, grey=1.0, inset=0.04):
    """Draw ``letter`` (a laterality marker), ``height`` pixels tall, in ``corner`` of the (H, W)
    ``image`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right), ``inset`` of the side
    from its edges, in place."""
    h, w = image.shape
    scale = height / _FONT_HEIGHT
    thickness = max(1, int(round(height / 8)))
    (tw, th), base = cv2.getTextSize(letter, _FONT, scale, thickness)
    x = int(inset * w) if corner in (0, 2) else int(w - inset * w - tw)
    y = int(inset * h + th) if corner in (0, 1) else int(h - inset * h)
    # drawn on an 8-bit patch around the letter (OpenCV draws text on 8-bit images only)
    top, left = max(0, y - th - thickness), max(0, x - thickness)
    patch = image[top:y + base + thickness, left:x + tw + thickness]
    mask = np.zeros(patch.shape, dtype=np.uint8)
    cv2.putText(mask, letter, (x - left, y - top), _FONT, scale, 255, thickness, cv2.LINE_AA)
    _blend(patch, mask, grey)
    return image


def _blend(image, mask, grey):
    """``image`` covered by ``grey`` where the 8-bit ``mask`` is drawn (its edge antialiased),
    in place."""
    cover = mask.astype(np.float32) / np.float32(255)
    image += cover * (np.float32(grey) - image)
    return image


def paste_discs(image, centres, radius, grey=1.0):
    """Electrode discs: a bright ring with a dot at each of ``centres`` ((x, y) pixels), in place."""
    reach = int(np.ceil(radius * 4 / 3)) + 1  # the ring's outer edge, antialiased
    for cx, cy in centres:
        cx, cy = int(round(cx)), int(round(cy))
        top, left = max(0, cy - reach), max(0, cx - reach)
        patch = image[top:cy + reach + 1, left:cx + reach + 1]
        mask = np.zeros(patch.shape, dtype=np.uint8)
        centre = (cx - left, cy - top)
        cv2.circle(mask, centre, int(round(radius)), 255, max(1, int(round(radius / 3))), cv2.LINE_AA)
        cv2.circle(mask, centre, max(1, int(round(radius / 3))), 255, -1, cv2.LINE_AA)
        _blend(patch, mask, grey)
    return image


def _zoomed_out(image, scale, border, centre=(0.0, 0.0)):
    """The (H, W) image shrunk to ``scale`` of its side, placed ``centre`` (-1..1 of its room)
    and surrounded by ``border`` (an OpenCV border mode; constant is black)."""
    h, w = image.shape
    shift = np.array(centre) * (1 - scale) / 2 * (w, h)
    m = about_centre(np.diag([scale, scale]), w, h, shift)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0.0)


def _jpeg(image, quality):
    """The (H, W) image in [0, 1] after a round trip through 8-bit JPEG at ``quality``."""
    levels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", levels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE).astype(np.float32) / np.float32(255)


def _cue_one(image, rng):
    """One (H, W) float32 image in [0, 1] with the acquisition cues ``rng`` draws (its own
    stream: the draws of one image never depend on another's)."""
    h, w = image.shape
    side = min(h, w)
    # every draw is made whether or not its cue is applied, so one cue's chance moves no other
    on = {cue: rng.random() < chance for cue, chance in CUE_CHANCE.items()}
    scale, border, centre = rng.uniform(0.7, 0.95), rng.integers(len(_BORDERS)), rng.uniform(-1, 1, 2)
    gamma = np.exp(rng.uniform(-np.log(MAX_GAMMA), np.log(MAX_GAMMA)))
    sigma, amount = rng.uniform(0.5, 2.5) * side / 224, rng.uniform(-1.0, 1.2)
    shrink = rng.uniform(0.35, 0.8)
    letter, height, corner, letter_grey = (LETTERS[rng.integers(len(LETTERS))], rng.uniform(1 / 25, 1 / 7) * side,
                                           rng.integers(4), rng.uniform(0.8, 1.0))
    discs = rng.uniform(0.15, 0.85, (rng.integers(1, 5), 2)) * (w, h)
    radius, disc_grey = rng.uniform(0.012, 0.035) * side, rng.uniform(0.8, 1.0)
    erase_corner, erase_size, erase_fill = rng.integers(4), rng.uniform((0.05, 0.1), (0.3, 0.4)), rng.integers(3)
    noise_sd, quality = rng.uniform(0, MAX_GREY_NOISE), rng.integers(10, 91)

    out = image.copy()  # drawn on in place below; the caller's image stays as it was
    if on["border"]:
        out = _zoomed_out(out, scale, _BORDERS[border], centre)
    if on["gamma"]:
        out = cv2.pow(out, gamma)
    if on["detail"]:  # x + a (x - blur(x)): a = -1 the blurred image, a > 0 sharpened
        blurred = cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        out = cv2.addWeighted(out, 1.0 + amount, blurred, -amount, 0.0)
    if on["resolution"]:
        small = (max(1, int(round(w * shrink))), max(1, int(round(h * shrink))))
        out = cv2.resize(cv2.resize(out, small, interpolation=cv2.INTER_AREA), (w, h),
                         interpolation=cv2.INTER_LINEAR)
    if on["letter"]:
        paste_letter(out, letter, height, corner, letter_grey)
    if on["discs"]:
        paste_discs(out, discs, radius, disc_grey)
    if on["erase"]:
        eh, ew = int(erase_size[0] * h), int(erase_size[1] * w)
        rows = slice(0, eh) if erase_corner in (0, 1) else slice(h - eh, h)
        cols = slice(0, ew) if erase_corner in (0, 2) else slice(w - ew, w)
        out[rows, cols] = (np.median(out[::4, ::4]), 0.0, 1.0)[erase_fill]  # a sample's median
    if on["noise"]:
        out = cv2.scaleAdd(rng.standard_normal((h, w), dtype=np.float32), noise_sd, out)
    if on["jpeg"]:
        return _jpeg(out, quality)  # clips to 8-bit levels on the way
    return np.clip(out, 0.0, 1.0, out=out)


def acquisition_cues(images, rng, rows=None):
    """(n, H, W) float32 grey images in [0, 1] -> a copy showing how X-rays are taken, at random:
    zoom-outs with black, replicated or reflected borders, exposure (gamma), blur and sharpening,
    lower resolution, a laterality letter in a corner, electrode discs, a corner erased, noise,
    JPEG compression (``CUE_CHANCE``). Drawn for each image alike, whatever its class.

    ``rows``: (lo, hi, total) as for ``augment_batch``: each of the ``total`` images gets a seed of
    its own from ``rng`` and images lo..hi are made, so a batch split between processes gets the
    cues it would get in one piece."""
    n = len(images)
    lo, hi, total = (0, n, n) if rows is None else rows
    if hi - lo != n:
        raise ValueError(f"rows {lo}..{hi} do not fit a batch part of {n} images")
    seeds = rng.integers(0, 2 ** 63, total)[lo:hi]
    out = np.empty_like(images)
    for i in range(n):
        out[i] = _cue_one(images[i], np.random.default_rng(seeds[i]))
    return out


def matched_detail(images, labels, sigma):
    """(n, H, W) grey images in [0, 1] with the class-0 (NORMAL) ones blurred by a Gaussian of
    ``sigma`` pixels per 224 of the side (a copy; the others as they are), so that the classes
    carry the same fine detail: in the training split the NORMAL originals were larger, so
    downscaling left them sharper (mean |x - blur(x, 1 px)| 0.0099 against PNEUMONIA's 0.0073,
    which a blur of 0.6 px matches). ``labels``: the n images' labels. As ``--reframe`` matches
    the classes' framing, this matches their sharpness."""
    out = np.array(images, dtype=np.float32)
    if sigma <= 0:
        return out
    scaled = sigma * max(images.shape[-2:]) / 224
    for image, label in zip(out, labels):
        if label == 0:
            cv2.GaussianBlur(image, (0, 0), scaled, dst=image, borderType=cv2.BORDER_REPLICATE)
    return out
