"""Instance segmentation metrics on integer label images (0 = background, k > 0 = object k).

Nuclear-instance metrics (HoVer-Net's evaluation):

- ``dice``: pixel Dice of the foregrounds (``truth > 0`` against ``pred > 0``).
- ``aji``: aggregated Jaccard index (Kumar et al., IEEE TMI 2017). Every truth object ``G_i`` is
  matched to the prediction ``S*`` of largest IoU with it (the first one on ties; a prediction may
  serve several truth objects); ``AJI = sum |G_i ∩ S*| / (sum |G_i ∪ S*| + sum |S_unused|)`` where
  a truth object overlapping nothing adds its area to the union and every prediction never chosen
  adds its area.
- ``dq``, ``sq``, ``pq``: panoptic quality (Kirillov et al., CVPR 2019). A truth and a predicted
  object are paired when their IoU exceeds 0.5 (such pairs are unique);
  ``DQ = TP / (TP + FP/2 + FN/2)``, ``SQ`` = mean IoU of the pairs, ``PQ = DQ * SQ``.

Per image (:func:`instance_scores`) and pooled over images (:func:`pooled_scores`: TP/FP/FN, IoU
sums, AJI intersections and unions and Dice counts summed over the images, then divided). An image
with neither truth nor predicted objects scores 1.0 everywhere; an image with only one of them 0.0.

GlaS object metrics (Sirinukunwattana et al., Medical Image Analysis 2017), :func:`glas_object_scores`:

- ``object_f1``: a predicted object is a true positive when it covers more than 50 % of the area of
  the truth object it overlaps most; each truth object is detected at most once (more than half of
  it can be covered by one prediction only). ``F1 = 2 TP / (2 TP + FP + FN)``.
- ``object_dice``: ``1/2 [sum_i g_i Dice(G_i, S*(G_i)) + sum_j s_j Dice(G*(S_j), S_j)]`` with
  ``S*(G_i)`` the prediction overlapping ``G_i`` most (Dice 0 when none does), ``G*(S_j)`` likewise,
  and weights ``g_i = |G_i| / sum |G|``, ``s_j = |S_j| / sum |S|``.
- ``object_hausdorff``: the same weighted sum of Hausdorff distances (pixels), where an object that
  overlaps nothing is paired with the object of the other image nearest in Hausdorff distance;
  ``inf`` when exactly one image has no objects, 0.0 when neither has.

Overlaps come from one contingency table of the paired labels (``np.unique`` of combined keys), so
the cost is a few sorts of the image, not a Python loop over objects; only the Hausdorff distances
loop over objects, each on its bounding box.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from ..errors import WeaksegError

PQ_IOU = 0.5


def check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """``labels`` as a 2-D integer array, or a :class:`WeaksegError` naming its dtype / shape."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise WeaksegError(f"{name} must be a 2-D label image, got shape {labels.shape}")
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise WeaksegError(f"{name} must be an integer label image (0 = background), got dtype {labels.dtype}")
    if np.issubdtype(labels.dtype, np.signedinteger) and labels.size and labels.min() < 0:
        raise WeaksegError(f"{name} has negative labels (min {labels.min()}); 0 is background, objects are > 0")
    return labels


@dataclass(frozen=True)
class Overlaps:
    """Contingency table of two label images.

    ``truth_ids`` / ``pred_ids``: the object labels (ascending, 0 excluded) and ``truth_area`` /
    ``pred_area`` their pixel counts. ``ti`` / ``pj`` / ``inter``: one entry per overlapping pair,
    indices into the id arrays and the pixels they share.
    """

    truth_ids: np.ndarray
    truth_area: np.ndarray
    pred_ids: np.ndarray
    pred_area: np.ndarray
    ti: np.ndarray
    pj: np.ndarray
    inter: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        """IoU of every overlapping pair."""
        return self.inter / (self.truth_area[self.ti] + self.pred_area[self.pj] - self.inter)

    def best_for_truth(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(truth index, pair index)`` of the pair of largest ``key`` per overlapped truth object."""
        return _best_per_group(self.ti, self.pj, key)

    def best_for_pred(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(pred index, pair index)`` of the pair of largest ``key`` per overlapped predicted object."""
        return _best_per_group(self.pj, self.ti, key)


def _best_per_group(group: np.ndarray, other: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct ``group`` value, the entry of largest ``key`` (smallest ``other`` on ties)."""
    order = np.lexsort((other, -key, group))
    groups, first = np.unique(group[order], return_index=True)
    return groups, order[first]


def overlaps(truth: np.ndarray, pred: np.ndarray) -> Overlaps:
    """The :class:`Overlaps` of two label images of one shape."""
    truth, pred = check_labels(truth, "truth"), check_labels(pred, "pred")
    if truth.shape != pred.shape:
        raise WeaksegError(f"truth and pred shapes differ: {truth.shape} vs {pred.shape}")
    t_ids, t_inv, t_area = np.unique(truth.ravel(), return_inverse=True, return_counts=True)
    p_ids, p_inv, p_area = np.unique(pred.ravel(), return_inverse=True, return_counts=True)
    t_bg, p_bg = int(t_ids.size > 0 and t_ids[0] == 0), int(p_ids.size > 0 and p_ids[0] == 0)
    both = (t_inv >= t_bg) & (p_inv >= p_bg)
    n_p = p_ids.size
    keys, inter = np.unique((t_inv[both] - t_bg).astype(np.int64) * n_p + (p_inv[both] - p_bg), return_counts=True)
    return Overlaps(
        truth_ids=t_ids[t_bg:],
        truth_area=t_area[t_bg:].astype(np.int64),
        pred_ids=p_ids[p_bg:],
        pred_area=p_area[p_bg:].astype(np.int64),
        ti=keys // n_p if n_p else keys,
        pj=keys % n_p if n_p else keys,
        inter=inter.astype(np.int64),
    )


@dataclass(frozen=True)
class InstanceCounts:
    """Additive counts behind Dice, AJI and PQ; ``a + b`` pools two images."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou_sum: float = 0.0
    aji_inter: int = 0
    aji_union: int = 0
    fg_inter: int = 0
    fg_total: int = 0

    def __add__(self, other: InstanceCounts) -> InstanceCounts:
        return InstanceCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def scores(self) -> dict[str, float]:
        """``dice``, ``aji``, ``dq``, ``sq``, ``pq`` (1.0 each when there were no objects at all)."""
        dice = 2 * self.fg_inter / self.fg_total if self.fg_total else 1.0
        aji = self.aji_inter / self.aji_union if self.aji_union else 1.0
        n = self.tp + 0.5 * self.fp + 0.5 * self.fn
        dq = self.tp / n if n else 1.0
        sq = self.iou_sum / self.tp if self.tp else (0.0 if n else 1.0)
        return {"dice": dice, "aji": aji, "dq": dq, "sq": sq, "pq": dq * sq}


def instance_counts(truth: np.ndarray, pred: np.ndarray) -> InstanceCounts:
    """The :class:`InstanceCounts` of one image."""
    ov = overlaps(truth, pred)
    iou = ov.iou
    paired = iou > PQ_IOU
    tp = int(paired.sum())
    # AJI: each truth object with its best-IoU prediction; unmatched truth adds its area, unused preds theirs
    t_best, pair = ov.best_for_truth(iou)
    union = ov.truth_area.sum() - ov.truth_area[t_best].sum()  # truth objects overlapping nothing
    union += (ov.truth_area[t_best] + ov.pred_area[ov.pj[pair]] - ov.inter[pair]).sum()
    used = np.zeros(ov.pred_ids.size, dtype=bool)
    used[ov.pj[pair]] = True
    union += ov.pred_area[~used].sum()
    return InstanceCounts(
        tp=tp,
        fp=int(ov.pred_ids.size - tp),
        fn=int(ov.truth_ids.size - tp),
        iou_sum=float(iou[paired].sum()),
        aji_inter=int(ov.inter[pair].sum()),
        aji_union=int(union),
        fg_inter=int(ov.inter.sum()),
        fg_total=int(ov.truth_area.sum() + ov.pred_area.sum()),
    )


def instance_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Dice, AJI, DQ, SQ and PQ of one image (see the module docstring)."""
    return instance_counts(truth, pred).scores()


def pooled_scores(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Dice, AJI, DQ, SQ and PQ pooled over ``(truth, pred)`` images (counts summed, then divided)."""
    total = InstanceCounts()
    for truth, pred in pairs:
        total = total + instance_counts(truth, pred)
    return total.scores()


# --- GlaS object metrics ----------------------------------------------------------------------


def object_f1(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """GlaS object detection: ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``."""
    return _object_f1(overlaps(truth, pred))


def _object_f1(ov: Overlaps) -> dict[str, float]:
    p_best, pair = ov.best_for_pred(ov.inter.astype(float))
    tp = int((ov.inter[pair] > 0.5 * ov.truth_area[ov.ti[pair]]).sum())
    fp, fn = ov.pred_ids.size - tp, ov.truth_ids.size - tp
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
    }


def object_dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """GlaS object Dice (area-weighted, symmetric; see the module docstring)."""
    return _object_dice(overlaps(truth, pred))


def _object_dice(ov: Overlaps) -> float:
    if not ov.truth_ids.size and not ov.pred_ids.size:
        return 1.0
    if not ov.truth_ids.size or not ov.pred_ids.size:
        return 0.0
    dice = 2 * ov.inter / (ov.truth_area[ov.ti] + ov.pred_area[ov.pj])
    total = 0.0
    for best, area in ((ov.best_for_truth, ov.truth_area), (ov.best_for_pred, ov.pred_area)):
        idx, pair = best(ov.inter.astype(float))
        total += 0.5 * float((area[idx] * dice[pair]).sum() / area.sum())
    return total


def object_hausdorff(truth: np.ndarray, pred: np.ndarray) -> float:
    """GlaS object Hausdorff distance in pixels (area-weighted, symmetric; see the module docstring)."""
    return _object_hausdorff(check_labels(truth, "truth"), check_labels(pred, "pred"), overlaps(truth, pred))


def _object_hausdorff(truth: np.ndarray, pred: np.ndarray, ov: Overlaps) -> float:
    if not ov.truth_ids.size and not ov.pred_ids.size:
        return 0.0
    if not ov.truth_ids.size or not ov.pred_ids.size:
        return float("inf")
    total = 0.0
    sides = (
        (truth, ov.truth_ids, ov.truth_area, ov.best_for_truth, ov.pj, pred, ov.pred_ids),
        (pred, ov.pred_ids, ov.pred_area, ov.best_for_pred, ov.ti, truth, ov.truth_ids),
    )
    for labels, ids, area, best, other_idx, other, other_ids in sides:
        idx, pair = best(ov.inter.astype(float))
        partner = np.full(ids.size, -1)
        partner[idx] = other_ids[other_idx[pair]]
        boxes, other_boxes = ndimage.find_objects(labels), ndimage.find_objects(other)
        dist = np.empty(ids.size)
        for k, (label, match) in enumerate(zip(ids, partner)):
            if match >= 0:
                box = _union_box(boxes[label - 1], other_boxes[match - 1])
                dist[k] = _hausdorff(labels[box] == label, other[box] == match)
            else:
                dist[k] = _nearest_hausdorff(labels == label, other, other_ids)
        total += 0.5 * float((area * dist).sum() / area.sum())
    return total


def _union_box(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a, b))


def _hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Hausdorff distance between two non-empty pixel sets (distance transforms on their joint box)."""
    a, b = np.pad(a, 1), np.pad(b, 1)
    return float(max(ndimage.distance_transform_edt(~b)[a].max(), ndimage.distance_transform_edt(~a)[b].max()))


def _nearest_hausdorff(a: np.ndarray, other: np.ndarray, other_ids: np.ndarray) -> float:
    """Smallest Hausdorff distance from the pixel set ``a`` to any object of ``other``.

    ``max_{b in B} d(b, a)`` (one distance transform of ``a``) bounds each candidate ``B`` from
    below, so exact distances are computed in that order until the bound reaches the best one.
    """
    lower = np.asarray(ndimage.maximum(ndimage.distance_transform_edt(~a), other, other_ids))
    boxes = ndimage.find_objects(other)
    a_box = ndimage.find_objects(a.astype(np.uint8))[0]
    best = float("inf")
    for k in np.argsort(lower, kind="stable"):
        if lower[k] >= best:
            break
        box = _union_box(a_box, boxes[other_ids[k] - 1])
        best = min(best, _hausdorff(a[box], other[box] == other_ids[k]))
    return best


def glas_object_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """``object_f1``, ``object_dice`` and ``object_hausdorff`` of one image (GlaS definitions)."""
    truth, pred = check_labels(truth, "truth"), check_labels(pred, "pred")
    ov = overlaps(truth, pred)
    return {
        "object_f1": _object_f1(ov)["f1"],
        "object_dice": _object_dice(ov),
        "object_hausdorff": _object_hausdorff(truth, pred, ov),
    }
