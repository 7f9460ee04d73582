"""Segmentation metrics and their reports."""

from .report import markdown_table, write_report
from .seg import BASELINES, SegEvaluator, SlideCounts, SlideTruth, average_precision_from_hist, slide_counts

__all__ = [
    "BASELINES",
    "SegEvaluator",
    "SlideCounts",
    "SlideTruth",
    "average_precision_from_hist",
    "markdown_table",
    "slide_counts",
    "write_report",
]
