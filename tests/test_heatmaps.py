"""Tile-score maps: grid placement, metadata, PNG over the thumbnail or alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from weakseg.bags import Bag, BagMeta, BagWriter
from weakseg.errors import WeaksegError
from weakseg.heatmaps import normalize_scores, tile_grid, write_tile_score_map
from weakseg.synth.tiffwriter import write_pyramid


def _bag(tmp_path, slide_path: str = "") -> Bag:
    """Five 8-px tiles (level 0, stride 8) on a 64x40 slide."""
    meta = BagMeta(slide_id="s1", label=1, tile_size=8, stride=8, mpp=0.5, slide_path=slide_path)
    coords = np.array([[0, 0], [8, 0], [16, 8], [56, 32], [24, 16]])
    with BagWriter(tmp_path / "s1.h5", meta, tile_size=8, with_masks=False, codec="raw") as w:
        w.append(np.zeros((5, 8, 8, 3), np.uint8), coords, np.ones(5))
    return Bag(tmp_path / "s1.h5")


def _slide(tmp_path) -> str:
    path = tmp_path / "slide.tiff"
    write_pyramid(path, lambda x, y, w, h, d: np.full((h, w, 3), 200, np.uint8), (64, 40), [1], mpp=0.5, tile=16,
                  compression="zlib")
    return str(path)


def test_grid_places_tiles_and_nan_elsewhere(tmp_path) -> None:
    bag = _bag(tmp_path)
    grid, s0 = tile_grid(bag, np.arange(5.0), slide_size=(64, 40))
    assert s0 == 8 and grid.shape == (5, 8)
    assert grid[0, 0] == 0 and grid[0, 1] == 1 and grid[1, 2] == 2 and grid[4, 7] == 3 and grid[2, 3] == 4
    assert np.isnan(grid).sum() == 40 - 5
    with pytest.raises(WeaksegError, match="3 scores for 5 tiles"):
        tile_grid(bag, np.zeros(3))


def test_rank_normalization() -> None:
    np.testing.assert_allclose(normalize_scores(np.array([1e-9, 0.99, 1e-6]), "rank"), [0.0, 1.0, 0.5])
    with pytest.raises(WeaksegError, match="normalization"):
        normalize_scores(np.zeros(2), "zscore")


def test_written_over_thumbnail_with_metadata(tmp_path) -> None:
    bag = _bag(tmp_path, _slide(tmp_path))
    paths = write_tile_score_map(bag, np.array([0.1, 0.9, 0.5, 0.2, 0.3]), tmp_path / "maps", max_side=32, legend=False)
    assert set(paths) == {"grid", "meta", "png"} and all(p.is_file() for p in paths.values())
    meta = json.loads(paths["meta"].read_text())
    assert meta["slide_id"] == "s1" and meta["shape"] == [5, 8] and meta["downsample"] == 8
    assert meta["mpp"] == 4.0 and meta["tile_size"] == 8 and meta["level"] == 0 and meta["background"] == "thumbnail"
    assert meta["normalization"] == "raw" and meta["color_range"] == [0.0, 1.0]
    assert Image.open(paths["png"]).size == (32, 20)  # the thumbnail's size
    np.testing.assert_allclose(np.load(paths["grid"])[0, :2], [0.1, 0.9], rtol=1e-6)


def test_plain_grid_image_when_slide_is_gone(tmp_path) -> None:
    bag = _bag(tmp_path, str(tmp_path / "moved.tiff"))
    paths = write_tile_score_map(bag, np.array([5.0, 1.0, 2.0, 3.0, 4.0]), tmp_path / "maps",
                                 name="attention", normalization="rank", max_side=64, legend=False)
    meta = json.loads(paths["meta"].read_text())
    assert paths["png"].name == "s1.attention.png" and meta["background"] == "none"
    assert meta["shape"] == [5, 8]  # extent of the tiles
    assert np.nanmax(np.load(paths["grid"])) == 1.0
    img = np.asarray(Image.open(paths["png"]))
    assert img.shape == (40, 64, 3) and (img[-1, 0] == 255).all()  # no tile there → white
