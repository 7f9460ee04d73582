"""Real slides from ../shared/data (skipped when absent): formats, pixel sizes, detector counts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import openslide
import pytest
from typer.testing import CliRunner

import weakseg  # noqa: F401  (applies the import shim first)
from weakseg.bags import Bag
from weakseg.cli.main import app
from weakseg.cohort import SlideRecord
from weakseg.errors import SlideError
from weakseg.slide import open_slide
from weakseg.tiff_reader import TiffPyramid
from weakseg.tiling.tiler import TileConfig, tile_slide

WSI = Path(__file__).resolve().parents[2] / "shared" / "data" / "wsi"
CMU = WSI / "cmu-1-small-region.svs"
TCGA = WSI / "tcga-cr-7395-01a-01-ts1.svs"
PYRAMID = WSI / "tcga-cr-7395_pyramid.tiff"
KIDNEY = WSI / "kidney-48-5.tif"

pytestmark = pytest.mark.shared


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return path


def record(path: Path) -> SlideRecord:
    return SlideRecord(path.stem, path, None, None, "", None, None, None)


def test_cmu_geometry_and_fast_path_pixels(tmp_path):
    need(CMU)
    with open_slide(CMU) as s:
        assert s.level_count == 1 and s.dimensions == (2220, 2967) and s.mpp == pytest.approx(0.499)
    res = tile_slide(record(CMU), tmp_path, TileConfig(tile_size=256, codec="lzf"))
    # Mostly-tissue count of a 256-px grid (88 whole cells; ~33 by the data README's measure).
    assert res.status == "ok" and 28 <= res.n_tiles <= 40
    osr = openslide.OpenSlide(str(CMU))
    with TiffPyramid(CMU, list(osr.level_dimensions)) as pyr:
        assert pyr.level(0) is not None and pyr.level(0).tile_w == 240  # Aperio JPEG, RGB photometric
    with Bag(tmp_path / f"{CMU.stem}.h5") as bag:
        assert not bag.meta.extra["jpeg_passthrough"] and bag.meta.mpp == pytest.approx(0.499)
        for i, tile in zip([0, len(bag) - 1], bag.read_tiles([0, len(bag) - 1])):
            x, y = (int(v) for v in bag.coords[i])
            assert np.array_equal(tile, np.asarray(osr.read_region((x, y), 0, (256, 256)))[..., :3])


def test_cmu_passthrough_of_rgb_jpeg_tiles(tmp_path):
    """240-px tiles are the slide's own JPEG tiles, stored as is and decoded to OpenSlide's pixels."""
    need(CMU)
    res = tile_slide(record(CMU), tmp_path, TileConfig(tile_size=240))
    assert res.status == "ok"
    osr = openslide.OpenSlide(str(CMU))
    with Bag(tmp_path / f"{CMU.stem}.h5") as bag:
        assert bag.meta.extra["jpeg_passthrough"] and bag.codec == "jpeg"
        idx = np.arange(0, len(bag), max(1, len(bag) // 5))
        for i, tile in zip(idx, bag.read_tiles(idx)):
            x, y = (int(v) for v in bag.coords[i])
            assert np.array_equal(tile, np.asarray(osr.read_region((x, y), 0, (240, 240)))[..., :3])


def test_tcga_svs_needs_slide_mpp_and_matches_readme_counts(tmp_path):
    need(TCGA)
    with open_slide(TCGA) as s:
        assert s.level_count == 2 and not s.has_mpp
        with pytest.raises(SlideError, match="tcga-cr-7395-01a-01-ts1.svs"):
            _ = s.mpp
    osr = openslide.OpenSlide(str(TCGA))
    with TiffPyramid(TCGA, list(osr.level_dimensions)) as pyr:
        assert pyr.level(0) is None  # JPEG 2000: OpenSlide reads it
    res = tile_slide(record(TCGA), tmp_path, TileConfig(tile_size=256, min_coverage=0.5))
    assert res.status == "failed" and "--slide-mpp" in res.reason
    res = tile_slide(record(TCGA), tmp_path, TileConfig(tile_size=256, min_coverage=0.5, slide_mpp=0.25))
    assert res.status == "ok" and abs(res.n_tiles - 149) <= 8  # README: 149 of 221 cells > half tissue
    with Bag(tmp_path / f"{TCGA.stem}.h5") as bag:
        assert bag.meta.mpp == 0.25 and bag.read_tiles([0]).shape == (1, 256, 256, 3)


def test_tcga_mpp_selects_level_with_non_integer_downsample(tmp_path):
    need(TCGA)
    with open_slide(TCGA, mpp_override=0.25) as s:
        assert s.level_downsamples[1] == pytest.approx(2.0005, abs=1e-4)
        assert s.best_level_for_mpp(0.5) == 1 and s.best_level_for_mpp(0.49) == 0
    res = tile_slide(record(TCGA), tmp_path, TileConfig(tile_size=128, mpp=0.5, slide_mpp=0.25))
    assert res.status == "ok"
    with Bag(tmp_path / f"{TCGA.stem}.h5") as bag:
        assert bag.meta.level == 1 and bag.meta.downsample == pytest.approx(2.0005, abs=1e-4)


def test_pyramid_tiff_passthrough_equals_openslide(tmp_path):
    """5-level generic TIFF (no resolution): aligned 256-px tiles pass through; same counts as the svs."""
    need(PYRAMID)
    with open_slide(PYRAMID) as s:
        assert s.level_count == 5 and not s.has_mpp
        assert s.level_downsamples[4] == pytest.approx(16.05, abs=0.01)
    res = tile_slide(record(PYRAMID), tmp_path, TileConfig(tile_size=256, min_coverage=0.5, slide_mpp=0.25))
    assert res.status == "ok" and abs(res.n_tiles - 149) <= 8
    osr = openslide.OpenSlide(str(PYRAMID))
    with Bag(tmp_path / f"{PYRAMID.stem}.h5") as bag:
        assert bag.meta.extra["jpeg_passthrough"]
        idx = np.arange(0, len(bag), max(1, len(bag) // 5))
        for i, tile in zip(idx, bag.read_tiles(idx)):
            x, y = (int(v) for v in bag.coords[i])
            assert np.array_equal(tile, np.asarray(osr.read_region((x, y), 0, (256, 256)))[..., :3])
    res = tile_slide(record(PYRAMID), tmp_path / "l2", TileConfig(tile_size=64, level=2, slide_mpp=0.25))
    with Bag(tmp_path / "l2" / f"{PYRAMID.stem}.h5") as bag:
        assert res.status == "ok" and bag.meta.level == 2 and bag.meta.mpp == pytest.approx(0.25 * 4.003, rel=1e-3)


def test_kidney_refused_and_recorded(tmp_path):
    need(KIDNEY)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"slide_path,slide_id\n{KIDNEY},kidney\n{need(CMU)},cmu\n")
    result = CliRunner().invoke(app, ["tile", str(manifest), str(tmp_path / "out"), "--tile-size", "256"])
    assert result.exit_code == 1 and "kidney" in result.output
    rows = {r["slide_id"]: r for r in csv.DictReader((tmp_path / "out" / "manifest.csv").open())}
    assert rows["kidney"]["status"] == "failed" and "not supported by OpenSlide" in rows["kidney"]["reason"]
    assert "kidney-48-5.tif" in rows["kidney"]["reason"] and rows["cmu"]["status"] == "ok"
