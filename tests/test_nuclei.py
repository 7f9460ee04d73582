"""HoVer-Net targets and post-processing, and the classical nuclei baseline (weakseg.nuclei)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from weakseg.errors import WeaksegError
from weakseg.metrics import instance_scores, pooled_scores
from weakseg.nuclei import classical_nuclei, hv_instances, hv_maps, instance_types, sobel


def _touching_discs(shape=(128, 160), radius=11.0, seed=0) -> np.ndarray:
    """Discs on a jittered grid, neighbours 2 radii apart (touching or overlapping by a pixel or two)."""
    rng = np.random.default_rng(seed)
    rr, cc = np.indices(shape)
    labels = np.zeros(shape, dtype=np.int32)
    k = 0
    for r in np.arange(radius + 3, shape[0] - radius - 2, 2 * radius - 1):
        for c in np.arange(radius + 3, shape[1] - radius - 2, 2 * radius - 1):
            k += 1
            rad = radius + rng.uniform(-1.5, 1.0)
            labels[(rr - r - rng.integers(-1, 2)) ** 2 + (cc - c - rng.integers(-1, 2)) ** 2 <= rad**2] = k
    return labels


def test_hv_maps_of_a_hand_made_mask() -> None:
    labels = np.zeros((7, 12), dtype=np.uint8)
    labels[1:6, 1:6] = 1  # 5x5 square, centre (3, 3)
    labels[2:5, 7:10] = 4  # 3x3 square, centre (3, 8)
    hv = hv_maps(labels)
    assert hv.shape == (2, 7, 12) and hv.dtype == np.float32
    assert hv.min() == -1 and hv.max() == 1
    assert (hv[:, labels == 0] == 0).all()
    # horizontal: -1, -0.5, 0, 0.5, 1 across the 5x5 square; -1, 0, 1 across the 3x3 one
    np.testing.assert_allclose(hv[0, 3, 1:6], [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_allclose(hv[0, 3, 7:10], [-1, 0, 1])
    np.testing.assert_allclose(hv[1, 1:6, 2], [-1, -0.5, 0, 0.5, 1])
    assert (hv[1, 1:6, 3] == hv[1, 1:6, 1]).all()  # vertical does not depend on the column
    # the sign flips across each centre, and at the boundary of two touching instances
    touching = np.zeros((5, 10), dtype=np.int32)
    touching[:, :5], touching[:, 5:] = 1, 2
    h = hv_maps(touching)[0, 2]
    assert h[4] == 1 and h[5] == -1


def test_sobel_is_a_positive_derivative() -> None:
    ramp = np.tile(np.arange(30, dtype=float), (30, 1))
    assert (sobel(ramp, axis=1, ksize=5)[:, 5:-5] > 0).all()
    assert np.allclose(sobel(ramp, axis=0, ksize=5), 0)
    with pytest.raises(WeaksegError, match="ksize"):
        sobel(ramp, axis=1, ksize=4)


def test_hv_instances_recovers_touching_discs() -> None:
    truth = _touching_discs()
    assert truth.max() >= 30
    prob = (truth > 0).astype(np.float32)
    pred = hv_instances(prob, hv_maps(truth))
    assert instance_scores(truth, pred)["pq"] >= 0.9
    # without HV the touching discs would be one blob
    assert pred.max() == pytest.approx(truth.max(), abs=1)


def test_hv_instances_bad_input() -> None:
    with pytest.raises(WeaksegError, match="hv must be"):
        hv_instances(np.zeros((8, 8), dtype=np.float32), np.zeros((8, 8)))
    with pytest.raises(WeaksegError, match="np_prob"):
        hv_instances(np.zeros((8, 8), dtype=bool), np.zeros((2, 8, 8)))


def test_instance_types_majority() -> None:
    labels = np.array([[1, 1, 1, 2, 2], [1, 1, 0, 2, 2]])
    types = np.array([[2, 2, 3, 0, 0], [0, 3, 1, 0, 1]])
    assert instance_types(labels, types) == {1: 2, 2: 1}


def test_classical_nuclei_on_synthetic_stain() -> None:
    truth = np.zeros((96, 160), dtype=np.int32)  # three pairs of touching discs, radius 10
    rr, cc = np.indices(truth.shape)
    for k, (r, c) in enumerate([(25, 25), (25, 44), (70, 60), (70, 79), (40, 120), (59, 125)], start=1):
        truth[(rr - r) ** 2 + (cc - c) ** 2 <= 100] = k
    rgb = np.full((*truth.shape, 3), (235, 215, 230), dtype=np.uint8)  # pale eosin
    rgb[truth > 0] = (80, 60, 150)  # hematoxylin purple
    pred = classical_nuclei(rgb, min_distance=7)
    assert instance_scores(truth, pred)["dice"] > 0.95
    assert instance_scores(truth, pred)["pq"] > 0.9
    with pytest.raises(WeaksegError, match="shape"):
        classical_nuclei(rgb[..., 0])


@pytest.mark.shared
def test_classical_nuclei_on_a_monuseg_tile(shared_data: Path) -> None:
    from skimage.io import imread

    root = shared_data / "monuseg_train"
    tile = sorted((root / "images").glob("*.png"))[0]
    rgb = imread(tile)[..., :3]
    truth = imread(root / "instances" / tile.name)
    pred = classical_nuclei(rgb)
    scores = pooled_scores([(truth, pred)])
    assert 0.5 < scores["dice"] <= 1 and scores["pq"] > 0.2
    assert hv_maps(truth).min() >= -1 and hv_maps(truth).max() <= 1
