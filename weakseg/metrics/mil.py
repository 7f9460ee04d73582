"""MIL evaluation: slide-level AUC / accuracy and tile-level AUC / F1 / precision / recall.

Tile ground truth comes from a bag's ``cancer_fraction`` (a tile is positive when its fraction
exceeds ``positive_threshold``). Results are a tidy DataFrame, one row per
``(provider, level, metric)`` with the number of items it was computed on; provider ``"all"``
pools every slide.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from ..bags import Bag

COLUMNS = ["provider", "level", "metric", "value", "n"]


def binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, or NaN when ``y_true`` holds a single class."""
    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) < 2:
        return float("nan")
    return float(roc_auc_score(y_true, np.asarray(score, dtype=np.float64)))


def slide_metrics(y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """``slide_auc`` and ``slide_accuracy`` (positive when ``prob >= threshold``)."""
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, dtype=np.float64)
    return {
        "slide_auc": binary_auc(y_true, prob),
        "slide_accuracy": float(np.mean((prob >= threshold).astype(int) == y_true)) if len(y_true) else float("nan"),
    }


def tile_metrics(score: np.ndarray, cancer_fraction: np.ndarray, *, positive_threshold: float = 0.5,
                 score_threshold: float = 0.5) -> dict[str, float]:
    """``tile_auc``, ``tile_f1``, ``tile_precision``, ``tile_recall`` of tile scores against ground truth."""
    truth = (np.asarray(cancer_fraction) > positive_threshold).astype(int)
    score = np.asarray(score, dtype=np.float64)
    pred = (score >= score_threshold).astype(int)
    kw = {"zero_division": 0}
    return {
        "tile_auc": binary_auc(truth, score),
        "tile_f1": float(f1_score(truth, pred, **kw)),
        "tile_precision": float(precision_score(truth, pred, **kw)),
        "tile_recall": float(recall_score(truth, pred, **kw)),
    }


def mil_metrics_table(
    slides: pd.DataFrame,
    tiles: pd.DataFrame | None = None,
    *,
    positive_threshold: float = 0.5,
    score_threshold: float = 0.5,
    slide_threshold: float = 0.5,
) -> pd.DataFrame:
    """Tidy metrics per provider and pooled.

    ``slides``: columns ``slide_id, provider, label, prob``; ``tiles`` (optional): columns
    ``slide_id, provider, score, cancer_fraction``.
    """
    rows = []
    groups = [("all", slides)] + [(p, g) for p, g in slides.groupby("provider", sort=True)]
    for provider, g in groups:
        for metric, value in slide_metrics(g["label"].to_numpy(), g["prob"].to_numpy(), slide_threshold).items():
            rows.append((provider, "slide", metric, value, len(g)))
    if tiles is not None and len(tiles):
        groups = [("all", tiles)] + [(p, g) for p, g in tiles.groupby("provider", sort=True)]
        for provider, g in groups:
            values = tile_metrics(g["score"].to_numpy(), g["cancer_fraction"].to_numpy(),
                                  positive_threshold=positive_threshold, score_threshold=score_threshold)
            for metric, value in values.items():
                rows.append((provider, "tile", metric, value, len(g)))
    return pd.DataFrame(rows, columns=COLUMNS)


def evaluate_mil(learner, bags: Sequence[str | os.PathLike], *, positive_threshold: float = 0.5,
                 score_threshold: float = 0.5) -> pd.DataFrame:
    """Score HDF5 ``bags`` with a fitted MIL learner and return :func:`mil_metrics_table`.

    Slides need a known ``label`` (>= 0); tile metrics use the bags that carry ``cancer_fraction``.
    """
    paths = [os.fspath(p) for p in bags]
    prob = learner.predict_proba(paths)[:, 1]
    slide_rows, tile_parts = [], []
    for path, p in zip(paths, prob):
        with Bag(path) as bag:
            provider = bag.meta.data_provider or "unknown"
            if bag.label >= 0:
                slide_rows.append((bag.slide_id, provider, bag.label, float(p)))
            if bag.cancer_fraction is not None:
                tile_parts.append(pd.DataFrame({
                    "slide_id": bag.slide_id, "provider": provider,
                    "score": learner.instance_scores(bag), "cancer_fraction": bag.cancer_fraction,
                }))
    slides = pd.DataFrame(slide_rows, columns=["slide_id", "provider", "label", "prob"])
    tiles = pd.concat(tile_parts, ignore_index=True) if tile_parts else None
    return mil_metrics_table(slides, tiles, positive_threshold=positive_threshold, score_threshold=score_threshold)
