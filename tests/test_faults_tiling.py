"""Tiler faults (issue 8): every fault a named failure, nothing lost, the rest of the cohort done.

Corrupt pass-through JPEG tiles, concurrent tilers on one output folder, a crashed worker, file-system
errors (output folder unusable, disk full), bad CSV rows sharing a slide id, ``--overwrite`` of a slide
that now fails, a tile larger than the slide. Tiny slides (512 × 768, 64-px TIFF tiles), seconds each.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import multiprocessing
import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

import weakseg  # noqa: F401  (applies the import shim first)
from weakseg.bags import Bag, BagWriter
from weakseg.cli.main import app
from weakseg.cohort import load_source
from weakseg import sharding as report_mod  # the manifest is written by the one locked-CSV merge
from weakseg.tiling import tiler as tiler_mod
from weakseg.tiling.tiler import TileConfig, tile_cohort

sys.path.insert(0, str(Path(__file__).parent))
from test_slide import mask_rgb, synthetic_slide, write_pyramid  # noqa: E402

H, W, T = 512, 768, 64  # slide size; TIFF tile = bag tile, so tiles pass through as stored JPEG
IDS = ("s0", "s1", "s2")


def _write_slide(root: Path, sid: str, seed: int) -> None:
    rgb, labels = synthetic_slide(H, W, seed=seed)
    write_pyramid(root / f"{sid}.tif", rgb, tile=T)
    write_pyramid(root / f"{sid}_mask.tif", mask_rgb(labels), tile=T, compression="zlib")


def _manifest_csv(root: Path, ids=IDS, extra: str = "") -> Path:
    lines = ["slide_path,slide_id,mask_path,data_provider,isup_grade"]
    lines += [f"{root / f'{s}.tif'},{s},{root / f'{s}_mask.tif'},karolinska,2" for s in ids]
    path = root / "manifest.csv"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    for i, sid in enumerate(IDS):
        _write_slide(root, sid, seed=i)
    _manifest_csv(root)
    return root


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "manifest.csv").open()))


def _by_id(out: Path) -> dict[str, dict[str, str]]:
    return {r["slide_id"]: r for r in _rows(out)}


# -- 2. corrupt JPEG tiles never pass into bags ----------------------------------------------------


def _damage(src: Path, dst: Path, kind: str) -> tuple[int, int]:
    """Copy ``src`` to ``dst`` with one level-0 JPEG tile (in the cancer centre) damaged; its (col, row)."""
    data = bytearray(src.read_bytes())
    with tifffile.TiffFile(src) as tif:
        page = tif.pages[0]
        col, row = (W // 2) // T, (H // 2) // T
        i = row * (W // T) + col
        o, c = page.dataoffsets[i], page.databytecounts[i]
    if kind == "random_tail":  # bit rot: random entropy data and stray markers (SOI and EOI intact)
        data[o + c // 3 : o + c - 2] = np.random.default_rng(0).integers(0, 256, c - 2 - c // 3, np.uint8).tobytes()
    elif kind == "early_eoi":  # decodes with a warning only (grey half tile); OpenSlide refuses it
        data[o + c // 2 : o + c // 2 + 8] = b"\xff\xd9" * 4
    elif kind == "extraneous_bytes":  # "Corrupt JPEG data: extraneous bytes before marker"
        data[o + 2 : o + 20] = bytes(18)
    dst.write_bytes(bytes(data))
    return col, row


@pytest.mark.parametrize("kind", ["random_tail", "early_eoi", "extraneous_bytes"])
@pytest.mark.parametrize("tile_size", [T, T // 2], ids=["passthrough", "decoded"])
def test_corrupt_jpeg_tile_fails_the_slide_naming_the_tile(slides, tmp_path, kind, tile_size):
    shutil.copy(slides / "s1_mask.tif", tmp_path / "bad_mask.tif")
    shutil.copy(slides / "s0.tif", tmp_path / "s0.tif")
    shutil.copy(slides / "s0_mask.tif", tmp_path / "s0_mask.tif")
    col, row = _damage(slides / "s1.tif", tmp_path / "bad.tif", kind)
    manifest = _manifest_csv(tmp_path, ids=("s0", "bad"))
    out = tmp_path / "out"
    report = tile_cohort(manifest, out, TileConfig(tile_size=tile_size))
    rows = _by_id(out)
    assert rows["s0"]["status"] == "ok" and rows["bad"]["status"] == "failed", rows["bad"]
    reason = rows["bad"]["reason"]
    assert "bad.tif" in reason and f"({col}, {row})" in reason and "corrupt" in reason, reason
    assert report.n_failed == 1
    assert sorted(p.name for p in out.glob("*.h5")) == ["s0.h5"] and not list(out.glob(".*.part"))
    with Bag(out / "s0.h5") as bag:
        assert bag.meta.extra["jpeg_passthrough"] == (tile_size == T)
        assert bag.read_tiles().shape == (len(bag), tile_size, tile_size, 3)


# -- 3. concurrent tilers: per-slide locks, never delete another writer's file ------------------------


def _hold_lock(out: Path, sid: str):
    """Hold the slide lock a tiler process holds while writing ``sid`` (plain fcntl, like another process)."""
    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / f".{sid}.h5.lock", "a+")
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fh


def test_a_slide_another_process_is_writing_is_waited_for_not_deleted(slides, tmp_path):
    out = tmp_path / "out"
    held = _hold_lock(out, "s0")
    part = out / ".s0.h5.abcd1234.h5.part"  # the other process's half-written bag
    part.write_bytes(b"half a bag")
    seen = []

    def on_result(result):
        seen.append((result.slide_id, result.status, part.exists()))
        if result.slide_id == "s2":  # the other process finishes (renames its part away) and lets go
            part.unlink()
            held.close()

    report = tile_cohort(slides / "manifest.csv", out, TileConfig(tile_size=T), on_result=on_result)
    assert seen[:2] == [("s1", "ok", True), ("s2", "ok", True)]  # s0 was deferred, its part untouched
    assert [(r.slide_id, r.status) for r in report.results][-1] == ("s0", "ok")
    assert report.n_failed == 0 and sorted(p.name for p in out.glob("*.h5")) == ["s0.h5", "s1.h5", "s2.h5"]
    assert not list(out.glob(".*.part")) and not list(out.glob(".s*.lock"))


def test_stale_lock_and_part_of_a_dead_process_are_cleaned(slides, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".s0.h5.lock").write_text("")  # left by a killed process: nobody holds it
    (out / ".s0.h5.dead.h5.part").write_bytes(b"x")
    report = tile_cohort(slides / "manifest.csv", out, TileConfig(tile_size=T), ids=["s0"])
    assert [r.status for r in report.results] == ["ok"]
    assert not list(out.glob(".s0.*"))


def test_two_concurrent_runs_into_one_folder_both_succeed(slides, tmp_path):
    out = tmp_path / "out"
    reports, errors = [], []

    def run():
        try:
            reports.append(tile_cohort(slides / "manifest.csv", out, TileConfig(tile_size=T, batch_size=4)))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(reports) == 2
    for rep in reports:
        assert rep.n_failed == 0, [(r.slide_id, r.reason) for r in rep.results]
    assert {r["status"] for r in _rows(out)} <= {"ok", "skipped(resume)"}
    assert sorted(p.name for p in out.glob("*.h5")) == ["s0.h5", "s1.h5", "s2.h5"]
    assert not list(out.glob(".*.part"))
    for sid in IDS:
        with Bag(out / f"{sid}.h5") as bag:
            assert bag.meta.extra["jpeg_passthrough"] and len(bag) > 0


# -- 4. a crashed worker fails only its slide ------------------------------------------------------


class CrashPath(os.PathLike):
    """A slide path that kills the worker process opening it (after leaving a half-written bag)."""

    def __init__(self, real: str, out: str, slide_id: str) -> None:
        self.real, self.out, self.slide_id = real, out, slide_id

    def __fspath__(self) -> str:
        if multiprocessing.parent_process() is not None:  # in a worker: die like a segfaulting reader
            Path(self.out, f".{self.slide_id}.h5.crash.h5.part").write_bytes(b"half")
            os._exit(3)
        return self.real

    def __str__(self) -> str:
        return self.real


def test_a_crashed_worker_fails_only_its_slide(slides, tmp_path, monkeypatch):
    ids = ("a", "b", "c", "d", "e")
    for sid in ids:
        shutil.copy(slides / "s0.tif", tmp_path / f"{sid}.tif")
        shutil.copy(slides / "s0_mask.tif", tmp_path / f"{sid}_mask.tif")
    manifest = _manifest_csv(tmp_path, ids=ids)
    out = tmp_path / "out"
    records, errors = load_source(manifest)
    crash = next(r for r in records if r.slide_id == "b")
    crash.slide_path = CrashPath(str(crash.slide_path), str(out), "b")
    monkeypatch.setattr(tiler_mod, "load_source", lambda source: (records, errors))
    report = tile_cohort(manifest, out, TileConfig(tile_size=T), workers=2)
    rows = _by_id(out)
    assert {k: v["status"] for k, v in rows.items()} == {"a": "ok", "b": "failed", "c": "ok", "d": "ok", "e": "ok"}
    assert report.n_failed == 1
    reason = rows["b"]["reason"]
    assert "b.tif" in reason and "worker" in reason and "died" in reason, reason
    assert (rows["b"]["label"], rows["b"]["provider"], rows["b"]["isup"]) == ("1", "karolinska", "2")
    assert not list(out.glob(".*.part")) and not (out / "b.h5").exists()


# -- 6. file-system errors: one line naming the path ---------------------------------------------


def _cli(*args: str):
    return CliRunner().invoke(app, ["tile", *map(str, args)])


def test_out_that_is_a_file_is_one_line_exit_2(slides, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    for out in (target, target / "sub"):
        res = _cli(slides / "manifest.csv", out, "--tile-size", T)
        assert res.exit_code == 2, res.output
        assert isinstance(res.exception, SystemExit) and str(target) in res.output and "Traceback" not in res.output
    assert target.read_text() == "not a folder"


def test_unwritable_out_is_one_line_exit_2(slides, tmp_path, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() == 0:  # root ignores permissions: refuse every new file in OUT instead
        real_open = os.open

        def deny(path, flags, *args, **kwargs):
            if Path(path).parent == out and flags & os.O_CREAT:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", deny)
    else:
        out.chmod(0o555)
    try:
        res = _cli(slides / "manifest.csv", out, "--tile-size", T)
    finally:
        out.chmod(0o755)
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit) and str(out) in res.output and "ermission" in res.output
    assert not list(out.iterdir())


def test_disk_full_fails_that_slide_and_the_run_goes_on(slides, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_append, real_write = BagWriter.append, report_mod.atomic_write_text
    state = {"full": False}

    def append(self, *args, **kwargs):
        if self.meta.slide_id == "s0":
            state["full"] = True  # the disk fills up while s0 is written...
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, *args, **kwargs)

    def write(path, text):
        if state["full"]:  # ...and stays full for the manifest update right after
            state["full"] = False
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, text)

    monkeypatch.setattr(BagWriter, "append", append)
    monkeypatch.setattr(report_mod, "atomic_write_text", write)
    res = _cli(slides / "manifest.csv", out, "--tile-size", T)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    rows = _by_id(out)
    assert {k: v["status"] for k, v in rows.items()} == {"s0": "failed", "s1": "ok", "s2": "ok"}
    assert "No space left on device" in rows["s0"]["reason"] and str(out / "s0.h5") in rows["s0"]["reason"]
    assert not list(out.glob(".*.part")) and not (out / "s0.h5").exists()


def test_disk_full_on_the_final_flush_leaves_no_partial_file(slides, tmp_path, monkeypatch):
    import h5py

    out = tmp_path / "out"
    real_close = h5py.File.close

    def close(self):
        name = self.filename if self.id.valid else ""
        real_close(self)
        if Path(name).name.startswith(".s1.h5.") and name.endswith(".part"):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.File, "close", close)
    report = tile_cohort(slides / "manifest.csv", out, TileConfig(tile_size=T))
    assert [(r.slide_id, r.status) for r in report.results] == [("s0", "ok"), ("s1", "failed"), ("s2", "ok")]
    assert report.results[1].reason == f"cannot write {out / 's1.h5'}: No space left on device"
    assert not list(out.glob(".*.part")) and not (out / "s1.h5").exists()


def test_manifest_that_cannot_be_written_is_named_and_nothing_is_lost(slides, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def write(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(report_mod, "atomic_write_text", write)
    res = _cli(slides / "manifest.csv", out, "--tile-size", T)
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert str(out / "manifest.csv") in res.output and "No space left on device" in res.output
    assert "3 ok" in res.output and sorted(p.name for p in out.glob("*.h5")) == ["s0.h5", "s1.h5", "s2.h5"]


# -- 10. bad CSV rows sharing a slide id with a good row stay in the manifest ---------------------


def test_bad_row_sharing_an_id_with_a_good_row_is_kept_by_row(slides, tmp_path):
    dup = f"{slides / 's1.tif'},s1,{slides / 's1_mask.tif'},karolinska,3\n"
    manifest = _manifest_csv(tmp_path, extra=dup)
    for name in IDS:
        for suffix in (".tif", "_mask.tif"):
            shutil.copy(slides / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    out = tmp_path / "out"
    report = tile_cohort(manifest, out, TileConfig(tile_size=T))
    rows = [(r["slide_id"], r["status"], r["row"]) for r in _rows(out)]
    assert ("s1", "ok", "") in rows and ("s1", "failed", "5") in rows and len(rows) == 4
    bad = next(r for r in _rows(out) if r["row"] == "5")
    assert "row 5" in bad["reason"] and "duplicates row 3" in bad["reason"]
    assert report.n_failed == 1
    _manifest_csv(tmp_path)  # the row is fixed: the rerun drops the stale failure
    tile_cohort(manifest, out, TileConfig(tile_size=T))
    assert sorted((r["slide_id"], r["status"]) for r in _rows(out)) == [(s, "skipped(resume)") for s in IDS]


# -- 12. --overwrite of a slide that now fails removes its old bag --------------------------------


def test_overwrite_that_fails_removes_the_stale_bag(slides, tmp_path):
    out = tmp_path / "out"
    assert tile_cohort(slides / "manifest.csv", out, TileConfig(tile_size=T), ids=["s0"]).n_failed == 0
    assert (out / "s0.h5").exists()
    report = tile_cohort(slides / "manifest.csv", out, TileConfig(tile_size=T, level=7, overwrite=True), ids=["s0"])
    (res,) = report.results
    assert res.status == "failed" and "level 7" in res.reason and "old bag" in res.reason and "removed" in res.reason
    assert not (out / "s0.h5").exists() and _by_id(out)["s0"]["bag"] == ""


# -- 14. a tile larger than the slide is named as such -----------------------------------------------


def test_tile_larger_than_the_slide_says_so(slides, tmp_path):
    report = tile_cohort(slides / "manifest.csv", tmp_path, TileConfig(tile_size=1024), ids=["s0"])
    (res,) = report.results
    assert res.failed and "blank" not in res.reason
    assert "1024" in res.reason and "768x512" in res.reason and "larger than the slide" in res.reason
    report = tile_cohort(slides / "manifest.csv", tmp_path / "l1", TileConfig(tile_size=256, level=1), ids=["s0"])
    (res,) = report.results
    assert res.failed and "192x128" in res.reason and "level 1" in res.reason


def test_slide_pixels_reach_the_bag(slides, tmp_path):
    """Sanity: the fixture's slides pass through unchanged when nothing is wrong."""
    report = tile_cohort(slides / "manifest.csv", tmp_path, TileConfig(tile_size=T))
    assert report.n_failed == 0
    with Bag(tmp_path / "s0.h5") as bag:
        assert bag.meta.extra["jpeg_passthrough"] and np.all(bag.read_tiles()[..., 0] >= 0)
