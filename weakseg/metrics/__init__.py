"""Segmentation metrics and their reports."""

from .instance import (
    InstanceCounts,
    glas_object_scores,
    instance_counts,
    instance_scores,
    object_dice,
    object_f1,
    object_hausdorff,
    pooled_scores,
)
from .report import markdown_table, write_report
from .seg import BASELINES, SegEvaluator, SlideCounts, SlideTruth, average_precision_from_hist, slide_counts

__all__ = [
    "BASELINES",
    "InstanceCounts",
    "SegEvaluator",
    "SlideCounts",
    "SlideTruth",
    "average_precision_from_hist",
    "glas_object_scores",
    "instance_counts",
    "instance_scores",
    "markdown_table",
    "object_dice",
    "object_f1",
    "object_hausdorff",
    "pooled_scores",
    "slide_counts",
    "write_report",
]
