"""``Bag.read`` / ``bags.read_rows``: HDF5 rows in the caller's order, equal to numpy fancy indexing."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from weakseg.bags import Bag, read_rows
from weakseg.errors import BagError

INDICES = [
    [3, 0, 3, 4],  # unsorted, with a duplicate
    [4, 3, 2, 1, 0],  # reversed
    [2, 2, 2],  # one row, repeated
    [0, 1, 2, 3, 4],  # already sorted
    [1],
    [],
]


@pytest.fixture
def bag_and_arrays(tmp_path, make_bag):
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    masks = rng.integers(0, 3, (5, 8, 8), dtype=np.uint8)
    path = make_bag(tmp_path / "s1.h5", tiles, masks)
    return path, tiles, masks


@pytest.mark.parametrize("idx", INDICES)
def test_bag_read_equals_fancy_indexing(bag_and_arrays, idx):
    path, tiles, masks = bag_and_arrays
    with Bag(path) as bag:
        for name, full in (("tiles", tiles), ("masks", masks), ("coords", bag.coords)):
            got = bag.read(name, np.array(idx, dtype=np.int64))
            np.testing.assert_array_equal(got, full[idx])
            assert got.shape == full[idx].shape and got.dtype == full.dtype
        np.testing.assert_array_equal(bag.read_tiles(idx), tiles[idx])
        np.testing.assert_array_equal(bag.read_masks(idx), masks[idx])


def test_bag_read_all_rows_and_errors(bag_and_arrays):
    path, tiles, masks = bag_and_arrays
    with Bag(path) as bag:
        np.testing.assert_array_equal(bag.read("masks"), masks)
        np.testing.assert_array_equal(bag.read_tiles(), tiles)
        with pytest.raises(IndexError, match="out of range 0..4"):
            bag.read("masks", [0, 5])
        with pytest.raises(IndexError, match="out of range"):
            bag.read("masks", [-1])
        with pytest.raises(BagError, match="no 'pu_labels' dataset"):
            bag.read("pu_labels", [0])


@pytest.mark.parametrize("idx", INDICES)
def test_read_rows_on_any_dataset(tmp_path, idx):
    data = np.random.default_rng(1).normal(size=(5, 7)).astype(np.float32)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["x"] = data
    with h5py.File(tmp_path / "f.h5", "r") as f:
        got = read_rows(f["x"], idx)
        np.testing.assert_array_equal(got, data[idx])
        assert got.shape == (len(idx), 7) and got.dtype == np.float32
        np.testing.assert_array_equal(read_rows(f["x"]), data)


def test_jpeg_tiles_read_in_order(tmp_path, make_bag):
    t = 16
    tiles = np.stack([np.full((t, t, 3), v, np.uint8) for v in (10, 80, 160, 240)])
    path = make_bag(tmp_path / "j.h5", tiles, codec="jpeg")
    with Bag(path) as bag:
        out = bag.read_tiles([3, 0, 3, 1])
        assert np.abs(out.astype(int) - tiles[[3, 0, 3, 1]].astype(int)).max() <= 2
        assert bag.read_tiles([]).shape == (0, t, t, 3)
        assert len(bag.read("tiles", [])) == 0
