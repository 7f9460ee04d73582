"""Supervised segmentation loss of TransUNet: 0.5·cross-entropy + 0.5·soft Dice."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_labels(target: torch.Tensor, n_classes: int, ignore_index: int) -> None:
    valid = target[target != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= n_classes):
        raise ValueError(
            f"target holds labels {sorted(set(valid.unique().tolist()))} outside 0..{n_classes - 1} "
            f"(and ignore_index={ignore_index})"
        )


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255, smooth: float = 1e-5
) -> torch.Tensor:
    """Multi-class soft Dice loss, 1 − mean_c (2·Σ p_c·t_c + s) / (Σ p_c + Σ t_c + s).

    ``logits`` ``(B, C, H, W)``, ``target`` ``(B, H, W)`` integer labels; pixels equal to
    ``ignore_index`` are excluded from every sum. Probabilities are the softmax over C
    (sigmoid when C = 1, with target 1 the foreground). Sums run over the whole batch.
    """
    _check_labels(target, max(logits.shape[1], 2), ignore_index)
    keep = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    safe = torch.where(target == ignore_index, torch.zeros_like(target), target).long()
    if logits.shape[1] == 1:
        fg = torch.sigmoid(logits)
        probs = torch.cat([1 - fg, fg], dim=1)
        n_classes = 2
    else:
        probs = torch.softmax(logits, dim=1)
        n_classes = logits.shape[1]
    onehot = F.one_hot(safe, n_classes).permute(0, 3, 1, 2).to(probs.dtype)
    probs, onehot = probs * keep, onehot * keep
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + smooth) / (denom + smooth)
    return 1 - dice.mean()


def ce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255, ce_weight: float = 0.5
) -> torch.Tensor:
    """``ce_weight``·CE + (1 − ``ce_weight``)·soft Dice, ignoring ``ignore_index`` pixels.

    With one logit channel the CE term is binary cross-entropy on the logits.
    """
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(f"expected logits (B, C, H, W) and target (B, H, W), got {tuple(logits.shape)} and {tuple(target.shape)}")
    target = target.long()
    _check_labels(target, max(logits.shape[1], 2), ignore_index)
    keep = target != ignore_index
    if logits.shape[1] == 1:
        per_pixel = F.binary_cross_entropy_with_logits(logits[:, 0], (target == 1).to(logits.dtype), reduction="none")
        ce = (per_pixel * keep).sum() / keep.sum().clamp(min=1)
    elif keep.any():
        ce = F.cross_entropy(logits, target, ignore_index=ignore_index)
    else:
        ce = logits.sum() * 0.0
    return ce_weight * ce + (1 - ce_weight) * soft_dice_loss(logits, target, ignore_index)
