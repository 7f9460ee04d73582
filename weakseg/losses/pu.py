"""Pixel-level uPU / nnPU risks (du Plessis et al. 2015; Kiryo et al., NeurIPS 2017).

Labels per pixel: ``1`` labelled positive (P), ``0`` unlabeled (U), ``ignore_index`` excluded.
``prior`` is π = p(y = +1) *within the unlabeled data*. With a surrogate loss ℓ and score g(x):

* R̂p⁺ = mean_P ℓ(g), R̂p⁻ = mean_P ℓ(−g), R̂u⁻ = mean_U ℓ(−g)
* negative risk = R̂u⁻ − π·R̂p⁻
* uPU = π·R̂p⁺ + negative risk;  nnPU = π·R̂p⁺ + max(0, negative risk)

Exclusion masks weight the *loss* (masked means); inputs are never multiplied by a mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

SURROGATES = ("sigmoid", "logistic")


def surrogate_loss(z: torch.Tensor, loss: str = "sigmoid") -> torch.Tensor:
    """ℓ(z) for a margin ``z``: sigmoid ℓ(z) = σ(−z), logistic ℓ(z) = log(1 + e^(−z))."""
    if loss == "sigmoid":
        return torch.sigmoid(-z)
    if loss == "logistic":
        return F.softplus(-z)
    raise ValueError(f"unknown PU surrogate loss {loss!r}; choose one of {SURROGATES}")


@dataclass
class PURisks:
    """Empirical PU risks of one batch (0-d tensors, differentiable)."""

    rp_pos: torch.Tensor
    rp_neg: torch.Tensor
    ru_neg: torch.Tensor
    negative_risk: torch.Tensor
    upu: torch.Tensor
    nnpu: torch.Tensor
    n_positive: int
    n_unlabeled: int

    @property
    def has_positive(self) -> bool:
        """False when the batch had no labelled positive pixel (then R̂p⁺ = R̂p⁻ = 0)."""
        return self.n_positive > 0


def _masked_mean(values: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, int]:
    n = int(weight.sum().item())
    return (values * weight).sum() / max(n, 1), n


def _squeeze_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if logits.dim() == labels.dim() + 1:
        if logits.shape[1] != 1:
            raise ValueError(f"PU loss needs one logit channel, got logits of shape {tuple(logits.shape)}")
        logits = logits[:, 0]
    if logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match")
    return logits


def pu_risks(
    logits: torch.Tensor,
    labels: torch.Tensor,
    prior: float,
    loss: str = "sigmoid",
    ignore_index: int = 255,
    mask: torch.Tensor | None = None,
) -> PURisks:
    """uPU / nnPU risks of per-pixel scores.

    Args:
        logits: scores g(x), ``(B, H, W)`` or ``(B, 1, H, W)`` (any shape matching ``labels``).
        labels: ``1`` labelled positive, ``0`` unlabeled, ``ignore_index`` excluded.
        prior: π within the unlabeled data, in (0, 1).
        loss: surrogate, ``"sigmoid"`` (Kiryo's default) or ``"logistic"``.
        mask: optional extra weight/boolean map (1 keep, 0 exclude) combined with the labels.
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"class prior must be in (0, 1), got {prior}")
    g = _squeeze_logits(logits, labels).float()
    keep = (labels != ignore_index).to(g.dtype)
    if mask is not None:
        keep = keep * mask.to(g.dtype)
    pos_w = keep * (labels == 1).to(g.dtype)
    unl_w = keep * (labels == 0).to(g.dtype)
    loss_pos = surrogate_loss(g, loss)  # ℓ(g): positive classified as positive
    loss_neg = surrogate_loss(-g, loss)  # ℓ(−g): classified as negative
    rp_pos, n_pos = _masked_mean(loss_pos, pos_w)
    rp_neg, _ = _masked_mean(loss_neg, pos_w)
    ru_neg, n_unl = _masked_mean(loss_neg, unl_w)
    negative = ru_neg - prior * rp_neg
    return PURisks(
        rp_pos=rp_pos, rp_neg=rp_neg, ru_neg=ru_neg, negative_risk=negative,
        upu=prior * rp_pos + negative, nnpu=prior * rp_pos + torch.clamp(negative, min=0.0),
        n_positive=n_pos, n_unlabeled=n_unl,
    )


@dataclass
class PUStep:
    """What one optimisation step should do.

    ``objective`` is what to back-propagate; the trainer multiplies every parameter group's
    learning rate by ``lr_scale`` for this step (γ on the ascent branch; scaling the loss
    instead would be undone by Adam's normalisation). ``loss`` is the risk to log (nnPU/uPU).
    """

    objective: torch.Tensor
    lr_scale: float
    ascent: bool
    risks: PURisks

    @property
    def loss(self) -> torch.Tensor:
        return self.risks.nnpu.detach()


class nnPULoss:  # noqa: N801  (the name of Kiryo et al.'s reference implementation)
    """Kiryo et al.'s nnPU step rule (``nnpu=False`` gives plain uPU).

    If R̂u⁻ − π·R̂p⁻ ≥ −β: descend on π·R̂p⁺ + R̂u⁻ − π·R̂p⁻ with learning-rate scale 1;
    otherwise ascend on R̂u⁻ − π·R̂p⁻ alone (objective −(R̂u⁻ − π·R̂p⁻)) with scale γ.
    Defaults β = 0, γ = 1, sigmoid loss follow the paper.
    """

    def __init__(
        self, prior: float, beta: float = 0.0, gamma: float = 1.0, loss: str = "sigmoid",
        nnpu: bool = True, ignore_index: int = 255,
    ) -> None:
        if not 0.0 < prior < 1.0:
            raise ValueError(f"class prior must be in (0, 1), got {prior}")
        if beta < 0 or gamma < 0:
            raise ValueError(f"beta and gamma must be ≥ 0, got beta={beta}, gamma={gamma}")
        if loss not in SURROGATES:
            raise ValueError(f"unknown PU surrogate loss {loss!r}; choose one of {SURROGATES}")
        self.prior = prior
        self.beta = beta
        self.gamma = gamma
        self.loss = loss
        self.nnpu = nnpu
        self.ignore_index = ignore_index

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> PUStep:
        r = pu_risks(logits, labels, self.prior, self.loss, self.ignore_index, mask)
        if self.nnpu and r.negative_risk.item() < -self.beta:
            return PUStep(objective=-r.negative_risk, lr_scale=self.gamma, ascent=True, risks=r)
        return PUStep(objective=r.upu, lr_scale=1.0, ascent=False, risks=r)


def pu_zero_one_risk(pred_positive: torch.Tensor, labels: torch.Tensor, prior: float, ignore_index: int = 255) -> float:
    """PU estimate of the 0-1 risk without negatives: 2π·FNR_P + FPR_U − π.

    ``pred_positive`` is a boolean prediction map aligned with ``labels``; FNR_P is the miss
    rate on labelled positives, FPR_U the positive rate on unlabeled pixels.
    """
    keep = labels != ignore_index
    pos = keep & (labels == 1)
    unl = keep & (labels == 0)
    if not pos.any() or not unl.any():
        raise ValueError("the PU 0-1 risk needs both labelled positive and unlabeled pixels")
    fnr_p = (~pred_positive[pos]).float().mean().item()
    fpr_u = pred_positive[unl].float().mean().item()
    return 2 * prior * fnr_p + fpr_u - prior
