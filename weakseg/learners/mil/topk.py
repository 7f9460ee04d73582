"""Top-k MIL tile classifier from slide labels (Lerousseau et al., MICCAI 2020)."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...data import MILBatch
from ...data.augment import Augmenter
from ...encoders import normalize_images
from ...errors import WeaksegError
from ...engine.contract import StepOutput
from ..base import Interval, register_learner
from .aggregate import AGGREGATIONS, aggregate, n_floor, n_top
from .base import MILLearner


def topk_targets(logits: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, alpha: float = 0.2,
                 beta: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-labels of a padded batch, computed without gradient.

    Positive bag of ``n`` tiles: the top ``max(1, ⌊αn⌋)`` tiles by logit → 1, the bottom ``⌊βn⌋``
    (never overlapping the top set) → 0, the rest excluded. Negative bag: every tile → 0.
    Returns ``(targets, weights)`` ``(B, N)`` floats; ``weights`` is 1 where a tile enters the loss.
    """
    with torch.no_grad():
        targets = torch.zeros_like(logits, dtype=torch.float32)
        weights = mask.to(torch.float32).clone()
        for b in range(logits.shape[0]):
            if labels[b] < 0.5:
                continue
            valid = mask[b].nonzero().squeeze(1)
            n = int(valid.numel())
            k_top = n_top(n, alpha)
            k_bottom = min(n_floor(n, beta), n - k_top)
            order = valid[torch.argsort(logits[b, valid].detach(), descending=True)]
            weights[b] = 0.0
            targets[b, order[:k_top]] = 1.0
            weights[b, order[:k_top]] = 1.0
            if k_bottom > 0:
                weights[b, order[n - k_bottom:]] = 1.0
    return targets, weights


class TileClassifier(nn.Module):
    """encoder → linear head, one logit per instance."""

    def __init__(self, encoder: nn.Module, *, dropout: float = 0.0, augment: bool | str | dict = False,
                 chunk_size: int = 512) -> None:
        super().__init__()
        self.encoder = encoder
        self.augmenter = Augmenter.of(augment)
        self.chunk_size = chunk_size
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.out_dim, 1))

    def _logits(self, flat: torch.Tensor) -> torch.Tensor:
        if self.encoder.input_kind == "image":
            if flat.dtype == torch.uint8:
                flat = flat.permute(0, 3, 1, 2).float().div_(255.0)
            if self.training:
                flat, _ = self.augmenter(flat)
            flat = normalize_images(flat, self.encoder)
        return self.head(self.encoder(flat.float())).squeeze(-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, N)`` (0 at padded positions)."""
        flat = x[mask]
        if self.training or len(flat) <= self.chunk_size:
            e = self._logits(flat)
        else:
            e = torch.cat([self._logits(c) for c in flat.split(self.chunk_size)])
        out = e.new_zeros(mask.shape)
        out[mask] = e
        return out


@register_learner("topk_mil")
class TopKMIL(MILLearner):
    """Tile classifier trained from slide labels with top-α / bottom-β pseudo-labels.

    Args:
        encoder: tile encoder (timm model name, a registered encoder, or ``"features"``).
        encoder_params, pretrained, pretrained_path, feature_key: as for ``abmil``.
        alpha, beta: fractions of a positive bag's tiles labelled 1 (top) and 0 (bottom).
        bag_size: tiles sampled per training bag, without replacement; bags with fewer tiles
            are topped up by drawing with replacement (duplicates weigh more in the loss).
        aggregation: slide score from tile probabilities: ``"max"``, ``"mean"`` or ``"topk_mean"``
            (mean of the top ``max(1, ⌊topk_frac·n⌋)``).
        topk_frac: fraction used by ``"topk_mean"`` (default: ``alpha``).
        dropout: before the linear head.
        batch_size: bags per step; num_workers: DataLoader workers; augment: training-only
            flips / 90° rotations.
        max_epochs ... random_state: read by the training engine.

    Validation uses the slide AUC of aggregated tile probabilities on every tile, never the
    pseudo-label loss, and no augmentation.
    """

    _fill_bags = True

    def __init__(
        self,
        *,
        encoder: str = "resnet18",
        encoder_params: dict[str, Any] | None = None,
        pretrained: bool = False,
        pretrained_path: str | os.PathLike | None = None,
        feature_key: str | None = None,
        alpha: float = 0.2,
        beta: float = 0.2,
        bag_size: int = 150,
        aggregation: str = "max",
        topk_frac: float | None = None,
        dropout: float = 0.0,
        batch_size: int = 1,
        num_workers: int = 0,
        augment: bool | str | dict = True,
        max_epochs: int = 20,
        optimizer: str = "adam",
        lr: float = 5e-4,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: str = "none",
        scheduler_params: dict[str, Any] | None = None,
        grad_clip: float | None = None,
        patience: int | None = None,
        min_epochs: int = 0,
        device: str = "auto",
        amp: bool = False,
        amp_dtype: str = "auto",
        channels_last: bool = False,
        torch_compile: bool | str = False,
        sync_bn: bool = False,
        deterministic: bool = False,
        random_state: int = 0,
    ) -> None:
        self._store_params(locals())

    _parameter_constraints = {
        "alpha": Interval(float, 0, 1, closed="right"),
        "beta": Interval(float, 0, 1),
        "bag_size": Interval(int, 1, 2**20),
        "topk_frac": Interval(float, 0, 1, closed="right", none=True),
    }

    def _check_params(self) -> None:
        if not (0.0 < self.alpha <= 1.0 and 0.0 <= self.beta <= 1.0):
            raise WeaksegError(f"topk_mil: need 0 < alpha <= 1 and 0 <= beta <= 1, got {self.alpha}, {self.beta}")
        if self.aggregation not in AGGREGATIONS:
            raise WeaksegError(f"topk_mil: aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.bag_size < 1:
            raise WeaksegError(f"topk_mil: bag_size must be >= 1, got {self.bag_size}")

    def build_module(self, info: dict[str, Any]) -> TileClassifier:
        self._check_params()
        return TileClassifier(self._build_encoder(info), dropout=self.dropout, augment=self.augment)

    def _train_size(self) -> int | None:
        return self.bag_size

    def training_step(self, batch: MILBatch) -> StepOutput:
        logits = self.module_(batch.x, batch.mask)
        targets, weights = topk_targets(logits, batch.mask, batch.y, self.alpha, self.beta)
        per_tile = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        loss = (per_tile * weights).sum() / weights.sum()
        return StepOutput(loss, logs={"selected_tiles": float(weights.sum())})

    def _bag_outputs(self, batch: MILBatch) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.sigmoid(self.module_(batch.x, batch.mask))
        frac = self.alpha if self.topk_frac is None else self.topk_frac
        return aggregate(probs, batch.mask, self.aggregation, frac), probs
