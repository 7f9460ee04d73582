"""Bad input: every problem is reported per slide in manifest.csv, the run goes on, exit code 1."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

import weakseg  # noqa: F401  (applies the import shim first)
from weakseg.bags import Bag
from weakseg.cli.main import app
from weakseg.cohort import SlideRecord
from weakseg.tiling.tiler import TileConfig, tile_cohort, tile_slide

sys.path.insert(0, str(Path(__file__).parent))
from test_slide import mask_rgb, synthetic_slide, write_pyramid  # noqa: E402

GOOD = "0123456789abcdef0123456789abcdef"
NO_MASK = "11111111111111111111111111111111"
BLANK = "22222222222222222222222222222222"
TRUNCATED = "33333333333333333333333333333333"
FLAT = "44444444444444444444444444444444"
MISMATCH = "55555555555555555555555555555555"
NO_MPP = "66666666666666666666666666666666"
CORRUPT = "88888888888888888888888888888888"


@pytest.fixture(scope="module")
def panda(tmp_path_factory) -> Path:
    """A PANDA-layout folder where every slide but one has a problem (plus a bad CSV row)."""
    root = tmp_path_factory.mktemp("panda")
    images, masks = root / "train_images", root / "train_label_masks"
    images.mkdir()
    masks.mkdir()
    rgb, labels = synthetic_slide(512, 768, seed=3)
    for sid in (GOOD, NO_MASK, MISMATCH):
        write_pyramid(images / f"{sid}.tiff", rgb, tile=64)
    for sid in (GOOD, BLANK):
        write_pyramid(masks / f"{sid}_mask.tiff", mask_rgb(labels if sid == GOOD else np.zeros_like(labels)), tile=64, compression="zlib")
    write_pyramid(images / f"{BLANK}.tiff", np.full_like(rgb, 243), tile=64)
    write_pyramid(images / f"{NO_MPP}.tiff", rgb, tile=64, mpp=None)
    write_pyramid(masks / f"{MISMATCH}_mask.tiff", mask_rgb(labels[:256, :384]), tile=64, compression="zlib")
    good_bytes = (images / f"{GOOD}.tiff").read_bytes()
    (images / f"{TRUNCATED}.tiff").write_bytes(good_bytes[: len(good_bytes) // 3])
    tifffile.imwrite(images / f"{FLAT}.tiff", rgb[:200, :300])  # strip TIFF: OpenSlide refuses it
    corrupt = bytearray(good_bytes)  # opens fine, level-0 tile data zeroed
    with tifffile.TiffFile(images / f"{GOOD}.tiff") as tif:
        page = tif.pages[0]
        for offset, count in zip(page.dataoffsets, page.databytecounts):
            corrupt[offset : offset + count] = bytes(count)
    (images / f"{CORRUPT}.tiff").write_bytes(bytes(corrupt))
    ids = [GOOD, NO_MASK, BLANK, TRUNCATED, FLAT, MISMATCH, NO_MPP, CORRUPT]
    lines = ["image_id,data_provider,isup_grade,gleason_score"]
    lines += [f"{sid},karolinska,2,3+4" for sid in ids]
    lines.append("77777777777777777777777777777777,radboud,9,3+3")  # bad ISUP: a RowError
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root


def _manifest(out: Path) -> dict[str, dict[str, str]]:
    return {r["slide_id"]: r for r in csv.DictReader((out / "manifest.csv").open())}


def test_every_problem_is_reported_and_the_run_goes_on(panda, tmp_path):
    report = tile_cohort(panda, tmp_path, TileConfig(tile_size=64))
    rows = _manifest(tmp_path)
    status = {k: (v["status"], v["reason"]) for k, v in rows.items()}
    assert status[GOOD] == ("ok", "")
    assert status[NO_MASK][0] == "ok" and "no mask" in status[NO_MASK][1] and "tissue detector" in status[NO_MASK][1]
    assert status[BLANK][0] == "empty" and "blank" in status[BLANK][1]
    assert status[TRUNCATED][0] == "failed" and f"{TRUNCATED}.tiff" in status[TRUNCATED][1]
    assert status[FLAT][0] == "failed" and "not supported by OpenSlide" in status[FLAT][1]
    assert status[MISMATCH][0] == "failed" and "384x256" in status[MISMATCH][1] and "768x512" in status[MISMATCH][1]
    assert status[NO_MPP][0] == "failed" and "pixel size unknown" in status[NO_MPP][1] and "--slide-mpp" in status[NO_MPP][1]
    assert status[CORRUPT][0] == "failed" and f"{CORRUPT}.tiff" in status[CORRUPT][1] and "corrupt" in status[CORRUPT][1]
    bad_row = rows["77777777777777777777777777777777"]
    assert bad_row["status"] == "failed" and "row 10" in bad_row["reason"] and "isup_grade" in bad_row["reason"]
    assert report.n_failed == 7
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == sorted(f"{s}.h5" for s in (GOOD, NO_MASK))
    assert not list(tmp_path.glob(".*.part"))
    with Bag(tmp_path / f"{NO_MASK}.h5") as bag:
        assert not bag.has_masks and bag.label == 1
    assert Bag(tmp_path / f"{GOOD}.h5").has_masks


def test_slide_mpp_override_fixes_missing_pixel_size(panda, tmp_path):
    report = tile_cohort(panda, tmp_path, TileConfig(tile_size=64, slide_mpp=0.5), ids=[NO_MPP])
    (res,) = report.results
    assert res.status == "ok" and Bag(tmp_path / f"{NO_MPP}.h5").meta.mpp == 0.5


def test_unknown_provider_with_mask_fails_that_slide(panda, tmp_path):
    record = SlideRecord(GOOD, panda / "train_images" / f"{GOOD}.tiff", panda / "train_label_masks" / f"{GOOD}_mask.tiff",
                         1, "mayo", 2, "3+4", None)
    res = tile_slide(record, tmp_path, TileConfig(tile_size=64))
    assert res.status == "failed" and "mayo" in res.reason and not list(tmp_path.iterdir())


def test_level_out_of_range_and_missing_mask_file(panda, tmp_path):
    images = panda / "train_images"
    record = SlideRecord(GOOD, images / f"{GOOD}.tiff", tmp_path / "gone_mask.tiff", 1, "karolinska", 2, "3+4", None)
    res = tile_slide(record, tmp_path / "a", TileConfig(tile_size=64))
    assert res.status == "ok" and "gone_mask.tiff missing" in res.reason
    res = tile_slide(record, tmp_path / "b", TileConfig(tile_size=64, level=7))
    assert res.status == "failed" and "level 7" in res.reason and f"{GOOD}.tiff" in res.reason


def test_cli_exit_codes_and_summary(panda, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["tile", str(panda), str(tmp_path), "--tile-size", "64"])
    assert res.exit_code == 1
    assert "not supported by OpenSlide" in res.output and "1 empty" in res.output
    res = runner.invoke(app, ["tile", str(panda), str(tmp_path), "--tile-size", "64", "--ids", GOOD])
    assert res.exit_code == 0 and "1 skipped(resume)" in res.output
    assert len(_manifest(tmp_path)) == 9  # the rerun merged, not replaced, the manifest
    res = runner.invoke(app, ["tile", str(tmp_path / "nowhere.csv"), str(tmp_path)])
    assert res.exit_code == 2 and "nowhere.csv" in res.output
    res = runner.invoke(app, ["tile", str(panda), str(tmp_path), "--codec", "webp"])
    assert res.exit_code == 2 and "webp" in res.output
    res = runner.invoke(app, ["info", str(tmp_path / "empty_dir")])
    assert res.exit_code == 2 and "empty_dir" in res.output


def test_corrupt_tiles_fail_on_the_decoded_path_too(panda, tmp_path):
    record = SlideRecord(CORRUPT, panda / "train_images" / f"{CORRUPT}.tiff", None, 1, "karolinska", 2, "3+4", None)
    res = tile_slide(record, tmp_path, TileConfig(tile_size=48, codec="raw"))
    assert res.status == "failed" and "cannot decode stored tile" in res.reason and f"{CORRUPT}.tiff" in res.reason
    assert not list(tmp_path.iterdir())
