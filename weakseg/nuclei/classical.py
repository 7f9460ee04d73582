"""Classical nuclei baseline: hematoxylin channel, Otsu threshold, opening, distance watershed.

No learning: colour deconvolution (:func:`skimage.color.rgb2hed`, Ruifrok & Johnston) gives the
hematoxylin optical density, Gaussian-smoothed; pixels above its Otsu threshold are nuclear; a
disk opening removes specks and thin bridges, small holes are filled; touching nuclei are split by
:func:`weakseg.postprocess.split_instances` (peaks of the distance transform).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.color import rgb2hed
from skimage.filters import threshold_otsu
from skimage.morphology import disk, remove_small_holes

from ..errors import WeaksegError
from ..postprocess import split_instances


def hematoxylin(rgb: np.ndarray) -> np.ndarray:
    """Hematoxylin optical density (float, higher = more stain) of an ``(H, W, 3)`` RGB image."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise WeaksegError(f"rgb must be an (H, W, 3) image, got shape {rgb.shape}")
    if not (rgb.dtype == np.uint8 or np.issubdtype(rgb.dtype, np.floating)):
        raise WeaksegError(f"rgb must be uint8 or float in [0, 1], got dtype {rgb.dtype}")
    return rgb2hed(rgb[..., :3])[..., 0]


def classical_nuclei(
    rgb: np.ndarray,
    *,
    sigma: float = 1.0,
    opening_radius: int = 2,
    min_distance: int = 6,
    min_size: int = 30,
    max_hole: int = 200,
) -> np.ndarray:
    """Nuclear instance labels (int32) of an H&E RGB image at about 0.25 µm/px (MoNuSeg, 40x).

    Args:
        rgb: ``(H, W, 3)`` uint8 (or float in [0, 1]) H&E image.
        sigma: Gaussian smoothing of the hematoxylin channel before Otsu, in pixels.
        opening_radius: radius of the disk opening of the thresholded mask (0: none).
        min_distance: smallest distance between two watershed markers (about a nucleus's radius).
        min_size: instances of fewer pixels are removed.
        max_hole: holes in the mask of at most this many pixels are filled (pale nuclear interiors; larger
            holes are background enclosed by a ring of touching nuclei and stay).
    """
    h = hematoxylin(rgb)
    if sigma > 0:
        h = ndimage.gaussian_filter(h, sigma)
    mask = h > threshold_otsu(h)
    if opening_radius > 0:
        mask = ndimage.binary_opening(mask, structure=disk(opening_radius))
    mask = remove_small_holes(mask, max_size=max_hole) if max_hole > 0 else mask
    return split_instances(mask, min_distance=min_distance, min_size=min_size)
