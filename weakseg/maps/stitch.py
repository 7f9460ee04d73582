"""Streaming sliding-window stitching with smooth (sine-squared) blending.

Windows of ``window`` pixels are laid out every ``step`` pixels, band by band (one band = one
row of windows). Each window's prediction is block-averaged by ``downsample`` and added into a
rolling accumulator with a separable weight window; rows are emitted as soon as no later band
can touch them. Memory is ``O(window x width)``, independent of the slide height.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

#: ``predict_band(y, xs) -> (kept_xs, predictions)``: predict the windows whose top-left corners
#: are ``(x, y)`` for ``x`` in ``xs`` (read-level pixels); return the subset of ``xs`` actually
#: predicted (e.g. windows with tissue) and a float32 ``(len(kept_xs), window, window)`` array.
PredictBand = Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]]


def window_starts(length: int, window: int, step: int) -> np.ndarray:
    """Window origins ``0, step, 2*step, ...`` until a window reaches ``length`` (may overhang)."""
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    n = math.ceil(max(length - window, 0) / step) + 1
    return step * np.arange(n, dtype=np.int64)


def blend_window(size: int) -> np.ndarray:
    """Separable ``sin^2`` weights ``(size, size)``, strictly positive (edge pixels stay defined)."""
    w = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2
    return np.outer(w, w).astype(np.float32)


@dataclass(frozen=True)
class StitchGrid:
    """Geometry of a sliding-window pass over a ``height x width`` image (read-level pixels)."""

    height: int
    width: int
    window: int = 512
    step: int = 256
    downsample: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.step <= self.window:
            raise ValueError(f"step must lie in 1..window ({self.window}), got {self.step}")
        if self.window % self.downsample or self.step % self.downsample:
            raise ValueError(f"window ({self.window}) and step ({self.step}) must be multiples of downsample ({self.downsample})")

    @property
    def out_shape(self) -> tuple[int, int]:
        """Shape of the stitched map (``ceil(size / downsample)``)."""
        return -(-self.height // self.downsample), -(-self.width // self.downsample)

    @property
    def xs(self) -> np.ndarray:
        return window_starts(self.width, self.window, self.step)

    @property
    def ys(self) -> np.ndarray:
        return window_starts(self.height, self.window, self.step)


def stream_stitch(grid: StitchGrid, predict_band: PredictBand) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield finished strips ``(row0, values (h, W) float32, covered (h, W) bool)`` top to bottom.

    ``values`` is the weighted mean of all window predictions covering a pixel (0 where no
    predicted window covers it, which ``covered`` marks False). Strips tile the output map.
    """
    d = grid.downsample
    h_out, w_out = grid.out_shape
    wo, so = grid.window // d, grid.step // d
    weight = blend_window(wo)
    pad_w = int(grid.xs[-1]) // d + wo  # accumulator width incl. the overhang of the last window
    acc = np.zeros((wo, pad_w), dtype=np.float32)
    wsum = np.zeros((wo, pad_w), dtype=np.float32)
    ys = grid.ys
    for i, y in enumerate(ys):
        kept, preds = predict_band(int(y), grid.xs)
        preds = np.asarray(preds, dtype=np.float32)
        if len(kept) != len(preds):
            raise ValueError(f"predict_band returned {len(preds)} predictions for {len(kept)} windows at y={y}")
        for x, p in zip(np.asarray(kept, dtype=np.int64), preds):
            if p.shape != (grid.window, grid.window):
                raise ValueError(f"window prediction at ({x}, {y}) has shape {p.shape}, expected {(grid.window,) * 2}")
            if d > 1:
                p = p.reshape(wo, d, wo, d).mean(axis=(1, 3))
            xo = int(x) // d
            acc[:, xo : xo + wo] += p * weight
            wsum[:, xo : xo + wo] += weight
        y0 = int(y) // d
        last = i == len(ys) - 1
        n_rows = min(wo if last else so, h_out - y0)
        if n_rows > 0:
            covered = wsum[:n_rows, :w_out] > 0
            values = np.divide(acc[:n_rows, :w_out], wsum[:n_rows, :w_out], out=np.zeros((n_rows, w_out), np.float32), where=covered)
            yield y0, values, covered
        if not last:
            acc[:-so] = acc[so:]
            acc[-so:] = 0
            wsum[:-so] = wsum[so:]
            wsum[-so:] = 0
