"""Tile-score maps: one value per tile position of a slide, saved as array + metadata + heatmap PNG.

For a bag with level-0 tile stride ``s0 = stride · downsample`` (its
:class:`~weakseg.resolution.Resolution`: ``downsample`` = level-0 pixels per tile pixel) the map has
``ceil(H0 / s0) × ceil(W0 / s0)`` pixels (``H0, W0``: the slide's level-0 size, or the extent of
the tiles when the slide file is gone); the tile at level-0 ``(x, y)`` lands on pixel
``(round(y / s0), round(x / s0))``; pixels without a tile are NaN. Files written per slide:

``<slide_id>.<name>.npy``   float32 grid
``<slide_id>.<name>.json``  ``slide_id``, ``shape``, ``downsample`` (level-0 px per map pixel = ``s0``),
                            ``tile_size``, ``level``, ``mpp`` (µm per map pixel), ``normalization``,
                            ``color_range``, ``n_tiles``, ``background`` (``"thumbnail"`` or ``"none"``)
``<slide_id>.<name>.png``   the map in colour over the slide thumbnail (over white when the slide
                            file cannot be opened), with a title (slide id and map name), a colour
                            bar and the ground-truth cancer outline when the bag names a readable
                            mask (:func:`weakseg.maps.overlay.overlay_figure`; ``magma``, low scores
                            transparent, opacity rising with the score); ``legend=False`` writes
                            the bare blended image of the thumbnail's size instead
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_path, atomic_write_text
from .bags import Bag
from .errors import WeaksegError
from .resolution import Resolution

NORMALIZATIONS = ("raw", "rank")


def normalize_scores(scores: np.ndarray, method: str = "raw") -> np.ndarray:
    """``raw``: unchanged; ``rank``: percentile rank in [0, 1] within the slide (ties averaged).

    Raw attention is very peaked (a few tiles take most of the mass); ranks show its ordering.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if method == "raw":
        return s.astype(np.float32)
    if method != "rank":
        raise WeaksegError(f"unknown normalization {method!r}; choose one of {NORMALIZATIONS}")
    if s.size <= 1:
        return np.ones_like(s, dtype=np.float32)
    from scipy.stats import rankdata

    return ((rankdata(s, method="average") - 1) / (s.size - 1)).astype(np.float32)


def _slide_size(bag: Bag) -> tuple[tuple[int, int], bool]:
    """Level-0 ``(width, height)`` and whether the slide file could be opened."""
    path = bag.meta.slide_path
    if path and Path(path).is_file():
        from .slide import open_slide

        try:
            with open_slide(path) as slide:
                return tuple(int(v) for v in slide.dimensions), True  # type: ignore[return-value]
        except WeaksegError:
            pass
    if len(bag) == 0:
        return (0, 0), False
    ext = bag.coords.max(axis=0) + bag.patch_size
    return (int(ext[0]), int(ext[1])), False


def tile_grid(bag: Bag, scores: np.ndarray, slide_size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
    """``(grid, s0)``: ``scores`` placed on the slide's tile grid (NaN elsewhere) and its level-0 stride."""
    scores = np.asarray(scores, dtype=np.float32).ravel()
    if scores.shape != (len(bag),):
        raise WeaksegError(f"{bag.path}: got {scores.size} scores for {len(bag)} tiles")
    s0 = float(bag.meta.stride) * Resolution.from_bag_meta(bag.meta).downsample
    w0, h0 = slide_size if slide_size is not None else _slide_size(bag)[0]
    cols = np.rint(bag.coords[:, 0] / s0).astype(np.int64)
    rows = np.rint(bag.coords[:, 1] / s0).astype(np.int64)
    shape = (max(math.ceil(h0 / s0), int(rows.max(initial=-1)) + 1, 1),
             max(math.ceil(w0 / s0), int(cols.max(initial=-1)) + 1, 1))
    grid = np.full(shape, np.nan, dtype=np.float32)
    grid[rows, cols] = scores
    return grid, s0


def _colorize(grid: np.ndarray, vmin: float, vmax: float, cmap: str) -> np.ndarray:
    import matplotlib

    span = vmax - vmin if vmax > vmin else 1.0
    rgba = matplotlib.colormaps[cmap](np.clip((np.nan_to_num(grid, nan=vmin) - vmin) / span, 0, 1))
    rgba[..., 3] = np.where(np.isnan(grid), 0.0, 1.0)
    return (rgba * 255).astype(np.uint8)


def _render(grid: np.ndarray, thumb: np.ndarray | None, vmin: float, vmax: float, cmap: str, alpha: float,
            max_side: int) -> np.ndarray:
    color = _colorize(grid, vmin, vmax, cmap)
    if thumb is None:
        scale = max(1, max_side // max(grid.shape))
        size = (grid.shape[1] * scale, grid.shape[0] * scale)
        base = np.full((size[1], size[0], 3), 255, np.uint8)
    else:
        base = thumb
        size = (thumb.shape[1], thumb.shape[0])
    over = np.asarray(Image.fromarray(color, "RGBA").resize(size, Image.Resampling.NEAREST)).astype(np.float32)
    a = over[..., 3:4] / 255.0 * (alpha if thumb is not None else 1.0)
    return (base.astype(np.float32) * (1 - a) + over[..., :3] * a).round().astype(np.uint8)


def _legend_png(path: Path, bag: Bag, grid: np.ndarray, thumb: np.ndarray | None, vmin: float, vmax: float,
                cmap: str, alpha: float, max_side: int, normalization: str, title: str, name: str) -> None:
    """The readable figure: map over the thumbnail (or white), colour bar, ground-truth outline, title."""
    from .maps.overlay import overlay_figure, truth_outline

    if thumb is None:
        scale = max(1, max_side // max(grid.shape))
        thumb = np.full((grid.shape[0] * scale, grid.shape[1] * scale, 3), 255, np.uint8)
        notes = ["slide file not found: no thumbnail"]
    else:
        notes = []
    truth = None
    if bag.meta.mask_path and thumb is not None and Path(bag.meta.mask_path).is_file() and notes == []:
        try:
            truth = truth_outline(bag.meta.mask_path, bag.meta.data_provider, max(thumb.shape[:2]))
        except Exception as err:  # noqa: BLE001 - the outline is an aid, never a reason to lose the map
            notes.append(f"ground truth unreadable: {type(err).__name__}")
    label = f"{name}" + (" (rank within the slide)" if normalization == "rank" else "")
    overlay_figure(path, thumb, grid, title=title, truth=truth, threshold=None, vmin=vmin, vmax=vmax,
                   transparent_below=vmin, opaque_from=vmax, alpha=max(alpha, 0.75), cmap=cmap, label=label,
                   nearest=True, notes=notes)


def write_tile_score_map(
    bag: Bag | str | os.PathLike,
    scores: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    name: str = "tile_scores",
    normalization: str = "raw",
    cmap: str = "magma",
    alpha: float = 0.5,
    max_side: int = 1024,
    legend: bool = True,
    title: str | None = None,
) -> dict[str, Path]:
    """Write one slide's tile-score map (see module doc); returns ``{"grid", "meta", "png"}`` paths.

    ``normalization="rank"`` is recommended for attention scores. The colour range is [0, 1] for
    ranks and for scores already in [0, 1], else the scores' min and max. ``title`` defaults to
    ``"<slide id> · <name>"``; ``legend=False`` writes the bare image (no title, colour bar or outline).
    """
    own = not isinstance(bag, Bag)
    bag = Bag(bag) if own else bag
    try:
        values = normalize_scores(scores, normalization)
        (w0, h0), has_slide = _slide_size(bag)
        grid, s0 = tile_grid(bag, values, (w0, h0))
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        vmin, vmax = (0.0, 1.0) if normalization == "rank" or (lo >= 0 and hi <= 1) else (lo, hi)
        thumb = None
        if has_slide:
            from .slide import open_slide

            with open_slide(bag.meta.slide_path) as slide:
                thumb = slide.thumbnail(max_side)
        out = Path(out_dir)
        stem = f"{bag.slide_id}.{name}"
        paths = {"grid": out / f"{stem}.npy", "meta": out / f"{stem}.json", "png": out / f"{stem}.png"}
        with atomic_path(paths["grid"]) as tmp, open(tmp, "wb") as f:
            np.save(f, grid)
        res = Resolution.from_bag_meta(bag.meta)  # the tiles' resolution; one map pixel = one stride
        meta = {
            "slide_id": bag.slide_id, "shape": list(grid.shape), "downsample": s0,
            "tile_size": bag.tile_size, "level": res.level,
            "mpp": res.mpp * bag.meta.stride if res.mpp is not None else None, "normalization": normalization,
            "color_range": [vmin, vmax], "cmap": cmap, "n_tiles": len(bag),
            "background": "thumbnail" if thumb is not None else "none", "legend": legend,
        }
        atomic_write_text(paths["meta"], json.dumps(meta, indent=2) + "\n")
        if legend:
            _legend_png(paths["png"], bag, grid, thumb, vmin, vmax, cmap, alpha, max_side, normalization,
                        title or f"{bag.slide_id} · {name}", name)
        else:
            image = _render(grid, thumb, vmin, vmax, cmap, alpha, max_side)
            with atomic_path(paths["png"]) as tmp:
                Image.fromarray(image).save(tmp, format="PNG")
        return paths
    finally:
        if own:
            bag.close()
