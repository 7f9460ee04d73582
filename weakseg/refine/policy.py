"""Pseudo-label policies of the refinement loop.

Targets are uint8 per pixel: :data:`POSITIVE` 1, :data:`NEGATIVE` 0, :data:`IGNORE` 255.
*Fixed* pixels never change: given positives of PU bags, every pixel of a negative slide and
background. The other (free) tissue pixels start from the naive labels of the supervision
(:func:`initial_targets`) and are relabelled each round from the model's probabilities by a
:class:`LabelPolicy`, which picks per slide an upper and a lower threshold: ``p > hi`` becomes
positive, ``p < lo`` negative, anything between is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..bags import Bag
from ..labels import IGNORE, NEGATIVE, POSITIVE, PU_EXCLUDED, PU_POSITIVE
from ..tissue import detect_tissue
from ..weaken import read_pu_labels

N_BINS = 256  # probabilities are handled quantised to uint8 (p * 255)


class LabelPolicy(Protocol):
    """Chooses a slide's thresholds from the histogram of its free pixels' probabilities."""

    def thresholds(self, hist: np.ndarray, slide_label: int) -> tuple[float, float]:
        """``(hi, lo)`` in [0, 1] given ``hist`` (256 bins of uint8-quantised probabilities)."""
        ...


@dataclass(frozen=True)
class ThresholdPolicy:
    """Confidence thresholds: ``p > hi`` → positive, ``p < lo`` → negative, else ignored."""

    hi: float = 0.7
    lo: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.lo <= self.hi <= 1.0:
            raise ValueError(f"need 0 <= lo <= hi <= 1, got lo={self.lo}, hi={self.hi}")

    def thresholds(self, hist: np.ndarray, slide_label: int) -> tuple[float, float]:
        return self.hi, self.lo


@dataclass(frozen=True)
class TopKPolicy:
    """Per slide: the top ``top`` fraction of free tissue pixels → positive, the bottom ``bottom`` → negative.

    Ties at a cut-off go to the ignored middle, so at most the requested fractions are labelled.
    """

    top: float = 0.2
    bottom: float = 0.2

    def __post_init__(self) -> None:
        if not (0.0 <= self.top <= 1.0 and 0.0 <= self.bottom <= 1.0 and self.top + self.bottom <= 1.0):
            raise ValueError(f"top and bottom must be fractions summing to <= 1, got {self.top}, {self.bottom}")

    def thresholds(self, hist: np.ndarray, slide_label: int) -> tuple[float, float]:
        n = hist.sum()
        if n == 0:
            return 1.0, 0.0
        above = np.cumsum(hist[::-1])[::-1]  # pixels with bin >= b
        below = np.cumsum(hist)  # pixels with bin <= b
        ok_hi = np.flatnonzero(above <= self.top * n)  # bins b such that "bin >= b" fits in top
        ok_lo = np.flatnonzero(below <= self.bottom * n)
        hi = (ok_hi[0] - 0.5) / 255 if ok_hi.size else 1.0
        lo = (ok_lo[-1] + 0.5) / 255 if ok_lo.size else 0.0
        return float(max(hi, 0.0)), float(min(lo, 1.0))


def initial_targets(bag: Bag, idx: np.ndarray, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round-0 targets and the fixed-pixel mask of tiles ``idx`` of a weak bag.

    PU bags (``pu_labels``): given positives fixed, other tissue negative (the naive PU start),
    background fixed ignored. Slide-level bags: tissue (:func:`detect_tissue` per tile) takes the
    slide label. Every tissue pixel of a negative slide is a fixed negative. Tissue is exactly
    where the returned targets are not :data:`IGNORE`.
    """
    if "pu_labels" in bag.h5:
        pu = read_pu_labels(bag, idx)
        tissue = pu != PU_EXCLUDED
        given = pu == PU_POSITIVE
    else:
        tissue = np.stack([detect_tissue(t) for t in tiles]) if len(tiles) else np.zeros(tiles.shape[:3], bool)
        given = np.zeros_like(tissue)
    negative_slide = bag.label == 0
    targets = np.full(tissue.shape, IGNORE, dtype=np.uint8)
    targets[tissue] = NEGATIVE if negative_slide or "pu_labels" in bag.h5 else POSITIVE
    targets[given] = POSITIVE
    fixed = ~tissue | given | negative_slide
    return targets, fixed


def relabel(prob_u8: np.ndarray, targets: np.ndarray, fixed: np.ndarray, hi: float, lo: float) -> np.ndarray:
    """New targets: fixed pixels keep theirs, free ones follow the thresholds (``prob_u8 = p * 255``)."""
    p = prob_u8.astype(np.float32) / 255
    new = np.where(p > hi, POSITIVE, np.where(p < lo, NEGATIVE, IGNORE)).astype(np.uint8)
    return np.where(fixed, targets, new).astype(np.uint8)
