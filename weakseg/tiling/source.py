"""Tile reads in tiling space for one slide (or mask): fast TIFF path, OpenSlide fallback, resizing."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..slide import SlideReader
from .grid import TileGrid
from .reader import TiffLevel, TiffPyramid


class TileSource:
    """Reads grid tiles of one slide at one level, resized to the tiling space when needed.

    ``level`` is the pyramid level the pixels come from; ``grid.scale / downsample(level)``
    level pixels make one tiling pixel (1 when the tiles are read at the level's own size).
    """

    def __init__(self, slide: SlideReader, level: int, grid: TileGrid, *, nearest: bool = False) -> None:
        self.slide = slide
        self.level = level
        self.grid = grid
        self.downsample = slide.level_downsamples[level]
        self.factor = grid.scale / self.downsample
        self.resize = abs(self.factor - 1) > 1e-9
        self._resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
        self._pyramid = TiffPyramid(slide.path, slide.level_dimensions)
        self.fast: TiffLevel | None = self._pyramid.level(level)

    def close(self) -> None:
        self._pyramid.close()

    def __enter__(self) -> TileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _level_box(self, x: int, y: int) -> tuple[int, int, int, int]:
        t = self.grid.tile_size
        if not self.resize:
            return x, y, t, t
        lw, lh = self.slide.level_dimensions[self.level]
        x0, y0 = round(x * self.factor), round(y * self.factor)
        x1, y1 = min(lw, round((x + t) * self.factor)), min(lh, round((y + t) * self.factor))
        return x0, y0, max(1, x1 - x0), max(1, y1 - y0)

    def read(self, x: int, y: int) -> np.ndarray:
        """RGB ``(T, T, 3)`` of the tile whose tiling-space top-left is ``(x, y)``."""
        lx, ly, w, h = self._level_box(x, y)
        if self.fast is not None and lx + w <= self.fast.width and ly + h <= self.fast.height:
            region = self.fast.read(lx, ly, w, h)
        else:
            region = self.slide.read_region((round(lx * self.downsample), round(ly * self.downsample)), self.level, (w, h))
        t = self.grid.tile_size
        if region.shape[:2] != (t, t):
            region = np.asarray(Image.fromarray(np.ascontiguousarray(region)).resize((t, t), self._resample))
        return region

    def passthrough_ok(self, x: int, y: int) -> bool:
        """Whether the tile is exactly one stored JPEG tile of the level (store its bytes as is)."""
        f = self.fast
        t = self.grid.tile_size
        return (
            f is not None
            and f.passthrough
            and not self.resize
            and f.tile_w == t
            and f.tile_h == t
            and x % t == 0
            and y % t == 0
        )

    def jpeg_stream(self, x: int, y: int) -> bytes:
        assert self.fast is not None
        return self.fast.jpeg_stream(x // self.fast.tile_w, y // self.fast.tile_h)
