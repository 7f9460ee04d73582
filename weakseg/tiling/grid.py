"""Tile grid geometry and tile selection from a low-resolution map.

The grid is regular from ``(0, 0)`` in the *tiling space*: the slide seen at the tiles' pixel
size, i.e. level-0 pixels divided by ``scale`` (level-0 pixels per tile pixel). Only whole tiles
are kept. Coverage of a grid cell on a low-resolution map is integrated exactly over the cell's
area (a summed-area table evaluated at fractional corners), so no level-0 data is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TileGrid:
    """A regular grid of ``tile_size`` tiles every ``stride`` pixels of a ``width × height`` tiling space.

    ``scale`` is level-0 pixels per tiling pixel (``level_downsample * resize factor``, i.e. the
    :attr:`~weakseg.resolution.Resolution.downsample` of the tiles; ``make_grid`` in the tiler
    builds the grid from a ``Resolution``); ``level0_size`` is the slide's level-0 ``(width, height)``.
    """

    width: int
    height: int
    tile_size: int
    stride: int
    scale: float
    level0_size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.tile_size <= 0 or self.stride <= 0:
            raise ValueError(f"tile_size and stride must be positive, got {self.tile_size}, {self.stride}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")

    @property
    def shape(self) -> tuple[int, int]:
        """Number of whole tiles ``(rows, cols)``."""
        w, h = self.width, self.height
        cols = (w - self.tile_size) // self.stride + 1 if w >= self.tile_size else 0
        rows = (h - self.tile_size) // self.stride + 1 if h >= self.tile_size else 0
        return rows, cols

    @property
    def patch_size(self) -> int:
        """Level-0 pixels covered by one tile side."""
        return round(self.tile_size * self.scale)

    def origins(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Tiling-space top-left ``(x, y)`` of cells, int64 ``(k, 2)``."""
        return np.stack([np.asarray(cols) * self.stride, np.asarray(rows) * self.stride], axis=1).astype(np.int64)

    def coords_level0(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Level-0 top-left ``(x, y)`` of cells, int64 ``(k, 2)``."""
        return np.rint(self.origins(rows, cols) * self.scale).astype(np.int64)

    def coverage(self, lowres: np.ndarray) -> np.ndarray:
        """Fraction of each cell covered by ``lowres`` (values in [0, 1], any size), ``(rows, cols)``.

        ``lowres`` spans the whole slide; a cell's level-0 rectangle is mapped into it and the
        map (constant on each low-res pixel) is integrated exactly over it.
        """
        rows, cols = self.shape
        if rows == 0 or cols == 0:
            return np.zeros((rows, cols), np.float32)
        m = np.asarray(lowres, dtype=np.float64)
        lh, lw = m.shape
        sat = np.zeros((lh + 1, lw + 1))
        sat[1:, 1:] = m.cumsum(0).cumsum(1)
        fx, fy = lw / self.level0_size[0], lh / self.level0_size[1]  # low-res px per level-0 px
        x0 = np.arange(cols) * self.stride * self.scale * fx
        y0 = np.arange(rows) * self.stride * self.scale * fy
        ext_x, ext_y = self.tile_size * self.scale * fx, self.tile_size * self.scale * fy
        x1, y1 = np.minimum(x0 + ext_x, lw), np.minimum(y0 + ext_y, lh)
        total = (
            _interp_sat(sat, y1[:, None], x1[None, :])
            - _interp_sat(sat, y0[:, None], x1[None, :])
            - _interp_sat(sat, y1[:, None], x0[None, :])
            + _interp_sat(sat, y0[:, None], x0[None, :])
        )
        return np.clip(total / (ext_x * ext_y), 0.0, 1.0).astype(np.float32)


def _interp_sat(sat: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a summed-area table (exact for piecewise-constant maps)."""
    y, x = np.broadcast_arrays(y, x)
    iy = np.clip(np.floor(y).astype(np.int64), 0, sat.shape[0] - 2)
    ix = np.clip(np.floor(x).astype(np.int64), 0, sat.shape[1] - 2)
    ty, tx = y - iy, x - ix
    a, b = sat[iy, ix], sat[iy, ix + 1]
    c, d = sat[iy + 1, ix], sat[iy + 1, ix + 1]
    return (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty


def candidate_cells(coverage: np.ndarray, min_coverage: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Row/col indices of cells whose low-res coverage could reach ``min_coverage``.

    ``margin`` widens the net for the low-res map's error; the caller confirms each candidate
    at tile resolution.
    """
    keep = (coverage > 0) & (coverage >= min_coverage - margin)
    rows, cols = np.nonzero(keep)
    return rows, cols
