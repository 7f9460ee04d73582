"""Watershed instance separation, region tables and instance GeoJSON (weakseg.postprocess)."""

from __future__ import annotations

import numpy as np
import pytest

from weakseg.errors import WeaksegError
from weakseg.postprocess import instances_to_geojson, region_table, split_instances


def discs(centres: list[tuple[int, int]], radius: float, shape=(64, 96)) -> np.ndarray:
    """Instance labels of discs (later discs overwrite earlier ones where they overlap)."""
    rr, cc = np.indices(shape)
    labels = np.zeros(shape, dtype=np.int32)
    for k, (r, c) in enumerate(centres, start=1):
        labels[(rr - r) ** 2 + (cc - c) ** 2 <= radius**2] = k
    return labels


@pytest.mark.parametrize("markers", ["distance", "probability"])
def test_two_touching_discs_are_split(markers: str) -> None:
    truth = discs([(32, 30), (32, 54)], 13)  # centres 24 px apart, radius 13: they overlap by 2 px
    mask = truth > 0
    prob = mask.astype(np.float32)
    if markers == "probability":  # a model's probability dips where two objects touch
        from scipy import ndimage

        prob = ndimage.distance_transform_edt(mask).astype(np.float32) / 13.0 * 0.5 + 0.5 * mask
    labels = split_instances(prob, min_distance=6, markers=markers)
    assert labels.max() == 2
    for k in (1, 2):  # each truth disc is (mostly) one instance
        values, counts = np.unique(labels[truth == k], return_counts=True)
        assert counts.max() / counts.sum() > 0.95


def test_one_disc_stays_one_and_small_objects_go() -> None:
    labels = discs([(32, 30)], 13)
    labels[5:7, 80:82] = 9  # a 4-px speck
    out = split_instances(labels > 0, min_distance=6, min_size=10)
    assert out.max() == 1
    assert out[32, 30] == 1 and out[5, 80] == 0
    assert split_instances(labels > 0, min_distance=6).max() == 2  # kept without min_size


def test_empty_mask_gives_no_instances() -> None:
    out = split_instances(np.zeros((16, 16), dtype=np.float32), min_distance=3)
    assert out.dtype == np.int32 and out.max() == 0


def test_bad_input() -> None:
    with pytest.raises(WeaksegError, match="2-D"):
        split_instances(np.zeros((4, 4, 3)), min_distance=2)
    with pytest.raises(WeaksegError, match="markers"):
        split_instances(np.zeros((4, 4)), min_distance=2, markers="random")
    with pytest.raises(WeaksegError, match="float probability"):
        split_instances(np.zeros((4, 4), dtype=bool), min_distance=2, markers="probability")


def test_region_table() -> None:
    labels = np.zeros((10, 20), dtype=np.uint16)
    labels[2:4, 4:8] = 3  # 2 x 4 px, centre pixel coordinates (2.5, 5.5)
    prob = np.where(labels > 0, 0.8, 0.1)
    t = region_table(labels, prob, mpp=0.25, offset=(1000, 2000), downsample=2.0)
    assert list(t.columns) == ["id", "centroid_x", "centroid_y", "area_px", "area_um2", "probability"]
    row = t.iloc[0]
    assert row["id"] == 3 and row["area_px"] == 8
    assert row["centroid_x"] == pytest.approx(1000 + (5.5 + 0.5) * 2)
    assert row["centroid_y"] == pytest.approx(2000 + (2.5 + 0.5) * 2)
    assert row["area_um2"] == pytest.approx(8 * (0.25 * 2) ** 2)
    assert row["probability"] == pytest.approx(0.8)
    assert np.isnan(region_table(labels)["area_um2"]).all()


def test_instances_geojson() -> None:
    labels = discs([(10, 10), (10, 30)], 5, shape=(24, 48))
    gj = instances_to_geojson(labels, classification={2: {"name": "Tumor", "color": [200, 0, 0]}},
                              offset=(100, 50), downsample=4.0)
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == 2
    for k, feature in enumerate(gj["features"], start=1):
        props = feature["properties"]
        assert props["objectType"] == "detection"
        assert props["measurements"]["instance_id"] == k
        assert feature["geometry"]["type"] == "Polygon"
        ring = np.array(feature["geometry"]["coordinates"][0])
        assert len(ring) >= 4 and (ring[0] == ring[-1]).all()
        # a disc of radius 5 at (r, c) spans level-0 x in [100 + 4 (c - 5), 100 + 4 (c + 6)]
        c = 10 + 20 * (k - 1)
        assert ring[:, 0].min() >= 100 + 4 * (c - 5) and ring[:, 0].max() <= 100 + 4 * (c + 6)
        assert ring[:, 1].min() >= 50 + 4 * 5 and ring[:, 1].max() <= 50 + 4 * 16
    assert "classification" not in gj["features"][0]["properties"]
    assert gj["features"][1]["properties"]["classification"]["name"] == "Tumor"
    ann = instances_to_geojson(labels, object_type="annotation", classification="Gland")
    assert {f["properties"]["objectType"] for f in ann["features"]} == {"annotation"}
    assert {f["properties"]["classification"]["name"] for f in ann["features"]} == {"Gland"}
    with pytest.raises(WeaksegError, match="object_type"):
        instances_to_geojson(labels, object_type="cell")


def test_geojson_of_a_split_instance_is_a_multipolygon() -> None:
    labels = np.zeros((8, 8), dtype=np.int32)
    labels[1:3, 1:3] = 1
    labels[5:7, 5:7] = 1
    (feature,) = instances_to_geojson(labels)["features"]
    assert feature["geometry"]["type"] == "MultiPolygon" and len(feature["geometry"]["coordinates"]) == 2
