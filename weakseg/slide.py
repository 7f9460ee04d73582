"""Whole-slide image reader: OpenSlide plus pixel-size resolution and bounded-memory helpers.

Pixel size (µm per level-0 pixel) is resolved in this order:

1. ``openslide.mpp-x`` (vendor metadata; OpenSlide ≥ 4 also maps TIFF resolution tags there),
2. ``tiff.XResolution`` with ``tiff.ResolutionUnit`` ``centimeter`` or ``inch``,
3. the caller's ``mpp_override`` (CLI ``--slide-mpp``).

A slide with none of these raises :class:`~weakseg.errors.SlideError` naming the file when
:attr:`SlideReader.mpp` is first used; every other operation works without a pixel size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from .errors import SlideError

#: Relative tolerance within which a level's pixel size counts as equal to a target.
MPP_TOLERANCE = 0.02
#: Rows read per band when building a thumbnail from a large level.
_BAND_PIXELS = 1 << 24


def resolve_mpp(props: Mapping[str, str], mpp_override: float | None = None) -> float | None:
    """Level-0 µm/px from OpenSlide properties (see module doc), or ``None`` when unknown."""
    try:
        mpp = float(props.get("openslide.mpp-x", "nan"))
    except ValueError:
        mpp = float("nan")
    if np.isfinite(mpp) and mpp > 0:
        return mpp
    unit = props.get("tiff.ResolutionUnit", "").lower()
    scale = {"centimeter": 1e4, "inch": 25400.0}.get(unit)
    try:
        xres = float(props.get("tiff.XResolution", "nan"))
    except ValueError:
        xres = float("nan")
    if scale is not None and np.isfinite(xres) and xres > 1:
        return scale / xres
    if mpp_override is not None:
        return float(mpp_override)
    return None


def rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    """Composite an ``(h, w, 4)`` straight-alpha RGBA array onto white."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3:4]
    if alpha.min(initial=255) == 255:
        return np.ascontiguousarray(rgb)
    a = alpha.astype(np.uint16)
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


class SlideReader:
    """A whole-slide image opened with OpenSlide (context manager).

    ``read_region`` returns RGB composited on white; ``thumbnail`` never reads more than one
    band of a level at a time, so it is safe on single-level gigapixel slides.
    """

    def __init__(self, path: str | os.PathLike, *, mpp_override: float | None = None) -> None:
        self.path = Path(path)
        if mpp_override is not None and not (np.isfinite(mpp_override) and mpp_override > 0):
            raise SlideError(f"{self.path}: slide mpp override must be a positive number, got {mpp_override}")
        if not self.path.is_file():
            raise SlideError(f"{self.path}: no such slide file")
        try:
            self._osr = openslide.OpenSlide(str(self.path))
        except openslide.OpenSlideUnsupportedFormatError as err:
            raise SlideError(f"{self.path}: format not supported by OpenSlide ({err})") from err
        except openslide.OpenSlideError as err:
            raise SlideError(f"{self.path}: cannot open slide ({err})") from err
        self.dimensions: tuple[int, int] = tuple(self._osr.dimensions)  # type: ignore[assignment]
        self.level_count: int = self._osr.level_count
        self.level_dimensions: list[tuple[int, int]] = [tuple(d) for d in self._osr.level_dimensions]  # type: ignore[misc]
        self.level_downsamples: list[float] = [float(d) for d in self._osr.level_downsamples]
        self.properties: dict[str, str] = dict(self._osr.properties)
        self._mpp = resolve_mpp(self.properties, mpp_override)

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        self._osr.close()

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SlideReader({str(self.path)!r}, dimensions={self.dimensions}, levels={self.level_count})"

    # -- geometry ----------------------------------------------------------------------
    @property
    def has_mpp(self) -> bool:
        return self._mpp is not None

    @property
    def mpp(self) -> float:
        """Level-0 µm/px; :class:`SlideError` when unknown and no override was given."""
        if self._mpp is None:
            raise SlideError(
                f"{self.path}: pixel size unknown (no openslide.mpp-x, no tiff.XResolution with a "
                "centimeter/inch unit); pass it with --slide-mpp / mpp_override"
            )
        return self._mpp

    def level_mpp(self, level: int) -> float:
        return self.mpp * self.level_downsamples[self._check_level(level)]

    def best_level_for_mpp(self, mpp: float) -> int:
        """Coarsest level whose pixel size is ≤ ``mpp`` (within :data:`MPP_TOLERANCE`)."""
        if not mpp > 0:
            raise SlideError(f"{self.path}: target mpp must be positive, got {mpp}")
        ok = [k for k in range(self.level_count) if self.level_mpp(k) <= mpp * (1 + MPP_TOLERANCE)]
        if not ok:
            raise SlideError(
                f"{self.path}: target {mpp:g} µm/px is finer than level 0 ({self.mpp:g} µm/px); "
                "weakseg does not upsample"
            )
        return max(ok, key=lambda k: self.level_downsamples[k])

    def _check_level(self, level: int) -> int:
        if not 0 <= level < self.level_count:
            raise SlideError(f"{self.path}: level {level} out of range 0..{self.level_count - 1}")
        return level

    # -- pixels ------------------------------------------------------------------------
    def read_region(self, xy_level0: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """``(h, w, 3)`` uint8 RGB of ``size=(w, h)`` level pixels at level-0 ``(x, y)``; white outside."""
        self._check_level(level)
        try:
            img = self._osr.read_region((int(xy_level0[0]), int(xy_level0[1])), level, (int(size[0]), int(size[1])))
        except openslide.OpenSlideError as err:
            raise SlideError(f"{self.path}: read failed at {xy_level0} level {level} ({err})") from err
        return rgba_to_rgb(np.asarray(img))

    def read_level(self, level: int) -> np.ndarray:
        """A whole level as RGB; only for levels small enough to hold (thumbnail levels)."""
        return self.read_region((0, 0), level, self.level_dimensions[level])

    def thumbnail(self, max_side: int, *, labels: bool = False) -> np.ndarray:
        """RGB thumbnail whose longer side is at most ``max_side`` pixels, in bounded memory.

        Reads the coarsest level that is still at least as large as the thumbnail, in bands of
        rows, shrinking each band (box filter; nearest neighbour with ``labels=True``, for masks)
        before reading the next.
        """
        resample = Image.Resampling.NEAREST if labels else Image.Resampling.BOX
        w0, h0 = self.dimensions
        factor = max(w0, h0) / max_side
        out_w, out_h = max(1, round(w0 / max(factor, 1))), max(1, round(h0 / max(factor, 1)))
        adequate = [k for k in range(self.level_count) if max(self.level_dimensions[k]) >= max(out_w, out_h)]
        level = max(adequate, key=lambda k: self.level_downsamples[k]) if adequate else 0
        lw, lh = self.level_dimensions[level]
        if (lw, lh) == (out_w, out_h):
            return self.read_level(level)
        ds = self.level_downsamples[level]
        rows_per_band = max(1, _BAND_PIXELS // max(lw, 1))
        # Align bands to output rows so each output row comes from exactly one band.
        scale = lh / out_h
        rows_out_per_band = max(1, int(rows_per_band / scale))
        bands = []
        for oy in range(0, out_h, rows_out_per_band):
            oy1 = min(out_h, oy + rows_out_per_band)
            y0, y1 = round(oy * scale), min(lh, round(oy1 * scale))
            band = self.read_region((0, round(y0 * ds)), level, (lw, max(1, y1 - y0)))
            bands.append(np.asarray(Image.fromarray(band).resize((out_w, oy1 - oy), resample)))
        return np.concatenate(bands, axis=0)


def open_slide(path: str | os.PathLike, *, mpp_override: float | None = None) -> SlideReader:
    """Open a slide OpenSlide can read; :class:`SlideError` naming the file otherwise."""
    return SlideReader(path, mpp_override=mpp_override)
