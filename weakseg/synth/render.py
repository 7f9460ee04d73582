"""Paint any region of a :class:`~weakseg.synth.scene.SlideScene` at any pyramid level.

``render(scene, x, y, w, h, downsample)`` returns the ``h × w`` RGB image whose pixel
``(i, j)`` covers level-0 ``[x + j*d, x + (j+1)*d) × [y + i*d, y + (i+1)*d)``; ``render_labels``
returns the provider's mask labels for the same pixels. Both evaluate the analytic scene
at the pixel centres, so every level is painted at its own resolution: outlines are
anti-aliased over one output pixel and sub-pixel texture fades to its mean colour, so a
coarse level matches a block-averaged finer one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import noise
from .scene import BENIGN, PenStroke, SlideScene

# Stain concentrations (units of the slide's eosin / haematoxylin colours).
_STROMA = (0.95, 0.07)
_EPITHELIUM = {False: (0.6, 0.22), True: (0.5, 0.5)}  # keyed by "cancer"
_NUCLEUS = {False: (0.25, 1.35), True: (0.3, 1.75)}
_LUMEN = (0.06, 0.02)
# Nuclear lattices: (spacing, radius, probability), level-0 px.
_EPI_NUCLEI = {False: (12.0, 3.4, 0.5), True: (10.0, 3.9, 0.6)}  # two offset lattices each
_STROMA_NUCLEI = (30.0, 2.6, 0.35)
_SINGLE_CELLS = (16.0, 3.8, 0.6)  # pattern 5: tumour cells infiltrating between the sheets
_CRIBRIFORM_HOLES = (26.0, 6.5, 0.6)
_EDGE_RAGGEDNESS = 7.0  # px amplitude of the noise added to core outlines
_COARSE_MARGIN = 0.35  # Karolinska outlines: margin in core half-widths
_PROBE = 16  # output-pixel stride of the sparse probe that skips far-away cores

# Noise fields, each hashed with its own salt mixed with the scene seed (see _salt).
_S_FIBRE, _S_FIBRE2, _S_EPI, _S_EPI_CANCER, _S_STROMA, _S_SINGLE = 10, 12, 20, 22, 30, 32
_S_HOLES, _S_SHEET, _S_GRAIN, _S_GLASS, _S_INK, _S_EDGE = 40, 42, 50, 52, 54, 100  # _S_EDGE + core index


@dataclass
class _Grid:
    """Level-0 pixel-centre coordinates of an output region: ``xs`` (columns), ``ys`` (rows)."""

    xs: np.ndarray
    ys: np.ndarray
    d: float

    @classmethod
    def of(cls, x: float, y: float, w: int, h: int, d: float) -> _Grid:
        return cls(x + (np.arange(w) + 0.5) * d, y + (np.arange(h) + 0.5) * d, d)

    @property
    def shape(self) -> tuple[int, int]:
        return self.ys.size, self.xs.size

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Level-0 ``(x0, y0, x1, y1)`` covered by the pixels."""
        h = 0.5 * self.d
        return self.xs[0] - h, self.ys[0] - h, self.xs[-1] + h, self.ys[-1] + h

    def crop(self, rows: slice, cols: slice) -> _Grid:
        return _Grid(self.xs[cols], self.ys[rows], self.d)


@dataclass
class _Fields:
    """Per-pixel geometry of a region: tissue coverage and point-sampled regions."""

    tissue: np.ndarray  # anti-aliased tissue coverage
    inside: np.ndarray  # point-sampled tissue
    pattern: np.ndarray  # point-sampled region: 0 benign, 3/4/5 Gleason pattern
    coarse: np.ndarray  # point-sampled Karolinska-style cancer outline

    def crop(self, rows: slice, cols: slice) -> _Fields:
        return _Fields(self.tissue[rows, cols], self.inside[rows, cols], self.pattern[rows, cols], self.coarse[rows, cols])


def _salt(scene: SlideScene, field: int) -> int:
    """Salt of one noise field of one scene: slides never share textures."""
    return (scene.seed * 0x2545F4914F6CDD1D + field) & 0xFFFFFFFFFFFFFFFF


def _band(sd: np.ndarray, d: float) -> np.ndarray:
    """Coverage of ``sd < 0`` over a pixel ``d`` wide (box filter across a straight edge)."""
    return np.clip(0.5 - sd / d, 0.0, 1.0).astype(np.float32, copy=False)


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


def _geometry(scene: SlideScene, grid: _Grid) -> _Fields | None:
    """Tissue and cancer regions of the grid, or ``None`` when no core touches it."""
    cores = [(ci, c) for ci, c in enumerate(scene.cores) if _overlaps(c.bbox, grid.box)]
    if not cores:
        return None
    xs, ys = grid.xs.astype(np.float32)[None, :], grid.ys.astype(np.float32)[:, None]
    # A sparse probe (every _PROBE-th pixel) finds the part of the grid near each core; the
    # outline is evaluated per pixel only there (``slack`` bounds the distance to a probe).
    px, py = xs[:, ::_PROBE], ys[::_PROBE]
    slack = _PROBE * grid.d + _EDGE_RAGGEDNESS
    shape = grid.shape
    tissue = np.zeros(shape, np.float32)
    inside = np.zeros(shape, bool)
    pattern = np.zeros(shape, np.uint8)
    coarse = np.zeros(shape, bool)
    touched = False
    for ci, core in cores:
        margin = _COARSE_MARGIN * core.half_width if scene.provider == "karolinska" else 0.0
        pu, pv = core.frame(px, py)
        near = core.signed_distance(pu, pv, core.half_width_at(pu)) <= slack + margin
        if not near.any():
            continue
        touched = True
        prow, pcol = _nonzero_span(near)
        rows = slice(max((prow.start - 1) * _PROBE, 0), min(prow.stop * _PROBE, shape[0]))
        cols = slice(max((pcol.start - 1) * _PROBE, 0), min(pcol.stop * _PROBE, shape[1]))
        u, v = core.frame(xs[:, cols], ys[rows])
        sd = core.signed_distance(u, v, core.half_width_at(u))
        ragged = noise.value(grid.xs[cols], grid.ys[rows], 40.0, _salt(scene, _S_EDGE + ci))
        sd += _EDGE_RAGGEDNESS * (2.0 * ragged - 1.0)
        t = tissue[rows, cols]
        np.maximum(t, _band(sd, grid.d), out=t)
        core_in = sd < 0
        inside[rows, cols] |= core_in
        u_lo, u_hi = pu[near].min() - slack, pu[near].max() + slack
        for seg in scene.segments:
            if seg.core != ci or u_hi < seg.u0 - seg.cut_wave - margin or u_lo > seg.u1 + seg.cut_wave + margin:
                continue
            pattern[rows, cols][core_in & seg.contains(u, seg.cut_shift(v))] = seg.pattern
            coarse[rows, cols] |= (sd < margin) & seg.contains_coarse(u, margin)
    return _Fields(tissue, inside, pattern, coarse) if touched else None


def _glands(scene: SlideScene, grid: _Grid, outline_only: bool = False):
    """Epithelium, lumen and cribriform-interior coverage, and point-sampled benign glands.

    With ``outline_only`` only the benign-gland mask is computed (for label rendering).
    """
    shape, d = grid.shape, grid.d
    epi = np.zeros(shape, np.float32)
    lumen = np.zeros(shape, np.float32)
    crib = np.zeros(shape, np.float32)
    benign = np.zeros(shape, bool)
    g = scene.glands
    x0, y0 = grid.box[:2]
    xs, ys = grid.xs.astype(np.float32), grid.ys.astype(np.float32)
    hits = g.query(*grid.box)
    if outline_only:
        hits = hits[g.kind[hits] == BENIGN]
    table = np.stack(
        [g.x, g.y, g.reach, g.radius, g.aspect, g.angle, g.wobble, g.lobes, g.phase, g.lumen, g.lumen_wobble, g.kind]
    )[:, hits].T.tolist()
    for gx, gy, reach, r, aspect, angle, wobble, lobes, phase, lumen_ratio, papillary, kind in table:
        c0 = max(int((gx - reach - x0) // d), 0)
        c1 = min(int((gx + reach - x0) // d) + 2, shape[1])
        r0 = max(int((gy - reach - y0) // d), 0)
        r1 = min(int((gy + reach - y0) // d) + 2, shape[0])
        if c0 >= c1 or r0 >= r1:
            continue
        dx = (xs[c0:c1] - gx)[None, :]
        dy = (ys[r0:r1] - gy)[:, None]
        ca, sa, sq = math.cos(angle), math.sin(angle), math.sqrt(aspect)
        a = (dx * ca + dy * sa) * (1.0 / sq)
        b = (dy * ca - dx * sa) * sq
        rho = np.sqrt(a * a + b * b)
        theta = np.arctan2(b, a)
        outer = (rho - r * (1.0 + wobble * np.sin(lobes * theta + phase))) * (1.0 / sq)
        if kind == BENIGN:
            benign[r0:r1, c0:c1] |= outer < 0
        if outline_only:
            continue
        cover = _band(outer, d)
        if lumen_ratio > 0:
            papillae = 1.0 + papillary * np.sin((2 * lobes + 1) * theta + 2 * phase)
            inner = _band((rho - lumen_ratio * r * papillae) * (1.0 / sq), d)
            lum = lumen[r0:r1, c0:c1]
            np.maximum(lum, inner, out=lum)
            cover = cover - inner
        else:
            c = crib[r0:r1, c0:c1]
            np.maximum(c, _band(outer + 7.0, d), out=c)
        e = epi[r0:r1, c0:c1]
        np.maximum(e, cover, out=e)
    return epi, lumen, crib, benign


def render_labels(scene: SlideScene, x: float, y: float, w: int, h: int, downsample: float = 1.0) -> np.ndarray:
    """``(h, w)`` uint8 provider labels (Radboud 0-5, Karolinska 0-2) of a region."""
    grid = _Grid.of(x, y, w, h, float(downsample))
    out = np.zeros((h, w), np.uint8)
    f = _geometry(scene, grid)
    if f is None:
        return out
    if scene.provider == "karolinska":
        out[f.inside] = 1
        out[f.coarse] = 2
        return out
    out[f.inside] = 1
    rows, cols = _nonzero_span(f.inside)
    if rows.stop > rows.start:
        _, _, _, benign = _glands(scene, grid.crop(rows, cols), outline_only=True)
        sub = out[rows, cols]
        sub[benign & (f.pattern[rows, cols] == 0) & f.inside[rows, cols]] = 2
    cancer = f.inside & (f.pattern > 0)
    out[cancer] = f.pattern[cancer]
    return out


def _nonzero_span(m: np.ndarray) -> tuple[slice, slice]:
    """Smallest row and column slices containing every non-zero of ``m``."""
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def render(scene: SlideScene, x: float, y: float, w: int, h: int, downsample: float = 1.0) -> np.ndarray:
    """``(h, w, 3)`` uint8 H&E-like RGB of a region (level-0 origin ``x, y``, ``downsample``)."""
    d = float(downsample)
    grid = _Grid.of(x, y, w, h, d)
    ix = np.floor(x / d).astype(np.int64) + np.arange(w, dtype=np.int64)
    iy = np.floor(y / d).astype(np.int64) + np.arange(h, dtype=np.int64)
    grain = noise.grain(ix, iy, _salt(scene, _S_GRAIN + (int(round(d)) << 20)))
    glass = scene.stain.glass + 5.0 * (noise.value(grid.xs, grid.ys, 900.0, _salt(scene, _S_GLASS)) - 0.5) + 3.0 * grain
    f = _geometry(scene, grid)
    pens = [pen for pen in scene.pens if _overlaps(pen.bbox, grid.box)]
    if f is None and not pens:  # bare glass: grey
        out = np.empty((h, w, 3), np.uint8)
        out[...] = np.clip(glass + 0.5, 0, 255)[..., None]
        return out
    rgb = np.stack([glass, glass, glass])  # channel-first while painting: fast broadcasting
    if f is not None:
        rows, cols = _nonzero_span(f.tissue > 0)
        if rows.stop > rows.start:
            od = _optical_density(scene, grid.crop(rows, cols), f.crop(rows, cols), grain[rows, cols])
            rgb[:, rows, cols] *= np.exp(-od)
    for pen in pens:
        _apply_pen(rgb, pen, grid, _salt(scene, _S_INK))
    return _interleave(rgb)


def _interleave(rgb: np.ndarray) -> np.ndarray:
    """Round a channel-first float ``(3, h, w)`` image into an ``(h, w, 3)`` uint8 one."""
    out = np.empty((*rgb.shape[1:], 3), np.uint8)
    for c in range(3):  # per-channel casts into the interleaved output: far cheaper than a transpose
        out[..., c] = np.clip(rgb[c] + 0.5, 0, 255)
    return out


def _optical_density(scene: SlideScene, grid: _Grid, f: _Fields, grain: np.ndarray) -> np.ndarray:
    """Per-pixel optical density ``(3, h, w)`` of the stained tissue."""
    xs, ys, d = grid.xs, grid.ys, grid.d
    epi, lumen, crib, _ = _glands(scene, grid)
    cancer = f.pattern > 0
    has_cancer = bool(cancer.any())
    in_cancer = cancer.astype(np.float32)
    if (f.pattern == 5).any():
        # Solid sheets of tumour cells broken by thin stroma strands.
        sheet = np.clip((noise.value(xs, ys, 70.0, _salt(scene, _S_SHEET)) - 0.22) / 0.12, 0.0, 1.0) * (f.pattern == 5)
        epi = np.maximum(epi, sheet)
    if crib.any():
        holes = crib * noise.dots(xs, ys, *_CRIBRIFORM_HOLES, _salt(scene, _S_HOLES), d)
        lumen = np.maximum(lumen, holes)
        epi = epi * (1.0 - holes)

    def pick(table: dict[bool, tuple[float, float]], i: int) -> np.ndarray | float:
        benign, tumour = table[False][i], table[True][i]
        return benign + (tumour - benign) * in_cancer if has_cancer else benign

    # Fibromuscular stroma: streaks along the cores (which run along the slide's long side).
    along, across = (80.0, 9.0) if scene.width >= scene.height else (9.0, 80.0)
    fibre = 0.55 * noise.value(xs, ys, along, _salt(scene, _S_FIBRE), scale_y=across)
    fibre += 0.45 * noise.value(xs, ys, 110.0, _salt(scene, _S_FIBRE2))
    ce = _STROMA[0] * (0.6 + 0.7 * fibre)
    ch = np.full(grid.shape, _STROMA[1], np.float32)
    ce += (pick(_EPITHELIUM, 0) - ce) * epi
    ch += (pick(_EPITHELIUM, 1) - ch) * epi
    ce += (_LUMEN[0] - ce) * lumen
    ch += (_LUMEN[1] - ch) * lumen

    benign_salt, tumour_salt = _salt(scene, _S_EPI), _salt(scene, _S_EPI_CANCER)
    nuc = np.zeros(grid.shape, np.float32)
    _fill(nuc, ~cancer, grid, lambda g: _nuclei(g.xs, g.ys, _EPI_NUCLEI[False], benign_salt, d))
    _fill(nuc, cancer, grid, lambda g: _nuclei(g.xs, g.ys, _EPI_NUCLEI[True], tumour_salt, d))
    stroma_nuc = np.zeros(grid.shape, np.float32)
    pattern5 = f.pattern == 5
    _fill(stroma_nuc, ~pattern5, grid, lambda g: noise.dots(g.xs, g.ys, *_STROMA_NUCLEI, _salt(scene, _S_STROMA), d))
    _fill(stroma_nuc, pattern5, grid, lambda g: noise.dots(g.xs, g.ys, *_SINGLE_CELLS, _salt(scene, _S_SINGLE), d))
    open_ = 1.0 - lumen
    nuclei = (nuc * epi + stroma_nuc * (1.0 - epi)) * open_
    ce += (pick(_NUCLEUS, 0) - ce) * nuclei
    ch += (pick(_NUCLEUS, 1) - ch) * nuclei

    amount = f.tissue * np.float32(scene.stain.strength) * (1.0 + 0.12 * grain)
    od_e = -np.log(np.asarray(scene.stain.eosin, np.float32) / 255.0)[:, None, None]
    od_h = -np.log(np.asarray(scene.stain.haematoxylin, np.float32) / 255.0)[:, None, None]
    return (ce * amount)[None] * od_e + (ch * amount)[None] * od_h


def _fill(out: np.ndarray, where: np.ndarray, grid: _Grid, field: Callable[[_Grid], np.ndarray]) -> None:
    """Set ``out`` to ``field`` where ``where`` holds, evaluating it only over their bounding box."""
    rows, cols = _nonzero_span(where)
    if rows.start >= rows.stop:
        return
    sub, mask = out[rows, cols], where[rows, cols]
    sub[mask] = field(grid.crop(rows, cols))[mask]


def _nuclei(xs: np.ndarray, ys: np.ndarray, params: tuple[float, float, float], salt: int, d: float) -> np.ndarray:
    """Union of two half-cell-offset dot lattices: irregularly packed nuclei."""
    spacing = params[0]
    a = noise.dots(xs, ys, *params, salt, d)
    b = noise.dots(xs + 0.5 * spacing, ys + 0.5 * spacing, *params, salt ^ 1, d)
    return a + b - a * b


def _apply_pen(rgb: np.ndarray, pen: PenStroke, grid: _Grid, salt: int) -> None:
    """Darken channel-first ``rgb`` in place under an anti-aliased, unevenly inked polyline stroke."""
    half, d = 0.5 * pen.width, grid.d
    best = np.full(grid.shape, np.inf, np.float32)
    xs, ys = grid.xs.astype(np.float32), grid.ys.astype(np.float32)
    points = pen.points.tolist()
    for (ax, ay), (bx, by) in zip(points[:-1], points[1:]):
        cols = _span(grid.xs, min(ax, bx) - half - d, max(ax, bx) + half + d)
        rows = _span(grid.ys, min(ay, by) - half - d, max(ay, by) + half + d)
        if cols.start >= cols.stop or rows.start >= rows.stop:
            continue
        X, Y = xs[None, cols] - ax, ys[rows, None] - ay
        vx, vy = bx - ax, by - ay
        t = np.clip((X * vx + Y * vy) / max(vx * vx + vy * vy, 1e-9), 0.0, 1.0)
        X, Y = X - t * vx, Y - t * vy
        np.minimum(best[rows, cols], X * X + Y * Y, out=best[rows, cols])
    rows, cols = _nonzero_span(np.isfinite(best))
    if rows.start >= rows.stop:
        return
    ink = _band(np.sqrt(best[rows, cols]) - half, d)
    ink *= 0.8 + 0.2 * noise.value(grid.xs[cols], grid.ys[rows], 0.4 * pen.width, salt)
    absorbed = 1.0 - np.asarray(pen.transmittance, np.float32)[:, None, None]
    rgb[:, rows, cols] *= 1.0 - (ink * pen.opacity)[None] * absorbed


def _span(coords: np.ndarray, lo: float, hi: float) -> slice:
    """Slice of the sorted ``coords`` that lie in ``[lo, hi]``."""
    return slice(int(np.searchsorted(coords, lo)), int(np.searchsorted(coords, hi, side="right")))
