"""PositiveBatchSampler: positives per batch, coverage, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader

from weakseg.sampling import PositiveBatchSampler


def _flags(n: int = 50, positives=(3, 17, 40)) -> np.ndarray:
    f = np.zeros(n, dtype=bool)
    f[list(positives)] = True
    return f


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_batch_has_min_positives_and_no_duplicates(m, seed):
    flags = _flags()
    batches = list(PositiveBatchSampler(flags, batch_size=8, min_positives=m, seed=seed))
    assert len(batches) == 7
    for b in batches:
        assert flags[b].sum() >= m
        assert len(set(b)) == len(b)
    assert [len(b) for b in batches[:-1]] == [8] * 6


def test_without_guarantee_is_a_permutation():
    s = PositiveBatchSampler(_flags(), batch_size=8, min_positives=0, seed=3)
    assert sorted(i for b in s for i in b) == list(range(50))


def test_most_indices_visited_once_per_epoch():
    flags = _flags(200, positives=range(0, 200, 10))
    seen = [i for b in PositiveBatchSampler(flags, batch_size=10, min_positives=2, seed=0) for i in b]
    negatives_seen = {i for i in seen if not flags[i]}
    assert len(negatives_seen) >= 150  # replacements only drop a few negatives


def test_deterministic_per_seed_and_epoch():
    a = PositiveBatchSampler(_flags(), 8, 2, seed=5)
    b = PositiveBatchSampler(_flags(), 8, 2, seed=5)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(PositiveBatchSampler(_flags(), 8, 2, seed=6)) != first


def test_drop_last_and_short_last_batch_grows_to_min():
    assert len(PositiveBatchSampler(_flags(), 8, drop_last=True)) == 6
    s = PositiveBatchSampler(_flags(49), batch_size=8, min_positives=2)
    assert all(_flags(49)[b].sum() >= 2 for b in s)


def test_works_as_dataloader_batch_sampler():
    flags = _flags()
    loader = DataLoader(np.arange(50), batch_sampler=PositiveBatchSampler(flags, 8, 1, seed=0))
    assert all(flags[batch.numpy()].any() for batch in loader)


def test_errors():
    with pytest.raises(ValueError, match="only 3 tiles have positives"):
        PositiveBatchSampler(_flags(), 8, min_positives=4)
    with pytest.raises(ValueError, match="min_positives"):
        PositiveBatchSampler(_flags(), 2, min_positives=3)
    with pytest.raises(ValueError, match="at least one tile"):
        PositiveBatchSampler([], 2)
