"""Instances from segmentation maps: watershed separation, region tables and GeoJSON of instances.

For any learner's probability map or binary mask (glands in GlaS, nuclei in MoNuSeg):

- :func:`split_instances` separates touching objects by a marker-controlled watershed, the markers
  being the peaks of the distance transform of the mask (``markers="distance"``) or of the smoothed
  probability (``markers="probability"``), at least ``min_distance`` pixels apart.
- :func:`region_table` lists each instance's centroid (level-0 pixels), area and mean probability.
- :func:`instances_to_geojson` writes the instances as a QuPath-importable ``FeatureCollection``
  (one ``Polygon`` per instance, ``MultiPolygon`` for an instance in several pieces).

Coordinates follow :mod:`weakseg.maps.geojson`: label pixel ``(r, c)`` covers level-0
``[x0 + c d, x0 + (c + 1) d) x [y0 + r d, y0 + (r + 1) d)`` for ``offset = (x0, y0)`` and
``downsample = d``, so a pixel's centre is at ``x0 + (c + 0.5) d``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import relabel_sequential, watershed

from .errors import WeaksegError
from .maps.geojson import mask_to_features
from .metrics.instance import check_labels

MARKERS = ("distance", "probability")
OBJECT_TYPES = ("detection", "annotation")


def _check_2d(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise WeaksegError(f"{name} must be a 2-D map, got shape {array.shape}")
    return array


def foreground(prob_or_mask: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray | None]:
    """``(mask, prob)`` of a map: a boolean / integer map is a mask (``> 0``, no probability),
    a float map a probability thresholded at ``p >= threshold``."""
    arr = _check_2d(prob_or_mask, "prob_or_mask")
    if arr.dtype == bool:
        return arr, None
    if np.issubdtype(arr.dtype, np.integer):
        return arr > 0, None
    if np.issubdtype(arr.dtype, np.floating):
        return arr >= threshold, arr.astype(np.float32, copy=False)
    raise WeaksegError(f"prob_or_mask must be a float probability map or a boolean/integer mask, got dtype {arr.dtype}")


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """``labels`` without the instances of fewer than ``min_size`` pixels, relabelled 1..n (int32)."""
    labels = np.asarray(labels)
    if min_size > 0 and labels.any():
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    return relabel_sequential(labels.astype(np.int32, copy=False))[0]


def peak_markers(landscape: np.ndarray, mask: np.ndarray, min_distance: int) -> np.ndarray:
    """Watershed markers: the local maxima of ``landscape`` at least ``min_distance`` px apart within
    each connected component of ``mask`` (adjacent maxima merged into one marker); a component
    without a peak gets one marker at its maximum."""
    components, n = ndimage.label(mask)
    peaks = np.zeros(mask.shape, dtype=bool)
    if n:
        coords = peak_local_max(landscape, min_distance=max(int(min_distance), 1), labels=components,
                                exclude_border=False)
        peaks[tuple(coords.T)] = True
        missing = np.setdiff1d(np.arange(1, n + 1), components[peaks])
        if missing.size:
            at = ndimage.maximum_position(landscape, components, missing)
            peaks[tuple(np.array(at).reshape(-1, 2).T)] = True
    markers, _ = ndimage.label(peaks, structure=np.ones((3, 3), dtype=bool))
    return markers


def split_instances(
    prob_or_mask: np.ndarray,
    *,
    min_distance: int = 5,
    threshold: float = 0.5,
    markers: str = "distance",
    min_size: int = 0,
) -> np.ndarray:
    """Instance labels (int32, 0 background, 1..n) of a probability map or binary mask.

    Args:
        prob_or_mask: 2-D float probability map (foreground where ``p >= threshold``) or boolean /
            integer mask (foreground ``> 0``; an integer label image is re-split as one mask).
        min_distance: smallest distance in pixels between two markers (about an object's radius).
        threshold: probability threshold of the foreground.
        markers: ``"distance"``: peaks of the Euclidean distance transform of the foreground,
            watershed on its negative (splits touching convex objects by shape);
            ``"probability"``: peaks of the probability smoothed by a Gaussian (sigma 1 px),
            watershed on its negative (splits where the model's probability dips between objects;
            needs a float map).
        min_size: instances of fewer pixels are removed (after the watershed).
    """
    if markers not in MARKERS:
        raise WeaksegError(f"markers must be one of {MARKERS}, got {markers!r}")
    mask, prob = foreground(prob_or_mask, threshold)
    if markers == "distance":
        landscape = ndimage.distance_transform_edt(mask)
    elif prob is None:
        raise WeaksegError("markers='probability' needs a float probability map, got a boolean/integer mask")
    else:
        landscape = np.where(mask, ndimage.gaussian_filter(prob, 1.0), 0.0)
    seeds = peak_markers(landscape, mask, min_distance)
    labels = watershed(-landscape, seeds, mask=mask)
    return remove_small(labels, min_size)


def region_table(
    labels: np.ndarray,
    prob: np.ndarray | None = None,
    mpp: float | None = None,
    offset: tuple[float, float] = (0, 0),
    downsample: float = 1.0,
) -> pd.DataFrame:
    """One row per instance: ``id``, ``centroid_x``, ``centroid_y`` (level-0 px), ``area_px``
    (label-image pixels), ``area_um2`` (``NaN`` without ``mpp``), ``probability`` (mean of ``prob``
    over the instance, ``NaN`` without it).

    Args:
        labels: 2-D integer instance labels (0 background).
        prob: optional 2-D probability map of the same shape.
        mpp: level-0 micrometres per pixel.
        offset: level-0 ``(x, y)`` of the label image's top-left corner.
        downsample: level-0 pixels per label pixel.
    """
    labels = check_labels(labels, "labels")
    if prob is not None:
        prob = _check_2d(prob, "prob")
        if prob.shape != labels.shape:
            raise WeaksegError(f"prob shape {prob.shape} differs from labels shape {labels.shape}")
    ids, inv, area = np.unique(labels.ravel(), return_inverse=True, return_counts=True)
    width = labels.shape[1]
    index = np.arange(labels.size)
    row = np.bincount(inv, weights=index // width) / area
    col = np.bincount(inv, weights=index % width) / area
    mean_p = np.bincount(inv, weights=prob.ravel()) / area if prob is not None else np.full(ids.size, np.nan)
    keep = ids > 0
    scale = (mpp * downsample) ** 2 if mpp else np.nan
    return pd.DataFrame(
        {
            "id": ids[keep].astype(np.int64),
            "centroid_x": offset[0] + (col[keep] + 0.5) * downsample,
            "centroid_y": offset[1] + (row[keep] + 0.5) * downsample,
            "area_px": area[keep].astype(np.int64),
            "area_um2": area[keep] * scale,
            "probability": mean_p[keep],
        }
    )


def _qupath_class(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, Mapping) and "name" in value:
        return dict(value)
    raise WeaksegError(f"a classification must be a class name or a dict with 'name', got {value!r}")


def instances_to_geojson(
    labels: np.ndarray,
    *,
    object_type: str = "detection",
    classification: str | Mapping[str, Any] | Mapping[int, Any] | None = None,
    offset: tuple[float, float] = (0, 0),
    downsample: float = 1.0,
) -> dict[str, Any]:
    """QuPath GeoJSON ``FeatureCollection`` of the instances of ``labels`` (coordinates in level 0).

    Args:
        labels: 2-D integer instance labels (0 background).
        object_type: QuPath ``objectType``: ``"detection"`` (nuclei, cells) or ``"annotation"``.
        classification: one class for all instances (a name or ``{"name": ..., "color": [r, g, b]}``),
            or a mapping instance id -> class (instances not in it are unclassified), or ``None``.
        offset: level-0 ``(x, y)`` of the label image's top-left corner.
        downsample: level-0 pixels per label pixel.

    Each feature's ``properties`` hold ``objectType``, the ``classification`` when given and
    ``measurements`` ``{"instance_id": k}``; rings are closed (first point == last point).
    """
    labels = check_labels(labels, "labels")
    if object_type not in OBJECT_TYPES:
        raise WeaksegError(f"object_type must be one of {OBJECT_TYPES}, got {object_type!r}")
    per_id = isinstance(classification, Mapping) and "name" not in classification
    single = None if classification is None or per_id else _qupath_class(classification)
    features = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        polygons = [f["geometry"]["coordinates"] for f in mask_to_features(labels[box] == k, downsample)]
        shift = np.array([offset[0] + box[1].start * downsample, offset[1] + box[0].start * downsample])
        polygons = [[(np.asarray(ring) + shift).round(2).tolist() for ring in rings] for rings in polygons]
        geometry = (
            {"type": "Polygon", "coordinates": polygons[0]}
            if len(polygons) == 1
            else {"type": "MultiPolygon", "coordinates": polygons}
        )
        properties: dict[str, Any] = {"objectType": object_type, "measurements": {"instance_id": k}}
        cls = classification.get(k) if per_id else single  # type: ignore[union-attr]
        if cls is not None:
            properties["classification"] = _qupath_class(cls)
        features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    return {"type": "FeatureCollection", "features": features}
