"""Tissue detection on a low-resolution RGB image (used when a slide has no mask).

A pixel is tissue when all of the following hold:

* **not glass**: its darkest channel is below :data:`WHITE` (220, the all-RGB > 220 background
  rule of Lerousseau et al.);
* **stained**: its HSV saturation ``(max - min) / max`` is at least the Otsu threshold of the
  saturation of non-glass pixels, clipped to [:data:`SAT_MIN`, :data:`SAT_MAX`]. The clip keeps
  a slide that is 99 % glass with one small biopsy core from putting the threshold in the glass
  noise, and keeps pale (Karolinska-like) tissue above it;
* **not ink**: not a saturated green/blue hue (:data:`PEN_HUE`, H&E is pink to purple) and not
  near-black (max channel below :data:`DARK`). Red ink is indistinguishable from eosin by
  colour and is not removed.

The result is cleaned with a 3×3 binary opening (speckle) and small holes are filled; no
minimum object size beyond that, so biopsy cores a few pixels wide at 1/16 survive.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

WHITE = 220
SAT_MIN = 0.05
SAT_MAX = 0.15
DARK = 40
#: Hue range (degrees) treated as pen ink when saturation exceeds :data:`PEN_SAT`.
PEN_HUE = (75.0, 255.0)
PEN_SAT = 0.25
#: Holes up to this many pixels inside tissue are filled.
MAX_HOLE = 64


def _saturation(rgb: np.ndarray) -> np.ndarray:
    mx = rgb.max(-1)
    chroma = (mx - rgb.min(-1)).astype(np.float32)
    return np.divide(chroma, mx, out=np.zeros(mx.shape, np.float32), where=mx > 0)


def _hue(rgb: np.ndarray) -> np.ndarray:
    """HSV hue in degrees of an ``(n, 3)`` array of pixels."""
    x = rgb.astype(np.float32)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    mx, mn = x.max(-1), x.min(-1)
    c = np.maximum(mx - mn, 1e-6)
    hue = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4))
    return hue * 60.0


def _otsu_threshold(sat: np.ndarray, candidates: np.ndarray) -> float:
    values = sat[candidates]
    if values.size < 2 or values.min() == values.max():
        return SAT_MIN
    counts = np.bincount(np.minimum((values * 255).astype(np.int64), 255), minlength=256)
    centers = (np.arange(256) + 0.5) / 255
    return float(np.clip(threshold_otsu(hist=(counts, centers)), SAT_MIN, SAT_MAX))


def saturation_threshold(rgb: np.ndarray) -> float:
    """The clipped Otsu saturation threshold described in the module doc."""
    rgb = np.asarray(rgb)[..., :3]
    return _otsu_threshold(_saturation(rgb), rgb.min(-1) < WHITE)


def detect_tissue(rgb: np.ndarray) -> np.ndarray:
    """Boolean tissue mask with the same height and width as ``rgb`` (uint8 RGB)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3 or rgb.dtype != np.uint8:
        raise ValueError(f"detect_tissue expects an (h, w, 3) uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    rgb = rgb[..., :3]
    sat = _saturation(rgb)
    not_glass = rgb.min(-1) < WHITE
    tissue = not_glass & (sat >= _otsu_threshold(sat, not_glass)) & (rgb.max(-1) >= DARK)
    inky = np.flatnonzero(tissue & (sat > PEN_SAT))
    if inky.size:
        hue = _hue(rgb.reshape(-1, 3)[inky])
        flat = tissue.reshape(-1)
        flat[inky[(hue >= PEN_HUE[0]) & (hue < PEN_HUE[1])]] = False
    tissue = ndimage.binary_opening(tissue, structure=np.ones((3, 3), bool))
    holes = ndimage.binary_fill_holes(tissue) & ~tissue
    if holes.any():
        lab, n = ndimage.label(holes)
        sizes = ndimage.sum_labels(holes, lab, index=np.arange(1, n + 1))
        tissue |= np.isin(lab, 1 + np.flatnonzero(sizes <= MAX_HOLE))
    return tissue
