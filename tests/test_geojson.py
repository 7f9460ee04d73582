"""GeoJSON polygons of binary maps: bbox, area, holes, level-0 scaling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import weakseg  # noqa: F401
from weakseg.maps.geojson import mask_to_features, write_geojson


def shoelace(ring: list[list[float]]) -> float:
    xy = np.asarray(ring)
    return 0.5 * abs(np.dot(xy[:-1, 0], xy[1:, 1]) - np.dot(xy[1:, 0], xy[:-1, 1]))


def test_square_bbox_and_area_in_level0() -> None:
    mask = np.zeros((40, 50), dtype=bool)
    mask[10:30, 5:25] = True  # 20 x 20 map pixels
    (feat,) = mask_to_features(mask, downsample=4.0)
    assert feat["type"] == "Feature" and feat["geometry"]["type"] == "Polygon"
    assert feat["properties"]["objectType"] == "annotation"
    assert feat["properties"]["classification"]["name"] == "Tumor"
    (ring,) = feat["geometry"]["coordinates"]
    assert ring[0] == ring[-1]
    xy = np.asarray(ring)
    np.testing.assert_allclose(xy.min(0), [5 * 4, 10 * 4])
    np.testing.assert_allclose(xy.max(0), [25 * 4, 30 * 4])
    # pixel-centre contour cuts each corner by a half-pixel triangle: (20^2 - 0.5) map px
    assert shoelace(ring) == pytest.approx((20**2 - 0.5) * 16, rel=1e-6)


def test_blob_area_close_to_pixel_count() -> None:
    yy, xx = np.mgrid[:100, :100]
    mask = (yy - 50) ** 2 + (xx - 40) ** 2 < 30**2
    (feat,) = mask_to_features(mask, downsample=2.0)
    area = shoelace(feat["geometry"]["coordinates"][0])
    assert area == pytest.approx(mask.sum() * 4, rel=0.03)


def test_hole_ring_and_separate_regions() -> None:
    mask = np.zeros((40, 80), dtype=bool)
    mask[5:35, 5:35] = True
    mask[15:25, 15:25] = False  # hole
    mask[10:20, 50:60] = True  # second region
    feats = mask_to_features(mask, downsample=1.0)
    assert len(feats) == 2
    rings = sorted((f["geometry"]["coordinates"] for f in feats), key=len)
    assert len(rings[0]) == 1 and len(rings[1]) == 2
    outer, hole = rings[1]
    assert shoelace(outer) - shoelace(hole) == pytest.approx(30 * 30 - 10 * 10, abs=1.5)


def test_min_area_and_empty() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    assert mask_to_features(mask, 1.0) == []
    mask[2, 2] = True
    mask[10:15, 10:15] = True
    assert len(mask_to_features(mask, 1.0, min_area=2)) == 1
    with pytest.raises(ValueError, match="2-D"):
        mask_to_features(np.zeros((2, 2, 2)), 1.0)


def test_write_feature_collection(tmp_path: Path) -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:6, 2:6] = True
    write_geojson(tmp_path / "a.geojson", mask_to_features(mask, 8.0))
    data = json.loads((tmp_path / "a.geojson").read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 1
