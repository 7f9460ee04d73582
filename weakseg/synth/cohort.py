"""A synthetic PANDA-layout cohort: ``train_images/``, ``train_label_masks/``, ``train.csv``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from ..atomic import atomic_path
from ..errors import SynthConfigError
from ..panda import TRAIN_CSV_COLUMNS
from .render import render, render_labels
from .layout import make_scene
from .scene import DOWNSAMPLES, SlideScene
from .tiffwriter import write_pyramid


DEFAULT_SIZE = (6144, 2048)
#: Longest slide side ``make_cohort`` accepts (whole-slide images rarely exceed 150,000 px; a scene's
#: gland table grows with the cores' length, so larger sizes would only exhaust memory).
MAX_SIDE = 200_000


@dataclass(frozen=True)
class SlidePlan:
    """What one slide of a cohort will be, decided before any pixel is painted."""

    image_id: str
    scene_seed: int
    provider: str
    cancer: bool
    has_mask: bool
    pen: bool
    blank: bool


def write_slide(
    image_path: str | os.PathLike,
    mask_path: str | os.PathLike | None,
    scene: SlideScene,
    *,
    tile: int = 512,
    quality: int = 90,
) -> None:
    """Write a scene's slide (tiled JPEG pyramid) and, if ``mask_path``, its label mask.

    The mask has the slide's size and pyramid, RGB with the label in R (G = B = 0),
    deflate-compressed. Both are streamed tile by tile and replaced atomically.
    """
    size = (scene.width, scene.height)
    description = slide_description(scene, tile, quality)
    write_pyramid(
        image_path,
        lambda x, y, w, h, d: render(scene, x, y, w, h, d),
        size,
        DOWNSAMPLES,
        scene.mpp,
        tile=tile,
        compression="jpeg",
        quality=quality,
        description=description,
    )
    if mask_path is not None:
        write_pyramid(
            mask_path,
            lambda x, y, w, h, d: _label_rgb(render_labels(scene, x, y, w, h, d)),
            size,
            DOWNSAMPLES,
            scene.mpp,
            tile=tile,
            compression="zlib",
            description=description + "|mask",
        )


def slide_description(scene: SlideScene, tile: int, quality: int) -> str:
    """ImageDescription of a written slide: the scene's record plus the encoding options."""
    return f"{scene.describe()}|tile={tile}|quality={quality}"


def _is_written(path: Path, description: str, size: tuple[int, int]) -> bool:
    """Whether ``path`` is a complete slide or mask written with exactly these settings."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return page.description == description and page.shape[:2] == (size[1], size[0]) and len(tif.pages) == len(DOWNSAMPLES)
    except (OSError, tifffile.TiffFileError):
        return False


def _label_rgb(labels: np.ndarray) -> np.ndarray:
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    rgb[..., 0] = labels
    return rgb


def image_id(seed: int, index: int) -> str:
    """The 32-hex-character id of slide ``index`` of the cohort made with ``seed``."""
    return hashlib.sha256(f"weakseg-synth:{seed}:{index}".encode()).hexdigest()[:32]


def plan_cohort(
    n_slides: int,
    seed: int = 0,
    *,
    mask_fraction: float = 0.9,
    pen_fraction: float = 0.1,
    karolinska_fraction: float = 0.5,
    blank: bool = False,
) -> list[SlidePlan]:
    """Decide each slide's provider, cancer status, mask, pen marks and blankness.

    Providers are split by ``karolinska_fraction``; within each provider half the slides
    (±1) have cancer. Only Radboud slides lack masks (``1 - mask_fraction`` of them) or
    carry pen marks (``pen_fraction`` of them), as in PANDA. ``blank`` turns one slide
    into empty glass (negative, with an all-background mask).
    """
    _check_fraction("mask_fraction", mask_fraction)
    _check_fraction("pen_fraction", pen_fraction)
    _check_fraction("karolinska_fraction", karolinska_fraction)
    if n_slides < 1:
        raise SynthConfigError(f"n_slides must be at least 1, got {n_slides}")
    rng = np.random.default_rng([seed, 0x5A17])
    n_kar = int(round(n_slides * karolinska_fraction))
    providers = np.array(["karolinska"] * n_kar + ["radboud"] * (n_slides - n_kar))[rng.permutation(n_slides)]
    blank_at = int(rng.integers(n_slides)) if blank else -1
    tissue = np.arange(n_slides) != blank_at

    def slides_of(provider: str) -> np.ndarray:
        return np.flatnonzero((providers == provider) & tissue)

    cancer = np.zeros(n_slides, bool)
    for provider in ("radboud", "karolinska"):
        idx = rng.permutation(slides_of(provider))
        n_cancer = idx.size // 2 + (idx.size % 2 and int(rng.integers(2)))
        cancer[idx[:n_cancer]] = True
    radboud = slides_of("radboud")
    no_mask = set(rng.permutation(radboud)[: int(round(radboud.size * (1 - mask_fraction)))].tolist())
    pens = set(rng.permutation(radboud)[: int(round(radboud.size * pen_fraction))].tolist())
    seeds = np.random.SeedSequence([seed, 0xC0407]).generate_state(n_slides, np.uint64)
    return [
        SlidePlan(
            image_id=image_id(seed, i),
            scene_seed=int(seeds[i] >> np.uint64(1)),
            provider=str(providers[i]),
            cancer=bool(cancer[i]),
            has_mask=i not in no_mask,
            pen=i in pens,
            blank=i == blank_at,
        )
        for i in range(n_slides)
    ]


def make_cohort(
    out_dir: str | os.PathLike,
    n_slides: int,
    seed: int = 0,
    size: tuple[int, int] = DEFAULT_SIZE,
    *,
    mask_fraction: float = 0.9,
    pen_fraction: float = 0.1,
    karolinska_fraction: float = 0.5,
    blank: bool = False,
    tile: int = 512,
    quality: int = 90,
    resume: bool = False,
    on_slide: Callable[[SlidePlan], None] | None = None,
) -> pd.DataFrame:
    """Generate a PANDA-layout cohort under ``out_dir`` and return its ``train.csv`` rows.

    Writes ``train_images/<id>.tiff``, ``train_label_masks/<id>_mask.tiff`` and
    ``train.csv`` (``image_id, data_provider, isup_grade, gleason_score``, sorted by id).
    Same arguments → byte-identical files. With ``resume``, slides (and masks) already
    written with the same settings are kept, so an interrupted run picks up where it
    stopped. ``on_slide`` is called after each slide.
    See :func:`plan_cohort` for the fractions and :func:`make_scene` for the slides.
    """
    if not 1 <= quality <= 100:
        raise SynthConfigError(f"quality must be 1-100, got {quality}")
    if tile <= 0 or tile % 16:
        raise SynthConfigError(f"tile must be a positive multiple of 16, got {tile}")
    if min(size) < 256:
        raise SynthConfigError(f"size must be at least 256x256, got {size[0]}x{size[1]}")
    if max(size) > MAX_SIDE:
        raise SynthConfigError(f"size must be at most {MAX_SIDE}x{MAX_SIDE}, got {size[0]}x{size[1]}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SynthConfigError(f"output path exists and is not a directory: {out}")
    plans = plan_cohort(
        n_slides,
        seed,
        mask_fraction=mask_fraction,
        pen_fraction=pen_fraction,
        karolinska_fraction=karolinska_fraction,
        blank=blank,
    )
    rows = []
    for plan in plans:
        scene = make_scene(plan.scene_seed, size, plan.provider, cancer=plan.cancer, pen=plan.pen, blank=plan.blank)
        image_path = out / "train_images" / f"{plan.image_id}.tiff"
        mask_path = out / "train_label_masks" / f"{plan.image_id}_mask.tiff" if plan.has_mask else None
        description = slide_description(scene, tile, quality)
        done = resume and _is_written(image_path, description, size)
        done = done and (mask_path is None or _is_written(mask_path, description + "|mask", size))
        if not done:
            write_slide(image_path, mask_path, scene, tile=tile, quality=quality)
        rows.append((plan.image_id, plan.provider, scene.isup_grade, scene.gleason_score))
        if on_slide is not None:
            on_slide(plan)
    table = pd.DataFrame(rows, columns=list(TRAIN_CSV_COLUMNS)).sort_values("image_id", ignore_index=True)
    with atomic_path(out / "train.csv", suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    return table


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise SynthConfigError(f"{name} must be in [0, 1], got {value}")
