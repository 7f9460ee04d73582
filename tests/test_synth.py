"""Synthetic PANDA-style cohort: layout, pyramid, labels, grades, determinism, rendering."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import openslide
import pytest
from typer.testing import CliRunner

from weakseg.cli.main import app
from weakseg.panda import decode_mask_rgb, read_train_csv, to_common_labels
from weakseg.synth import SynthConfigError, make_cohort, make_scene, plan_cohort, render, render_labels, write_slide

SMALL = (1024, 512)
TINY = (512, 256)


def _slides(root: Path):
    table, errors = read_train_csv(root / "train.csv")
    assert errors == []
    for row in table.itertuples():
        mask = root / "train_label_masks" / f"{row.image_id}_mask.tiff"
        yield row, root / "train_images" / f"{row.image_id}.tiff", (mask if mask.exists() else None)


def _mask_labels(path: Path, level: int = 0) -> np.ndarray:
    with openslide.OpenSlide(path) as s:
        rgba = np.asarray(s.read_region((0, 0), level, s.level_dimensions[level]))
    assert rgba[..., 1].max() == 0 and rgba[..., 2].max() == 0, f"{path.name}: label must be in R only"
    return decode_mask_rgb(rgba)


def test_cohort_layout_and_fixture_guarantees(synth_cohort: Path):
    slides = list(_slides(synth_cohort))
    assert len(slides) == 6
    assert len(list((synth_cohort / "train_images").iterdir())) == 6
    seen = set()
    for row, image, mask in slides:
        assert re.fullmatch(r"[0-9a-f]{32}", row.image_id)
        assert image.is_file()
        assert mask is not None or row.data_provider == "radboud", "only Radboud slides may lack masks"
        seen.add((row.data_provider, row.isup_grade > 0, mask is not None))
    for provider in ("radboud", "karolinska"):
        assert (provider, True, True) in seen, f"no {provider} cancer slide with a mask"
        assert any(p == provider and not c for p, c, _ in seen), f"no negative {provider} slide"
    assert any(m is None for _, _, m in slides)


def test_openslide_reads_pyramids_with_pixel_size(synth_cohort: Path):
    for _, image, mask in _slides(synth_cohort):
        for path in (image, mask) if mask else (image,):
            with openslide.OpenSlide(path) as s:
                assert s.properties["openslide.vendor"] == "generic-tiff"
                assert s.level_count == 3
                assert s.level_downsamples == pytest.approx((1.0, 4.0, 16.0))
                assert s.dimensions == (2048, 1024)
                assert 0.45 <= float(s.properties["openslide.mpp-x"]) <= 0.505
                assert s.properties["tiff.ResolutionUnit"] == "centimeter"
                assert s.properties["tiff.ImageDescription"].startswith("weakseg-synth")
                assert s.properties["openslide.level[0].tile-width"] == "512"


def test_labels_follow_provider_conventions_and_csv(synth_cohort: Path):
    for row, image, mask in _slides(synth_cohort):
        if mask is None:
            continue
        raw = _mask_labels(mask, level=1)
        labels = set(np.unique(raw).tolist())
        allowed = {"radboud": set(range(6)), "karolinska": {0, 1, 2}}[row.data_provider]
        assert labels <= allowed and {0, 1} <= labels, (row.image_id, labels)
        cancer = (to_common_labels(raw, row.data_provider) == 2).mean()
        tissue = (raw > 0).mean()
        assert (cancer > 0) == (row.isup_grade > 0), row.image_id
        if row.isup_grade == 0:
            assert row.gleason_score == {"radboud": "negative", "karolinska": "0+0"}[row.data_provider]
            continue
        assert 0.1 <= cancer / tissue <= 0.6, f"{row.image_id}: cancer is {cancer / tissue:.0%} of tissue"
        if row.data_provider == "radboud":  # Gleason major/minor = most/second-most common pattern
            area = {p: int((raw == p).sum()) for p in (3, 4, 5) if (raw == p).any()}
            ranked = sorted(area, key=area.get, reverse=True)
            assert row.gleason_score == f"{ranked[0]}+{ranked[1] if len(ranked) > 1 else ranked[0]}"


def test_mask_levels_agree(synth_cohort: Path):
    _, _, mask = next(s for s in _slides(synth_cohort) if s[2] is not None and s[0].isup_grade > 0)
    level0, level2 = _mask_labels(mask, 0), _mask_labels(mask, 2)
    assert (level0[8::16, 8::16] == level2).mean() > 0.95


def test_image_pyramid_matches_render(synth_cohort: Path):
    """The TIFF description records enough to rebuild the scene; level 2 is its coarse render."""
    _, image, _ = next(s for s in _slides(synth_cohort) if s[0].isup_grade > 0)
    with openslide.OpenSlide(image) as s:
        description = s.properties["tiff.ImageDescription"]
        meta = dict(f.split("=", 1) for f in description.split("|")[1:])
        level2 = np.asarray(s.read_region((0, 0), 2, s.level_dimensions[2]))[..., :3].astype(np.float32)
    scene = make_scene(
        int(meta["seed"]), (2048, 1024), meta["provider"], cancer=meta["gleason"] != "0+0", pen=meta["pens"] != "0"
    )
    assert description.startswith(scene.describe() + "|tile=512|quality=90")
    assert np.abs(level2 - render(scene, 0, 0, 128, 64, 16)).mean() < 5.0  # JPEG error only


def test_gland_index_matches_brute_force():
    glands = make_scene(9, (4096, 1024), "radboud", gleason=(3, 4)).glands
    reach = glands.reach
    for box in [(0, 0, 512, 512), (1000.5, 300, 1700, 700), (3900, 0, 5000, 2000)]:
        x0, y0, x1, y1 = box
        brute = np.flatnonzero((glands.x + reach > x0) & (glands.x - reach < x1) & (glands.y + reach > y0) & (glands.y - reach < y1))
        assert np.array_equal(glands.query(*box), brute)


def test_determinism(tmp_path: Path):
    def digest(seed: int, name: str) -> tuple[str, str]:
        scene = make_scene(seed, TINY, "radboud", cancer=True, pen=True)
        image, mask = tmp_path / f"{name}.tiff", tmp_path / f"{name}_mask.tiff"
        write_slide(image, mask, scene, tile=256)
        return tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in (image, mask))

    assert digest(7, "a") == digest(7, "b")
    assert digest(7, "a")[0] != digest(8, "c")[0]


def test_resume_keeps_matching_slides_and_redoes_others(tmp_path: Path):
    options = dict(n_slides=2, seed=2, size=TINY, tile=256, karolinska_fraction=1.0)
    make_cohort(tmp_path, **options)
    images = sorted((tmp_path / "train_images").glob("*.tiff"))
    stamps = [p.stat().st_mtime_ns for p in images]
    images[1].write_bytes(b"truncated")
    make_cohort(tmp_path, resume=True, **options)
    assert images[0].stat().st_mtime_ns == stamps[0]
    with openslide.OpenSlide(images[1]) as s:
        assert s.level_count == 3
    make_cohort(tmp_path, resume=True, quality=80, **options)  # other settings: rewritten
    assert images[0].stat().st_mtime_ns != stamps[0]


def test_plan_is_balanced_and_follows_panda():
    plans = plan_cohort(40, seed=3, mask_fraction=0.8, pen_fraction=0.2, karolinska_fraction=0.5, blank=True)
    assert 18 <= sum(p.cancer for p in plans) <= 21
    assert sum(p.provider == "karolinska" for p in plans) == 20
    assert all(p.has_mask and not p.pen for p in plans if p.provider == "karolinska")
    assert sum(not p.has_mask for p in plans) > 0 and sum(p.pen for p in plans) > 0
    assert [p.blank for p in plans].count(True) == 1 and not next(p for p in plans if p.blank).cancer
    assert len({p.image_id for p in plans}) == 40
    assert plans == plan_cohort(40, seed=3, mask_fraction=0.8, pen_fraction=0.2, karolinska_fraction=0.5, blank=True)


def test_regions_render_independently_of_tiling():
    scene = make_scene(5, SMALL, "radboud", cancer=True, pen=True)
    whole = render(scene, 0, 0, 256, 128, 4)
    part = render(scene, 512, 256, 64, 32, 4)
    assert np.array_equal(whole[64:96, 128:192], part)
    assert np.array_equal(render_labels(scene, 0, 0, 256, 128, 4)[64:96, 128:192], render_labels(scene, 512, 256, 64, 32, 4))


def test_coarse_level_matches_downsampled_fine_level():
    scene = make_scene(11, SMALL, "radboud", gleason=(4, 3))
    fine = render(scene, 0, 0, 1024, 512, 1).astype(np.float32)
    coarse = render(scene, 0, 0, 64, 32, 16).astype(np.float32)
    pooled = fine.reshape(32, 16, 64, 16, 3).mean(axis=(1, 3))
    assert np.abs(pooled - coarse).mean() < 6.0
    labels0 = render_labels(scene, 0, 0, 1024, 512, 1)
    assert (labels0[8::16, 8::16] == render_labels(scene, 0, 0, 64, 32, 16)).mean() > 0.95


def test_cancer_is_darker_than_benign_tissue():
    for seed, provider in [(1, "radboud"), (2, "karolinska")]:
        scene = make_scene(seed, SMALL, provider, gleason=(3, 3))
        rgb = render(scene, 0, 0, 256, 128, 4).astype(np.float32).mean(axis=2)
        labels = to_common_labels(render_labels(scene, 0, 0, 256, 128, 4), provider)
        stained = rgb < 225  # Karolinska outlines also cover some glass
        assert rgb[(labels == 2) & stained].mean() < rgb[(labels == 1) & stained].mean() - 5


def test_glass_is_near_white_and_blank_slide_has_no_tissue():
    scene = make_scene(3, SMALL, "karolinska", blank=True)
    rgb = render(scene, 0, 0, 256, 128, 4)
    assert 238 <= rgb.mean() <= 250 and rgb.min() >= 225
    assert not render_labels(scene, 0, 0, 256, 128, 4).any()
    assert scene.isup_grade == 0 and scene.gleason_score == "0+0"


def test_pen_marks_are_ink_not_cancer():
    plain = make_scene(4, SMALL, "radboud", cancer=True, pen=False)
    inked = make_scene(4, SMALL, "radboud", cancer=True, pen=True)
    a, b = (render(s, 0, 0, 256, 128, 4).astype(np.int16) for s in (plain, inked))
    ink = np.abs(a - b).max(axis=2) > 40
    assert ink.mean() > 0.005
    assert np.array_equal(render_labels(plain, 0, 0, 256, 128, 4), render_labels(inked, 0, 0, 256, 128, 4))


@pytest.mark.parametrize(
    ("option", "value"),
    [("mask_fraction", 1.5), ("pen_fraction", -0.1), ("quality", 0), ("tile", 100), ("size", (128, 128))],
)
def test_bad_options_name_the_option(tmp_path: Path, option: str, value):
    with pytest.raises(SynthConfigError, match=option):
        make_cohort(tmp_path, 1, **{option: value})


def test_cli_writes_cohort(tmp_path: Path):
    out = tmp_path / "cohort"
    result = CliRunner().invoke(app, ["synth", str(out), "--slides", "2", "--seed", "1", "--size", "512x256", "--tile", "256"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "train_images").glob("*.tiff"))) == 2
    assert (out / "train.csv").read_text().startswith("image_id,data_provider,isup_grade,gleason_score")
    bad = CliRunner().invoke(app, ["synth", str(out), "--slides", "1", "--size", "big"])
    assert bad.exit_code == 2
