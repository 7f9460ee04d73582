"""Instance metrics (Dice, AJI, DQ/SQ/PQ, GlaS object metrics) on hand-built label images."""

from __future__ import annotations

import numpy as np
import pytest

from weakseg.errors import WeaksegError
from weakseg.metrics import glas_object_scores, instance_scores, object_f1, pooled_scores


def _blank() -> np.ndarray:
    return np.zeros((12, 16), dtype=np.uint16)


def _bar(left: int, right: int, labels=(1, 2)) -> np.ndarray:
    """A 4 x 10 bar at rows 2-5, cols 3-12, cut after column ``3 + left - 1`` into two labels."""
    img = _blank()
    img[2:6, 3 : 3 + left] = labels[0]
    img[2:6, 3 + left : 3 + left + right] = labels[1]
    return img


def _one_bar() -> np.ndarray:
    img = _blank()
    img[2:6, 3:13] = 5
    return img


def test_identical_scores_one() -> None:
    truth = _bar(6, 4, labels=(7, 300))
    assert instance_scores(truth, truth) == pytest.approx({"dice": 1, "aji": 1, "dq": 1, "sq": 1, "pq": 1})
    assert glas_object_scores(truth, truth) == pytest.approx(
        {"object_f1": 1, "object_dice": 1, "object_hausdorff": 0}
    )


def test_one_instance_split_in_two() -> None:
    truth, pred = _one_bar(), _bar(6, 4)  # 40 px cut into 24 + 16: IoU 0.6 and 0.4
    s = instance_scores(truth, pred)
    # AJI: best pred (24 of 40 px) + the unused pred's 16 px in the union
    assert s["aji"] == pytest.approx(24 / (40 + 16))
    assert s["dq"] == pytest.approx(1 / (1 + 0.5))  # TP 1, FP 1
    assert s["sq"] == pytest.approx(0.6)
    assert s["pq"] == pytest.approx(0.4)
    assert s["dice"] == pytest.approx(1.0)
    assert object_f1(truth, pred)["f1"] == pytest.approx(2 / 3)
    g = glas_object_scores(truth, pred)
    # truth side: Dice(G, S1) = 48/64; pred side: 24/40 * 0.75 + 16/40 * 32/56
    assert g["object_dice"] == pytest.approx(0.5 * (0.75 + 0.6 * 0.75 + 0.4 * 32 / 56))
    # H(G, S1) = 4 columns, H(G, S2) = 6 columns
    assert g["object_hausdorff"] == pytest.approx(0.5 * (4 + 0.6 * 4 + 0.4 * 6))


def test_two_instances_merged_into_one() -> None:
    truth, pred = _bar(6, 4), _one_bar()
    s = instance_scores(truth, pred)
    assert s["aji"] == pytest.approx((24 + 16) / (40 + 40))  # the merged pred serves both, its union counted twice
    assert s["dq"] == pytest.approx(1 / 1.5)  # TP 1 (IoU 0.6), FN 1 (IoU 0.4)
    assert s["sq"] == pytest.approx(0.6)
    assert s["pq"] == pytest.approx(0.4)
    f = object_f1(truth, pred)  # the pred covers 24/24 of the first bar: TP; the second is missed
    assert (f["tp"], f["fp"], f["fn"]) == (1, 0, 1)


def _two_nuclei() -> np.ndarray:
    img = _blank()
    img[1:4, 1:4] = 1  # 9 px
    img[6:10, 8:12] = 2  # 16 px
    return img


def test_a_missed_nucleus() -> None:
    truth = _two_nuclei()
    pred = np.where(truth == 1, 3, 0).astype(np.int32)
    s = instance_scores(truth, pred)
    assert s["aji"] == pytest.approx(9 / 25)
    assert s["dq"] == pytest.approx(2 / 3)
    assert s["sq"] == pytest.approx(1.0)
    assert s["pq"] == pytest.approx(2 / 3)
    assert s["dice"] == pytest.approx(18 / 34)
    g = glas_object_scores(truth, pred)
    assert g["object_f1"] == pytest.approx(2 / 3)
    assert g["object_dice"] == pytest.approx(0.5 * (9 / 25 * 1 + 16 / 25 * 0) + 0.5 * 1)
    # the missed nucleus is paired with its Hausdorff-nearest (only) prediction: from its corner (9, 11)
    # to the prediction's nearest pixel (3, 3)
    h_missed = np.hypot(9 - 3, 11 - 3)
    assert g["object_hausdorff"] == pytest.approx(0.5 * (16 / 25 * h_missed) + 0.5 * 0)


def test_empty_prediction_and_empty_truth() -> None:
    truth, empty = _two_nuclei(), _blank()
    zeros = {"dice": 0, "aji": 0, "dq": 0, "sq": 0, "pq": 0}
    assert instance_scores(truth, empty) == pytest.approx(zeros)
    assert instance_scores(empty, truth) == pytest.approx(zeros)
    assert instance_scores(empty, empty) == pytest.approx({k: 1 for k in zeros})
    assert glas_object_scores(truth, empty) == {"object_f1": 0.0, "object_dice": 0.0, "object_hausdorff": np.inf}
    assert glas_object_scores(empty, empty) == {"object_f1": 1.0, "object_dice": 1.0, "object_hausdorff": 0.0}


def test_pooled_scores_sum_counts() -> None:
    split = (_one_bar(), _bar(6, 4))
    missed = (_two_nuclei(), np.where(_two_nuclei() == 1, 1, 0))
    p = pooled_scores([split, missed])
    assert p["aji"] == pytest.approx((24 + 9) / (56 + 25))
    assert p["dq"] == pytest.approx(2 / (2 + 0.5 * 1 + 0.5 * 1))  # TP 2, FP 1, FN 1
    assert p["sq"] == pytest.approx((0.6 + 1.0) / 2)
    assert p["pq"] == pytest.approx(p["dq"] * p["sq"])


def test_hausdorff_of_disjoint_objects() -> None:
    truth, pred = _blank(), _blank()
    truth[0, 0] = 1
    pred[0, 3] = 1
    pred[11, 15] = 2  # farther: not the nearest partner of the truth object
    g = glas_object_scores(truth, pred)
    assert g["object_f1"] == 0.0
    assert g["object_hausdorff"] == pytest.approx(0.5 * 3 + 0.5 * (0.5 * 3 + 0.5 * np.hypot(11, 15)))


def test_bad_input_is_named() -> None:
    with pytest.raises(WeaksegError, match="dtype float"):
        instance_scores(np.zeros((4, 4)), np.zeros((4, 4), dtype=int))
    with pytest.raises(WeaksegError, match="shapes differ"):
        instance_scores(np.zeros((4, 4), dtype=int), np.zeros((4, 5), dtype=int))
    with pytest.raises(WeaksegError, match="2-D"):
        instance_scores(np.zeros((4, 4, 3), dtype=int), np.zeros((4, 4, 3), dtype=int))
    with pytest.raises(WeaksegError, match="negative"):
        instance_scores(-np.ones((4, 4), dtype=int), np.zeros((4, 4), dtype=int))
