"""Position-keyed procedural noise on axis-aligned pixel grids.

Every field is a pure function of level-0 coordinates and a ``salt``, so a region renders
identically whether it is painted alone or as part of a larger one. Grids are given as
1-D pixel-centre coordinates ``xs`` (columns) and ``ys`` (rows); lattice values are hashed
once per lattice cell and gathered, so the per-pixel cost is a few array operations.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_F1 = np.uint64(0xBF58476D1CE4E5B9)
_F2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_INV53 = 2.0**-53
_GRAIN_PERIOD = 509  # prime, so the grain texture never lines up with the tile grid


def hash2(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """64-bit avalanche hash (splitmix64 finaliser) of broadcastable integer coordinates."""
    h = (np.asarray(ix, np.int64).view(np.uint64) * _M1) ^ (np.asarray(iy, np.int64).view(np.uint64) * _M2)
    h ^= np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
    h ^= h >> _S30
    h *= _F1
    h ^= h >> _S27
    h *= _F2
    h ^= h >> _S31
    return h


def unit(h: np.ndarray) -> np.ndarray:
    """Map 64-bit hashes to floats uniform in [0, 1)."""
    return (h >> _S11).astype(np.float64) * _INV53


def grain(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Per-pixel uniform [-0.5, 0.5) noise for 1-D integer pixel indices ``ix`` (cols), ``iy`` (rows)."""
    return _grain_table(salt)[np.ix_(np.mod(iy, _GRAIN_PERIOD), np.mod(ix, _GRAIN_PERIOD))]


@lru_cache(maxsize=8)
def _grain_table(salt: int) -> np.ndarray:
    p = np.arange(_GRAIN_PERIOD, dtype=np.int64)
    table = (unit(hash2(p[None, :], p[:, None], salt)) - 0.5).astype(np.float32)
    table.flags.writeable = False
    return table


def _lattice(coords: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, int]:
    g = coords / scale
    cell = np.floor(g).astype(np.int64)
    lo = int(cell.min()) if cell.size else 0
    return cell - lo, (g - cell).astype(np.float32), lo


def value(xs: np.ndarray, ys: np.ndarray, scale: float, salt: int, scale_y: float | None = None) -> np.ndarray:
    """Smooth value noise in [0, 1), shape ``(ys, xs)``.

    Feature size ``scale`` level-0 px (``scale_y`` across rows if given: streaks, fibres).
    """
    cx, fx, x0 = _lattice(xs, scale)
    cy, fy, y0 = _lattice(ys, scale if scale_y is None else scale_y)
    gx = np.arange(x0, x0 + int(cx.max(initial=0)) + 2)
    gy = np.arange(y0, y0 + int(cy.max(initial=0)) + 2)
    lat = unit(hash2(gx[None, :], gy[:, None], salt)).astype(np.float32)
    fx = fx * fx * (3.0 - 2.0 * fx)
    fy = (fy * fy * (3.0 - 2.0 * fy))[:, None]
    along = lat[:, cx] * (1.0 - fx) + lat[:, cx + 1] * fx  # (lattice rows, w)
    runs = np.bincount(cy, minlength=along.shape[0] - 1)  # rows are sorted: expand runs
    top = np.repeat(along[:-1], runs, axis=0)
    return top + (np.repeat(along[1:], runs, axis=0) - top) * fy


def dots(
    xs: np.ndarray,
    ys: np.ndarray,
    spacing: float,
    radius: float,
    prob: float,
    salt: int,
    downsample: float,
) -> np.ndarray:
    """Coverage in [0, 1] of a jittered lattice of round dots (nuclei, small lumina).

    Each ``spacing``-sized cell holds at most one dot (probability ``prob``) fully inside
    it, radius jittered ±20 %. Edges are anti-aliased over one output pixel; when a pixel
    spans more than about half a cell the pattern fades to its mean coverage, so coarse
    pyramid levels keep the average colour of finer ones instead of aliasing.
    """
    weight = float(np.clip(1.0 - (downsample - 1.0) / (0.5 * spacing), 0.0, 1.0))
    mean = prob * np.pi * radius * radius * 1.0133 / (spacing * spacing)
    if weight <= 0.0:
        return np.full((ys.size, xs.size), mean, np.float32)
    cx, fx, x0 = _lattice(xs, spacing)
    cy, fy, y0 = _lattice(ys, spacing)
    gx = np.arange(x0, x0 + int(cx.max(initial=0)) + 1)
    gy = np.arange(y0, y0 + int(cy.max(initial=0)) + 1)
    h = hash2(gx[None, :], gy[:, None], salt)
    r = (radius * (0.8 + 0.4 * (h & np.uint64(0xFF)).astype(np.float32) / 255.0)).astype(np.float32)
    r[unit(h) >= prob] = -spacing  # empty cell
    room = np.maximum(0.5 - r / spacing, 0.0)
    jx = ((h >> np.uint64(8)) & np.uint64(0xFFFF)).astype(np.float32) / 65535.0
    jy = ((h >> np.uint64(24)) & np.uint64(0xFFFF)).astype(np.float32) / 65535.0
    ox = (0.5 + (2.0 * jx - 1.0) * room).astype(np.float32)
    oy = (0.5 + (2.0 * jy - 1.0) * room).astype(np.float32)
    # Pixel centres are sorted, so each cell covers a run of rows and columns: expand the
    # per-cell values with np.repeat (much cheaper than a 2-D gather).
    per_cell = np.stack([ox, oy, r])
    runs_x = np.bincount(cx, minlength=gx.size)
    runs_y = np.bincount(cy, minlength=gy.size)
    ox, oy, r = np.repeat(np.repeat(per_cell, runs_y, axis=1), runs_x, axis=2)
    dx = (fx[None, :] - ox) * spacing
    dy = (fy[:, None] - oy) * spacing
    cov = np.clip((r - np.sqrt(dx * dx + dy * dy)) * (1.0 / downsample) + 0.5, 0.0, 1.0)
    if weight >= 1.0:
        return cov
    return weight * cov + (1.0 - weight) * mean
