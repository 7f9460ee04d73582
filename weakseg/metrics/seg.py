"""Pixel segmentation metrics of cancer probability maps, per slide, pooled and per provider.

Pixels are evaluated where the ground truth is labelled tissue (common labels 1 benign or
2 cancer; 0 background/unknown is ignored), intersected with an optional tissue mask. A pixel is
predicted cancer when ``p >= threshold``, benign otherwise, giving Dice and IoU for both classes.
Average precision (PR-AUC) of the cancer probability is computed from 1000-bin histograms, so
slides accumulate in constant memory and pooled AP is exact up to that binning.

Per-slide scores are ``NaN`` where undefined (Dice/IoU with neither truth nor prediction of the
class; AP without cancer pixels) and are left out of the per-slide means. Pooled scores sum the
counts of all slides. Two naive baselines are scored from the ground truth alone:
``all-cancer`` (every tissue pixel is cancer) and ``slide-label`` (a positive slide's label
painted on all its tissue).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import WeaksegError

BENIGN, CANCER = 1, 2
N_BINS = 1000
CLASSES = {"benign": BENIGN, "cancer": CANCER}
BASELINES = ("baseline:all-cancer", "baseline:slide-label")


@dataclass(frozen=True)
class SlideTruth:
    """Ground truth of one slide: common labels (any shape), optional tissue mask, metadata."""

    slide_id: str
    labels: np.ndarray
    tissue: np.ndarray | None = None
    provider: str = ""
    label: int = -1


@dataclass
class SlideCounts:
    """Sufficient statistics of one (method, slide) pair."""

    conf: np.ndarray  # (2 classes, 3) tp, fp, fn
    hist_pos: np.ndarray  # (N_BINS,) cancer pixels per probability bin
    hist_neg: np.ndarray  # (N_BINS,) benign pixels per probability bin

    def __add__(self, other: SlideCounts) -> SlideCounts:
        return SlideCounts(self.conf + other.conf, self.hist_pos + other.hist_pos, self.hist_neg + other.hist_neg)

    def scores(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, name in enumerate(CLASSES):
            tp, fp, fn = (float(v) for v in self.conf[k])
            out[f"dice_{name}"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
            out[f"iou_{name}"] = tp / (tp + fp + fn) if tp + fp + fn else float("nan")
        out["ap_cancer"] = average_precision_from_hist(self.hist_pos, self.hist_neg)
        out["n_pixels"] = float(self.hist_pos.sum() + self.hist_neg.sum())
        out["cancer_fraction"] = float(self.hist_pos.sum()) / out["n_pixels"] if out["n_pixels"] else float("nan")
        return out


def average_precision_from_hist(pos: np.ndarray, neg: np.ndarray) -> float:
    """AP = sum over descending thresholds of (recall step) x precision (``sklearn`` definition)."""
    tp = np.cumsum(pos[::-1])
    fp = np.cumsum(neg[::-1])
    if tp[-1] == 0:
        return float("nan")
    keep = (pos[::-1] + neg[::-1]) > 0
    tp, fp = tp[keep], fp[keep]
    recall = tp / tp[-1]
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def slide_counts(prob: np.ndarray, truth: SlideTruth, threshold: float = 0.5) -> SlideCounts:
    """Confusion counts and probability histograms of one slide's cancer probabilities."""
    prob = np.asarray(prob, dtype=np.float32)
    labels = np.asarray(truth.labels)
    if prob.shape != labels.shape:
        raise WeaksegError(f"slide {truth.slide_id}: prediction shape {prob.shape} != ground truth shape {labels.shape}")
    valid = (labels == BENIGN) | (labels == CANCER)
    if truth.tissue is not None:
        if truth.tissue.shape != labels.shape:
            raise WeaksegError(f"slide {truth.slide_id}: tissue mask shape {truth.tissue.shape} != ground truth shape {labels.shape}")
        valid &= np.asarray(truth.tissue, dtype=bool)
    p, y = prob[valid], labels[valid] == CANCER
    if p.size and (not np.isfinite(p).all() or p.min() < 0 or p.max() > 1):
        raise WeaksegError(f"slide {truth.slide_id}: probabilities must be finite and lie in [0, 1]")
    pred = p >= threshold
    conf = np.zeros((2, 3), dtype=np.int64)
    for k, (pc, yc) in enumerate(((~pred, ~y), (pred, y))):
        conf[k] = [np.sum(pc & yc), np.sum(pc & ~yc), np.sum(~pc & yc)]
    bins = np.minimum((p * N_BINS).astype(np.int64), N_BINS - 1)
    return SlideCounts(
        conf,
        np.bincount(bins[y], minlength=N_BINS).astype(np.int64),
        np.bincount(bins[~y], minlength=N_BINS).astype(np.int64),
    )


class SegEvaluator:
    """Accumulate (method, slide) results; tables per slide and per method x group.

    >>> ev = SegEvaluator(threshold=0.5)
    >>> for truth in truths:
    ...     ev.add("topk", truth, prob_of[truth.slide_id])
    ...     ev.add_baselines(truth)
    >>> ev.summary()  # pooled and mean-of-slides scores per method, overall and per provider
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self._rows: list[tuple[str, SlideTruth, SlideCounts]] = []

    def add(self, method: str, truth: SlideTruth, prob: np.ndarray) -> dict[str, float]:
        """Score one slide of one method; returns its per-slide scores."""
        counts = slide_counts(prob, truth, self.threshold)
        self._rows.append((method, _light(truth), counts))
        return counts.scores()

    def add_baselines(self, truth: SlideTruth) -> None:
        """Score the naive baselines on this slide (needs ``truth.label`` for ``slide-label``)."""
        labels = np.asarray(truth.labels)
        self.add(BASELINES[0], truth, np.ones(labels.shape, dtype=np.float32))
        if truth.label < 0:
            raise WeaksegError(f"slide {truth.slide_id}: slide-label baseline needs a slide label (got {truth.label})")
        self.add(BASELINES[1], truth, np.full(labels.shape, float(truth.label > 0), dtype=np.float32))

    def per_slide(self) -> pd.DataFrame:
        """One row per (method, slide) with Dice/IoU per class, AP and pixel counts."""
        rows = [
            {"method": m, "slide_id": t.slide_id, "provider": t.provider, "label": t.label, **c.scores()}
            for m, t, c in self._rows
        ]
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """Per method and group (``all`` and each provider): pooled and mean-of-slides scores."""
        per_slide = self.per_slide()
        if per_slide.empty:
            return pd.DataFrame()
        metrics = ["dice_cancer", "iou_cancer", "dice_benign", "iou_benign", "ap_cancer"]
        rows = []
        groups = ["all"] + sorted({t.provider for _, t, _ in self._rows if t.provider})
        for method in dict.fromkeys(m for m, _, _ in self._rows):
            for group in groups:
                idx = [i for i, (m, t, _) in enumerate(self._rows) if m == method and group in ("all", t.provider)]
                if not idx:
                    continue
                pooled = _sum(self._rows[i][2] for i in idx).scores()
                means = per_slide.iloc[idx][metrics].mean(skipna=True)
                row = {"method": method, "group": group, "n_slides": len(idx)}
                row.update({f"{k}_pooled": pooled[k] for k in metrics})
                row.update({f"{k}_mean": float(means[k]) for k in metrics})
                rows.append(row)
        return pd.DataFrame(rows)


def _sum(counts: Iterable[SlideCounts]) -> SlideCounts:
    it = iter(counts)
    total = next(it)
    for c in it:
        total = total + c
    return total


def _light(truth: SlideTruth) -> SlideTruth:
    """Drop the arrays: only metadata is kept per row."""
    return SlideTruth(truth.slide_id, np.empty(0), None, truth.provider, truth.label)
