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


def bag_outputs(learner, path: str | os.PathLike) -> tuple[tuple[str, str, int, float] | None, pd.DataFrame | None]:
    """One bag's evaluation inputs: ``(slide_id, provider, label, prob)`` when the slide label is known,
    and a frame ``slide_id, provider, score, cancer_fraction`` when the bag has ground truth per tile.

    A non-finite probability or tile score is a :class:`~weakseg.errors.WeaksegError` naming the bag.
    """
    from ..errors import WeaksegError

    path = os.fspath(path)
    with Bag(path) as bag:
        provider = bag.meta.data_provider or "unknown"
        slide_row = tiles = None
        if bag.label >= 0:
            p = float(learner.predict_proba([path])[0, 1])
            if not np.isfinite(p):
                raise WeaksegError(f"{path}: the model's slide probability is {p}")
            slide_row = (bag.slide_id, provider, bag.label, p)
        if bag.cancer_fraction is not None:
            score = np.asarray(learner.instance_scores(bag), dtype=np.float64)
            if not np.isfinite(score).all():
                bad = np.flatnonzero(~np.isfinite(score))
                raise WeaksegError(f"{path}: the model's tile scores are not finite (tile {int(bad[0])}"
                                   f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''})")
            tiles = pd.DataFrame({"slide_id": bag.slide_id, "provider": provider, "score": score,
                                  "cancer_fraction": bag.cancer_fraction})
    return slide_row, tiles


def evaluate_mil(learner, bags: Sequence[str | os.PathLike], *, positive_threshold: float = 0.5,
                 score_threshold: float = 0.5, failures: list[dict] | None = None) -> pd.DataFrame:
    """Score HDF5 ``bags`` with a fitted MIL learner and return :func:`mil_metrics_table`.

    Slides need a known ``label`` (>= 0); tile metrics use the bags that carry ``cancer_fraction``.
    With a ``failures`` list, a bag that cannot be scored (unreadable, a NaN from the model, ...)
    is appended to it as ``{"bag", "tile", "error"}`` and left out; without one, its error propagates.
    """
    slide_rows, tile_parts = [], []
    for path in bags:
        try:
            slide_row, tiles = bag_outputs(learner, path)
        except Exception as err:
            if failures is None:
                raise
            from ..errors import describe_failure

            message, row = describe_failure(err)
            failures.append({"bag": os.fspath(path), "tile": "" if row is None else row, "error": message})
            continue
        if slide_row is not None:
            slide_rows.append(slide_row)
        if tiles is not None:
            tile_parts.append(tiles)
    slides = pd.DataFrame(slide_rows, columns=["slide_id", "provider", "label", "prob"])
    tiles = pd.concat(tile_parts, ignore_index=True) if tile_parts else None
    return mil_metrics_table(slides, tiles, positive_threshold=positive_threshold, score_threshold=score_threshold)
