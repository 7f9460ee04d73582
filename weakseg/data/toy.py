"""Toy HDF5 bag cohorts for tests, demos and loader benchmarks (no slide files needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..bags import BagMeta, BagWriter


def toy_tiles(n: int, tile_size: int, positive: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 ``(n, T, T, 3)`` pinkish noise; ``positive`` tiles carry a dark-purple cross (the "lesion")."""
    t = tile_size
    tiles = rng.normal((225, 170, 200), 12, size=(n, t, t, 3))
    c, w = t // 2, max(1, t // 8)
    for i in np.flatnonzero(positive):
        tiles[i, c - w:c + w, :] = (90, 40, 120)
        tiles[i, :, c - w:c + w] = (90, 40, 120)
    return np.clip(tiles, 0, 255).astype(np.uint8)


def write_toy_bags(
    out_dir: str | os.PathLike,
    n_bags: int = 8,
    n_tiles: int | tuple[int, int] = 12,
    tile_size: int = 16,
    *,
    positive_fraction: float = 0.25,
    codec: str = "raw",
    seed: int = 0,
) -> list[Path]:
    """Write ``n_bags`` bags (half positive) of ``n_tiles`` tiles (or a ``(low, high)`` range).

    In a positive bag a ``positive_fraction`` of the tiles (at least one) show the lesion pattern;
    their mask label is 2 (cancer) and ``cancer_fraction`` 1. Tiles lie on a square grid with
    stride ``tile_size`` at level 0.
    """
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    labels = np.arange(n_bags) % 2
    paths = []
    for b, label in enumerate(labels):
        n = int(rng.integers(n_tiles[0], n_tiles[1] + 1)) if isinstance(n_tiles, tuple) else int(n_tiles)
        positive = np.zeros(n, dtype=bool)
        if label:
            positive[rng.choice(n, max(1, int(positive_fraction * n)), replace=False)] = True
        side = int(np.ceil(np.sqrt(n)))
        coords = np.stack([np.arange(n) % side, np.arange(n) // side], axis=1) * tile_size
        masks = np.where(positive[:, None, None], 2, 1).astype(np.uint8) * np.ones((1, tile_size, tile_size), np.uint8)
        meta = BagMeta(slide_id=f"toy{b:03d}", label=int(label), data_provider="karolinska",
                       isup_grade=int(label), gleason_score="3+3" if label else "0+0",
                       tile_size=tile_size, stride=tile_size, mpp=2.0)
        path = out / f"{meta.slide_id}.h5"
        with BagWriter(path, meta, tile_size=tile_size, with_masks=True, codec=codec) as w:
            w.append(toy_tiles(n, tile_size, positive, rng), coords, np.ones(n, np.float32), masks=masks,
                     cancer_fraction=positive.astype(np.float32))
        paths.append(path)
    return paths
