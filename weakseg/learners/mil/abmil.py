"""Attention-based deep MIL (Ilse et al., 2018) with optional CLAM-SB instance clustering (Lu et al., 2021)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...data import MILBatch
from ...data.augment import Augmenter
from ...encoders import normalize_images
from ...errors import WeaksegError
from ...engine.contract import StepOutput
from ..base import AttentionMixin, Interval, register_learner
from .base import MILLearner
from .clam import INSTANCE_LOSSES, InstanceClassifiers, clam_instance_loss
from .pooling import AttentionPool

INSTANCE_SCORES = ("logit", "attention", "instance_classifier")


class AttentionMIL(nn.Module):
    """encoder → FC ``embed_dim`` + ReLU (+ dropout) → attention pooling → linear bag classifier.

    Because the classifier is linear, the bag logit is the attention-weighted mean of the
    per-instance logits ``classifier(h_k)``, which therefore serve as instance scores.
    """

    def __init__(self, encoder: nn.Module, *, embed_dim: int = 500, attention_dim: int = 128, gated: bool = False,
                 dropout: float = 0.0, instance_classifiers: bool = False, augment: bool | str | dict = False,
                 chunk_size: int = 512) -> None:
        super().__init__()
        self.encoder = encoder
        self.augmenter = Augmenter.of(augment)
        self.chunk_size = chunk_size
        self.project = nn.Sequential(nn.Linear(encoder.out_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.pool = AttentionPool(embed_dim, attention_dim, gated=gated, dropout=dropout)
        self.classifier = nn.Linear(embed_dim, 1)
        self.instance_classifiers = InstanceClassifiers(embed_dim) if instance_classifiers else None

    def _encode(self, flat: torch.Tensor) -> torch.Tensor:
        if self.encoder.input_kind == "image":
            if flat.dtype == torch.uint8:
                flat = flat.permute(0, 3, 1, 2).float().div_(255.0)
            if self.training:
                flat, _ = self.augmenter(flat)
            flat = normalize_images(flat, self.encoder)
        return self.project(self.encoder(flat.float()))

    def embed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Instance embeddings ``(B, N, embed_dim)`` (zeros at padded positions)."""
        flat = x[mask]
        if self.training or len(flat) <= self.chunk_size:
            e = self._encode(flat)
        else:
            e = torch.cat([self._encode(c) for c in flat.split(self.chunk_size)])
        h = e.new_zeros((*mask.shape, e.shape[-1]))
        h[mask] = e
        return h

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """``logit`` (B,), ``attention`` raw (B, N), ``weights`` (B, N), ``h`` (B, N, M), ``instance_logit`` (B, N)."""
        h = self.embed(x, mask)
        z, raw, weights = self.pool(h, mask)
        return {"logit": self.classifier(z).squeeze(-1), "attention": raw, "weights": weights, "h": h,
                "instance_logit": self.classifier(h).squeeze(-1)}


@register_learner("abmil")
class ABMIL(AttentionMixin, MILLearner):
    """Attention / gated-attention MIL from bag labels.

    Args:
        encoder: instance encoder name (:func:`weakseg.encoders.list_encoders`, any timm model
            trained end to end, or ``"features"`` for precomputed features).
        encoder_params: extra keyword arguments of the encoder factory.
        pretrained: start the encoder from local pretrained weights (``pretrained_path`` or the offline
            timm / Hugging Face caches; nothing downloads).
        pretrained_path: local weight file of the encoder.
        feature_key: feature-cache key with ``encoder="features"`` on HDF5 bags (default: the only one).
        embed_dim, attention_dim: ``M`` and ``L`` of Ilse et al. (500, 128).
        gated: gated attention.
        dropout: after the projection and inside attention (CLAM: 0.25).
        instance_loss: ``None`` or ``"clam"`` (CLAM-SB instance clustering).
        k_sample: CLAM's ``B``; ``k = min(B, N)`` per bag.
        instance_loss_fn: ``"svm"`` (smooth top-1 SVM) or ``"ce"``.
        bag_weight: total loss = ``bag_weight · bag + (1 − bag_weight) · instance`` (CLAM: 0.7).
        instance_score: what :meth:`instance_scores` returns: ``"logit"`` (sigmoid of the bag
            classifier applied to each instance), ``"attention"`` (raw attention score) or
            ``"instance_classifier"`` (CLAM's positive-class instance probability).
        max_instances: instances sampled per training bag without replacement (bounds memory);
            ``None`` keeps all. Inference always uses every instance.
        batch_size: bags per step (padded, masked).
        num_workers: DataLoader workers reading bags.
        augment: random flips / 90° rotations of image instances during training only.
        max_epochs, optimizer, lr, weight_decay, momentum, scheduler, scheduler_params, grad_clip,
        patience, min_epochs, device, amp, random_state: read by the training engine.
    """

    def __init__(
        self,
        *,
        encoder: str = "lenet_mnist",
        encoder_params: dict[str, Any] | None = None,
        pretrained: bool = False,
        pretrained_path: str | os.PathLike | None = None,
        feature_key: str | None = None,
        embed_dim: int = 500,
        attention_dim: int = 128,
        gated: bool = False,
        dropout: float = 0.0,
        instance_loss: str | None = None,
        k_sample: int = 8,
        instance_loss_fn: str = "svm",
        bag_weight: float = 0.7,
        instance_score: str = "logit",
        max_instances: int | None = 512,
        batch_size: int = 1,
        num_workers: int = 0,
        augment: bool | str | dict = False,
        max_epochs: int = 50,
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
        "embed_dim": Interval(int, 1, 2**16),
        "attention_dim": Interval(int, 1, 2**16),
        "k_sample": Interval(int, 1, 2**16),
        "bag_weight": Interval(float, 0, 1),
    }

    def _check_params(self) -> None:
        if self.instance_loss not in (None, "clam"):
            raise WeaksegError(f"abmil: instance_loss must be None or 'clam', got {self.instance_loss!r}")
        if self.instance_loss_fn not in INSTANCE_LOSSES:
            raise WeaksegError(f"abmil: instance_loss_fn must be one of {INSTANCE_LOSSES}, got {self.instance_loss_fn!r}")
        if self.instance_score not in INSTANCE_SCORES:
            raise WeaksegError(f"abmil: instance_score must be one of {INSTANCE_SCORES}, got {self.instance_score!r}")
        if self.instance_score == "instance_classifier" and self.instance_loss != "clam":
            raise WeaksegError("abmil: instance_score='instance_classifier' needs instance_loss='clam'")

    def build_module(self, info: dict[str, Any]) -> AttentionMIL:
        self._check_params()
        return AttentionMIL(
            self._build_encoder(info), embed_dim=self.embed_dim, attention_dim=self.attention_dim, gated=self.gated,
            dropout=self.dropout, instance_classifiers=self.instance_loss == "clam", augment=self.augment,
        )

    def _train_size(self) -> int | None:
        return self.max_instances

    def training_step(self, batch: MILBatch) -> StepOutput:
        out = self.module_(batch.x, batch.mask)
        bag_loss = F.binary_cross_entropy_with_logits(out["logit"], batch.y)
        if self.instance_loss != "clam":
            return StepOutput(bag_loss)
        inst_loss = clam_instance_loss(out["h"], out["attention"], batch.mask, batch.y.long(),
                                       self.module_.instance_classifiers, k_sample=self.k_sample,
                                       loss=self.instance_loss_fn)
        loss = self.bag_weight * bag_loss + (1.0 - self.bag_weight) * inst_loss
        return StepOutput(loss, logs={"bag_loss": float(bag_loss.detach()), "instance_loss": float(inst_loss.detach())})

    def _bag_outputs(self, batch: MILBatch) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.module_(batch.x, batch.mask)
        if self.instance_score == "attention":
            scores = out["attention"]
        elif self.instance_score == "instance_classifier":
            scores = torch.softmax(self.module_.instance_classifiers(out["h"], 1), dim=-1)[..., 1]
        else:
            scores = torch.sigmoid(out["instance_logit"])
        return torch.sigmoid(out["logit"]), scores

    @torch.inference_mode()
    def attention(self, bag: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(raw scores, softmax weights)`` over every instance of one bag (path, Bag or array)."""
        self._check_fitted()
        source = self._single(bag)
        idx = np.arange(source.n_instances(0))
        x = torch.from_numpy(np.ascontiguousarray(source.read(0, idx)))[None]
        device = getattr(self, "device_", torch.device("cpu"))
        was_training = self.module_.training
        self.module_.eval()
        try:
            out = self.module_(x.to(device), torch.ones(1, len(idx), dtype=torch.bool, device=device))
        finally:
            self.module_.train(was_training)
        return out["attention"][0].cpu().numpy(), out["weights"][0].cpu().numpy()
