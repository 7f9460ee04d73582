"""Instance sampling and the torch ``Dataset`` / ``DataLoader`` over a bag source."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .collate import pad_collate
from .sources import MILSource


def sample_instances(n: int, size: int | None, rng: np.random.Generator, *, fill: bool = False) -> np.ndarray:
    """Sorted indices of ``size`` instances of a bag of ``n``, drawn without replacement.

    ``size=None`` or ``size >= n`` keeps every instance; with ``fill=True`` a bag smaller than
    ``size`` is topped up to exactly ``size`` by drawing extra instances with replacement
    (duplicates, as in Lerousseau et al.'s fixed-size bags).
    """
    if size is None or size >= n:
        idx = np.arange(n)
        if fill and size is not None and size > n:
            idx = np.concatenate([idx, rng.integers(0, n, size - n)])
        return np.sort(idx)
    return np.sort(rng.choice(n, size, replace=False))


class BagDataset(Dataset):
    """Item ``j`` = bag ``plan[j][0]`` restricted to instances ``plan[j][1]``, read when requested."""

    def __init__(self, source: MILSource, plan: list[tuple[int, np.ndarray]]) -> None:
        self.source = source
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, j: int) -> tuple[np.ndarray, int, int, np.ndarray]:
        i, idx = self.plan[j]
        return self.source.read(i, idx), int(self.source.labels[i]), i, idx


def epoch_plan(source: MILSource, rng: np.random.Generator, *, size: int | None, fill: bool = False,
               shuffle: bool = True) -> list[tuple[int, np.ndarray]]:
    """One epoch's ``(bag, instance indices)`` list: bags in random order, instances subsampled."""
    order = rng.permutation(len(source)) if shuffle else np.arange(len(source))
    return [(int(i), sample_instances(source.n_instances(int(i)), size, rng, fill=fill)) for i in order]


def eval_plan(source: MILSource, size: int | None = None, seed: int = 0) -> list[tuple[int, np.ndarray]]:
    """Deterministic plan for inference: every instance, or a fixed subsample of ``size`` per bag."""
    return epoch_plan(source, np.random.default_rng(seed), size=size, shuffle=False)


def bag_loader(source: MILSource, plan: list[tuple[int, np.ndarray]], *, batch_size: int = 1,
               num_workers: int = 0) -> DataLoader:
    """A DataLoader yielding padded :class:`~weakseg.data.collate.MILBatch` es in ``plan`` order."""
    return DataLoader(
        BagDataset(source, plan), batch_size=batch_size, shuffle=False, collate_fn=pad_collate,
        num_workers=num_workers, persistent_workers=False, pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if num_workers > 0 else None,
    )
