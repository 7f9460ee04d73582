"""PNG overlay of a probability map over a slide thumbnail."""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from PIL import Image
from skimage.transform import resize

from ..atomic import atomic_path


def blend_overlay(
    thumbnail: np.ndarray, prob: np.ndarray, covered: np.ndarray | None = None, *, alpha: float = 0.5, cmap: str = "inferno"
) -> np.ndarray:
    """RGB uint8 image of ``prob`` (0..1) coloured with ``cmap`` over ``thumbnail``.

    The image has the thumbnail's size (the map is resized onto it, never the thumbnail shrunk to a
    small map); pixels outside ``covered`` show the thumbnail only.
    """
    base = np.asarray(thumbnail, dtype=np.float32)[..., :3]
    shape = base.shape[:2]
    prob = resize(np.clip(np.asarray(prob, dtype=np.float32), 0, 1), shape, order=1, preserve_range=True)
    if covered is not None:
        covered = resize(np.asarray(covered, dtype=bool), shape, order=0, preserve_range=True, anti_aliasing=False)
    colour = colormaps[cmap](prob)[..., :3] * 255
    a = alpha * (np.ones_like(prob) if covered is None else np.asarray(covered, dtype=np.float32))[..., None]
    return np.clip(base * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB or grayscale uint8 image as PNG, atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format="PNG")
