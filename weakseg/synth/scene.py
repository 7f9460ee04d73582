"""Analytic description of one synthetic needle-biopsy slide (no pixel arrays).

A :class:`SlideScene` holds everything needed to paint any region at any resolution:
tissue cores (slightly curved bands), cancer segments along them (Gleason pattern 3/4/5),
glands (centres, radii, shapes, kind) with a grid index, pen strokes and stain colours.
All lengths are level-0 pixels; :func:`weakseg.synth.layout.make_scene` builds one from a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..panda import gleason_to_isup

GENERATOR_VERSION = "weakseg-synth 1"
DOWNSAMPLES = (1, 4, 16)
BENIGN = 0


@dataclass(frozen=True)
class Core:
    """A biopsy core: a band of half-width ``half_width`` around a gently curved centreline.

    In the core frame (``u`` along the axis from the centre, ``v`` across), the centreline is
    ``v = bend * u**2 + wave * sin(2*pi*u/wave_period + wave_phase)``; the band has rounded ends
    and may be broken by ``gaps``: slanted cracks ``(u_centre, half_width, slope)`` across it.
    """

    cx: float
    cy: float
    angle: float
    length: float
    half_width: float
    bend: float
    wave: float
    wave_period: float
    wave_phase: float
    width_wave: float
    width_phase: float
    gaps: tuple[tuple[float, float, float], ...] = ()

    def frame(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Core coordinates ``(u, v_rel)``: along the axis, and across relative to the centreline."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        u = dx * c + dy * s
        v = dy * c - dx * s
        v_rel = v - self.bend * u * u - self.wave * np.sin(2 * np.pi * u / self.wave_period + self.wave_phase)
        return u, v_rel

    def half_width_at(self, u: np.ndarray) -> np.ndarray:
        return self.half_width * (1.0 + self.width_wave * np.sin(2 * np.pi * u / (0.7 * self.wave_period) + self.width_phase))

    def signed_distance(self, u: np.ndarray, v_rel: np.ndarray, half_width: np.ndarray) -> np.ndarray:
        """Approximate signed distance to the outline (negative inside), given :meth:`half_width_at`."""
        ends = np.maximum(np.abs(u) - (0.5 * self.length - self.half_width), 0.0)
        sd = np.sqrt(ends * ends + v_rel * v_rel) - half_width
        for centre, gap, slope in self.gaps:
            sd = np.maximum(sd, gap - np.abs(u - centre - slope * v_rel))
        return sd

    def to_slide(self, u: np.ndarray, v_rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`frame`."""
        v = v_rel + self.bend * u * u + self.wave * np.sin(2 * np.pi * u / self.wave_period + self.wave_phase)
        c, s = math.cos(self.angle), math.sin(self.angle)
        return self.cx + u * c - v * s, self.cy + u * s + v * c

    @cached_property
    def bbox(self) -> tuple[float, float, float, float]:
        """Level-0 ``(x0, y0, x1, y1)`` enclosing the core, with a margin for ragged edges."""
        u = np.linspace(-0.5 * self.length, 0.5 * self.length, 257)
        reach = self.half_width * (1.0 + abs(self.width_wave)) + 32.0
        xs, ys = [], []
        for v in (-reach, reach):
            x, y = self.to_slide(u, np.full_like(u, v))
            xs.append(x)
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        return float(x.min() - reach), float(y.min() - reach), float(x.max() + reach), float(y.max() + reach)


@dataclass(frozen=True)
class CancerSegment:
    """A stretch of core ``core`` between two parallel wavy cross-cuts at ``u0`` and ``u1``, of one pattern."""

    core: int
    u0: float
    u1: float
    pattern: int
    cut_wave: float
    cut_period: float
    cut_phase: float

    def cut_shift(self, v_rel: np.ndarray) -> np.ndarray:
        """How far the wavy cross-cuts are displaced along the core at ``v_rel``."""
        return self.cut_wave * np.sin(2 * np.pi * v_rel / self.cut_period + self.cut_phase)

    def contains(self, u: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """Membership given the along-core coordinate and :meth:`cut_shift` of each point."""
        return (u > self.u0 + shift) & (u < self.u1 + shift)

    def contains_coarse(self, u: np.ndarray, margin: float) -> np.ndarray:
        """A pathologist-style outline: the straight stretch widened by ``margin``."""
        return (u > self.u0 - margin) & (u < self.u1 + margin)


@dataclass(frozen=True)
class PenStroke:
    """A felt-pen ink stroke: a polyline of level-0 points drawn ``width`` wide."""

    points: np.ndarray
    width: float
    transmittance: tuple[float, float, float]
    opacity: float

    @cached_property
    def bbox(self) -> tuple[float, float, float, float]:
        (x0, y0), (x1, y1) = self.points.min(0), self.points.max(0)
        r = self.width
        return float(x0 - r), float(y0 - r), float(x1 + r), float(y1 + r)


@dataclass
class Glands:
    """Struct of arrays, one entry per gland, with a grid-bucket index for region queries.

    ``kind`` is 0 (benign), 3 (small discrete gland) or 4 (fused / cribriform blob). The outer
    outline is an ellipse of mean radius ``radius`` and ``aspect`` ratio, rotated by ``angle``,
    whose radius wobbles by ``wobble * sin(lobes * theta + phase)``; the lumen is the same
    shape scaled by ``lumen`` (0: no single lumen) with papillary ``lumen_wobble``.
    """

    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    aspect: np.ndarray
    angle: np.ndarray
    wobble: np.ndarray
    lobes: np.ndarray
    phase: np.ndarray
    lumen: np.ndarray
    lumen_wobble: np.ndarray
    kind: np.ndarray
    cell: float = 512.0
    _index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return int(self.x.size)

    @cached_property
    def reach(self) -> np.ndarray:
        """Radius of a circle around each centre containing the whole gland."""
        return self.radius * np.sqrt(self.aspect) * (1.0 + self.wobble) + 2.0

    def _build_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        reach = self.reach
        cx0 = np.floor((self.x - reach) / self.cell).astype(np.int64)
        cx1 = np.floor((self.x + reach) / self.cell).astype(np.int64)
        cy0 = np.floor((self.y - reach) / self.cell).astype(np.int64)
        cy1 = np.floor((self.y + reach) / self.cell).astype(np.int64)
        keys, ids = [], []
        for ox in range(int((cx1 - cx0).max(initial=0)) + 1):
            for oy in range(int((cy1 - cy0).max(initial=0)) + 1):
                ok = (cx0 + ox <= cx1) & (cy0 + oy <= cy1)
                keys.append(_cell_key(cx0[ok] + ox, cy0[ok] + oy))
                ids.append(np.nonzero(ok)[0])
        key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        idx = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        order = np.argsort(key, kind="stable")
        key, idx = key[order], idx[order]
        uniq, start = np.unique(key, return_index=True)
        return uniq, np.append(start, key.size), idx

    def query(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Sorted indices of glands that may touch the level-0 box ``[x0, x1) × [y0, y1)``."""
        if self._index is None:
            self._index = self._build_index()
        uniq, bounds, idx = self._index
        if uniq.size == 0:
            return np.zeros(0, np.int64)
        cx = np.arange(math.floor(x0 / self.cell), math.floor(x1 / self.cell) + 1)
        cy = np.arange(math.floor(y0 / self.cell), math.floor(y1 / self.cell) + 1)
        wanted = _cell_key(np.repeat(cx, cy.size), np.tile(cy, cx.size))
        pos = np.searchsorted(uniq, wanted)
        pos = pos[(pos < uniq.size) & (uniq[np.minimum(pos, uniq.size - 1)] == wanted)]
        if pos.size == 0:
            return np.zeros(0, np.int64)
        hits = np.concatenate([idx[bounds[p] : bounds[p + 1]] for p in pos])
        hits = np.unique(hits)
        reach = self.reach[hits]
        near = (
            (self.x[hits] + reach > x0)
            & (self.x[hits] - reach < x1)
            & (self.y[hits] + reach > y0)
            & (self.y[hits] - reach < y1)
        )
        return hits[near]


def _cell_key(cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    return cx.astype(np.int64) * 1_000_003 + cy.astype(np.int64)


@dataclass(frozen=True)
class Stain:
    """Per-slide H&E appearance: RGB of one unit of eosin / haematoxylin over white, intensity."""

    eosin: tuple[float, float, float]
    haematoxylin: tuple[float, float, float]
    strength: float
    glass: float


@dataclass
class SlideScene:
    """Everything needed to render one slide and its label mask, derived from ``seed``."""

    seed: int
    width: int
    height: int
    provider: str
    mpp: float
    cores: tuple[Core, ...]
    segments: tuple[CancerSegment, ...]
    glands: Glands
    pens: tuple[PenStroke, ...]
    stain: Stain
    gleason: tuple[int, int]
    blank: bool = False

    @property
    def gleason_score(self) -> str:
        """PANDA spelling: ``"4+3"``; no cancer is ``"negative"`` (Radboud) or ``"0+0"`` (Karolinska)."""
        if not self.segments:
            return "negative" if self.provider == "radboud" else "0+0"
        return f"{self.gleason[0]}+{self.gleason[1]}"

    @property
    def isup_grade(self) -> int:
        return gleason_to_isup(self.gleason_score)

    @property
    def has_cancer(self) -> bool:
        return bool(self.segments)

    def describe(self) -> str:
        """The TIFF ImageDescription: generator version and the parameters that made the slide."""
        return (
            f"{GENERATOR_VERSION}|seed={self.seed}|provider={self.provider}|mpp={self.mpp}"
            f"|gleason={self.gleason[0]}+{self.gleason[1]}|cores={len(self.cores)}|pens={len(self.pens)}"
        )
