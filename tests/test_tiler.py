"""Tiler: selection equals a brute-force level-0 computation, pixels equal OpenSlide, resume, workers, CLI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import openslide
import pytest
from typer.testing import CliRunner

import weakseg  # noqa: F401  (applies the import shim first)
from weakseg.bags import Bag, BagWriter
from weakseg.cli.main import app
from weakseg.cohort import SlideRecord
from weakseg.tiling.grid import TileGrid
from weakseg.sharding import shard_of
from weakseg.tiling.tiler import TileConfig, cancer_fractions, parse_shard, select_records, tile_cohort

sys.path.insert(0, str(Path(__file__).parent))
from test_slide import mask_rgb, synthetic_slide, write_pyramid  # noqa: E402

SIZE = (1024, 1536)  # h, w


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Two slides with Karolinska masks (one ISUP 0, one ISUP 2) and a manifest CSV."""
    root = tmp_path_factory.mktemp("cohort")
    rows = ["slide_path,slide_id,mask_path,data_provider,isup_grade"]
    for i in range(2):
        rgb, labels = synthetic_slide(*SIZE, seed=i)
        write_pyramid(root / f"s{i}.tif", rgb)
        write_pyramid(root / f"s{i}_mask.tif", mask_rgb(labels), compression="zlib")
        np.save(root / f"s{i}_labels.npy", labels)
        rows.append(f"s{i}.tif,s{i},s{i}_mask.tif,karolinska,{2 * i}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def brute_force_keep(labels: np.ndarray, tile: int, stride: int, min_cov: float) -> set[tuple[int, int]]:
    """Level-0 coords of every whole grid cell whose level-0 mask coverage reaches ``min_cov``."""
    h, w = labels.shape
    keep = set()
    for y in range(0, h - tile + 1, stride):
        for x in range(0, w - tile + 1, stride):
            cov = np.count_nonzero(labels[y : y + tile, x : x + tile]) / tile**2
            if cov > 0 and cov >= min_cov:
                keep.add((x, y))
    return keep


@pytest.mark.parametrize(("tile", "stride", "min_cov"), [(128, 128, 0.25), (96, 80, 0.5), (64, 64, 0.02)])
def test_tile_counts_equal_brute_force(cohort, tmp_path, tile, stride, min_cov):
    report = tile_cohort(cohort / "manifest.csv", tmp_path, TileConfig(tile_size=tile, stride=stride, min_coverage=min_cov, codec="raw"))
    assert report.n_failed == 0
    for i in range(2):
        labels = np.load(cohort / f"s{i}_labels.npy")
        with Bag(tmp_path / f"s{i}.h5") as bag:
            got = {tuple(c) for c in bag.coords.tolist()}
            assert got == brute_force_keep(labels, tile, stride, min_cov)
            x, y = bag.coords[0]
            assert bag.coverage[0] == pytest.approx(np.count_nonzero(labels[y : y + tile, x : x + tile]) / tile**2)


def test_level_selection_counts_and_attrs(cohort, tmp_path):
    """Tiles at level 1 (downsample 4): brute force on the level-1 mask, coords scaled to level 0."""
    tile_cohort(cohort / "manifest.csv", tmp_path, TileConfig(tile_size=32, level=1, codec="raw"))
    labels = np.load(cohort / "s0_labels.npy")[::4, ::4]
    with Bag(tmp_path / "s0.h5") as bag:
        assert {tuple(c) for c in (bag.coords // 4).tolist()} == brute_force_keep(labels, 32, 32, 0.25)
        assert (bag.meta.level, bag.meta.downsample, bag.meta.mpp, bag.patch_size) == (1, 4.0, 2.0, 128)
        assert (bag.coords % 4 == 0).all()


def test_pixels_and_masks_equal_openslide(cohort, tmp_path):
    """Unaligned grid (decoded path, lossless bag) and aligned grid (JPEG pass-through)."""
    osr = openslide.OpenSlide(str(cohort / "s1.tif"))
    mask = openslide.OpenSlide(str(cohort / "s1_mask.tif"))
    for cfg, sub in [(TileConfig(tile_size=100, stride=70, codec="lzf"), "lzf"), (TileConfig(tile_size=128), "pass")]:
        tile_cohort(cohort / "manifest.csv", tmp_path / sub, cfg)
        with Bag(tmp_path / sub / "s1.h5") as bag:
            assert bag.meta.extra["jpeg_passthrough"] == (sub == "pass")
            t = bag.tile_size
            idx = np.linspace(0, len(bag) - 1, 6).astype(int)
            for i, tile, m in zip(idx, bag.read_tiles(idx), bag.read_masks(idx)):
                x, y = (int(v) for v in bag.coords[i])
                assert np.array_equal(tile, np.asarray(osr.read_region((x, y), 0, (t, t)))[..., :3])
                assert np.array_equal(m, np.asarray(mask.read_region((x, y), 0, (t, t)))[..., 0])
            labels = bag.read_masks()
            assert np.allclose(bag.cancer_fraction, (labels == 2).mean((1, 2)))
            assert bag.label == 1 and bag.meta.isup_grade == 2


def test_mpp_resizes_from_finer_level(cohort, tmp_path):
    tile_cohort(cohort / "manifest.csv", tmp_path, TileConfig(tile_size=64, mpp=1.0, codec="raw"))
    osr = openslide.OpenSlide(str(cohort / "s0.tif"))
    with Bag(tmp_path / "s0.h5") as bag:
        assert (bag.meta.level, bag.meta.downsample, bag.meta.mpp, bag.patch_size) == (0, 2.0, 1.0, 128)
        x, y = (int(v) for v in bag.coords[len(bag) // 2])
        ref = np.asarray(osr.read_region((x, y), 0, (128, 128)))[..., :3].astype(np.float32)
        ref = ref.reshape(64, 2, 64, 2, 3).mean((1, 3))
        assert np.abs(bag.read_tiles([len(bag) // 2])[0] - ref).mean() < 6
        labels = np.load(cohort / "s0_labels.npy")
        n_ref = len(brute_force_keep(labels[::2, ::2], 64, 64, 0.25))
        assert abs(len(bag) - n_ref) <= max(2, n_ref // 20)


def test_tissue_detector_path_without_mask(cohort, tmp_path):
    """A slide without mask is tiled from the tissue detector; coverage tracks the true tissue."""
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"slide_path,slide_id\n{cohort / 's0.tif'},s0\n")
    report = tile_cohort(manifest, tmp_path / "out", TileConfig(tile_size=128))
    (res,) = report.results
    assert res.status == "ok" and "tissue detector" in res.reason
    labels = np.load(cohort / "s0_labels.npy")
    truth = brute_force_keep(labels, 128, 128, 0.25)
    with Bag(tmp_path / "out" / "s0.h5") as bag:
        got = {tuple(c) for c in bag.coords.tolist()}
        assert not bag.has_masks and bag.label == -1  # no label in the manifest
        assert len(got ^ truth) <= max(2, len(truth) // 10)


def test_grid_coverage_integrates_fractional_cells():
    """Area integration of a low-res map: a cell straddling low-res pixels gets the exact share."""
    lowres = np.zeros((4, 4))
    lowres[1, 1] = 1.0
    grid = TileGrid(80, 80, 30, 10, 1.0, (80, 80))  # 20 level-0 px per low-res px
    cov = grid.coverage(lowres)
    assert cov.shape == (6, 6)
    assert cov[1, 1] == pytest.approx(400 / 900)  # cell [10,40)^2 contains [20,40)^2
    assert cov[0, 0] == pytest.approx((10 * 10) / 900)  # cell [0,30)^2 overlaps [20,40)^2 by 10x10
    assert cov[5, 5] == 0


def test_resume_and_crash_leave_no_partial_bag(cohort, tmp_path, monkeypatch):
    cfg = TileConfig(tile_size=128, batch_size=4)
    real_append = BagWriter.append

    def flaky(self, *args, **kwargs):
        if self.meta.slide_id == "s1" and self.n >= 8:
            raise OSError("disk full (simulated)")
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(BagWriter, "append", flaky)
    report = tile_cohort(cohort / "manifest.csv", tmp_path, cfg)
    assert [(r.slide_id, r.status) for r in report.results] == [("s0", "ok"), ("s1", "failed")]
    assert "disk full" in report.results[1].reason
    assert sorted(p.name for p in tmp_path.iterdir()) == [".manifest.csv.lock", "manifest.csv", "s0.h5"]
    monkeypatch.setattr(BagWriter, "append", real_append)
    report = tile_cohort(cohort / "manifest.csv", tmp_path, cfg)
    assert [(r.slide_id, r.status) for r in report.results] == [("s0", "skipped(resume)"), ("s1", "ok")]
    rows = list(csv.DictReader((tmp_path / "manifest.csv").open()))
    assert [(r["slide_id"], r["status"], r["n_tiles"]) for r in rows] == [("s0", "skipped(resume)", "22"), ("s1", "ok", rows[1]["n_tiles"])]
    other = tile_cohort(cohort / "manifest.csv", tmp_path, TileConfig(tile_size=64))
    assert all(r.status == "failed" and "--overwrite" in r.reason for r in other.results)
    again = tile_cohort(cohort / "manifest.csv", tmp_path, TileConfig(tile_size=64, overwrite=True))
    assert all(r.status == "ok" for r in again.results) and Bag(tmp_path / "s0.h5").tile_size == 64


def test_killed_process_leaves_no_bag_and_rerun_resumes(cohort, tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal
        import weakseg
        from weakseg.bags import BagWriter
        from weakseg.tiling.tiler import TileConfig, tile_cohort
        real = BagWriter.append
        def killer(self, *a, **k):
            real(self, *a, **k)
            if self.n >= 4:
                os.kill(os.getpid(), signal.SIGKILL)
        BagWriter.append = killer
        tile_cohort({str(cohort / "manifest.csv")!r}, {str(tmp_path)!r}, TileConfig(tile_size=128, batch_size=4))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9
    assert not list(tmp_path.glob("*.h5")) and list(tmp_path.glob(".s0.h5.*.part"))
    report = tile_cohort(cohort / "manifest.csv", tmp_path, TileConfig(tile_size=128, batch_size=4))
    assert [r.status for r in report.results] == ["ok", "ok"]
    assert sorted(p.name for p in tmp_path.glob("*.h5*")) == ["s0.h5", "s1.h5"] and not list(tmp_path.glob(".*.part"))


def test_shards_partition_sorted_ids():
    ids = [f"id{i:02d}" for i in range(11)]
    fake = [SlideRecord(i, Path(f"{i}.tif"), None, 0, "", 0, None, None) for i in reversed(ids)]
    parts = [[r.slide_id for r in select_records(fake, shard=(i, 3))] for i in range(3)]
    assert sorted(sum(parts, [])) == ids and parts[0] == sorted(i for i in ids if shard_of(i, 3) == 0)
    assert [r.slide_id for r in select_records(fake, ids=["id05", "id01", "zz"], limit=1)] == ["id01"]
    assert parse_shard("2/4") == (2, 4)
    for bad in ["4/4", "x", "1/0", "-1/2"]:
        with pytest.raises(weakseg.errors.WeaksegError, match="shard"):
            parse_shard(bad)


def test_two_workers_match_one(cohort, tmp_path):
    cfg = TileConfig(tile_size=128)
    one = tile_cohort(cohort / "manifest.csv", tmp_path / "one", cfg)
    two = tile_cohort(cohort / "manifest.csv", tmp_path / "two", cfg, workers=2)
    assert sorted((r.slide_id, r.status, r.n_tiles) for r in one.results) == sorted((r.slide_id, r.status, r.n_tiles) for r in two.results)
    for i in range(2):
        with Bag(tmp_path / "one" / f"s{i}.h5") as a, Bag(tmp_path / "two" / f"s{i}.h5") as b:
            assert np.array_equal(a.coords, b.coords) and np.array_equal(a.read_tiles(), b.read_tiles())


def test_cli_tile_info_show(cohort, tmp_path):
    runner = CliRunner()
    out = tmp_path / "bags"
    res = runner.invoke(app, ["tile", str(cohort / "manifest.csv"), str(out), "--tile-size", "128", "--overlap", "32", "--limit", "1"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.h5")) == ["s0.h5"]
    assert Bag(out / "s0.h5").meta.stride == 96
    res = runner.invoke(app, ["tile", str(cohort / "manifest.csv"), str(out), "--tile-size", "128", "--overlap", "32", "--ids", "s0,s1"])
    assert res.exit_code == 0, res.output
    rows = {r["slide_id"]: r["status"] for r in csv.DictReader((out / "manifest.csv").open())}
    assert rows == {"s0": "skipped(resume)", "s1": "ok"}
    res = runner.invoke(app, ["info", str(out)])
    assert res.exit_code == 0, res.output
    assert "s0" in res.output and "s1" in res.output and "karolinska" in res.output
    png = tmp_path / "s1.png"
    res = runner.invoke(app, ["show", str(out / "s1.h5"), "--out", str(png)])
    assert res.exit_code == 0, res.output
    assert png.stat().st_size > 1000
    res = runner.invoke(app, ["tile", str(cohort / "manifest.csv"), str(out), "--level", "1", "--mpp", "1.0"])
    assert res.exit_code == 2 and "either" in res.output
    res = runner.invoke(app, ["tile", str(cohort / "manifest.csv"), str(out), "--shard", "5/2"])
    assert res.exit_code == 2 and "shard" in res.output
    assert os.listdir(out)  # nothing removed by failed invocations


def test_cancer_fractions_use_the_provider_map():
    counts = np.zeros((2, 256), np.int64)
    counts[0, [0, 1, 3, 5]] = [50, 20, 20, 10]  # Radboud: Gleason 3 and 5 are cancer
    counts[1, [0, 2]] = [10, 90]  # benign epithelium
    assert cancer_fractions(counts, "radboud").tolist() == pytest.approx([0.3, 0.0])
    counts[1, [0, 2]] = [10, 90]
    assert cancer_fractions(counts[1:], "karolinska").tolist() == pytest.approx([0.9])
    with pytest.raises(weakseg.errors.ManifestError, match="mayo"):
        cancer_fractions(counts, "mayo")


def test_unknown_ids_are_reported(cohort, tmp_path):
    report = tile_cohort(cohort / "manifest.csv", tmp_path, TileConfig(tile_size=128), ids=["s1", "nope"])
    assert sorted((r.slide_id, r.status) for r in report.results) == [("nope", "failed"), ("s1", "ok")]
    assert "not in" in next(r.reason for r in report.results if r.slide_id == "nope")


def test_synthetic_panda_cohort_end_to_end(synth_cohort, tmp_path):
    """PANDA folder (both providers, a slide without mask, pen marks): defaults store JPEG tiles as is."""
    import pandas as pd

    report = tile_cohort(synth_cohort, tmp_path, TileConfig())
    truth = pd.read_csv(synth_cohort / "train.csv").set_index("image_id")
    assert {r.status for r in report.results} == {"ok"} and len(report.results) == len(truth)
    for r in report.results:
        with Bag(tmp_path / f"{r.slide_id}.h5") as bag:
            row = truth.loc[r.slide_id]
            assert bag.label == int(row.isup_grade > 0) and bag.meta.data_provider == row.data_provider
            assert bag.meta.extra["jpeg_passthrough"] and len(bag) == r.n_tiles > 0
            assert bag.has_masks == (synth_cohort / "train_label_masks" / f"{r.slide_id}_mask.tiff").is_file()
            if bag.has_masks:
                assert (bag.cancer_fraction > 0).any() == (row.isup_grade > 0)
