"""Pyramidal TIFF writer and the slide-map driver: OpenSlide reads what we write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

import weakseg  # noqa: F401
from weakseg.maps import predict_slide_map, write_pyramid
from weakseg.errors import SlideError


def gradient(h: int, w: int) -> np.ndarray:
    return (np.add.outer(np.arange(h) * 3, np.arange(w)) % 256).astype(np.uint8)


def strips(img: np.ndarray, heights: list[int]):
    y = 0
    for h in heights:
        yield img[y : y + h]
        y += h


def test_openslide_reads_levels_pixels_and_mpp(tmp_path: Path) -> None:
    img = gradient(700, 1100)
    path = tmp_path / "m.tif"
    n = write_pyramid(path, strips(img, [100, 37, 300, 263]), img.shape, mpp=2.0, metadata={"downsample": 4})
    assert n == 4
    with openslide.OpenSlide(path) as s:
        assert s.properties["openslide.vendor"] == "generic-tiff"
        assert s.level_dimensions == ((1100, 700), (550, 350), (275, 175), (138, 88))
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(2.0)
        level0 = np.asarray(s.read_region((0, 0), 0, (1100, 700)))[..., 0]
        np.testing.assert_array_equal(level0, img)
        level1 = np.asarray(s.read_region((0, 0), 1, (550, 350)))[..., 0].astype(int)
    expected = img.astype(float).reshape(350, 2, 550, 2).mean((1, 3))
    assert np.abs(level1 - expected).max() <= 1
    with tifffile.TiffFile(path) as tif:
        assert json.loads(tif.pages[0].description) == {"downsample": 4}
        assert tif.pages[0].is_tiled and tif.pages[0].compression == 8  # deflate


def test_small_image_single_level(tmp_path: Path) -> None:
    img = gradient(50, 70)
    assert write_pyramid(tmp_path / "s.tif", [img], img.shape) == 1


def test_wrong_rows_fail_without_leaving_a_file(tmp_path: Path) -> None:
    img = gradient(300, 300)
    with pytest.raises(ValueError, match="rows"):
        write_pyramid(tmp_path / "bad.tif", [img[:200]], (300, 300))
    with pytest.raises(ValueError, match="uint8"):
        write_pyramid(tmp_path / "bad.tif", [img.astype(np.float32)], (300, 300))
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def slide(tmp_path: Path) -> Path:
    """A 1024 x 768 tiled RGB TIFF: white glass, pink tissue on the left, a purple 'tumour' square."""
    rgb = np.full((768, 1024, 3), 245, dtype=np.uint8)
    rgb[64:704, 64:640] = (220, 150, 190)
    rgb[256:512, 128:384] = (120, 40, 140)
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression="zlib",
                     resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    return path


def purple(tiles: np.ndarray) -> np.ndarray:
    return (tiles[..., 1] < 100).astype(np.float32)


def test_predict_slide_map_end_to_end(slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "maps"
    res = predict_slide_map(slide, purple, out, window=128, step=64, map_downsample=2, batch_size=8)
    assert res.shape == (384, 512) and res.downsample == 2
    assert 0 < res.n_predicted < res.n_windows  # glass windows skipped
    with openslide.OpenSlide(res.prob_tiff) as s:
        assert s.level_dimensions[0] == (512, 384) and s.level_count == 2
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(1.0)
        prob = np.asarray(s.read_region((0, 0), 0, (512, 384)))[..., 0]
    assert (prob[128:256, 64:192] == 255).all() and (prob[40:100, 230:300] == 0).all()
    with openslide.OpenSlide(res.mask_tiff) as s:
        mask = np.asarray(s.read_region((0, 0), 0, (512, 384)))[..., 0]
    np.testing.assert_array_equal(mask == 255, prob >= 128)
    meta = json.loads(res.sidecar.read_text())
    assert meta["downsample"] == 2 and meta["mpp"] == pytest.approx(1.0) and meta["n_regions"] == 1
    (feat,) = json.loads(res.geojson.read_text())["features"]
    xy = np.asarray(feat["geometry"]["coordinates"][0])
    np.testing.assert_allclose(xy.min(0), [128, 256], atol=4)
    np.testing.assert_allclose(xy.max(0), [384, 512], atol=4)
    overlay = res.overlay_png.read_bytes()
    assert overlay[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"slide{s}" for s in (".prob.tif", ".mask.tif", ".overlay.png", ".geojson", ".json")
    )


def test_predict_slide_map_rejects_bad_predictor_and_level(slide: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="predict_tiles returned shape"):
        predict_slide_map(slide, lambda t: np.zeros((len(t), 4, 4)), tmp_path, window=128, step=64)
    with pytest.raises(SlideError, match="level 3"):
        predict_slide_map(slide, purple, tmp_path, level=3)


def test_windows_read_exactly_with_band_reuse(tmp_path: Path) -> None:
    """A predictor echoing the red channel must reproduce the slide's red channel exactly,
    also where runs of tissue windows shift from band to band (rows reused from the band above)."""
    rng = np.random.default_rng(0)
    h, w = 600, 700
    yy, xx = np.mgrid[:h, :w]
    tissue = (np.abs(xx - yy - 50) < 120) | ((yy > 420) & (xx < 200))  # a diagonal band and a foot
    rgb = np.full((h, w, 3), 245, dtype=np.uint8)
    rgb[tissue] = rng.integers((150, 60, 120), (230, 160, 200), size=(int(tissue.sum()), 3))
    path = tmp_path / "diag.tif"
    tifffile.imwrite(path, rgb, tile=(128, 128), photometric="rgb", compression="zlib")
    red = lambda tiles: tiles[..., 0].astype(np.float32) / 255  # noqa: E731
    res = predict_slide_map(path, red, tmp_path / "out", window=64, step=32, map_downsample=1, batch_size=5)
    assert 0 < res.n_predicted < res.n_windows
    prob = tifffile.imread(res.prob_tiff)
    covered = prob > 0
    np.testing.assert_array_equal(prob[covered], rgb[..., 0][covered])
    assert covered[tissue].mean() > 0.99


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CMU = SHARED / "wsi" / "cmu-1-small-region.svs"


@pytest.mark.skipif(not CMU.is_file(), reason="shared test slides not available")
def test_real_svs_map_geometry_and_mpp(tmp_path: Path) -> None:
    res = predict_slide_map(CMU, purple, tmp_path, window=512, step=512, map_downsample=8)
    with openslide.OpenSlide(CMU) as slide, openslide.OpenSlide(res.prob_tiff) as m:
        w, h = slide.dimensions
        assert m.dimensions == (-(-w // 8), -(-h // 8))
        assert float(m.properties["openslide.mpp-x"]) == pytest.approx(float(slide.properties["openslide.mpp-x"]) * 8, rel=1e-4)
    assert 0 < res.n_predicted <= res.n_windows
