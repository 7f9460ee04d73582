"""Learners: the registry and the built-in learners (imported here so they register)."""

from .base import (
    LEARNERS,
    SUPERVISIONS,
    AttentionMixin,
    Learner,
    LearnerTags,
    PixelPredictorMixin,
    ResumableFitMixin,
    StepOutput,
    TorchLearner,
    create_learner,
    learner_tags,
    list_learners,
    register_learner,
)

__all__ = [
    "LEARNERS",
    "SUPERVISIONS",
    "AttentionMixin",
    "Learner",
    "LearnerTags",
    "PixelPredictorMixin",
    "ResumableFitMixin",
    "StepOutput",
    "TorchLearner",
    "create_learner",
    "learner_tags",
    "list_learners",
    "register_learner",
]

from . import mil  # noqa: E402,F401  (registers abmil, topk_mil)
from . import seg  # noqa: E402,F401  (registers nnpu_seg, supervised_seg)
from . import mil_seg  # noqa: E402,F401  (registers mil_seg)
from . import nuclei  # noqa: E402,F401  (registers hovernet_seg, hovernet_pu)
