"""Issue 8 #14, the remaining small faults: a bad mask label names the mask, ``show`` writes the format its
suffix says (or refuses it), ``synth --size`` is validated up front."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import weakseg  # noqa: F401  (applies the import shim first)
from weakseg.cli.main import app
from weakseg.cohort import SlideRecord
from weakseg.tiling.tiler import TileConfig, tile_slide

sys.path.insert(0, str(Path(__file__).parent))
from test_slide import mask_rgb, synthetic_slide, write_pyramid  # noqa: E402

SID = "abcdefabcdefabcdefabcdefabcdef01"


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A small slide, its good Karolinska mask, and a mask holding label 7 (undefined for Karolinska)."""
    root = tmp_path_factory.mktemp("slide")
    rgb, labels = synthetic_slide(256, 384, seed=1)
    write_pyramid(root / f"{SID}.tiff", rgb, tile=64)
    write_pyramid(root / "good_mask.tiff", mask_rgb(labels), tile=64, compression="zlib")
    bad = labels.copy()
    bad[labels == 2] = 7
    write_pyramid(root / "bad_mask.tiff", mask_rgb(bad), tile=64, compression="zlib")
    return root / f"{SID}.tiff", root / "good_mask.tiff", root / "bad_mask.tiff"


def _cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_bad_mask_label_names_the_mask_file(slide, tmp_path):
    image, _, bad = slide
    res = tile_slide(SlideRecord(SID, image, bad, 1, "karolinska", 2, "3+4", None), tmp_path, TileConfig(tile_size=64))
    assert res.status == "failed"
    assert res.reason.startswith(str(bad)) and "mask labels [7]" in res.reason and "karolinska" in res.reason
    assert not list(tmp_path.glob("*.h5"))


def test_tile_prints_whole_reasons_when_not_a_terminal(slide, tmp_path, monkeypatch):
    """Issue 8 newcomer: outside a terminal a failure reason was squeezed into a narrow table column."""
    from weakseg.cli.common import console

    monkeypatch.setattr(console, "_width", 80)  # what a log file or CI gets
    image, _, bad = slide
    (tmp_path / "m.csv").write_text(f"slide_path,slide_id,mask_path,data_provider,isup_grade\n{image},{SID},{bad},karolinska,2\n")
    result = CliRunner().invoke(app, ["tile", str(tmp_path / "m.csv"), str(tmp_path / "out"), "--tile-size", "64"])
    assert result.exit_code == 1
    (line,) = [ln for ln in result.output.splitlines() if SID in ln and "failed" in ln]
    assert line.strip() == (f"{SID}  failed  {bad}: mask labels [7] are not defined for provider 'karolinska' (0..2) "
                            f"(mask of slide {image})")


@pytest.fixture(scope="module")
def bag(slide, tmp_path_factory) -> Path:
    image, good, _ = slide
    out = tmp_path_factory.mktemp("bags")
    res = tile_slide(SlideRecord(SID, image, good, 1, "karolinska", 2, "3+4", None), out, TileConfig(tile_size=64))
    assert res.status == "ok", res.reason
    return out / f"{SID}.h5"


@pytest.mark.parametrize("name, magic", [("o.jpg", b"\xff\xd8\xff"), ("o.JPEG", b"\xff\xd8\xff"), ("o.png", b"\x89PNG"),
                                         ("o.tif", b"II*\x00"), ("o.pdf", b"%PDF")])
def test_show_writes_the_format_of_the_suffix(bag, tmp_path, name, magic):
    result = _cli("show", bag, "--out", tmp_path / name, "--max-side", 128)
    assert result.exit_code == 0, result.output
    assert (tmp_path / name).read_bytes()[: len(magic)] == magic


@pytest.mark.parametrize("name", ["o.xyz", "overview"])
def test_show_refuses_a_suffix_it_cannot_write(bag, tmp_path, name):
    result = _cli("show", bag, "--out", tmp_path / name)
    assert result.exit_code == 2
    assert "image format" in result.output and ".png" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


@pytest.mark.parametrize("size", ["99999999999x2048", "2048x300000", "9" * 5000, "100x100"])
def test_synth_size_is_validated_up_front(tmp_path, size):
    out = tmp_path / "cohort"
    result = _cli("synth", out, "--slides", 1, "--size", size)
    assert result.exit_code == 2, result.output
    assert "--size must be" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_make_cohort_refuses_a_huge_size(tmp_path):
    from weakseg.synth import SynthConfigError, make_cohort

    with pytest.raises(SynthConfigError, match="at most 200000x200000"):
        make_cohort(tmp_path / "c", 1, size=(99_999_999_999, 2048))
    assert not (tmp_path / "c").exists()
