"""Weak-label simulation: slide mode, PU mode (regions, erosion, background, seeds), links, CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

import weakseg  # noqa: F401
from weakseg.bags import Bag, BagMeta, BagWriter
from weakseg.cli.main import app
from weakseg.errors import BagError
from weakseg.weaken import PU_EXCLUDED, PU_POSITIVE, read_pu_labels, weaken_bags

T = 32
GRID = 4  # 4 x 4 tiles of 32 px: a 128 x 128 slide
# Six separated cancer squares (y, x, size); two straddle tile borders.
BLOBS = [(4, 4, 10), (26, 40, 12), (70, 10, 8), (60, 60, 14), (100, 90, 10), (10, 100, 9)]


def label_map() -> np.ndarray:
    lab = np.ones((T * GRID, T * GRID), dtype=np.uint8)
    lab[:, -T // 2 :] = 0  # background strip
    lab[-T // 2 :, :] = 0
    for y, x, s in BLOBS:
        lab[y : y + s, x : x + s] = 2
    return lab


def write_bag(path: Path, *, with_masks: bool = True, slide_id: str = "s1") -> Path:
    lab = label_map()
    rng = np.random.default_rng(0)
    coords = np.array([(x * T, y * T) for y in range(GRID) for x in range(GRID)])
    tiles = rng.integers(0, 255, (len(coords), T, T, 3), dtype=np.uint8)
    masks = np.stack([lab[y : y + T, x : x + T] for x, y in coords])
    meta = BagMeta(slide_id=slide_id, label=1, data_provider="karolinska", tile_size=T, stride=T, downsample=1.0)
    with BagWriter(path, meta, tile_size=T, with_masks=with_masks, codec="raw") as w:
        if with_masks:
            w.append(tiles, coords, np.ones(len(coords)), masks=masks, cancer_fraction=(masks == 2).mean((1, 2)))
        else:
            w.append(tiles, coords, np.ones(len(coords)))
    return path


def stitch(bag: Bag, tiles: np.ndarray) -> np.ndarray:
    out = np.zeros((T * GRID, T * GRID), dtype=tiles.dtype)
    for (x, y), t in zip(bag.coords, tiles):
        out[y : y + T, x : x + T] = t
    return out


@pytest.fixture
def src(tmp_path: Path) -> Path:
    write_bag(tmp_path / "src" / "s1.h5")
    return tmp_path / "src"


def test_slide_mode_links_tiles_and_keeps_labels(src: Path, tmp_path: Path) -> None:
    (out,) = weaken_bags(src, tmp_path / "weak", "slide")
    with Bag(out) as weak, Bag(src / "s1.h5") as full:
        assert weak.label == full.label == 1
        assert weak.meta.extra["supervision"] == "slide"
        np.testing.assert_array_equal(weak.read_tiles([3, 0]), full.read_tiles([3, 0]))
        np.testing.assert_array_equal(weak.read_masks(), full.read_masks())
        with pytest.raises(BagError, match="pu_labels"):
            read_pu_labels(weak)
    with h5py.File(out, "r") as f:
        link = f.get("tiles", getlink=True)
        assert isinstance(link, h5py.ExternalLink) and not Path(link.filename).is_absolute()
        assert f.attrs["source_bag"] == "../src/s1.h5"
    assert out.stat().st_size < (src / "s1.h5").stat().st_size


def test_links_survive_moving_both_folders(src: Path, tmp_path: Path) -> None:
    weaken_bags(src, tmp_path / "weak", "pu", positive_fraction=0.5)
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(str(src), moved / "src")
    shutil.move(str(tmp_path / "weak"), moved / "weak")
    with Bag(moved / "weak" / "s1.h5") as weak:
        assert weak.read_tiles([5]).shape == (1, T, T, 3)


def test_pu_mode_keeps_whole_regions_subset_of_cancer(src: Path, tmp_path: Path) -> None:
    (out,) = weaken_bags(src, tmp_path / "weak", "pu", positive_fraction=0.5, erode=0, seed=3)
    with Bag(out) as weak:
        pu = stitch(weak, read_pu_labels(weak))
        assert weak.meta.extra["supervision"] == "pu"
        assert weak.meta.extra["positive_fraction"] == 0.5
    lab = label_map()
    positive = pu == PU_POSITIVE
    assert positive.any() and not (positive & (lab != 2)).any()
    np.testing.assert_array_equal(pu == PU_EXCLUDED, lab == 0)
    assert set(np.unique(pu)) <= {0, 1, 255}
    _, n_kept = ndimage.label(positive)
    assert n_kept == round(0.5 * len(BLOBS))  # straddling squares count once
    regions, _ = ndimage.label(lab == 2)
    for r in np.unique(regions[positive]):  # kept regions are kept whole
        assert positive[regions == r].all()


def test_pu_fraction_rounds_up_to_one_region(src: Path, tmp_path: Path) -> None:
    (out,) = weaken_bags(src, tmp_path / "weak", "pu", positive_fraction=0.01, erode=0)
    with Bag(out) as weak:
        _, n = ndimage.label(stitch(weak, read_pu_labels(weak)) == PU_POSITIVE)
    assert n == 1


def test_erosion_shrinks_but_ignores_tile_borders(src: Path, tmp_path: Path) -> None:
    def positives(erode: int) -> np.ndarray:
        (out,) = weaken_bags(src, tmp_path / f"e{erode}", "pu", positive_fraction=1.0, erode=erode)
        with Bag(out) as weak:
            return stitch(weak, read_pu_labels(weak)) == PU_POSITIVE

    full, eroded = positives(0), positives(2)
    np.testing.assert_array_equal(full, label_map() == 2)
    assert (eroded <= full).all() and eroded.sum() < full.sum()
    np.testing.assert_array_equal(eroded, ndimage.binary_erosion(full, np.ones((3, 3)), iterations=2))


def test_seeds_reproducible_and_vary(src: Path, tmp_path: Path) -> None:
    def kept(seed: int, name: str) -> np.ndarray:
        (out,) = weaken_bags(src, tmp_path / name, "pu", positive_fraction=0.5, seed=seed)
        with Bag(out) as weak:
            return read_pu_labels(weak)

    a = kept(7, "a")
    np.testing.assert_array_equal(a, kept(7, "b"))
    assert any(not np.array_equal(a, kept(s, f"c{s}")) for s in range(3))


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    bare = write_bag(tmp_path / "bare" / "s2.h5", with_masks=False, slide_id="s2")
    with pytest.raises(BagError, match="s2.h5.*no masks"):
        weaken_bags(bare, tmp_path / "weak", "slide")
    with pytest.raises(BagError, match="source folder"):
        weaken_bags(bare.parent, bare.parent, "slide")
    bad = write_bag(tmp_path / "bad" / "s3.h5", slide_id="s3")
    with h5py.File(bad, "a") as f:
        f["masks"][0, 0, 0] = 7  # not a Karolinska label
    with pytest.raises(BagError, match="s3.h5: masks of tiles 0..15"):
        weaken_bags(bad, tmp_path / "weak3", "pu")
    with pytest.raises(ValueError, match="mode"):
        weaken_bags(bare, tmp_path / "weak", "mil")  # type: ignore[arg-type]


def test_cli(src: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["weaken", str(src), str(tmp_path / "w"), "--mode", "pu", "--positive-fraction", "0.5"])
    assert res.exit_code == 0, res.output
    with Bag(tmp_path / "w" / "s1.h5") as weak:
        assert (read_pu_labels(weak) == PU_POSITIVE).any()
    res = runner.invoke(app, ["weaken", str(tmp_path / "nothing"), str(tmp_path / "w2"), "--mode", "slide"])
    assert res.exit_code == 2
