"""MIL data: instance sampling, padded batches, bag sources, digit bags, augmentation, MIL metrics."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from weakseg.data import (
    H5Bags,
    InMemoryBags,
    as_source,
    bag_loader,
    dihedral,
    epoch_plan,
    make_digit_bags,
    pad_collate,
    sample_instances,
    write_toy_bags,
)
from weakseg.errors import WeaksegError
from weakseg.metrics.mil import mil_metrics_table, slide_metrics, tile_metrics


def test_sample_without_replacement_and_fill() -> None:
    rng = np.random.default_rng(0)
    idx = sample_instances(100, 30, rng)
    assert len(np.unique(idx)) == 30 and (np.diff(idx) > 0).all()
    assert sample_instances(5, None, rng).tolist() == [0, 1, 2, 3, 4]
    assert sample_instances(5, 30, rng).tolist() == [0, 1, 2, 3, 4]  # no fill: bag kept as is
    filled = sample_instances(5, 12, rng, fill=True)
    assert len(filled) == 12 and set(range(5)) <= set(filled.tolist())  # every tile, then duplicates


def test_pad_collate_masks_and_indices() -> None:
    items = [(np.ones((3, 4), np.float32), 1, 7, np.array([0, 2, 5])), (np.ones((1, 4), np.float32), 0, 2, np.array([4]))]
    b = pad_collate(items)
    assert b.x.shape == (2, 3, 4)
    assert b.mask.tolist() == [[True, True, True], [True, False, False]]
    assert b.x[1, 1:].abs().sum() == 0
    assert b.idx[1].tolist() == [4, -1, -1]
    assert b.y.tolist() == [1.0, 0.0] and b.bag.tolist() == [7, 2]


def test_in_memory_validation() -> None:
    with pytest.raises(WeaksegError, match="instance shape"):
        InMemoryBags([np.zeros((2, 3)), np.zeros((2, 4))], [0, 1])
    with pytest.raises(WeaksegError, match="y has shape"):
        InMemoryBags([np.zeros((2, 3))], [0, 1])
    with pytest.raises(WeaksegError, match="need labels"):
        as_source([np.zeros((2, 3))])
    src = InMemoryBags([np.zeros((2, 1, 8, 8))], [1])
    assert src.kind == "image" and src.instance_shape == (1, 8, 8)


def test_h5_source_reads_requested_tiles_and_pickles(tmp_path) -> None:
    paths = write_toy_bags(tmp_path, n_bags=4, n_tiles=6, tile_size=8)
    src = H5Bags(tmp_path)
    assert src.labels.tolist() == [0, 1, 0, 1] and src.instance_shape == (3, 8, 8) and src.kind == "image"
    from weakseg.bags import Bag

    with Bag(paths[1]) as bag:
        np.testing.assert_array_equal(src.read(1, np.array([4, 1])), bag.read_tiles([4, 1]))
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone.read(1, np.array([0])), src.read(1, np.array([0])))
    plan = epoch_plan(src, np.random.default_rng(0), size=4)
    batches = list(bag_loader(src, plan, batch_size=2, num_workers=1))
    assert [len(b) for b in batches] == [2, 2]
    assert sorted(int(i) for b in batches for i in b.bag) == [0, 1, 2, 3]
    assert all(b.x.dtype == torch.uint8 and b.x.shape[1:] == (4, 8, 8, 3) for b in batches)


def test_digit_bags_balanced_and_labelled() -> None:
    bags, y, inst = make_digit_bags(40, seed=3, split="train")
    assert y.sum() == 20
    assert all((lab == 1) == (il.sum() > 0) for lab, il in zip(y, inst))
    assert all(b.shape[1:] == (1, 8, 8) and len(b) >= 1 and 0 <= b.min() and b.max() <= 1 for b in bags)
    sizes = np.array([len(b) for b in bags])
    assert 8 <= sizes.mean() <= 12
    again, y2, _ = make_digit_bags(40, seed=3, split="train")
    assert (y == y2).all() and all(np.array_equal(a, b) for a, b in zip(bags, again))
    train = {a.tobytes() for b in bags for a in b}
    test = {a.tobytes() for b in make_digit_bags(40, seed=3, split="test")[0] for a in b}
    assert len(train & test) < 0.05 * len(test)  # disjoint images (a few digits are pixel-identical)


def test_dihedral_is_a_per_image_symmetry() -> None:
    x = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4).repeat(8, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    y = dihedral(x, g)
    assert y.shape == x.shape
    assert all(torch.equal(y[i].flatten().sort().values, x[i].flatten().sort().values) for i in range(len(x)))
    assert not torch.equal(y, x)
    assert torch.equal(y, dihedral(x, torch.Generator().manual_seed(0)))


def test_mil_metrics() -> None:
    m = slide_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.7, 0.9]))
    assert m == {"slide_auc": 1.0, "slide_accuracy": 0.75}
    t = tile_metrics(np.array([0.9, 0.2, 0.8, 0.1]), np.array([1.0, 0.0, 0.3, 0.6]))
    assert t["tile_auc"] == 0.5 and t["tile_precision"] == 0.5 and t["tile_recall"] == 0.5
    assert np.isnan(slide_metrics(np.array([1, 1]), np.array([0.2, 0.9]))["slide_auc"])
    slides = pd.DataFrame({"slide_id": list("abcd"), "provider": ["r", "r", "k", "k"], "label": [0, 1, 0, 1],
                           "prob": [0.2, 0.8, 0.6, 0.4]})
    table = mil_metrics_table(slides)
    auc = table.set_index(["provider", "metric"])["value"]
    assert auc[("r", "slide_auc")] == 1.0 and auc[("k", "slide_auc")] == 0.0 and auc[("all", "slide_auc")] == 0.75
    assert list(table.columns) == ["provider", "level", "metric", "value", "n"]
