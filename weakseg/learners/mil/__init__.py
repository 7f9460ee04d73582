"""MIL learners from slide labels: ``abmil`` (attention / gated attention, optional CLAM-SB
instance clustering) and ``topk_mil`` (Lerousseau et al. 2020 top-k tile classifier)."""

from .abmil import ABMIL, AttentionMIL
from .aggregate import AGGREGATIONS, aggregate, aggregate_scores
from .clam import InstanceClassifiers, clam_instance_loss, smooth_top1_svm
from .pooling import AttentionPool
from .topk import TileClassifier, TopKMIL, topk_targets

__all__ = [
    "ABMIL",
    "AGGREGATIONS",
    "AttentionMIL",
    "AttentionPool",
    "InstanceClassifiers",
    "TileClassifier",
    "TopKMIL",
    "aggregate",
    "aggregate_scores",
    "clam_instance_loss",
    "smooth_top1_svm",
    "topk_targets",
]
