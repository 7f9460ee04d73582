"""Slide reader: pixel-size resolution, level selection, reads, thumbnails, fast TIFF decoding.

Also home of :func:`write_pyramid` / :func:`synthetic_slide`, the tiny-TIFF helpers the tiler
tests import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile

import weakseg  # noqa: F401  (applies the import shim first)
from weakseg.errors import SlideError
from weakseg.slide import open_slide, resolve_mpp, rgba_to_rgb
from weakseg.tiff_reader import TiffPyramid


def write_pyramid(
    path: Path,
    level0: np.ndarray,
    *,
    downsamples: tuple[int, ...] = (1, 4, 16),
    tile: int = 128,
    compression: str = "jpeg",
    mpp: float | None = 0.5,
    unit: str = "CENTIMETER",
) -> Path:
    """Write a tiled pyramidal generic TIFF OpenSlide reads (levels by plain subsampling)."""
    kwargs: dict = {}
    if mpp is not None:
        per_unit = 1e4 / mpp if unit == "CENTIMETER" else 25400 / mpp
        kwargs = {"resolution": (per_unit, per_unit), "resolutionunit": unit}
    with tifffile.TiffWriter(path) as tw:
        for k, ds in enumerate(downsamples):
            tw.write(
                np.ascontiguousarray(level0[::ds, ::ds]), tile=(tile, tile), compression=compression,
                photometric="rgb", subfiletype=0 if k == 0 else 1, **(kwargs if k == 0 else {}),
            )
    return path


def synthetic_slide(h: int = 1024, w: int = 1536, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An RGB slide with a few tissue blobs on glass and its Karolinska-style label map (0/1/2)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    labels = np.zeros((h, w), np.uint8)
    for _ in range(4):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(h // 10, h // 4)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 1
    cy, cx = h // 2, w // 2
    labels[(yy - cy) ** 2 + (xx - cx) ** 2 < (h // 6) ** 2] = 2
    rgb = np.full((h, w, 3), 242, np.uint8)
    tex = rng.integers(0, 40, (h, w, 1))
    pink = np.array([200, 110, 170]) - tex
    purple = np.array([130, 70, 150]) - tex
    rgb[labels == 1] = pink[labels == 1]
    rgb[labels == 2] = purple[labels == 2]
    return rgb, labels


def mask_rgb(labels: np.ndarray) -> np.ndarray:
    out = np.zeros(labels.shape + (3,), np.uint8)
    out[..., 0] = labels
    return out


@pytest.fixture(scope="module")
def slide_file(tmp_path_factory) -> Path:
    rgb, _ = synthetic_slide()
    return write_pyramid(tmp_path_factory.mktemp("slide") / "s.tif", rgb)


# -- pixel size -----------------------------------------------------------------------------


def test_resolve_mpp_order():
    assert resolve_mpp({"openslide.mpp-x": "0.25", "tiff.XResolution": "20000", "tiff.ResolutionUnit": "centimeter"}) == 0.25
    assert resolve_mpp({"tiff.XResolution": "20000", "tiff.ResolutionUnit": "centimeter"}) == pytest.approx(0.5)
    assert resolve_mpp({"tiff.XResolution": "50800", "tiff.ResolutionUnit": "inch"}) == pytest.approx(0.5)
    assert resolve_mpp({"tiff.XResolution": "50800", "tiff.ResolutionUnit": "none"}) is None
    assert resolve_mpp({"tiff.XResolution": "1", "tiff.ResolutionUnit": "inch"}, 0.3) == 0.3
    assert resolve_mpp({"openslide.mpp-x": "0"}, 0.7) == 0.7
    assert resolve_mpp({}) is None


@pytest.mark.parametrize("unit", ["CENTIMETER", "INCH"])
def test_mpp_from_tiff_resolution(tmp_path, unit):
    path = write_pyramid(tmp_path / "s.tif", synthetic_slide(256, 256)[0], downsamples=(1,), tile=64, mpp=0.452, unit=unit)
    with open_slide(path) as s:
        assert s.mpp == pytest.approx(0.452, rel=1e-6)


def test_mpp_missing_needs_override(tmp_path):
    path = write_pyramid(tmp_path / "s.tif", synthetic_slide(256, 256)[0], downsamples=(1, 2), tile=64, mpp=None)
    with open_slide(path) as s:
        assert not s.has_mpp
        with pytest.raises(SlideError, match=r"s\.tif.*pixel size unknown"):
            _ = s.mpp
        assert s.read_region((0, 0), 1, (8, 8)).shape == (8, 8, 3)  # everything else still works
    with open_slide(path, mpp_override=0.25) as s:
        assert s.mpp == 0.25 and s.level_mpp(1) == pytest.approx(0.5)
    with pytest.raises(SlideError, match="positive"):
        open_slide(path, mpp_override=-1)


def test_open_errors_name_the_file(tmp_path):
    with pytest.raises(SlideError, match="nope.tif"):
        open_slide(tmp_path / "nope.tif")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(SlideError, match="junk.tif"):
        open_slide(junk)


# -- levels ---------------------------------------------------------------------------------


def test_best_level_for_mpp_non_integer_downsamples(slide_file):
    with open_slide(slide_file, mpp_override=0.2525) as s:
        s.level_downsamples = [1.0, 4.0005, 16.0058]  # what Aperio scans report
        s._mpp = 0.2525
        assert s.best_level_for_mpp(0.2525) == 0
        assert s.best_level_for_mpp(1.0) == 1  # 1.0101 µm/px is within tolerance of 1.0
        assert s.best_level_for_mpp(0.9) == 0  # level 1 is coarser than asked: read level 0, resize
        assert s.best_level_for_mpp(4.05) == 2
        assert s.best_level_for_mpp(100.0) == 2
        with pytest.raises(SlideError, match="finer than level 0"):
            s.best_level_for_mpp(0.1)


# -- pixels ---------------------------------------------------------------------------------


def test_read_region_matches_openslide_and_pads_white(slide_file):
    osr = openslide.OpenSlide(str(slide_file))
    with open_slide(slide_file) as s:
        assert s.level_downsamples == [1.0, 4.0, 16.0] and s.dimensions == (1536, 1024)
        got = s.read_region((100, 200), 1, (50, 40))
        want = np.asarray(osr.read_region((100, 200), 1, (50, 40)))[..., :3]
        assert got.shape == (40, 50, 3) and np.array_equal(got, want)
        edge = s.read_region((1500, 1000), 0, (64, 64))
        assert (edge[30:, 40:] == 255).all() and not (edge[:20, :20] == 255).all()


def test_rgba_to_rgb_composites_on_white():
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0], [0, 0, 0, 128]]], np.uint8)
    assert rgba_to_rgb(rgba).tolist() == [[[10, 20, 30], [255, 255, 255], [127, 127, 127]]]


def test_thumbnail_bounded_and_close_to_level(slide_file):
    with open_slide(slide_file) as s:
        th = s.thumbnail(200)
        assert max(th.shape[:2]) == 200 and th.shape[:2] == (133, 200)
        assert s.thumbnail(96).shape[:2] == s.level_dimensions[2][::-1]  # exact level: no resampling
        ref = s.read_level(1).astype(np.float32).reshape(128, 2, 192, 2, 3).mean((1, 3))  # 2x2 box of level 1
        assert np.abs(s.thumbnail(192).astype(np.float32) - ref).max() <= 1


def test_thumbnail_in_bands_equals_one_pass(slide_file, monkeypatch):
    import weakseg.slide as slide_mod

    with open_slide(slide_file) as s:
        whole = s.thumbnail(500)
        monkeypatch.setattr(slide_mod, "_BAND_PIXELS", 1536 * 37)  # 37-row bands of level 0
        banded = s.thumbnail(500)
    assert banded.shape == whole.shape == (333, 500, 3)
    assert np.abs(banded.astype(int) - whole.astype(int)).mean() < 1.5


def test_label_thumbnail_never_mixes_labels(tmp_path):
    _, labels = synthetic_slide(512, 768)
    path = write_pyramid(tmp_path / "m.tif", mask_rgb(labels * 2), downsamples=(1,), tile=64, compression="zlib")
    with open_slide(path) as m:
        assert set(np.unique(m.thumbnail(100, labels=True)[..., 0])) == {0, 2, 4}
        assert len(np.unique(m.thumbnail(100)[..., 0])) > 3  # a box filter blends labels at edges


@pytest.mark.parametrize("compression", ["jpeg", "zlib", "lzw", None])
def test_fast_tiff_reads_equal_openslide(tmp_path, compression):
    path = write_pyramid(tmp_path / "s.tif", synthetic_slide(512, 640)[0], downsamples=(1, 4), tile=64, compression=compression)
    osr = openslide.OpenSlide(str(path))
    with TiffPyramid(path, list(osr.level_dimensions)) as pyr:
        for level, (x, y, w, h) in [(0, (64, 128, 128, 64)), (0, (30, 70, 100, 90)), (1, (0, 0, 160, 128)), (1, (17, 5, 33, 61))]:
            fast = pyr.level(level)
            assert fast is not None
            ds = int(osr.level_downsamples[level])
            want = np.asarray(osr.read_region((x * ds, y * ds), level, (w, h)))[..., :3]
            assert np.array_equal(fast.read(x, y, w, h), want), (level, x, y)


def test_passthrough_stream_decodes_to_openslide_pixels(slide_file):
    import imagecodecs

    osr = openslide.OpenSlide(str(slide_file))
    with TiffPyramid(slide_file, list(osr.level_dimensions)) as pyr:
        lvl = pyr.level(0)
        assert lvl.passthrough
        stream = lvl.jpeg_stream(5, 3)
        want = np.asarray(osr.read_region((5 * 128, 3 * 128), 0, (128, 128)))[..., :3]
        assert np.array_equal(imagecodecs.jpeg8_decode(stream), want)
