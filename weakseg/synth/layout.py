"""Random layout of a synthetic needle-biopsy slide: :func:`make_scene` from a seed.

Cores are stacked across the slide's short side, cancer stretches are placed along them
with the Gleason major pattern clearly the larger, glands fill the cores on jittered
grids (spacing and shape by kind), benign stretches may crack, and pen strokes circle
part of a core or mark the glass.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..panda import PROVIDERS
from .scene import BENIGN, CancerSegment, Core, Glands, PenStroke, SlideScene, Stain

# Gleason (major, minor) pairs a cancer slide may get, drawn uniformly.
GLEASON_PAIRS = ((3, 3), (3, 4), (4, 3), (4, 4), (3, 5), (5, 3), (4, 5), (5, 4), (5, 5))
MPP = {"radboud": (0.486,), "karolinska": (0.452, 0.503)}  # µm/px of PANDA's scanners

_GLAND_KINDS = {
    # kind: (grid spacing, keep probability, radius range, aspect range, lumen range)
    BENIGN: (118.0, 0.8, (26.0, 52.0), (1.0, 1.7), (0.62, 0.76)),
    3: (42.0, 0.9, (11.0, 19.0), (1.0, 1.4), (0.3, 0.5)),
    4: (80.0, 0.95, (30.0, 58.0), (1.2, 2.2), (0.0, 0.0)),
}


def make_scene(
    seed: int,
    size: tuple[int, int] = (6144, 2048),
    provider: str = "radboud",
    cancer: bool | None = None,
    gleason: tuple[int, int] | None = None,
    pen: bool = False,
    blank: bool = False,
    n_cores: int | None = None,
) -> SlideScene:
    """Build the analytic scene of one slide.

    Parameters
    ----------
    seed: all randomness derives from it.
    size: level-0 ``(width, height)``.
    provider: ``"radboud"`` or ``"karolinska"`` (label convention, colours, pixel size).
    cancer: whether the slide has cancer (random if ``None``; implied by ``gleason``).
    gleason: ``(major, minor)`` Gleason patterns; drawn at random for cancer slides if ``None``.
    pen: add 1-3 ink strokes. blank: glass only (no tissue, no cancer).
    n_cores: number of tissue cores (1-3, random if ``None``).
    """
    width, height = int(size[0]), int(size[1])
    gleason = None if gleason is None else (int(gleason[0]), int(gleason[1]))
    if width < 256 or height < 256:
        raise ValueError(f"slide size must be at least 256x256 px, got {width}x{height}")
    if provider not in PROVIDERS:
        raise ValueError(f"unknown data provider {provider!r}; expected one of {PROVIDERS}")
    if gleason is not None and gleason not in GLEASON_PAIRS:
        raise ValueError(f"invalid Gleason pattern pair {gleason}; expected one of {GLEASON_PAIRS}")
    rng = np.random.default_rng(seed)
    if cancer is None:
        cancer = gleason is not None or bool(rng.random() < 0.5)
    if blank:
        cancer, gleason = False, None
    elif cancer and gleason is None:
        gleason = GLEASON_PAIRS[int(rng.integers(len(GLEASON_PAIRS)))]
    mpp = float(rng.choice(MPP[provider]))
    stain = _make_stain(rng, provider)
    cores: tuple[Core, ...] = ()
    segments: tuple[CancerSegment, ...] = ()
    if not blank:
        cores = _make_cores(rng, width, height, n_cores)
        if cancer:
            assert gleason is not None
            segments = _make_segments(rng, cores, gleason)
        cores = _crack(rng, cores, segments)
    glands = _make_glands(rng, cores, segments)
    pens = _make_pens(rng, width, height, cores) if pen else ()
    return SlideScene(
        seed=int(seed),
        width=width,
        height=height,
        provider=provider,
        mpp=mpp,
        cores=cores,
        segments=segments,
        glands=glands,
        pens=pens,
        stain=stain,
        gleason=gleason if segments and gleason else (0, 0),
        blank=blank,
    )


def _make_stain(rng: np.random.Generator, provider: str) -> Stain:
    jitter = rng.normal(0.0, 6.0, size=6)
    eosin = np.array([238.0, 138.0, 192.0]) + jitter[:3]
    haem = np.array([118.0, 96.0, 178.0]) + jitter[3:]
    # Radboud scans look paler than Karolinska's.
    strength = (0.78 if provider == "radboud" else 1.0) * float(rng.uniform(0.9, 1.1))
    glass = float(rng.uniform(241.0, 247.0))
    return Stain(
        eosin=tuple(np.clip(eosin, 60, 250).tolist()),  # type: ignore[arg-type]
        haematoxylin=tuple(np.clip(haem, 40, 250).tolist()),  # type: ignore[arg-type]
        strength=strength,
        glass=glass,
    )


def _make_cores(rng: np.random.Generator, width: int, height: int, n_cores: int | None) -> tuple[Core, ...]:
    long_side, short_side = max(width, height), min(width, height)
    most = int(np.clip(short_side // 600, 1, 3))
    n = int(rng.integers(1, most + 1)) if n_cores is None else int(n_cores)
    if not 1 <= n <= 3:
        raise ValueError(f"n_cores must be 1-3, got {n}")
    slot = short_side / n
    cores = []
    for i in range(n):
        half_width = float(np.clip(slot * rng.uniform(0.2, 0.27), 60.0, 950.0))
        length = long_side * rng.uniform(0.72, 0.9)
        # Bending and waviness must keep the band inside its slot.
        free = max(slot / 2 - half_width * 1.1 - 16.0, 0.0)
        bend_span = free * rng.uniform(0.2, 0.5)
        bend = float(rng.choice([-1.0, 1.0]) * bend_span / (0.5 * length) ** 2)
        wave = float(rng.uniform(0.1, 0.35) * (free - bend_span))
        along = long_side / 2 + rng.uniform(-0.04, 0.04) * long_side
        across = slot * (i + 0.5) - bend * (0.5 * length) ** 2 / 3.0
        angle = float(rng.normal(0.0, 0.01))
        if width >= height:
            cx, cy = along, across
        else:
            cx, cy, angle = across, along, angle + np.pi / 2
        cores.append(
            Core(
                cx=float(cx),
                cy=float(cy),
                angle=angle,
                length=float(length),
                half_width=half_width,
                bend=bend,
                wave=wave,
                wave_period=float(length * rng.uniform(0.4, 0.9)),
                wave_phase=float(rng.uniform(0, 2 * np.pi)),
                width_wave=float(rng.uniform(0.04, 0.12)),
                width_phase=float(rng.uniform(0, 2 * np.pi)),
            )
        )
    return tuple(cores)


def _make_segments(
    rng: np.random.Generator, cores: tuple[Core, ...], gleason: tuple[int, int]
) -> tuple[CancerSegment, ...]:
    """Cancer stretches covering 15-50 % of the cores, the major pattern clearly the larger."""
    major, minor = gleason
    usable = [c.length - 2.5 * c.half_width for c in cores]
    total = sum(usable) * rng.uniform(0.2, 0.55)
    if major == minor:
        parts = [(major, total)]
    else:
        share = rng.uniform(0.6, 0.72)
        parts = [(major, total * share), (minor, total * (1 - share))]
    # Split long parts so each fits a core, and scatter them over the cores.
    pieces: list[tuple[int, float]] = []
    for pattern, length in parts:
        k = max(1, math.ceil(length / (0.8 * max(usable))))
        pieces += [(pattern, length / k)] * k
    taken: list[list[tuple[float, float]]] = [[] for _ in cores]
    segments = []
    for pattern, length in sorted(pieces, key=lambda p: -p[1]):
        for _ in range(200):
            ci = int(rng.integers(len(cores)))
            lo = -0.5 * usable[ci]
            span = usable[ci] - length
            if span <= 0:
                continue
            u0 = lo + rng.uniform(0, span)
            u1 = u0 + length
            if all(u1 < a or u0 > b for a, b in taken[ci]):
                break
        else:  # no free stretch: shrink into the largest gap of the least used core
            ci = int(np.argmin([sum(b - a for a, b in t) for t in taken]))
            u0, u1 = _largest_gap(taken[ci], -0.5 * usable[ci], 0.5 * usable[ci])
        taken[ci].append((u0, u1))
        hw = cores[ci].half_width
        segments.append(
            CancerSegment(
                core=ci,
                u0=float(u0),
                u1=float(u1),
                pattern=pattern,
                cut_wave=float(rng.uniform(0.15, 0.35) * hw),
                cut_period=float(rng.uniform(1.0, 2.5) * hw),
                cut_phase=float(rng.uniform(0, 2 * np.pi)),
            )
        )
    return tuple(segments)


def _crack(rng: np.random.Generator, cores: tuple[Core, ...], segments: tuple[CancerSegment, ...]) -> tuple[Core, ...]:
    """Break some cores with 0-2 cracks, away from cancer (which keeps the graded areas intact)."""
    cracked = []
    for ci, core in enumerate(cores):
        busy = [(s.u0 - s.cut_wave - core.half_width, s.u1 + s.cut_wave + core.half_width) for s in segments if s.core == ci]
        gaps = []
        for _ in range(int(rng.integers(0, 3))):
            centre = rng.uniform(-0.4, 0.4) * core.length
            if not any(a < centre < b for a, b in busy):
                gaps.append((float(centre), float(rng.uniform(6.0, 30.0)), float(rng.uniform(-0.5, 0.5))))
        cracked.append(replace(core, gaps=tuple(gaps)))
    return tuple(cracked)


def _largest_gap(taken: list[tuple[float, float]], lo: float, hi: float) -> tuple[float, float]:
    edges = [lo] + [e for a, b in sorted(taken) for e in (a, b)] + [hi]
    gaps = [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]
    a, b = max(gaps, key=lambda g: g[1] - g[0])
    pad = 0.05 * (b - a)
    return a + pad, b - pad


def _region_of(cores: tuple[Core, ...], segments: tuple[CancerSegment, ...], ci: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    region = np.zeros(u.shape, np.int64)
    for seg in segments:
        if seg.core == ci:
            region[seg.contains(u, seg.cut_shift(v))] = seg.pattern
    return region


def _make_glands(rng: np.random.Generator, cores: tuple[Core, ...], segments: tuple[CancerSegment, ...]) -> Glands:
    cols: dict[str, list[np.ndarray]] = {k: [] for k in Glands.__dataclass_fields__ if k not in ("cell", "_index")}
    for ci, core in enumerate(cores):
        for kind, (spacing, keep, (r0, r1), (a0, a1), (l0, l1)) in _GLAND_KINDS.items():
            us = np.arange(-0.5 * core.length, 0.5 * core.length, spacing)
            vs = np.arange(-core.half_width * 1.2, core.half_width * 1.2, spacing)
            u, v = (a.ravel() for a in np.meshgrid(us, vs))
            u = u + rng.uniform(-0.35, 0.35, u.size) * spacing
            v = v + rng.uniform(-0.35, 0.35, v.size) * spacing
            radius = rng.uniform(r0, r1, u.size)
            ok = (core.signed_distance(u, v, core.half_width_at(u)) < -0.7 * radius) & (rng.random(u.size) < keep)
            ok &= _region_of(cores, segments, ci, u, v) == kind
            n = int(ok.sum())
            x, y = core.to_slide(u[ok], v[ok])
            cols["x"].append(x)
            cols["y"].append(y)
            cols["radius"].append(radius[ok])
            cols["aspect"].append(rng.uniform(a0, a1, n))
            cols["angle"].append(core.angle + rng.normal(0.0, 0.5, n))
            cols["wobble"].append(rng.uniform(0.03, 0.09, n) if kind != 4 else rng.uniform(0.12, 0.28, n))
            cols["lobes"].append(rng.integers(2, 5, n).astype(np.float64) if kind == 4 else rng.integers(3, 6, n).astype(np.float64))
            cols["phase"].append(rng.uniform(0, 2 * np.pi, n))
            cols["lumen"].append(rng.uniform(l0, l1, n))
            cols["lumen_wobble"].append(rng.uniform(0.04, 0.11, n) if kind == BENIGN else rng.uniform(0.0, 0.06, n))
            cols["kind"].append(np.full(n, kind, np.int64))
    arrays = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()}
    arrays["kind"] = arrays["kind"].astype(np.int64)
    return Glands(**arrays)


_INKS = {
    "green": (0.35, 0.72, 0.45),
    "blue": (0.35, 0.45, 0.85),
    "black": (0.22, 0.22, 0.28),
    "red": (0.88, 0.3, 0.32),
}


def _make_pens(rng: np.random.Generator, width: int, height: int, cores: tuple[Core, ...]) -> tuple[PenStroke, ...]:
    """1-3 strokes: arcs circling part of a core, or short ticks on the glass nearby."""
    strokes = []
    ink = list(_INKS.values())[int(rng.integers(len(_INKS)))]
    scale = min(width, height)
    for _ in range(int(rng.integers(1, 4))):
        stroke_width = float(np.clip(scale * rng.uniform(0.012, 0.025), 12.0, 120.0))
        if cores and rng.random() < 0.6:
            core = cores[int(rng.integers(len(cores)))]
            u0 = rng.uniform(-0.3, 0.3) * core.length
            rx = rng.uniform(0.08, 0.2) * core.length
            ry = core.half_width * rng.uniform(1.3, 2.0)
            t = np.linspace(0, 2 * np.pi * rng.uniform(0.6, 0.95), 48) + rng.uniform(0, 2 * np.pi)
            u, v = u0 + rx * np.cos(t), ry * np.sin(t)
            x, y = core.to_slide(u, v)
        else:
            x0, y0 = rng.uniform(0.05, 0.95) * width, rng.uniform(0.05, 0.95) * height
            length = scale * rng.uniform(0.1, 0.3)
            theta = rng.uniform(0, np.pi)
            t = np.linspace(-0.5, 0.5, 16)
            bow = rng.uniform(-0.15, 0.15) * length
            x = x0 + t * length * np.cos(theta) - (1 - 4 * t * t) * bow * np.sin(theta)
            y = y0 + t * length * np.sin(theta) + (1 - 4 * t * t) * bow * np.cos(theta)
        strokes.append(
            PenStroke(
                points=np.stack([x, y], axis=1),
                width=stroke_width,
                transmittance=ink,
                opacity=float(rng.uniform(0.75, 0.95)),
            )
        )
    return tuple(strokes)
