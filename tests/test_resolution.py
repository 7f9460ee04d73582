"""One resolution contract: tiles, slide-map windows and tile-score maps of a bag share its pixels.

A bag tiled with ``--mpp`` between two levels (level 0 resized) or with ``--level`` (read as
stored) is mapped by :func:`predict_slide_map` at the bag's :class:`Resolution`; the windows fed
to the model at the bag's tile positions are the bag's tiles (exactly for lossless bags, within
JPEG error otherwise), the map's µm/px is the slide's times the recorded downsample, and a
colour-rule model scores the same Dice on the map read back as on the bag's tiles.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import weakseg  # noqa: F401  (applies the import shim first)
from weakseg import api
from weakseg.bags import Bag, decode_tile, encode_tile
from weakseg.capabilities import PixelPredictorMixin
from weakseg.cohort import SlideRecord
from weakseg.errors import SlideError
from weakseg.heatmaps import write_tile_score_map
from weakseg.maps import StitchGrid, predict_slide_map
from weakseg.maps import predict as map_predict
from weakseg.panda import CANCER, to_common_labels
from weakseg.resolution import RegionReader, Resolution, read_region_at
from weakseg.slide import open_slide
from weakseg.tiling.tiler import TileConfig, make_grid, tile_slide

sys.path.insert(0, str(Path(__file__).parent))
from test_slide import mask_rgb, synthetic_slide, write_pyramid  # noqa: E402

TILE = 64
MAP_DS = 4
GLAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "glas_train"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> SlideRecord:
    """A 1536x1024 slide at 0.5 µm/px (levels 1/4/16, 128-px JPEG tiles) with a Karolinska mask."""
    root = tmp_path_factory.mktemp("res_slide")
    rgb, labels = synthetic_slide(1024, 1536, seed=3)
    write_pyramid(root / "s.tif", rgb)
    write_pyramid(root / "s_mask.tif", mask_rgb(labels), compression="zlib")
    return SlideRecord("s", root / "s.tif", root / "s_mask.tif", 1, "karolinska", 2, "3+4", None)


def _tile(record: SlideRecord, out: Path, **how) -> Bag:
    result = tile_slide(record, out, TileConfig(tile_size=TILE, min_coverage=0.25, **how))
    assert result.status == "ok", result.reason
    return Bag(out / f"{record.slide_id}.h5")


def _fed_windows(bag: Bag, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """Windows fed to the model at the bag's tile positions (window = tile, step = tile / 2, as
    ``weakseg predict``) and the bag's decoded tiles, in bag order."""
    res = Resolution.from_bag_meta(bag.meta)
    seen: list[np.ndarray] = []

    def record(tiles: np.ndarray) -> np.ndarray:
        seen.append(tiles.copy())
        return np.zeros(tiles.shape[:3], np.float32)

    t = bag.tile_size
    step = t // 2
    # every window is predicted (no tissue skipping), so window i is (ys[i // nx], xs[i % nx])
    predict_slide_map(bag.meta.slide_path, record, out, window=t, step=step, resolution=res,
                      tissue_only=False, map_downsample=MAP_DS, batch_size=16)
    windows = np.concatenate(seen)
    with open_slide(bag.meta.slide_path) as slide:
        w, h = res.dimensions(slide)
    grid = StitchGrid(h, w, t, step, MAP_DS)
    assert len(windows) == len(grid.xs) * len(grid.ys)
    origins = np.rint(bag.coords / res.downsample).astype(np.int64)  # output-space tile origins
    assert (origins % step == 0).all()
    index = (origins[:, 1] // step) * len(grid.xs) + origins[:, 0] // step
    return windows[index], bag.read_tiles()


def _assert_same_modulo_jpeg(windows: np.ndarray, tiles: np.ndarray, quality: int = 90) -> None:
    """Windows encoded as the tiler encodes tiles decode to the bag's tiles bit for bit; the mean
    absolute difference (JPEG's own error; a window at the wrong magnification differs by tens
    of grey levels) stays small."""
    again = np.stack([decode_tile(encode_tile(w, "jpeg", quality), "jpeg") for w in windows])
    np.testing.assert_array_equal(again, tiles)
    diff = np.abs(windows.astype(np.float32) - tiles.astype(np.float32)).mean()
    assert diff < 6, diff


@pytest.mark.parametrize(
    ("how", "want"),
    [
        ({"mpp": 1.0}, (0, 2.0, 1.0, 2.0)),   # between levels 0 (0.5) and 1 (2.0): level 0 halved
        ({"mpp": 0.8}, (0, 1.6, 0.8, 1.6)),   # non-integer resize: level boxes rounded like the tiler's
        ({"level": 1}, (1, 4.0, 2.0, 1.0)),   # a level as stored
    ],
)
def test_windows_at_tile_positions_are_the_tiles(synth, tmp_path, how, want):
    for codec in ("raw", "jpeg"):
        with _tile(synth, tmp_path / codec, codec=codec, **how) as bag:
            res = Resolution.from_bag_meta(bag.meta)
            with open_slide(synth.slide_path) as slide:
                assert (res.level, res.downsample, res.mpp, res.resize_factor(slide)) == pytest.approx(want)
                w, h = res.dimensions(slide)
            windows, tiles = _fed_windows(bag, tmp_path / f"maps_{codec}")
            if codec == "raw":
                np.testing.assert_array_equal(windows, tiles)  # the very same pixels
            else:
                _assert_same_modulo_jpeg(windows, tiles)
            meta = json.loads((tmp_path / f"maps_{codec}" / "s.json").read_text())
            assert meta["level"] == want[0] and meta["resize"] == pytest.approx(want[3])
            assert meta["downsample"] == pytest.approx(want[1] * MAP_DS)
            assert meta["mpp"] == pytest.approx(0.5 * meta["downsample"])  # slide µm/px × downsample
            assert meta["read_downsample"] == pytest.approx(want[1]) and meta["read_mpp"] == pytest.approx(want[2])
            with tifffile.TiffFile(tmp_path / f"maps_{codec}" / "s.prob.tif") as tif:
                page = tif.pages[0]
                assert page.shape == (-(-h // MAP_DS), -(-w // MAP_DS))  # covers the bag's tiling space
                x_res = page.tags["XResolution"].value
                assert 1e4 / (x_res[0] / x_res[1]) == pytest.approx(meta["mpp"], rel=1e-4)


def test_band_reuse_with_tissue_gaps_reads_exact_windows(synth, tmp_path, monkeypatch):
    """With tissue skipping (runs of windows that shift from band to band, level rows reused from
    the band above) every window equals a direct read of its box, also when resizing by 1.6."""
    with open_slide(synth.slide_path) as slide:
        res = Resolution.plan(slide, mpp=0.8)
        fed: list[tuple[int, np.ndarray, np.ndarray]] = []
        real_put = map_predict._WindowReader._put

        def spy(self, item):
            if isinstance(item, tuple) and isinstance(item[2], np.ndarray):
                fed.append(item)
            return real_put(self, item)

        monkeypatch.setattr(map_predict._WindowReader, "_put", spy)
        m = predict_slide_map(synth.slide_path, lambda t: np.ones(t.shape[:3], np.float32), tmp_path,
                              window=48, step=24, map_downsample=4, resolution=res, batch_size=7)
        assert 0 < m.n_predicted < m.n_windows
        with RegionReader(slide, res, fast=False) as direct:  # OpenSlide only
            for y, xs, tiles in fed:
                for x, tile in zip(xs, tiles):
                    np.testing.assert_array_equal(tile, direct.read(int(x), y, 48, 48))


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2 * np.count_nonzero(pred & truth) / max(np.count_nonzero(pred) + np.count_nonzero(truth), 1)


class ColourRule(PixelPredictorMixin):
    """A deterministic 'model': cancer where the red channel is dark (purple), optionally smoothed
    (it declares its pixel predictions, as every learner that makes slide maps does)."""

    def __init__(self, red_below: int = 150, smooth: int = 0) -> None:
        self.red_below, self.smooth = red_below, smooth

    def predict_proba(self, paths):
        return np.full((len(paths), 2), 0.5)

    def predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
        red = tiles[..., 0].astype(np.float32)
        if self.smooth:
            from scipy.ndimage import uniform_filter

            red = uniform_filter(red, size=(1, self.smooth, self.smooth), mode="nearest")
        return (red < self.red_below).astype(np.float32)


def _tile_vs_map_dice(bag_path: Path, out: Path, model: ColourRule) -> tuple[float, float, dict]:
    """Dice of ``model`` on the bag's tiles, and of the map ``weakseg predict`` writes read back at
    each tile's position (map pixels upsampled to tile pixels by the map downsample)."""
    api._predict_one(model, bag_path, out)
    with Bag(bag_path) as bag:
        meta = json.loads((out / f"{bag.slide_id}.json").read_text())
        prob = tifffile.imread(out / f"{bag.slide_id}.prob.tif", key=0)
        truth = to_common_labels(bag.read_masks(), bag.meta.data_provider) == CANCER
        tiles_pred = model.predict_tiles(bag.read_tiles()) >= 0.5
        k = round(meta["downsample"] / bag.meta.downsample)  # tile pixels per map pixel
        t, n = bag.tile_size, bag.tile_size // k
        origins = np.rint(bag.coords / meta["downsample"]).astype(np.int64)  # in map pixels
        map_pred = np.stack([
            np.repeat(np.repeat(prob[y : y + n, x : x + n], k, 0), k, 1) >= 128 for x, y in origins
        ])
        assert map_pred.shape == (len(bag), t, t)
    return _dice(tiles_pred, truth), _dice(map_pred, truth), meta


def test_map_from_mpp_bag_scores_like_its_tiles(synth, tmp_path):
    with _tile(synth, tmp_path / "bags", mpp=1.0, codec="jpeg") as bag:
        path = bag.path
        assert (bag.meta.level, bag.meta.downsample, bag.meta.mpp) == (0, 2.0, 1.0)
    d_tiles, d_map, meta = _tile_vs_map_dice(path, tmp_path / "maps", ColourRule())
    assert d_tiles > 0.8  # the rule finds the purple 'tumour'
    assert abs(d_tiles - d_map) <= 0.02, (d_tiles, d_map)
    assert meta["downsample"] == 8.0 and meta["mpp"] == pytest.approx(4.0) and meta["level"] == 0
    assert meta["resize"] == 2.0


def test_tile_score_map_of_mpp_bag_records_consistent_resolution(synth, tmp_path):
    with _tile(synth, tmp_path / "bags", mpp=1.0, codec="raw") as bag:
        paths = write_tile_score_map(bag, np.linspace(0, 1, len(bag)), tmp_path / "maps")
        meta = json.loads(paths["meta"].read_text())
        assert meta["downsample"] == bag.meta.stride * 2.0 == 128  # level-0 px per map pixel
        assert meta["mpp"] == pytest.approx(0.5 * meta["downsample"]) and meta["level"] == 0
        grid = np.load(paths["grid"])
        x, y = bag.coords[3]
        assert grid[round(y / 128), round(x / 128)] == pytest.approx(np.linspace(0, 1, len(bag))[3])


# -- Resolution.plan and reads ---------------------------------------------------------------


def test_plan_levels_tolerance_resize_and_errors(synth):
    with open_slide(synth.slide_path) as slide:  # 0.5 µm/px, downsamples 1, 4, 16
        assert Resolution.plan(slide) == Resolution(0, 1.0, 0.5)
        r = Resolution.plan(slide, level=1)
        assert r == Resolution(1, 4.0, 2.0) and not r.needs_resize(slide) and r.dimensions(slide) == (384, 256)
        r = Resolution.plan(slide, mpp=2.03)  # within 2 % of level 1: read as stored
        assert r == Resolution(1, 4.0, 2.0) and r.resize_factor(slide) == 1.0
        r = Resolution.plan(slide, mpp=1.0)  # between levels: level 0, halved
        assert r == Resolution(0, 2.0, 1.0) and r.needs_resize(slide) and r.resize_factor(slide) == 2.0
        assert r.dimensions(slide) == (768, 512) and r.level0_mpp == 0.5
        r = Resolution.plan(slide, mpp=3.0)  # from level 1 by 1.5
        assert (r.level, r.downsample, r.resize_factor(slide)) == (1, 6.0, 1.5)
        assert r.level_box(slide, 10, 0, 3, 5) == (15, 0, 5, 8)  # corners round(15.0), round(19.5) = 20, round(7.5) = 8
        with pytest.raises(SlideError, match="level 3 out of range"):
            Resolution.plan(slide, level=3)
        with pytest.raises(SlideError, match="finer than level 0"):
            Resolution.plan(slide, mpp=0.3)
        with pytest.raises(SlideError, match="not both"):
            Resolution.plan(slide, level=1, mpp=2.0)
        with pytest.raises(SlideError, match="does not upsample"):
            Resolution(1, 2.0).validate(slide)
        with pytest.raises(SlideError, match="out of range"):
            Resolution(5, 64.0).validate(slide)


def test_from_bag_meta_and_reader_edges(synth, tmp_path):
    with _tile(synth, tmp_path, mpp=1.0, codec="raw") as bag:
        assert Resolution.from_bag_meta(bag.meta) == Resolution(0, 2.0, 1.0)
        with open_slide(synth.slide_path) as slide:
            res = Resolution.from_bag_meta(bag.meta)
            grid = make_grid(slide, res, TILE, TILE)
            assert (grid.width, grid.height, grid.scale) == (768, 512, 2.0)
            x, y = np.rint(bag.coords[5] / 2).astype(int)
            np.testing.assert_array_equal(read_region_at(slide, res, x, y, TILE, TILE), bag.read_tiles([5])[0])
            # a box past the slide's edge (output 768 x 512) is white there, not the slide stretched
            edge = read_region_at(slide, res, 760, 500, 16, 16)
            assert edge.shape == (16, 16, 3) and (edge[13:, :] == 255).all() and (edge[:, 9:] == 255).all()
            assert (edge[:11, :7] < 250).all()  # the slide's own glass (242) up to the edge
    nan_meta = type("M", (), {"level": 0, "downsample": 1.0, "mpp": float("nan")})()
    assert Resolution.from_bag_meta(nan_meta).mpp is None


# -- real slides (GlaS as PANDA, 0.62 µm/px; skipped when ../shared/data is absent) ----------


def _glas_record() -> SlideRecord:
    if not GLAS.is_dir():
        pytest.skip(f"{GLAS} not available")
    import csv

    with open(GLAS / "train.csv") as f:
        row = next(r for r in csv.DictReader(f) if int(r["isup_grade"]) > 0)
    sid = row["image_id"]
    return SlideRecord(sid, GLAS / "train_images" / f"{sid}.tiff", GLAS / "train_label_masks" / f"{sid}_mask.tiff",
                       1, row["data_provider"], int(row["isup_grade"]), row["gleason_score"], None)


@pytest.mark.shared
def test_real_slide_mpp_bag_windows_and_dice(tmp_path):
    """The issue's case: a 0.62 µm/px slide tiled at 1.24 µm/px (level 0 halved)."""
    record = _glas_record()
    with open_slide(record.slide_path) as slide:
        assert slide.mpp == pytest.approx(0.62, rel=0.02)
        target = 2 * slide.mpp
    with _tile(record, tmp_path / "raw", mpp=target, codec="raw") as bag:
        assert (bag.meta.level, bag.meta.downsample) == (0, pytest.approx(2.0))
        windows, tiles = _fed_windows(bag, tmp_path / "maps_raw")
        np.testing.assert_array_equal(windows, tiles)
    with _tile(record, tmp_path / "jpeg", mpp=target, codec="jpeg") as bag:
        path = bag.path
        windows, tiles = _fed_windows(bag, tmp_path / "maps_jpeg")
        _assert_same_modulo_jpeg(windows, tiles)
    d_tiles, d_map, meta = _tile_vs_map_dice(path, tmp_path / "maps", ColourRule(red_below=170, smooth=9))
    assert meta["mpp"] == pytest.approx(slide.mpp * meta["downsample"]) and meta["downsample"] == pytest.approx(8.0)
    assert d_tiles > 0.3
    assert abs(d_tiles - d_map) <= 0.02, (d_tiles, d_map)
