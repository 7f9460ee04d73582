"""Attention pooling of Ilse et al. (2018), plain and gated, with padding masks."""

from __future__ import annotations

import torch
import torch.nn as nn


class AttentionPool(nn.Module):
    """``a_k = softmax_k(wᵀ tanh(V h_k))``; gated: ``softmax_k(wᵀ (tanh(V h_k) ⊙ sigm(U h_k)))``; ``z = Σ a_k h_k``.

    Args:
        in_dim: instance embedding size ``M``.
        hidden_dim: attention size ``L`` (``V, U ∈ R^{L×M}``).
        gated: use the gated variant.
        dropout: dropout after the attention non-linearities (CLAM uses 0.25).
    """

    def __init__(self, in_dim: int = 500, hidden_dim: int = 128, *, gated: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.gated = gated
        self.V = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.Tanh(), nn.Dropout(dropout))
        self.U = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.Sigmoid(), nn.Dropout(dropout)) if gated else None
        self.w = nn.Linear(hidden_dim, 1)

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Raw (pre-softmax) attention scores, ``(..., N, M)`` → ``(..., N)``."""
        a = self.V(h)
        if self.U is not None:
            a = a * self.U(h)
        return self.w(a).squeeze(-1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pool ``h`` ``(B, N, M)``; ``mask`` bool ``(B, N)`` marks real instances.

        Returns ``(z, raw, weights)``: ``z`` ``(B, M)``, raw scores ``(B, N)`` (``-inf`` at padded
        positions) and softmax weights ``(B, N)`` (exactly 0 at padded positions, rows sum to 1).
        """
        raw = self.scores(h)
        if mask is not None:
            raw = raw.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(raw, dim=-1)
        z = torch.einsum("bn,bnm->bm", weights, h)
        return z, raw, weights
