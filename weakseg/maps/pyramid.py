"""Tiled pyramidal TIFF writer fed by horizontal strips (never holds a whole level in memory).

Level 0 is written from the strips as they arrive while its 2x mean-downsampled copy streams
into a temporary raw file next to the output; every further level is streamed from the previous
one's file. Tiles are deflate-compressed single-channel uint8, levels halve until the image fits
one tile, resolution tags (centimetre) carry the pixel size, and the ImageDescription holds JSON
metadata. OpenSlide opens the result as ``generic-tiff``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile

from ..atomic import atomic_path

TILE = 256


def write_pyramid(
    path: str | os.PathLike,
    strips: Iterable[np.ndarray],
    shape: tuple[int, int],
    *,
    mpp: float | None = None,
    metadata: dict[str, Any] | None = None,
    tile: int = TILE,
) -> int:
    """Write a single-channel uint8 image given as top-to-bottom strips; return the level count.

    Args:
        path: output ``.tif`` (written atomically).
        strips: uint8 arrays ``(h_i, width)`` whose heights sum to ``shape[0]``.
        shape: ``(height, width)`` of level 0.
        mpp: level-0 pixel size in micrometres (resolution tags), if known.
        metadata: JSON-serialisable dict stored in the level-0 ImageDescription.
        tile: tile side (multiple of 16).
    """
    if tile % 16:
        raise ValueError(f"TIFF tile side must be a multiple of 16, got {tile}")
    path = Path(path)
    description = json.dumps(metadata or {}, sort_keys=True)
    with atomic_path(path, suffix=".tif") as tmp, tempfile.TemporaryDirectory(dir=path.parent, prefix=".pyramid-") as scratch:
        with tifffile.TiffWriter(tmp, bigtiff=shape[0] * shape[1] > 2**31) as tif:
            level, source = 0, iter(strips)
            while True:
                h, w = shape
                last = max(h, w) <= tile
                nxt = None if last else Path(scratch) / f"level{level + 1}.raw"
                with open(nxt, "wb") if nxt else contextlib.nullcontext() as sink:
                    tiles = _tiles(_blocks(source, shape, tile), shape, tile, sink)
                    kwargs: dict[str, Any] = {}
                    if mpp:
                        kwargs = {"resolution": (1e4 / (mpp * 2**level),) * 2, "resolutionunit": "CENTIMETER"}
                    tif.write(
                        tiles, shape=shape, dtype=np.uint8, tile=(tile, tile), compression="zlib",
                        photometric="minisblack", subfiletype=1 if level else 0, metadata=None,
                        description=description if level == 0 else None, **kwargs,
                    )
                if nxt is None:
                    return level + 1
                shape = (-(-h // 2), -(-w // 2))
                source = read_raw_strips(nxt, shape, tile)
                level += 1


def _blocks(strips: Iterator[np.ndarray], shape: tuple[int, int], tile: int) -> Iterator[np.ndarray]:
    """Regroup strips into blocks of ``tile`` rows (the last may be shorter); check the shape."""
    h, w = shape
    pending: list[np.ndarray] = []
    n_pending = rows = 0
    for strip in strips:
        strip = np.asarray(strip)
        if strip.ndim != 2 or strip.shape[1] != w or strip.dtype != np.uint8:
            raise ValueError(f"strip of shape {strip.shape} / {strip.dtype}: expected uint8 (rows, {w})")
        pending.append(strip)
        n_pending += len(strip)
        rows += len(strip)
        if rows > h:
            raise ValueError(f"strips hold more than the declared {h} rows")
        while n_pending >= tile or (rows == h and n_pending):
            block = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield block[:tile]
            rest = block[tile:]
            pending, n_pending = ([rest] if len(rest) else []), len(rest)
    if rows != h:
        raise ValueError(f"strips hold {rows} rows, expected {h}")


def _tiles(blocks: Iterator[np.ndarray], shape: tuple[int, int], tile: int, sink: BinaryIO | None) -> Iterator[np.ndarray]:
    """Cut blocks into padded tiles (row-major); write each block's 2x downsample to ``sink``."""
    w = shape[1]
    for block in blocks:
        if sink is not None:
            sink.write(_half(block).tobytes())
        padded = np.zeros((tile, -(-w // tile) * tile), dtype=np.uint8)
        padded[: len(block), :w] = block
        for x in range(0, padded.shape[1], tile):
            yield padded[:, x : x + tile]


def _half(block: np.ndarray) -> np.ndarray:
    """2x2 mean downsample (odd edges replicate their last row/column), rounded."""
    h, w = block.shape
    b = np.pad(block, ((0, h % 2), (0, w % 2)), mode="edge").astype(np.uint16)
    s = b[0::2, 0::2] + b[1::2, 0::2] + b[0::2, 1::2] + b[1::2, 1::2]
    return ((s + 2) // 4).astype(np.uint8)


def read_raw_strips(path: str | os.PathLike, shape: tuple[int, int], rows: int = TILE) -> Iterator[np.ndarray]:
    """Stream a raw row-major uint8 image file back in strips of ``rows`` rows."""
    h, w = shape
    with open(path, "rb") as f:
        for y in range(0, h, rows):
            n = min(rows, h - y)
            yield np.frombuffer(f.read(n * w), dtype=np.uint8).reshape(n, w)
