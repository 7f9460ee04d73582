"""Batch sampling for PU learning: every batch holds at least ``min_positives`` tiles with
labelled-positive pixels, so the positive risks R̂p± are never empty."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PositiveBatchSampler(Sampler[list[int]]):
    """Shuffled batches of tile indices, each with ≥ ``min_positives`` positive tiles.

    Every epoch visits each index once in a seeded random order (the last short batch is
    dropped with ``drop_last``); a batch short of positives has some of its other tiles
    swapped for positives drawn from a seeded, reshuffled stream of positive tiles not
    already in the batch. The order depends only on ``(seed, epoch)``: call
    :meth:`set_epoch` before each epoch, as with ``DistributedSampler``.

    Args:
        has_positive: one flag per tile, True when the tile holds labelled-positive pixels.
        batch_size: tiles per batch.
        min_positives: positive tiles guaranteed per batch (0 disables the guarantee).
        drop_last: drop the final batch when it is smaller than ``batch_size``.
        seed: base seed.
    """

    def __init__(
        self, has_positive: Sequence[bool] | np.ndarray, batch_size: int, min_positives: int = 1,
        drop_last: bool = False, seed: int = 0,
    ) -> None:
        flags = np.asarray(has_positive, dtype=bool).ravel()
        if flags.size == 0:
            raise ValueError("PositiveBatchSampler needs at least one tile")
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        if not 0 <= min_positives <= batch_size:
            raise ValueError(f"min_positives must be in 0..batch_size ({batch_size}), got {min_positives}")
        self.positives = np.flatnonzero(flags)
        if min_positives > len(self.positives):
            raise ValueError(
                f"{min_positives} positive tiles per batch requested but only {len(self.positives)} tiles have positives"
            )
        self.flags = flags
        self.batch_size = batch_size
        self.min_positives = min_positives
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = self.flags.size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.flags.size)
        pos_stream = rng.permutation(self.positives)
        cursor = 0
        for b in range(len(self)):
            batch = order[b * self.batch_size:(b + 1) * self.batch_size].copy()
            need = self.min_positives - int(self.flags[batch].sum())
            if need > 0:
                chosen = set(batch.tolist())
                new: list[int] = []
                while len(new) < need:
                    if cursor == len(pos_stream):
                        pos_stream, cursor = rng.permutation(self.positives), 0
                    cand = int(pos_stream[cursor])
                    cursor += 1
                    if cand not in chosen:
                        chosen.add(cand)
                        new.append(cand)
                replace = np.flatnonzero(~self.flags[batch])[: len(new)]
                if len(replace) < len(new):  # short last batch: grow it instead
                    batch = np.concatenate([batch, np.asarray(new[len(replace):], dtype=batch.dtype)])
                    new = new[: len(replace)]
                batch[replace[: len(new)]] = new
            yield batch.tolist()
