"""Look at bags: a per-bag summary (``weakseg info``) and a slide overview image (``weakseg show``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bags import Bag, list_bags
from .errors import BagError
from .figures import FIGURE_FORMATS, image_format, save_figure
from .panda import BENIGN, CANCER, to_common_labels
from .slide import open_slide

#: Longest side of the ``show`` thumbnail.
SHOW_MAX_SIDE = 2048


@dataclass
class BagSummary:
    """What ``weakseg info`` prints for one bag."""

    path: Path
    slide_id: str
    n_tiles: int
    label: int
    provider: str
    isup: int
    tile_size: int
    mpp: float
    level: int
    codec: str
    mean_coverage: float
    cancer_fraction: float | None  # mean over tiles of the cancer share (bags with masks)
    cancer_tiles: int | None  # tiles holding any cancer
    size_bytes: int

    @property
    def bytes_per_tile(self) -> float:
        return self.size_bytes / max(self.n_tiles, 1)


def summarize_bag(path: str | os.PathLike) -> BagSummary:
    """Summary of one bag (reads only attributes and small per-tile arrays)."""
    path = Path(path)
    with Bag(path) as bag:
        meta = bag.meta
        cf = bag.cancer_fraction
        codec = bag.codec + ("/passthrough" if meta.extra.get("jpeg_passthrough") else "")
        return BagSummary(
            path=path, slide_id=meta.slide_id, n_tiles=len(bag), label=int(meta.label), provider=meta.data_provider,
            isup=int(meta.isup_grade), tile_size=int(meta.tile_size), mpp=float(meta.mpp), level=int(meta.level),
            codec=codec, mean_coverage=float(bag.coverage.mean()) if len(bag) else 0.0,
            cancer_fraction=float(cf.mean()) if cf is not None and len(cf) else None,
            cancer_tiles=int((cf > 0).sum()) if cf is not None else None,
            size_bytes=path.stat().st_size,
        )


def summarize(source: str | os.PathLike, *, failures: list[tuple[Path, str]] | None = None) -> list[BagSummary]:
    """Summaries of a bag or of every bag in a folder.

    With a ``failures`` list, a bag that cannot be read is appended to it as ``(path, message)``
    and the other bags are still summarized; without one, its error propagates.
    """
    paths = list_bags(source)
    if not paths:
        raise BagError(f"{source}: no bags ({'*.h5'}) found")
    out = []
    for p in paths:
        try:
            out.append(summarize_bag(p))
        except Exception as err:  # one unreadable bag never hides the others
            if failures is None:
                raise
            failures.append((p, " ".join(str(err).split()) or type(err).__name__))
    return out


def render_overview(bag_path: str | os.PathLike, out: str | os.PathLike, *, max_side: int = SHOW_MAX_SIDE,
                    legend: bool = True) -> Path:
    """Write an image: slide thumbnail, kept tiles outlined, mask outline (tissue green, cancer red).

    The format follows ``out``'s suffix (``.png``, ``.jpg``, ``.tif``, ``.webp``, ``.pdf``, ``.svg``);
    another suffix is a :class:`WeaksegError` before anything is read.

    Uses the bag's ``slide_path`` and ``mask_path``; the mask outline is drawn from the mask's
    own thumbnail, so the image shows the whole annotation, not only the kept tiles. With
    ``legend`` (the default) a title (slide id, provider, ISUP, tiles and their size) and a legend
    of the outlines frame the thumbnail; ``legend=False`` gives the thumbnail alone.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle
    from PIL import Image

    image_format(out, FIGURE_FORMATS)  # refuse an unknown suffix before any work
    with Bag(bag_path) as bag:
        meta, coords, patch = bag.meta, bag.coords, bag.patch_size
    if not meta.slide_path:
        raise BagError(f"{bag_path}: bag has no slide_path attribute")
    with open_slide(meta.slide_path) as slide:
        thumb = slide.thumbnail(max_side)
        w0, h0 = slide.dimensions
    sx, sy = thumb.shape[1] / w0, thumb.shape[0] / h0
    w, h = thumb.shape[1], thumb.shape[0]
    scale = max(1.0, 480 / w) if legend else 1.0
    iw, ih = w * scale, h * scale
    pad, top, bottom = (8, 26, 30) if legend else (0, 0, 0)
    fw, fh = iw + 2 * pad, ih + top + bottom
    fig = Figure(figsize=(fw / 100, fh / 100), dpi=100)
    ax = fig.add_axes((pad / fw, bottom / fh, iw / fw, ih / fh))
    ax.imshow(thumb, interpolation="nearest" if scale > 1 else "antialiased")
    ax.set_axis_off()
    rects = [Rectangle((x * sx, y * sy), patch * sx, patch * sy) for x, y in coords]
    ax.add_collection(PatchCollection(rects, facecolor="none", edgecolor="#1f3fff", linewidth=0.4, alpha=0.7))
    handles = [Patch(facecolor="none", edgecolor="#1f3fff", label=f"kept tiles ({len(coords)})")]
    if meta.mask_path and Path(meta.mask_path).is_file():
        with open_slide(meta.mask_path) as mask:
            raw = mask.thumbnail(max_side, labels=True)[..., 0]
        raw = np.asarray(Image.fromarray(raw).resize((w, h), Image.Resampling.NEAREST))
        common = to_common_labels(raw, meta.data_provider)
        for value, color, name in ((BENIGN, "#00c000", "tissue (mask)"), (CANCER, "#ff0000", "cancer (mask)")):
            region = (common >= value).astype(float)
            if region.any():
                ax.contour(region, levels=[0.5], colors=[color], linewidths=1.0)
            handles.append(Line2D([], [], color=color, lw=1.5, label=name))
    else:
        handles.append(Line2D([], [], lw=0, label="no mask: tiles chosen by the tissue detector"))
    if legend:
        isup = f", ISUP {meta.isup_grade}" if meta.isup_grade is not None and meta.isup_grade >= 0 else ""
        provider = f", {meta.data_provider}" if meta.data_provider else ""
        tile = f", {meta.tile_size}-px tiles" + (f" at {meta.mpp:.2f} µm/px" if np.isfinite(meta.mpp) else "")
        fig.text(0.5, 1 - 4 / fh, f"{meta.slide_id}{provider}{isup}{tile}", ha="center", va="top", fontsize=10)
        lax = fig.add_axes((pad / fw, 0, iw / fw, (bottom - 2) / fh))
        lax.set_axis_off()
        lax.legend(handles=handles, loc="center", ncols=len(handles), fontsize=8, frameon=False, borderaxespad=0,
                   handlelength=1.8, columnspacing=1.2)
    return save_figure(fig, out)
