"""Tiny synthetic tile bags for engine and CLI tests: 8-px tiles, red tiles are cancer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from weakseg.bags import BagMeta, BagWriter

TILE = 8


def write_tiny_bags(folder: Path, n: int = 8, seed: int = 0, provider: str = "karolinska") -> list[Path]:
    """``n`` bags alternating negative / positive, 6-10 tiles each, with Karolinska-style masks."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        label = i % 2
        k = int(rng.integers(6, 11))
        cancer = np.zeros(k, dtype=bool)
        if label:
            cancer[rng.choice(k, size=2, replace=False)] = True
        colour = np.where(cancer[:, None], [200, 40, 60], [230, 170, 200]) + rng.normal(0, 8, size=(k, 3))
        tiles = np.clip(colour[:, None, None, :] + rng.normal(0, 4, size=(k, TILE, TILE, 3)), 0, 255).astype(np.uint8)
        masks = np.where(cancer[:, None, None], 2, 1).astype(np.uint8) * np.ones((k, TILE, TILE), dtype=np.uint8)
        coords = np.stack([np.arange(k) * TILE, np.zeros(k, dtype=int)], axis=1)
        meta = BagMeta(slide_id=f"s{seed}_{i:02d}", label=label, data_provider=provider, isup_grade=label,
                       gleason_score="3+3" if label else "0+0", tile_size=TILE, stride=TILE, mpp=0.5)
        path = folder / f"{meta.slide_id}.h5"
        with BagWriter(path, meta, tile_size=TILE, with_masks=True, codec="raw") as writer:
            writer.append(tiles, coords, np.ones(k, dtype=np.float32), masks=masks,
                          cancer_fraction=cancer.astype(np.float32))
        paths.append(path)
    return paths
