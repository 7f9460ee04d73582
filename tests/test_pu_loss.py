"""uPU / nnPU pixel risks and the nnPU step rule."""

from __future__ import annotations

import math

import pytest
import torch

from weakseg.losses import nnPULoss, pu_risks, pu_zero_one_risk, surrogate_loss


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


# one 1×2×2 "image": P pixels with g = 2, 0; U pixels with g = -1, 3
LOGITS = torch.tensor([[[2.0, 0.0], [-1.0, 3.0]]])
LABELS = torch.tensor([[[1, 1], [0, 0]]])


def test_risks_match_hand_computation():
    pi = 0.3
    r = pu_risks(LOGITS, LABELS, pi)
    rp_pos = (sig(-2) + sig(0)) / 2  # ℓ(g) = σ(−g)
    rp_neg = (sig(2) + sig(0)) / 2  # ℓ(−g) = σ(g)
    ru_neg = (sig(-1) + sig(3)) / 2
    assert r.rp_pos.item() == pytest.approx(rp_pos)
    assert r.rp_neg.item() == pytest.approx(rp_neg)
    assert r.ru_neg.item() == pytest.approx(ru_neg)
    assert r.negative_risk.item() == pytest.approx(ru_neg - pi * rp_neg)
    assert r.upu.item() == pytest.approx(pi * rp_pos + ru_neg - pi * rp_neg)
    assert r.nnpu.item() == pytest.approx(r.upu.item())  # negative risk ≥ 0 here
    assert (r.n_positive, r.n_unlabeled) == (2, 2)


def test_logistic_surrogate_and_channel_dim():
    r = pu_risks(LOGITS.unsqueeze(1), LABELS, 0.3, loss="logistic")
    assert r.rp_pos.item() == pytest.approx((math.log1p(math.exp(-2)) + math.log(2)) / 2)
    with pytest.raises(ValueError, match="unknown PU surrogate"):
        surrogate_loss(LOGITS, "hinge")


def test_nnpu_clamps_negative_risk():
    logits = torch.tensor([[-4.0, -4.0, -6.0]])  # everything predicted negative
    labels = torch.tensor([[1, 1, 0]])
    r = pu_risks(logits, labels, 0.9)
    assert r.negative_risk.item() < 0
    assert r.nnpu.item() == pytest.approx(0.9 * r.rp_pos.item())
    assert r.upu.item() < r.nnpu.item()


def test_ignored_pixels_do_not_contribute():
    labels = torch.tensor([[[1, 255], [0, 255]]])
    a = LOGITS.clone().requires_grad_(True)
    b = LOGITS.clone()
    b[0, 0, 1], b[0, 1, 1] = -50.0, 50.0
    ra, rb = pu_risks(a, labels, 0.4), pu_risks(b, labels, 0.4)
    assert ra.upu.item() == pytest.approx(rb.upu.item())
    assert (ra.n_positive, ra.n_unlabeled) == (1, 1)
    ra.upu.backward()
    assert a.grad[0, 0, 1] == 0 and a.grad[0, 1, 1] == 0
    # an explicit mask acts the same way
    rm = pu_risks(LOGITS, LABELS, 0.4, mask=torch.tensor([[[1, 0], [1, 0]]]))
    assert rm.upu.item() == pytest.approx(ra.upu.item())


def test_batch_without_positives_is_finite_and_flagged():
    r = pu_risks(torch.randn(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), 0.2)
    assert not r.has_positive
    assert r.rp_pos.item() == 0 and r.rp_neg.item() == 0 and torch.isfinite(r.upu)


def test_prior_validated():
    with pytest.raises(ValueError, match="prior"):
        pu_risks(LOGITS, LABELS, 0.0)
    with pytest.raises(ValueError, match="prior"):
        nnPULoss(prior=1.2)


def test_nnpu_equals_upu_while_negative_risk_nonnegative():
    step = nnPULoss(0.3)(LOGITS, LABELS)
    assert not step.ascent and step.lr_scale == 1.0
    assert step.objective.item() == pytest.approx(step.risks.upu.item())


def test_ascent_branch_negates_term_and_scales_lr():
    logits = torch.tensor([[-4.0, -4.0, -6.0]], requires_grad=True)
    labels = torch.tensor([[1, 1, 0]])
    step = nnPULoss(0.9, gamma=0.25)(logits, labels)
    assert step.ascent and step.lr_scale == 0.25
    assert step.objective.item() == pytest.approx(-step.risks.negative_risk.item())
    assert step.loss.item() == pytest.approx(step.risks.nnpu.item())
    # β large enough keeps the descent branch
    assert not nnPULoss(0.9, beta=1.0)(logits, labels).ascent
    # uPU never ascends
    assert not nnPULoss(0.9, nnpu=False)(logits, labels).ascent


def _sgd_step(gamma: float) -> torch.Tensor:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.tensor([-3.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    labels = torch.tensor([[1, 1, 0, 0]])
    x = torch.tensor([[1.0, 1.2, 2.0, 1.5]])
    step = nnPULoss(0.9, gamma=gamma)(w * x, labels)
    assert step.ascent
    opt.zero_grad()
    step.objective.backward()
    for group in opt.param_groups:  # what the engine does with lr_scale
        group["lr"] *= step.lr_scale
    before = w.detach().clone()
    opt.step()
    return w.detach() - before


def test_engine_lr_scaling_scales_the_ascent_step():
    full, scaled = _sgd_step(1.0), _sgd_step(0.1)
    assert full.abs().item() > 0
    torch.testing.assert_close(scaled, 0.1 * full)


def test_pu_zero_one_risk():
    labels = torch.tensor([1, 1, 0, 0, 0, 0, 255])
    pred = torch.tensor([True, False, True, False, False, False, True])
    # FNR_P = 0.5, FPR_U = 0.25
    assert pu_zero_one_risk(pred, labels, 0.3) == pytest.approx(2 * 0.3 * 0.5 + 0.25 - 0.3)
