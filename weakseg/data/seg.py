"""Pixel-labelled tile datasets over bags, for the segmentation learners.

Every tile of every bag is one sample: a uint8 ``(T, T, 3)`` image and a uint8 ``(T, T)``
target. Targets, by ``target``:

``"pu"``    the weak bag's ``pu_labels`` (``weakseg weaken --mode pu``): 1 labelled positive,
            0 unlabeled tissue, 255 excluded (background).
``"full"``  the ground-truth ``masks`` mapped to common labels, then to 0 benign tissue,
            1 cancer, 255 background/unknown (excluded); bags that carry ``pseudo_labels``
            (:mod:`weakseg.refine` label bags: 1 cancer, 0 benign, 255 ignored) train on those
            instead, their masks then serve evaluation only.

``truth(rows)`` always gives the common ground-truth labels (0 bg, 1 benign, 2 cancer) when the
bags carry masks, for evaluation only. Reads are lazy and grouped per bag; the dataset pickles
without open HDF5 handles (DataLoader workers).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..bags import Bag
from ..errors import BagError
from ..labels import IGNORE, PU_POSITIVE, SEG_TARGET_BY_COMMON
from ..panda import to_common_labels
from ..weaken import read_pu_labels
from .sources import resolve_bag_paths

Target = Literal["pu", "full"]
TARGETS = ("pu", "full")
PSEUDO = "pseudo_labels"  # weakseg.refine label bags: 1 cancer, 0 benign, IGNORE


class SegTileDataset(Dataset):
    """All tiles of ``paths`` (a bag folder, a bag file, or a list of bag files) with pixel targets.

    Attributes: ``bags``, ``index`` (``(n, 2)`` rows of ``(bag, tile)``), ``tile_size``,
    ``has_positive`` (per tile: any target pixel is positive; drives
    :class:`~weakseg.sampling.PositiveBatchSampler`), ``has_truth`` (all bags carry masks).
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], target: Target = "pu",
                 chunk: int = 256) -> None:
        if target not in TARGETS:
            raise ValueError(f"unknown segmentation target {target!r}; choose one of {TARGETS}")
        self.target = target
        self.paths = resolve_bag_paths(paths)
        self.bags = [Bag(p) for p in self.paths]
        sizes = {b.tile_size for b in self.bags}
        if len(sizes) != 1:
            raise BagError(f"bags have different tile sizes {sorted(sizes)}; re-tile them consistently")
        self.tile_size = sizes.pop()
        for bag in self.bags:
            if len(bag) == 0:
                raise BagError(f"{bag.path}: bag has no tiles")
            if target == "pu" and "pu_labels" not in bag.h5:
                raise BagError(f"{bag.path}: no 'pu_labels' dataset; make PU bags with 'weakseg weaken --mode pu'")
            if target == "full" and not bag.has_masks and PSEUDO not in bag.h5:
                raise BagError(f"{bag.path}: full supervision needs ground-truth masks or '{PSEUDO}' (slide tiled without a mask)")
        self.has_truth = all(b.has_masks for b in self.bags)
        self.index = np.concatenate(
            [np.stack([np.full(len(b), i), np.arange(len(b))], axis=1) for i, b in enumerate(self.bags)]
        ).astype(np.int64)
        self.has_positive = np.concatenate([self._positive_flags(b, chunk) for b in self.bags])

    def _positive_flags(self, bag: Bag, chunk: int) -> np.ndarray:
        if self.target == "full" and PSEUDO not in bag.h5:
            return np.asarray(bag.cancer_fraction) > 0
        key = PSEUDO if self.target == "full" else "pu_labels"  # positives are 1 in both
        flags = np.zeros(len(bag), dtype=bool)
        for lo in range(0, len(bag), chunk):
            labels = bag.h5[key][lo:lo + chunk]
            flags[lo:lo + len(labels)] = (labels == PU_POSITIVE).any(axis=(1, 2))
        return flags

    def __len__(self) -> int:
        return len(self.index)

    def _grouped(self, rows: Sequence[int] | np.ndarray, read) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).ravel()
        t = self.tile_size
        out: np.ndarray | None = None
        pairs = self.index[rows]
        for b in np.unique(pairs[:, 0]):
            sel = np.flatnonzero(pairs[:, 0] == b)
            part = read(self.bags[b], pairs[sel, 1])
            if out is None:
                out = np.empty((len(rows), *part.shape[1:]), dtype=part.dtype)
            out[sel] = part
        return out if out is not None else np.empty((0, t, t), dtype=np.uint8)

    def read(self, rows: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images uint8 ``(k, T, T, 3)`` and targets uint8 ``(k, T, T)`` of dataset rows ``rows``."""
        images = self._grouped(rows, lambda bag, idx: bag.read_tiles(idx))
        targets = self._grouped(rows, self._read_targets)
        return images, targets

    def truth(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Common ground-truth labels uint8 ``(k, T, T)`` (0 bg, 1 benign, 2 cancer)."""
        if not self.has_truth:
            missing = next(b.path for b in self.bags if not b.has_masks)
            raise BagError(f"{missing}: bag has no ground-truth masks")
        return self._grouped(rows, lambda bag, idx: to_common_labels(bag.read_masks(idx), bag.meta.data_provider))

    def _read_targets(self, bag: Bag, idx: np.ndarray) -> np.ndarray:
        if self.target == "pu":
            return read_pu_labels(bag, idx)
        if PSEUDO in bag.h5:
            return bag.read(PSEUDO, idx)
        return SEG_TARGET_BY_COMMON[to_common_labels(bag.read_masks(idx), bag.meta.data_provider)]

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        images, targets = self.read([i])
        return images[0], targets[0]

    def __getitems__(self, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Batched read used by ``DataLoader`` with a batch sampler (one grouped read per bag)."""
        return self.read(rows)

    def close(self) -> None:
        for bag in self.bags:
            bag.close()


def collate_read(batch: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """``collate_fn`` for :meth:`SegTileDataset.__getitems__`: the batch arrays as tensors."""
    images, targets = batch
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(np.ascontiguousarray(targets))


def random_crop(images: torch.Tensor, targets: torch.Tensor, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One random ``size``×``size`` crop per sample (images ``(B, C, H, W)``, targets ``(B, H, W)``)."""
    h, w = images.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"crop size {size} exceeds the tile size {h}×{w}")
    ys = rng.integers(0, h - size + 1, size=len(images))
    xs = rng.integers(0, w - size + 1, size=len(images))
    x = torch.stack([im[:, a:a + size, b:b + size] for im, a, b in zip(images, ys, xs)])
    y = torch.stack([t[a:a + size, b:b + size] for t, a, b in zip(targets, ys, xs)])
    return x, y


__all__ = ["IGNORE", "TARGETS", "SegTileDataset", "collate_read", "random_crop"]
