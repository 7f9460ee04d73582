"""One resolution contract for every slide read: tiling, slide maps, tile-score maps.

A :class:`Resolution` says where pixels come from and what one output pixel is:

``level``
    the pyramid level whose pixels are read;
``downsample``
    level-0 pixels per output pixel (= level downsample × resize factor);
``mpp``
    µm per output pixel (``None`` when the slide's pixel size is unknown).

When ``downsample`` equals the level's own downsample the level is used as stored; otherwise
(``weakseg tile --mpp`` with a target between levels) the level is resized by
:meth:`Resolution.resize_factor` level pixels per output pixel. Bags record a resolution as
their ``level``, ``downsample`` and ``mpp`` attributes (:meth:`Resolution.from_bag_meta`).

:class:`RegionReader` is the one reader of output-space regions: the box ``(x, y, w, h)`` in
output pixels covers the level box :meth:`Resolution.level_box` (rounded to whole level
pixels), which is read (stored TIFF tiles decoded directly when possible, else OpenSlide;
white past the level's edge, label 0 for masks) and resized to ``w × h`` (PIL bilinear for
pixels, nearest for masks). The tiler and the slide-map driver both read through it, so a map
window at a bag tile's position sees exactly that tile's pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .errors import SlideError

if TYPE_CHECKING:
    from .bags import BagMeta
    from .slide import SlideReader
    from .tiff_reader import TiffLevel

#: Relative difference below which a downsample counts as the level's own (no resize).
_SAME = 1e-9


@dataclass(frozen=True)
class Resolution:
    """Pyramid ``level`` read, level-0 pixels per output pixel, µm per output pixel (see module doc)."""

    level: int
    downsample: float
    mpp: float | None = None

    def __post_init__(self) -> None:
        if self.level < 0:
            raise SlideError(f"level must be ≥ 0, got {self.level}")
        if not (math.isfinite(self.downsample) and self.downsample > 0):
            raise SlideError(f"downsample must be a positive number, got {self.downsample}")
        if self.mpp is not None and not (math.isfinite(self.mpp) and self.mpp > 0):
            object.__setattr__(self, "mpp", None)

    # -- constructors ----------------------------------------------------------------------
    @classmethod
    def plan(cls, slide: SlideReader, level: int | None = None, mpp: float | None = None) -> Resolution:
        """The resolution to read ``slide`` at: a ``level`` as stored, or a target ``mpp``.

        A target within :data:`~weakseg.slide.MPP_TOLERANCE` of a level's pixel size reads that
        level as is; otherwise the nearest finer level is read and resized to exactly ``mpp``.
        Neither means level 0.
        """
        from .slide import MPP_TOLERANCE

        if level is not None and mpp is not None:
            raise SlideError(f"{slide.path}: give either a level or a target mpp, not both")
        if mpp is None:
            k = 0 if level is None else int(level)
            if not 0 <= k < slide.level_count:
                raise SlideError(f"{slide.path}: level {k} out of range 0..{slide.level_count - 1}")
            return cls(k, slide.level_downsamples[k], slide.level_mpp(k) if slide.has_mpp else None)
        k = slide.best_level_for_mpp(mpp)
        if abs(slide.level_mpp(k) / mpp - 1) <= MPP_TOLERANCE:
            return cls(k, slide.level_downsamples[k], slide.level_mpp(k))
        return cls(k, mpp / slide.mpp, float(mpp))

    @classmethod
    def from_bag_meta(cls, meta: BagMeta) -> Resolution:
        """The resolution of a bag's tiles (its ``level``, ``downsample`` and ``mpp`` attributes)."""
        mpp = float(meta.mpp) if meta.mpp is not None else None
        return cls(int(meta.level), float(meta.downsample), mpp)

    def with_level(self, level: int) -> Resolution:
        """The same output pixels read from another level (e.g. a mask's level)."""
        return replace(self, level=int(level))

    # -- geometry --------------------------------------------------------------------------
    @property
    def level0_mpp(self) -> float | None:
        """µm per level-0 pixel implied by ``mpp`` and ``downsample``."""
        return None if self.mpp is None else self.mpp / self.downsample

    def validate(self, slide: SlideReader) -> Resolution:
        """``self`` if ``slide`` can be read at it (level exists, no upsampling); else :class:`SlideError`."""
        if not 0 <= self.level < slide.level_count:
            raise SlideError(f"{slide.path}: level {self.level} out of range 0..{slide.level_count - 1}")
        if self.resize_factor(slide) < 1 - 1e-3:
            raise SlideError(
                f"{slide.path}: downsample {self.downsample:g} is finer than level {self.level} "
                f"({slide.level_downsamples[self.level]:g}); weakseg does not upsample"
            )
        return self

    def resize_factor(self, slide: SlideReader) -> float:
        """Level pixels per output pixel (1.0 when the level is read as stored)."""
        return self.downsample / slide.level_downsamples[self.level]

    def needs_resize(self, slide: SlideReader) -> bool:
        return abs(self.resize_factor(slide) - 1) > _SAME

    def dimensions(self, slide: SlideReader) -> tuple[int, int]:
        """Output-space ``(width, height)``: the level's own size, or level 0 divided by ``downsample``."""
        if not self.needs_resize(slide):
            return slide.level_dimensions[self.level]
        w0, h0 = slide.dimensions
        return math.floor(w0 / self.downsample), math.floor(h0 / self.downsample)

    def level_box(self, slide: SlideReader, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        """Level-pixel box ``(lx, ly, lw, lh)`` covering the output box ``(x, y, w, h)``.

        Corners are rounded to whole level pixels (the box may reach past the level's edge).
        """
        f = self.resize_factor(slide)
        if abs(f - 1) <= _SAME:
            return int(x), int(y), int(w), int(h)
        x0, y0 = round(x * f), round(y * f)
        x1, y1 = round((x + w) * f), round((y + h) * f)
        return x0, y0, max(1, x1 - x0), max(1, y1 - y0)

    def as_dict(self, slide: SlideReader | None = None) -> dict[str, Any]:
        """JSON-ready ``level``, ``downsample``, ``mpp`` (and ``resize`` when ``slide`` is given)."""
        out: dict[str, Any] = {"level": self.level, "downsample": self.downsample, "mpp": self.mpp}
        if slide is not None:
            out["resize"] = self.resize_factor(slide)
        return out


class RegionReader:
    """Reads output-space regions of one slide at one :class:`Resolution` (context manager).

    ``nearest=True`` is for label masks: nearest-neighbour resizing and ``fill`` 0 (background)
    instead of white (glass) where a box reaches past the level's edge. ``fast=False`` always
    goes through OpenSlide instead of decoding stored TIFF tiles (same pixels, tested).
    """

    def __init__(self, slide: SlideReader, res: Resolution, *, nearest: bool = False, fast: bool = True) -> None:
        from .tiff_reader import TiffPyramid

        self.slide = slide
        self.res = res.validate(slide)
        self.level = res.level
        self.level_downsample = slide.level_downsamples[res.level]
        self.factor = res.resize_factor(slide)
        self.resize = res.needs_resize(slide)
        self.level_size = slide.level_dimensions[res.level]
        self._resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
        self.fill = 0 if nearest else 255
        self._pyramid = TiffPyramid(slide.path, slide.level_dimensions) if fast else None
        self.fast: TiffLevel | None = self._pyramid.level(res.level) if self._pyramid is not None else None

    def close(self) -> None:
        if self._pyramid is not None:
            self._pyramid.close()

    def __enter__(self) -> RegionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def level_box(self, x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
        return self.res.level_box(self.slide, x, y, w, h)

    def read_level(self, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        """RGB ``(h, w, 3)`` of level pixels at level ``(lx, ly)``; ``fill`` outside the level."""
        lw, lh = self.level_size
        if lx >= 0 and ly >= 0 and lx + w <= lw and ly + h <= lh:
            return self._read_inside(lx, ly, w, h)
        out = np.full((h, w, 3), self.fill, np.uint8)
        x0, y0, x1, y1 = max(lx, 0), max(ly, 0), min(lx + w, lw), min(ly + h, lh)
        if x0 < x1 and y0 < y1:
            out[y0 - ly : y1 - ly, x0 - lx : x1 - lx] = self._read_inside(x0, y0, x1 - x0, y1 - y0)
        return out

    def _read_inside(self, lx: int, ly: int, w: int, h: int) -> np.ndarray:
        f = self.fast
        if f is not None and lx + w <= f.width and ly + h <= f.height:
            return f.read(lx, ly, w, h)
        ds = self.level_downsample
        return self.slide.read_region((round(lx * ds), round(ly * ds)), self.level, (w, h))

    def fit(self, region: np.ndarray, w: int, h: int) -> np.ndarray:
        """``region`` (a level box) resized to ``(h, w)`` output pixels the way tiles are."""
        if region.shape[:2] == (h, w):
            return region
        return np.asarray(Image.fromarray(np.ascontiguousarray(region)).resize((w, h), self._resample))

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB ``(h, w, 3)`` of the output-space box at output pixel ``(x, y)``."""
        return self.fit(self.read_level(*self.level_box(x, y, w, h)), w, h)


def read_region_at(
    slide: SlideReader, res: Resolution, x: int, y: int, w: int, h: int, *, nearest: bool = False
) -> np.ndarray:
    """RGB ``(h, w, 3)`` of output box ``(x, y, w, h)`` of ``slide`` at ``res`` (one-off :class:`RegionReader`)."""
    with RegionReader(slide, res, nearest=nearest) as reader:
        return reader.read(x, y, w, h)


__all__ = ["RegionReader", "Resolution", "read_region_at"]
