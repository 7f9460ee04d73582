"""Stream a tiled pyramidal TIFF, tile by tile, in the layout of PANDA's slides and masks.

One page per level (level 0 first, the others flagged as reduced images), tiled,
pixel size in XResolution/YResolution with ResolutionUnit centimetre: OpenSlide 4 opens
such files as ``generic-tiff`` and reports ``openslide.mpp-x``. Only one tile is held in
memory at a time; the file appears under its final name only once complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tifffile

from ..atomic import atomic_path

TileFn = Callable[[float, float, int, int, float], np.ndarray]
"""``fn(x, y, w, h, downsample) -> (h, w, 3) uint8``: paint a region, level-0 origin ``x, y``."""

_BIGTIFF_BYTES = 2**32 - 2**28  # switch to BigTIFF before the 4 GiB classic-TIFF limit


def level_shapes(size: tuple[int, int], downsamples: Sequence[int]) -> list[tuple[int, int]]:
    """``(height, width)`` of each level: level-0 size floor-divided by its downsample."""
    width, height = size
    return [(max(1, height // d), max(1, width // d)) for d in downsamples]


def write_pyramid(
    path: str | os.PathLike,
    paint: TileFn,
    size: tuple[int, int],
    downsamples: Sequence[int],
    mpp: float,
    *,
    tile: int = 512,
    compression: str = "jpeg",
    quality: int = 90,
    description: str = "",
) -> None:
    """Write a pyramidal RGB TIFF whose tiles come from ``paint``.

    Parameters
    ----------
    path: output file, replaced atomically.
    paint: tile painter, called once per tile in row-major order for each level.
    size: level-0 ``(width, height)``.
    downsamples: integer downsample of each level (first must be 1).
    mpp: level-0 pixel size in µm, stored as pixels per centimetre.
    tile: tile edge in pixels (multiple of 16).
    compression: ``"jpeg"`` (lossy, ``quality``) or a lossless codec such as ``"zlib"``.
    description: ImageDescription of the level-0 page.
    """
    if tile <= 0 or tile % 16:
        raise ValueError(f"tile size must be a positive multiple of 16, got {tile}")
    if downsamples[0] != 1:
        raise ValueError(f"first downsample must be 1, got {downsamples[0]}")
    shapes = level_shapes(size, downsamples)
    bigtiff = size[0] * size[1] * 3 > _BIGTIFF_BYTES
    per_cm = 1e4 / mpp
    codec_args = {"level": int(quality)} if compression == "jpeg" else None
    with atomic_path(path, suffix=".tiff") as tmp, tifffile.TiffWriter(tmp, bigtiff=bigtiff) as tw:
        for level, (d, shape) in enumerate(zip(downsamples, shapes)):
            tw.write(
                _tiles(paint, shape, tile, d),
                shape=(*shape, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression=compression,
                compressionargs=codec_args,
                resolution=(per_cm / d, per_cm / d),
                resolutionunit="CENTIMETER",
                subfiletype=0 if level == 0 else 1,
                description=description if level == 0 else None,
                software="weakseg",
                metadata=None,
                maxworkers=1,
            )


def _tiles(paint: TileFn, shape: tuple[int, int], tile: int, d: int) -> Iterator[np.ndarray]:
    height, width = shape
    for ty in range(0, height, tile):
        for tx in range(0, width, tile):
            out = paint(tx * d, ty * d, tile, tile, d)
            if out.shape != (tile, tile, 3) or out.dtype != np.uint8:
                raise ValueError(f"painter returned {out.shape} {out.dtype}, expected ({tile}, {tile}, 3) uint8")
            yield out
