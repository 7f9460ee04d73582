"""Binary map -> GeoJSON polygons (QuPath-importable annotations) in slide level-0 pixels.

Each 4-connected region becomes one ``Polygon``: its outer ring, then one ring per hole (holes are
8-connected background pockets, so pixels touching only diagonally are separate polygons). Rings are
traced by :func:`skimage.measure.find_contours` on pixel centres (so a ``k x k`` square of map
pixels gives a ``k x k`` ring with cut corners), scaled by ``downsample`` to level 0, simplified
by ``tolerance`` map pixels and closed (first point == last point).
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
    tolerance: float = 0.25,
) -> list[dict[str, Any]]:
    """GeoJSON ``Feature`` dicts for every region of a boolean ``mask``.

    Args:
        mask: 2-D boolean map whose pixel ``(r, c)`` covers level-0 ``[c*d, (c+1)*d) x [r*d, (r+1)*d)``.
        downsample: level-0 pixels per map pixel ``d``.
        classification: QuPath class (default ``Tumor``, red).
        min_area: regions with fewer map pixels are dropped.
        tolerance: Douglas-Peucker tolerance in map pixels (0 keeps every vertex).
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
        eight = np.ones((3, 3), dtype=bool)
        filled = ndimage.binary_fill_holes(region, structure=eight)
        rings = [_ring(filled, offset, downsample, tolerance, "low")]
        holes, n_holes = ndimage.label(filled & ~region, structure=eight)
        rings += [_ring(holes == j, offset, downsample, tolerance, "high") for j in range(1, n_holes + 1)]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": rings},
                "properties": {"objectType": "annotation", "classification": dict(classification or TUMOR)},
            }
        )
    return features


def _ring(
    region: np.ndarray, offset: np.ndarray, downsample: float, tolerance: float, connected: str
) -> list[list[float]]:
    """Outer contour of one filled region, in level-0 (x, y), closed."""
    padded = np.pad(region, 1).astype(np.float32)
    (contour,) = measure.find_contours(padded, 0.5, fully_connected=connected)
    if tolerance > 0 and len(contour) > 4:
        # Douglas-Peucker needs distinct end points: simplify the two halves split at the vertex
        # farthest from the start.
        k = int(np.argmax(((contour - contour[0]) ** 2).sum(1)))
        first = measure.approximate_polygon(contour[: k + 1], tolerance)
        contour = np.concatenate([first[:-1], measure.approximate_polygon(contour[k:], tolerance)])
    rc = contour - 1 + offset + 0.5  # back to map pixel units, from pixel centres to pixel edges
    xy = (rc[:, ::-1] * downsample).round(2)
    ring = xy.tolist()
    if ring[0] != ring[-1]:
        ring.append(ring[0])
    return ring


def write_geojson(path: str | os.PathLike, features: list[dict[str, Any]]) -> None:
    """Write a ``FeatureCollection`` atomically."""
    atomic_write_text(path, json.dumps({"type": "FeatureCollection", "features": features}))
