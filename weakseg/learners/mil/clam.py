"""CLAM-SB instance-level clustering loss (Lu et al., 2021).

For each bag the ``k = min(B, N)`` most- and least-attended instances become pseudo-positive
and pseudo-negative examples of the bag's own class, scored by that class's instance classifier
(single-branch CLAM without subtyping: no out-of-class term). With ``N < 2k`` both sets overlap,
which only pulls the shared instances towards 0.5; ``k = min(B, N)`` keeps bags smaller than ``B``
(which crashed the reference code) working.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

INSTANCE_LOSSES = ("svm", "ce")


def smooth_top1_svm(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, tau: float = 1.0) -> torch.Tensor:
    """Smooth top-1 multiclass SVM loss (Berrada et al., 2018), mean over rows.

    ``τ · log Σ_j exp((α·[j ≠ y] + s_j) / τ) − s_y``; as ``τ → 0`` it becomes the hinge
    ``max_j(α·[j ≠ y] + s_j) − s_y``.
    """
    margin = torch.full_like(logits, alpha)
    margin.scatter_(1, target.view(-1, 1), 0.0)
    s_y = logits.gather(1, target.view(-1, 1)).squeeze(1)
    return (tau * torch.logsumexp((logits + margin) / tau, dim=1) - s_y).mean()


class InstanceClassifiers(nn.Module):
    """One 2-way instance classifier per bag class, as in CLAM."""

    def __init__(self, in_dim: int, n_classes: int = 2) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(in_dim, 2) for _ in range(n_classes))

    def forward(self, h: torch.Tensor, cls: int) -> torch.Tensor:
        return self.heads[cls](h)


def clam_instance_loss(
    h: torch.Tensor,
    raw_attention: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    classifiers: InstanceClassifiers,
    *,
    k_sample: int = 8,
    loss: str = "svm",
) -> torch.Tensor:
    """Mean instance clustering loss over a padded batch.

    ``h`` ``(B, N, M)`` embeddings, ``raw_attention`` ``(B, N)`` scores, ``mask`` bool ``(B, N)``,
    ``labels`` ``(B,)`` bag labels in {0, 1}.
    """
    if loss not in INSTANCE_LOSSES:
        raise ValueError(f"instance loss must be one of {INSTANCE_LOSSES}, got {loss!r}")
    losses = []
    for b in range(h.shape[0]):
        valid = mask[b].nonzero().squeeze(1)
        k = min(k_sample, int(valid.numel()))
        a = raw_attention[b, valid]
        top = valid[torch.topk(a, k).indices]
        bottom = valid[torch.topk(-a, k).indices]
        inst = torch.cat([h[b, top], h[b, bottom]])
        target = torch.cat([torch.ones(k, dtype=torch.long), torch.zeros(k, dtype=torch.long)]).to(h.device)
        logits = classifiers(inst, int(labels[b].item()))
        losses.append(smooth_top1_svm(logits, target) if loss == "svm" else F.cross_entropy(logits, target))
    return torch.stack(losses).mean()
