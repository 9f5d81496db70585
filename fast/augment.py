"""Training-time augmentation suited to chest X-rays.

Small random rotations (up to 10 degrees), zooms (0.9 to 1.1) and shifts (up to
6 % of the side): the variation between real radiographs (patient position,
distance to the detector). No horizontal flips: the heart sits on the left, and
a mirrored chest is not an X-ray the model will ever be shown. No intensity
inversion or elastic warps for the same reason.
"""
import cv2
import numpy as np

MAX_ROTATION_DEG = 10.0
MAX_ZOOM = 0.10
MAX_SHIFT = 0.06


def augment_batch(x, rng):
    """A randomly transformed copy of x: (N, 1, H, W) float, already standardised."""
    n, c, h, w = x.shape
    out = np.empty_like(x)
    angles = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG, n)
    zooms = rng.uniform(1 - MAX_ZOOM, 1 + MAX_ZOOM, n)
    shifts = rng.uniform(-MAX_SHIFT, MAX_SHIFT, (n, 2)) * (w, h)
    for i in range(n):
        m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), angles[i], zooms[i])
        m[:, 2] += shifts[i]
        for ch in range(c):
            # Replicating the border keeps the edge intensity instead of inventing black bands.
            out[i, ch] = cv2.warpAffine(x[i, ch], m, (w, h), flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_REPLICATE)
    return out
