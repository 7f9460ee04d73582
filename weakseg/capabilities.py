"""What a learner can do beyond slide probabilities, declared by mixins and read by :func:`learner_tags`.

Callers (slide maps, pixel metrics, refinement, multi-stage learners) ask :func:`learner_tags`
instead of probing for methods, so a capability is a declared part of a learner's contract. This
module depends on nothing else in weakseg: the learners, ``weakseg.refine`` and ``weakseg.api``
all read it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np


class PixelPredictorMixin:
    """A learner that predicts pixels: ``predict_tiles(tiles uint8 (B, T, T, 3)) -> float32 (B, T, T)``.

    Slide maps (``weakseg predict``), pixel metrics and refinement use learners with this mixin.
    """

    @abc.abstractmethod
    def predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """Cancer probability of every pixel of ``tiles``."""


class InstanceScorerMixin:
    """A learner that scores the instances (tiles) of a bag: ``instance_scores(bag) -> (n_tiles,)``.

    Every :class:`~weakseg.learners.Learner` has it.
    """

    @abc.abstractmethod
    def instance_scores(self, bag: Any) -> np.ndarray:
        """One score per instance (tile) of ``bag``, higher = more likely positive."""


class AttentionMixin:
    """A learner with attention over a bag's tiles: ``attention(bag) -> (scores, weights)``."""

    @abc.abstractmethod
    def attention(self, bag: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per-tile attention of ``bag``."""


class InstanceSegmenterMixin:
    """A learner that separates object instances (nuclei): ``predict_instances(images) -> [int labels]``;
    ``weakseg predict`` writes per-slide instance tables, detections and label images for it."""

    @abc.abstractmethod
    def predict_instances(self, X: Any) -> list[np.ndarray]:
        """Instance labels of each image."""


class ResumableFitMixin:
    """A learner whose ``fit`` takes ``run_dir`` (where its records and checkpoints go) and ``resume``
    (``True``, ``False`` or ``"auto"``, see :func:`weakseg.engine.resolve_resume`)."""


@dataclass(frozen=True)
class LearnerTags:
    """What a learner (class) can do, from its mixins: see :func:`learner_tags`."""

    supervision: str
    pixel_maps: bool
    instance_scores: bool
    attention: bool
    resumable: bool
    instances: bool = False


def learner_tags(learner: Any) -> LearnerTags:
    """The capabilities of a learner or learner class, as declared by its mixins."""
    cls = learner if isinstance(learner, type) else type(learner)
    return LearnerTags(supervision=getattr(cls, "supervision", ""), pixel_maps=issubclass(cls, PixelPredictorMixin),
                       instance_scores=issubclass(cls, InstanceScorerMixin), attention=issubclass(cls, AttentionMixin),
                       resumable=issubclass(cls, ResumableFitMixin), instances=issubclass(cls, InstanceSegmenterMixin))


__all__ = ["AttentionMixin", "InstanceScorerMixin", "InstanceSegmenterMixin", "LearnerTags", "PixelPredictorMixin", "ResumableFitMixin",
           "learner_tags"]
