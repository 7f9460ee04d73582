"""Slide scores from tile scores: ``max``, ``mean`` or ``topk_mean`` (mean of the top ``max(1, ⌊fN⌋)``)."""

from __future__ import annotations

import numpy as np
import torch

AGGREGATIONS = ("max", "mean", "topk_mean")


def n_floor(n: int, frac: float) -> int:
    """``⌊frac · n⌋``, robust to float error (``0.7 · 10`` is 7, not 6)."""
    return int(np.floor(frac * n + 1e-9))


def n_top(n: int, frac: float) -> int:
    """``max(1, ⌊frac · n⌋)``: never 0, so a small bag still has a top set (no 0/0)."""
    return max(1, n_floor(n, frac))


def aggregate_scores(scores: np.ndarray | torch.Tensor, method: str = "max", topk_frac: float = 0.2) -> float:
    """One slide score from the 1-D tile scores of one slide."""
    s = torch.as_tensor(np.asarray(scores, dtype=np.float64)).ravel()
    if s.numel() == 0:
        raise ValueError("cannot aggregate an empty bag")
    mask = torch.ones(1, s.numel(), dtype=torch.bool)
    return float(aggregate(s.view(1, -1), mask, method, topk_frac)[0])


def aggregate(scores: torch.Tensor, mask: torch.Tensor, method: str = "max", topk_frac: float = 0.2) -> torch.Tensor:
    """Batched version: ``scores`` ``(B, N)``, ``mask`` bool ``(B, N)`` (False = padding) → ``(B,)``."""
    if method not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {method!r}")
    if method == "max":
        return scores.masked_fill(~mask, float("-inf")).amax(dim=1)
    counts = mask.sum(dim=1)
    if method == "mean":
        return (scores * mask).sum(dim=1) / counts
    ranked = scores.masked_fill(~mask, float("-inf")).sort(dim=1, descending=True).values
    ks = torch.tensor([n_top(int(c), topk_frac) for c in counts], device=scores.device)
    keep = torch.arange(scores.shape[1], device=scores.device).view(1, -1) < ks.view(-1, 1)
    return ranked.masked_fill(~keep, 0.0).sum(dim=1) / ks
