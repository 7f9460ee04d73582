"""Pixel segmentation metrics of cancer probability maps, per slide, pooled and per provider.

Pixels are evaluated where the ground truth is labelled tissue (common labels 1 benign or
2 cancer; 0 background/unknown is ignored), intersected with an optional tissue mask. A pixel is
predicted cancer when ``p >= threshold``, benign otherwise, giving Dice and IoU for both classes.
Average precision (PR-AUC) of the cancer probability is computed from 1000-bin histograms, so
slides accumulate in constant memory and pooled AP is exact up to that binning.

Per-slide scores in :meth:`SegEvaluator.per_slide` and the ``*_mean`` columns of
:meth:`SegEvaluator.summary` give Dice/IoU **1.0** to a class that is neither in the truth nor in
the prediction of a slide (a negative slide predicted all benign scores cancer Dice 1.0, one
false-positive pixel scores 0.0), so every method is averaged over the same slides.
``*_mean_pos`` / ``*_mean_neg`` split the means by slides with / without cancer pixels in the
truth (``n_pos`` / ``n_neg``); ``fp_fraction_neg`` is the pooled share of the negative slides'
pixels predicted cancer. AP is undefined without cancer pixels: ``ap_cancer_mean`` is over the
positive slides. :meth:`SlideCounts.scores` keeps ``NaN`` for undefined scores by default
(``empty=``). Pooled scores sum the counts of all slides. Two naive baselines are scored from
the ground truth alone:
``all-cancer`` (every tissue pixel is cancer) and ``slide-label`` (a positive slide's label
painted on all its tissue).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import WeaksegError
from ..labels import BENIGN, CANCER

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

    @property
    def positive(self) -> bool:
        """The ground truth holds cancer pixels."""
        return bool(self.hist_pos.sum() > 0)

    def scores(self, empty: float = float("nan")) -> dict[str, float]:
        """Dice/IoU per class, cancer AP, pixel count and cancer share.

        ``empty``: the Dice/IoU of a class found neither in the truth nor in the prediction
        (``NaN``, the default, or 1.0 as in :meth:`SegEvaluator.per_slide`); scores of a slide
        without any evaluated pixel stay ``NaN``.
        """
        out: dict[str, float] = {}
        n = float(self.hist_pos.sum() + self.hist_neg.sum())
        for k, name in enumerate(CLASSES):
            tp, fp, fn = (float(v) for v in self.conf[k])
            none = empty if n else float("nan")
            out[f"dice_{name}"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else none
            out[f"iou_{name}"] = tp / (tp + fp + fn) if tp + fp + fn else none
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
        """Score one slide of one method; returns its per-slide scores (``NaN`` where undefined)."""
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
        """One row per (method, slide) with Dice/IoU per class, AP and pixel counts.

        A class absent from both truth and prediction scores Dice/IoU 1.0 (see the module
        docstring); ``positive`` says whether the truth holds cancer pixels and
        ``cancer_predicted`` counts the pixels predicted cancer.
        """
        rows = [
            {"method": m, "slide_id": t.slide_id, "provider": t.provider, "label": t.label,
             **c.scores(empty=1.0), "positive": c.positive, "cancer_predicted": int(c.conf[1, 0] + c.conf[1, 1])}
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
                part = per_slide.iloc[idx]
                pos, neg = part[part["positive"]], part[~part["positive"]]
                row = {"method": method, "group": group, "n_slides": len(idx)}
                row.update({f"{k}_pooled": pooled[k] for k in metrics})
                row.update({f"{k}_mean": _mean(part[k]) for k in metrics})
                row.update({"n_pos": len(pos), "n_neg": len(neg)})
                row.update({f"{k}_mean_pos": _mean(pos[k]) for k in ("dice_cancer", "iou_cancer")})
                row.update({f"{k}_mean_neg": _mean(neg[k]) for k in ("dice_cancer", "iou_cancer")})
                neg_counts = [self._rows[i][2] for i in idx if not self._rows[i][2].positive]
                n_neg_px = sum(int(c.hist_neg.sum()) for c in neg_counts)
                fp_neg = sum(int(c.conf[1, 1]) for c in neg_counts)
                row["fp_fraction_neg"] = fp_neg / n_neg_px if n_neg_px else float("nan")
                rows.append(row)
        return pd.DataFrame(rows)


def _mean(values: pd.Series) -> float:
    """Mean of the defined values (``NaN`` when there are none), without warnings."""
    values = values.dropna()
    return float(values.mean()) if len(values) else float("nan")


def _sum(counts: Iterable[SlideCounts]) -> SlideCounts:
    it = iter(counts)
    total = next(it)
    for c in it:
        total = total + c
    return total


def _light(truth: SlideTruth) -> SlideTruth:
    """Drop the arrays: only metadata is kept per row."""
    return SlideTruth(truth.slide_id, np.empty(0), None, truth.provider, truth.label)
