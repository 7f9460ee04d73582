"""Grid tiles of one slide (or mask) in tiling space, read through :class:`~weakseg.resolution.RegionReader`."""

from __future__ import annotations

import numpy as np

from ..resolution import RegionReader, Resolution
from ..slide import SlideReader
from .grid import TileGrid


class TileSource:
    """Reads grid tiles of one slide at one resolution, resized to the tiling space when needed.

    ``res`` is the :class:`~weakseg.resolution.Resolution` of the tiles (or just the pyramid level
    to read, the tiling downsample being ``grid.scale``); reads go through the shared
    :class:`~weakseg.resolution.RegionReader`, so the slide-map driver sees the same pixels.
    """

    def __init__(self, slide: SlideReader, res: Resolution | int, grid: TileGrid, *, nearest: bool = False) -> None:
        if not isinstance(res, Resolution):
            res = Resolution(int(res), grid.scale)
        self.slide = slide
        self.grid = grid
        self.reader = RegionReader(slide, res, nearest=nearest)
        self.level = res.level
        self.downsample = self.reader.level_downsample
        self.factor = self.reader.factor
        self.resize = self.reader.resize
        self.fast = self.reader.fast

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> TileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, x: int, y: int) -> np.ndarray:
        """RGB ``(T, T, 3)`` of the tile whose tiling-space top-left is ``(x, y)``."""
        t = self.grid.tile_size
        return self.reader.read(x, y, t, t)

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
