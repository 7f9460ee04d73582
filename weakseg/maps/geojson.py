"""Binary map -> GeoJSON polygons (QuPath-importable annotations) in slide level-0 pixels.

Each 4-connected region becomes one ``Polygon``: its outer ring, then one ring per hole (holes are
8-connected background pockets, so pixels touching only diagonally are separate polygons). Rings are
traced by :func:`skimage.measure.find_contours` on pixel centres (so a ``k x k`` square of map
pixels gives a ``k x k`` ring with cut corners), scaled by ``downsample`` to level 0, stripped of
collinear vertices (lossless) and closed (first point == last point).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from scipy import ndimage
from skimage import measure

from ..atomic import atomic_write_text

TUMOR = {"name": "Tumor", "color": [200, 0, 0]}


def mask_to_features(
    mask: np.ndarray,
    downsample: float,
    *,
    classification: dict[str, Any] | None = None,
    min_area: float = 1.0,
) -> list[dict[str, Any]]:
    """GeoJSON ``Feature`` dicts for every region of a boolean ``mask``.

    Args:
        mask: 2-D boolean map whose pixel ``(r, c)`` covers level-0 ``[c*d, (c+1)*d) x [r*d, (r+1)*d)``.
        downsample: level-0 pixels per map pixel ``d``.
        classification: QuPath class (default ``Tumor``, red).
        min_area: regions with fewer map pixels are dropped.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    labels, _ = ndimage.label(mask)
    features = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        region = labels[sl] == i
        if region.sum() < min_area:
            continue
        offset = np.array([sl[0].start, sl[1].start], dtype=float)
        if region.sum() < 8:  # enclosing a hole takes at least 8 pixels
            rings = [_ring(region, offset, downsample, "low")]
        else:
            eight = np.ones((3, 3), dtype=bool)
            filled = ndimage.binary_fill_holes(region, structure=eight)
            rings = [_ring(filled, offset, downsample, "low")]
            holes, n_holes = ndimage.label(filled & ~region, structure=eight)
            rings += [_ring(holes == j, offset, downsample, "high") for j in range(1, n_holes + 1)]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": rings},
                "properties": {"objectType": "annotation", "classification": dict(classification or TUMOR)},
            }
        )
    return features


def _ring(region: np.ndarray, offset: np.ndarray, downsample: float, connected: str) -> list[list[float]]:
    """Outer contour of one filled region, in level-0 (x, y), closed."""
    padded = np.pad(region, 1).astype(np.float32)
    (contour,) = measure.find_contours(padded, 0.5, fully_connected=connected)
    contour = _drop_collinear(contour[:-1])  # find_contours closes rings by repeating the start
    rc = contour - 1 + offset + 0.5  # back to map pixel units, from pixel centres to pixel edges
    ring = (rc[:, ::-1] * downsample).round(2).tolist()
    return ring + ring[:1]


def _drop_collinear(points: np.ndarray) -> np.ndarray:
    """Remove vertices lying on the straight line through their neighbours (cyclic)."""
    prev, nxt = np.roll(points, 1, axis=0), np.roll(points, -1, axis=0)
    a, b = points - prev, nxt - points
    cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    keep = np.abs(cross) > 1e-9
    return points[keep] if keep.sum() >= 3 else points


def write_geojson(path: str | os.PathLike, features: list[dict[str, Any]]) -> None:
    """Write a ``FeatureCollection`` atomically."""
    atomic_write_text(path, json.dumps({"type": "FeatureCollection", "features": features}))
