"""Padded MIL batches: bags of different sizes stacked with a validity mask."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class MILBatch:
    """``x``: ``(B, N_max, ...)`` instances (zeros where padded); ``mask``: bool ``(B, N_max)``, True = real
    instance; ``y``: float ``(B,)`` bag labels; ``bag``: int64 ``(B,)`` bag indices in the source;
    ``idx``: int64 ``(B, N_max)`` instance indices within each bag (``-1`` where padded)."""

    x: torch.Tensor
    mask: torch.Tensor
    y: torch.Tensor
    bag: torch.Tensor
    idx: torch.Tensor

    def to(self, device: torch.device | str) -> MILBatch:
        return MILBatch(*(t.to(device, non_blocking=True) for t in (self.x, self.mask, self.y, self.bag, self.idx)))

    def __len__(self) -> int:
        return int(self.x.shape[0])


def pad_collate(items: Sequence[tuple[np.ndarray, int, int, np.ndarray]]) -> MILBatch:
    """Stack ``(instances, label, bag_index, instance_indices)`` items into one :class:`MILBatch`."""
    n_max = max(len(it[0]) for it in items)
    first = np.asarray(items[0][0])
    x = torch.zeros((len(items), n_max, *first.shape[1:]), dtype=torch.from_numpy(first[:0]).dtype)
    mask = torch.zeros((len(items), n_max), dtype=torch.bool)
    idx = torch.full((len(items), n_max), -1, dtype=torch.int64)
    for b, (inst, _, _, ii) in enumerate(items):
        n = len(inst)
        x[b, :n] = torch.from_numpy(np.ascontiguousarray(inst))
        mask[b, :n] = True
        idx[b, :n] = torch.from_numpy(np.asarray(ii, dtype=np.int64))
    y = torch.tensor([float(it[1]) for it in items])
    bag = torch.tensor([int(it[2]) for it in items], dtype=torch.int64)
    return MILBatch(x, mask, y, bag, idx)
