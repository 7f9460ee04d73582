"""Training-time instance augmentation (never applied by ``evaluate`` / ``predict_proba``)."""

from __future__ import annotations

import torch


def dihedral(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random element of the dihedral group D4 (flips and 90° rotations) per image of ``(n, C, H, W)``.

    Orientation carries no meaning in histology, so every tile gets an independent draw.
    Non-square images only get flips.
    """
    n = x.shape[0]
    if n == 0:
        return x
    draws = torch.rand((3, n), generator=generator, device="cpu").lt(0.5).to(x.device).view(3, n, 1, 1, 1)
    x = torch.where(draws[0], x.flip(-1), x)
    x = torch.where(draws[1], x.flip(-2), x)
    if x.shape[-1] == x.shape[-2]:
        x = torch.where(draws[2], x.transpose(-1, -2), x)
    return x
