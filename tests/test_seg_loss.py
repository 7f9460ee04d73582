"""0.5·CE + 0.5·soft Dice with ignored pixels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from weakseg.losses import ce_dice_loss, soft_dice_loss


def test_perfect_prediction_has_near_zero_loss():
    target = torch.tensor([[[0, 1], [2, 1]]])
    logits = 50 * F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    assert ce_dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_uniform_logits_hand_computed():
    target = torch.tensor([[[0, 1], [1, 1]]])
    logits = torch.zeros(1, 2, 2, 2)
    ce = math.log(2)
    # class 0: inter 0.5, denom 2 + 1; class 1: inter 1.5, denom 2 + 3
    dice = 1 - ((2 * 0.5 + 1e-5) / (3 + 1e-5) + (2 * 1.5 + 1e-5) / (5 + 1e-5)) / 2
    assert ce_dice_loss(logits, target).item() == pytest.approx(0.5 * ce + 0.5 * dice, rel=1e-6)
    assert soft_dice_loss(logits, target).item() == pytest.approx(dice, rel=1e-6)


def test_ignored_pixels_excluded():
    target = torch.tensor([[[0, 1], [255, 255]]])
    a = torch.randn(1, 3, 2, 2, requires_grad=True)
    b = a.detach().clone()
    b[..., 1, :] = torch.randn(1, 3, 2) * 30
    la, lb = ce_dice_loss(a, target), ce_dice_loss(b, target)
    assert la.item() == pytest.approx(lb.item(), rel=1e-6)
    la.backward()
    assert torch.all(a.grad[..., 1, :] == 0)


def test_all_ignored_is_finite():
    target = torch.full((1, 2, 2), 255)
    assert torch.isfinite(ce_dice_loss(torch.randn(1, 3, 2, 2), target))


def test_binary_single_channel():
    target = torch.tensor([[[0, 1], [1, 255]]])
    logits = torch.tensor([[[[-3.0, 2.0], [1.0, 9.0]]]])
    bce = (F.softplus(torch.tensor(-3.0)) + F.softplus(torch.tensor(-2.0)) + F.softplus(torch.tensor(-1.0))) / 3
    p = torch.sigmoid(torch.tensor([-3.0, 2.0, 1.0]))
    t = torch.tensor([0.0, 1.0, 1.0])
    d_fg = (2 * (p * t).sum() + 1e-5) / (p.sum() + t.sum() + 1e-5)
    d_bg = (2 * ((1 - p) * (1 - t)).sum() + 1e-5) / ((1 - p).sum() + (1 - t).sum() + 1e-5)
    expected = 0.5 * bce + 0.5 * (1 - (d_fg + d_bg) / 2)
    assert ce_dice_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_shape_and_label_errors():
    with pytest.raises(ValueError, match="expected logits"):
        ce_dice_loss(torch.randn(1, 2, 4, 4), torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels \[5\] outside 0..1"):
        ce_dice_loss(torch.randn(1, 2, 2, 2), torch.full((1, 2, 2), 5))
