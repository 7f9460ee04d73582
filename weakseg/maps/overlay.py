"""Overlays of a probability (or score) map over a slide thumbnail, as plain images or readable figures.

:func:`blend_overlay` gives the bare image (the thumbnail's size). :func:`overlay_figure` gives what a
pathologist reads: the map in a perceptual colour map (``magma``) that is transparent on low values, so
benign tissue keeps its own colours, a colour bar with the values, the ground-truth outline where a mask
exists, the predicted outline at the decision threshold, and a title (slide id and method).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image
from skimage.transform import resize

from ..atomic import atomic_path

#: Colour map of the readable overlays: perceptually uniform, dark (low) to light yellow (high).
OVERLAY_CMAP = "magma"
#: Ground-truth cancer outline and predicted outline (at the threshold): both stand out on magma and H&E.
TRUTH_COLOR, PREDICTION_COLOR = "#00e060", "#19d3ff"


def blend_overlay(
    thumbnail: np.ndarray, prob: np.ndarray, covered: np.ndarray | None = None, *, alpha: float = 0.5, cmap: str = "inferno",
    transparent_below: float | None = None, opaque_from: float | None = None, nearest: bool = False,
) -> np.ndarray:
    """RGB uint8 image of ``prob`` (0..1) coloured with ``cmap`` over ``thumbnail``.

    The image has the thumbnail's size (the map is resized onto it, never the thumbnail shrunk to a
    small map); pixels outside ``covered`` (or NaN) show the thumbnail only. With
    ``transparent_below`` the map is fully transparent at values ≤ it and its opacity rises linearly
    to ``alpha`` at ``opaque_from`` (default 1.0), so low-probability tissue is not darkened;
    without it (the default) every covered pixel is blended with ``alpha``. ``nearest`` resizes the
    map without interpolation (tile grids).
    """
    base = np.asarray(thumbnail, dtype=np.float32)[..., :3]
    rgb, opacity = _coloured(prob, base.shape[:2], covered, alpha, cmap, transparent_below, opaque_from, nearest)
    a = opacity[..., None]
    return np.clip(base * (1 - a) + rgb * 255 * a + 0.5, 0, 255).astype(np.uint8)


def _opacity(values: np.ndarray, alpha: float, low: float | None, high: float | None) -> np.ndarray:
    """Opacity of each value: ``alpha`` everywhere, or 0 up to ``low`` rising to ``alpha`` at ``high``."""
    if low is None:
        return np.full(values.shape, alpha, np.float32)
    high = 1.0 if high is None else high
    if high <= low:
        return np.where(values > low, alpha, 0.0).astype(np.float32)
    return (alpha * np.clip((values - low) / (high - low), 0, 1)).astype(np.float32)


def _coloured(prob: np.ndarray, shape: tuple[int, int], covered: np.ndarray | None, alpha: float, cmap: str,
              low: float | None, high: float | None, nearest: bool, vmin: float = 0.0, vmax: float = 1.0,
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb float 0..1, opacity)`` of the map resized onto ``shape``; NaN and uncovered pixels get opacity 0."""
    prob = np.asarray(prob, dtype=np.float32)
    missing = ~np.isfinite(prob)
    values = resize(np.where(missing, vmin, prob), shape, order=0 if nearest else 1, preserve_range=True,
                    anti_aliasing=False)
    keep = ~resize(missing, shape, order=0, preserve_range=True, anti_aliasing=False).astype(bool)
    if covered is not None:
        keep &= resize(np.asarray(covered, dtype=bool), shape, order=0, preserve_range=True, anti_aliasing=False).astype(bool)
    span = vmax - vmin if vmax > vmin else 1.0
    rgb = colormaps[cmap](np.clip((values - vmin) / span, 0, 1))[..., :3]
    opacity = np.where(keep, _opacity(values, alpha, low, high), 0.0).astype(np.float32)
    return rgb, opacity


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB or grayscale uint8 image as PNG, atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format="PNG")


def overlay_figure(
    path: str | os.PathLike,
    thumbnail: np.ndarray,
    values: np.ndarray,
    covered: np.ndarray | None = None,
    *,
    title: str | None = None,
    truth: np.ndarray | None = None,
    threshold: float | None = 0.5,
    vmin: float = 0.0,
    vmax: float = 1.0,
    transparent_below: float | None = 0.2,
    opaque_from: float | None = None,
    alpha: float = 0.65,
    cmap: str = OVERLAY_CMAP,
    label: str = "cancer probability",
    nearest: bool = False,
    notes: Sequence[str] = (),
    min_width: int = 480,
) -> Path:
    """Write a readable overlay figure (format from the suffix of ``path``, e.g. ``.png``).

    Args:
        thumbnail: RGB slide thumbnail; shown at one screen pixel per thumbnail pixel (scaled up to
            ``min_width`` when smaller).
        values: the map (any shape; resized onto the thumbnail, ``nearest`` for tile grids); NaN = none.
        covered: where the map is defined (outside: the thumbnail only).
        title: e.g. ``"<slide id> · <method>"``.
        truth: ground-truth cancer (bool, any shape, resized nearest): outlined in green.
        threshold: the decision threshold: values ≥ it are outlined in blue and marked on the colour bar
            (``None``: no outline).
        vmin, vmax: the colour range. transparent_below / opaque_from: opacity ramp (see
            :func:`blend_overlay`; ``opaque_from`` defaults to ``threshold``, else ``vmax``).
        label: colour bar label. notes: extra lines of the legend (e.g. ``"no ground truth"``).
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from ..figures import save_figure

    base = np.asarray(thumbnail, dtype=np.float32)[..., :3]
    h, w = base.shape[:2]
    high = opaque_from if opaque_from is not None else (threshold if threshold is not None else vmax)
    rgb, opacity = _coloured(values, (h, w), covered, alpha, cmap, transparent_below, high, nearest, vmin, vmax)
    image = np.clip(base * (1 - opacity[..., None]) + rgb * 255 * opacity[..., None] + 0.5, 0, 255).astype(np.uint8)

    scale = max(1.0, min_width / max(w, 1))
    iw, ih = w * scale, h * scale
    pad, top, bottom = 8, 26 if title else 8, 62
    fw, fh = iw + 2 * pad, ih + top + bottom
    fig = Figure(figsize=(fw / 100, fh / 100), dpi=100)
    ax = fig.add_axes((pad / fw, bottom / fh, iw / fw, ih / fh))
    ax.imshow(image, interpolation="nearest" if scale > 1 else "antialiased")
    ax.set_axis_off()
    if title:
        fig.text(0.5, 1 - 4 / fh, title, ha="center", va="top", fontsize=10)

    handles = []
    if truth is not None:
        t = resize(np.asarray(truth, dtype=bool), (h, w), order=0, preserve_range=True, anti_aliasing=False).astype(float)
        if t.any():
            ax.contour(t, levels=[0.5], colors=[TRUTH_COLOR], linewidths=1.2)
        handles.append(Line2D([], [], color=TRUTH_COLOR, lw=1.5, label="ground-truth cancer"))
    if threshold is not None:
        v = resize(np.nan_to_num(np.asarray(values, dtype=np.float32), nan=vmin), (h, w), order=0 if nearest else 1,
                   preserve_range=True, anti_aliasing=False)
        v = np.where(opacity > 0, v, vmin)
        if (v >= threshold).any():
            ax.contour(v, levels=[threshold], colors=[PREDICTION_COLOR], linewidths=1.0, linestyles="--")
        handles.append(Line2D([], [], color=PREDICTION_COLOR, lw=1.2, ls="--", label=f"predicted (≥ {threshold:g})"))
    handles += [Line2D([], [], lw=0, label=n) for n in notes]

    # colour bar: the colours and opacities the image uses, on white
    cw, cx = min(iw * 0.5, 360), pad + 10
    cax = fig.add_axes((cx / fw, 34 / fh, cw / fw, 12 / fh))
    ramp = np.linspace(vmin, vmax, 256, dtype=np.float32)
    span = vmax - vmin if vmax > vmin else 1.0
    bar_rgb = colormaps[cmap](np.clip((ramp - vmin) / span, 0, 1))[:, :3]
    bar_a = _opacity(ramp, alpha, transparent_below, high)[:, None]
    bar = (1 - bar_a) + bar_rgb * bar_a
    cax.imshow(bar[None], aspect="auto", extent=(vmin, vmax, 0, 1))
    cax.set_yticks([])
    cax.tick_params(axis="x", labelsize=8, length=2, pad=1)
    if threshold is not None and vmin < threshold < vmax:
        cax.axvline(threshold, color="#0a6e8a", lw=2.0)
    note = f" (clear ≤ {transparent_below:g})" if transparent_below is not None and transparent_below > vmin else ""
    cax.set_xlabel(label + note, fontsize=8, labelpad=1)
    if handles:
        lax = fig.add_axes(((cx + cw + 16) / fw, 2 / fh, max(1.0, iw - cw - 26) / fw, (bottom - 6) / fh))
        lax.set_axis_off()
        lax.legend(handles=handles, loc="center left", fontsize=8, frameon=False, handlelength=2.2, borderaxespad=0)
    return save_figure(fig, path)


def truth_outline(mask_path: str | os.PathLike, provider: str, max_side: int) -> np.ndarray:
    """Ground-truth cancer (bool) of a PANDA-style label mask, at thumbnail resolution (longer side ``max_side``)."""
    from ..panda import CANCER, to_common_labels
    from ..slide import open_slide

    with open_slide(mask_path) as mask:
        raw = mask.thumbnail(max_side, labels=True)[..., 0]
    return to_common_labels(raw, provider) == CANCER
