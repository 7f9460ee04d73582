"""Overlays a pathologist can read (issue 8): perceptual colours transparent on low values, a colour bar, the
ground-truth and predicted outlines, a title; ``weakseg show`` and tile-score maps with legends."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import weakseg  # noqa: F401
from weakseg.cli.main import app
from weakseg.cohort import SlideRecord
from weakseg.heatmaps import write_tile_score_map
from weakseg.maps import overlay as overlay_mod
from weakseg.maps import predict_slide_map
from weakseg.maps.overlay import PREDICTION_COLOR, TRUTH_COLOR, blend_overlay, overlay_figure
from weakseg.tiling.tiler import TileConfig, tile_slide

sys.path.insert(0, str(Path(__file__).parent))
from test_slide import mask_rgb, synthetic_slide, write_pyramid  # noqa: E402


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def _near(image: np.ndarray, hex_colour: str, tol: float = 40) -> int:
    """Pixels within ``tol`` (Euclidean RGB) of a colour."""
    return int((np.linalg.norm(image[..., :3].astype(float) - _rgb(hex_colour), axis=-1) < tol).sum())


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("ov")
    rgb, labels = synthetic_slide(384, 1024, seed=3)  # a dark "cancer" disc in the middle, pink benign blobs
    write_pyramid(root / "s.tiff", rgb, tile=128)
    write_pyramid(root / "s_mask.tiff", mask_rgb(labels), tile=128, compression="zlib")
    res = tile_slide(SlideRecord("s", root / "s.tiff", root / "s_mask.tiff", 1, "karolinska", 2, "3+4", None), root / "bags",
                     TileConfig(tile_size=64, slide_mpp=0.5))
    assert res.status == "ok", res.reason
    return root / "s.tiff", root / "s_mask.tiff", root / "bags" / "s.h5"


def _darkness(tiles: np.ndarray) -> np.ndarray:
    """A stand-in model: dark (purple "cancer") pixels get high probability, pink benign tissue low."""
    d = 1 - tiles.astype(np.float32).mean(-1) / 255
    return np.clip((d - 0.35) * 3, 0, 1)


def test_low_probabilities_leave_the_tissue_as_it_is() -> None:
    thumb = np.full((4, 4, 3), 200, np.uint8)
    prob = np.array([[0.0, 0.1, 0.2, 0.35], [0.5, 0.8, 1.0, np.nan]] * 2, np.float32)
    out = blend_overlay(thumb, prob, transparent_below=0.2, opaque_from=0.5, alpha=0.6, cmap="magma", nearest=True)
    assert (out[0, :3] == 200).all() and (out[0, 3] != 200).any()  # clear up to 0.2, tinted above
    assert (out[1, 3] == 200).all()  # NaN: no value, the thumbnail only
    old = blend_overlay(thumb, np.zeros((4, 4), np.float32))  # default: unchanged behaviour (uniform alpha)
    assert (old != 200).any()


def test_slide_map_overlay_has_outlines_colour_bar_and_title(slide, tmp_path, monkeypatch) -> None:
    image, mask, _ = slide
    seen = {}
    real = overlay_mod.overlay_figure

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr("weakseg.maps.predict.overlay_figure", spy)
    m = predict_slide_map(image, _darkness, tmp_path, window=64, step=32, slide_mpp=0.5, title="s · supervised",
                          truth_mask=mask, truth_provider="karolinska")
    assert seen["title"] == "s · supervised" and seen["truth"].any() and seen["threshold"] == 0.5
    assert "cmap" not in seen and overlay_mod.OVERLAY_CMAP == "magma"  # perceptual, not jet
    png = np.asarray(Image.open(m.overlay_png))
    assert png.shape[1] >= 1024 and png.shape[0] > 384 + 50  # the thumbnail plus title and colour-bar strips
    assert png.shape[1] < 1100 and m.overlay_png.stat().st_size < 400_000  # small
    assert _near(png, TRUTH_COLOR) > 50 and _near(png, PREDICTION_COLOR) > 50  # both outlines drawn
    # benign tissue (pink, p < 0.2) keeps its colour: the overlay's pixels there equal the slide's
    rgb, labels = synthetic_slide(384, 1024, seed=3)
    ys, xs = np.nonzero(labels == 1)
    y, x = ys[len(ys) // 2], xs[len(xs) // 2]
    top = 26
    assert np.abs(png[top + y, 8 + x, :3].astype(int) - rgb[y, x].astype(int)).max() < 60


def test_bare_overlay_on_request(slide, tmp_path) -> None:
    image, _, _ = slide
    m = predict_slide_map(image, _darkness, tmp_path, window=64, step=32, slide_mpp=0.5, legend=False)
    assert Image.open(m.overlay_png).size == (1024, 384)


def test_an_unreadable_truth_mask_is_noted_not_fatal(slide, tmp_path) -> None:
    image, _, _ = slide
    bad = tmp_path / "bad_mask.tiff"
    bad.write_bytes(b"not a tiff")
    m = predict_slide_map(image, _darkness, tmp_path / "o", window=64, step=32, slide_mpp=0.5, truth_mask=bad)
    assert m.overlay_png.is_file()


def test_overlay_figure_suffix_decides_the_format(tmp_path) -> None:
    thumb = np.full((20, 30, 3), 230, np.uint8)
    path = overlay_figure(tmp_path / "x.jpg", thumb, np.linspace(0, 1, 600).reshape(20, 30), title="t")
    assert path.read_bytes()[:3] == b"\xff\xd8\xff"
    assert Image.open(path).size[0] >= 480  # small thumbnails are scaled up to a readable width


def test_tile_score_map_with_legend_and_truth(slide, tmp_path) -> None:
    _, _, bag = slide
    from weakseg.bags import Bag

    with Bag(bag) as b:
        scores = b.cancer_fraction.copy()
    paths = write_tile_score_map(bag, scores, tmp_path, name="attention", normalization="rank")
    meta = json.loads(paths["meta"].read_text())
    assert meta["cmap"] == "magma" and meta["legend"] is True
    png = np.asarray(Image.open(paths["png"]))
    assert png.shape[0] > 384 + 50 and _near(png, TRUTH_COLOR) > 50


def test_show_has_a_title_and_legend(slide, tmp_path) -> None:
    _, _, bag = slide
    result = CliRunner().invoke(app, ["show", str(bag), "--out", str(tmp_path / "o.png"), "--max-side", "512"])
    assert result.exit_code == 0, result.output
    png = np.asarray(Image.open(tmp_path / "o.png"))
    assert png.shape[0] > 192 + 40  # 512x192 thumbnail plus title and legend strips
    from weakseg.inspect import render_overview

    bare = render_overview(bag, tmp_path / "b.png", max_side=512, legend=False)
    assert Image.open(bare).size == (512, 192)
