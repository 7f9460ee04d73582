"""Pseudo-label refinement (self-training) over any weakseg learner."""

from .labels import label_bag_writer, read_pseudo_labels
from .loop import ROUNDS_CSV, RefineResult, refine
from .policy import IGNORE, NEGATIVE, POSITIVE, LabelPolicy, ThresholdPolicy, TopKPolicy, initial_targets, relabel

__all__ = [
    "IGNORE",
    "NEGATIVE",
    "POSITIVE",
    "ROUNDS_CSV",
    "LabelPolicy",
    "RefineResult",
    "ThresholdPolicy",
    "TopKPolicy",
    "initial_targets",
    "label_bag_writer",
    "read_pseudo_labels",
    "refine",
    "relabel",
]
