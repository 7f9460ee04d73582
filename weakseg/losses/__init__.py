"""Pixel-level PU risks (uPU/nnPU), supervised CE + Dice, and class-prior estimators."""

from .prior import (
    NegativeSlidePriorEstimator, PixelSample, PriorEstimate, PriorEstimator, adjusted_count_prior, bbe_prior,
    elkan_noto_prior, estimate_bag_prior, negative_slide_prior, pixel_features, prior_sweep, sample_bag_pixels,
)
from .pu import PURisks, PUStep, nnPULoss, pu_risks, pu_zero_one_risk, surrogate_loss
from .seg import ce_dice_loss, soft_dice_loss

__all__ = [
    "NegativeSlidePriorEstimator", "PURisks", "PUStep", "PixelSample", "PriorEstimate", "PriorEstimator",
    "adjusted_count_prior", "bbe_prior", "ce_dice_loss", "elkan_noto_prior", "estimate_bag_prior", "nnPULoss",
    "negative_slide_prior", "pixel_features", "prior_sweep", "pu_risks", "pu_zero_one_risk", "sample_bag_pixels",
    "soft_dice_loss", "surrogate_loss",
]
