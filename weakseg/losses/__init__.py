"""Pixel-level PU risks (uPU/nnPU), supervised CE + Dice, and class-prior estimators."""

from .prior import PriorEstimator, bbe_prior, elkan_noto_prior, prior_sweep
from .pu import PURisks, PUStep, nnPULoss, pu_risks, pu_zero_one_risk, surrogate_loss
from .seg import ce_dice_loss, soft_dice_loss

__all__ = [
    "PURisks", "PUStep", "PriorEstimator", "bbe_prior", "ce_dice_loss", "elkan_noto_prior", "nnPULoss",
    "prior_sweep", "pu_risks", "pu_zero_one_risk", "soft_dice_loss", "surrogate_loss",
]
