"""Class-prior estimators on synthetic data with a known prior within the unlabeled set."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from weakseg.losses.prior import PriorEstimator, bbe_prior, elkan_noto_prior, prior_sweep


def _pu_data(pi: float, seed: int, n_l: int = 1000, n_u: int = 4000, sep: float = 3.0):
    """Labelled positives and an unlabeled mixture with positive fraction ``pi`` (2-D Gaussians)."""
    rng = np.random.default_rng(seed)
    y_u = rng.random(n_u) < pi
    x_u = rng.normal(size=(n_u, 2))
    x_u[:, 0] += np.where(y_u, sep, -sep)
    x_l = rng.normal(size=(n_l, 2))
    x_l[:, 0] += sep
    return np.vstack([x_l, x_u]), np.r_[np.ones(n_l), np.zeros(n_u)], y_u.mean()


@pytest.mark.parametrize("pi", [0.1, 0.3, 0.6])
@pytest.mark.parametrize("seed", [0, 1])
def test_bbe_recovers_prior(pi, seed):
    X, s, true = _pu_data(pi, seed)
    est = PriorEstimator("bbe", random_state=seed).fit(X, s)
    assert est.prior_ == pytest.approx(true, abs=0.04)


@pytest.mark.parametrize("pi", [0.2, 0.5])
def test_elkan_noto_recovers_prior_with_calibrated_classifier(pi):
    X, s, true = _pu_data(pi, 0)
    est = PriorEstimator("elkan_noto", classifier=KNeighborsClassifier(100), random_state=0).fit(X, s)
    assert est.prior_ == pytest.approx(true, abs=0.04)


def test_prior_is_not_the_labelled_fraction():
    X, s, true = _pu_data(0.3, 0)
    est = PriorEstimator(random_state=0).fit(X, s)
    assert abs(est.prior_ - s.mean()) > 0.05 and est.prior_ == pytest.approx(true, abs=0.04)


def test_elkan_noto_formula():
    # c = 0.5: 100 labelled ⇒ 200 positives, 100 of them among 400 unlabeled
    assert elkan_noto_prior(np.full(10, 0.5), 100, 400) == pytest.approx(0.25)


def test_bbe_on_separable_scores():
    sp = np.linspace(0.6, 1.0, 100)
    su = np.r_[np.linspace(0.6, 1.0, 30), np.linspace(0.0, 0.4, 70)]
    assert bbe_prior(sp, su) == pytest.approx(0.3, abs=0.02)


def test_errors():
    X, s, _ = _pu_data(0.3, 0, n_l=50, n_u=50)
    with pytest.raises(ValueError, match="unknown prior estimation method"):
        PriorEstimator("km2").fit(X, s)
    with pytest.raises(ValueError, match="both 1"):
        PriorEstimator().fit(X, np.ones(len(X)))
    with pytest.raises(ValueError, match="probabilities"):
        elkan_noto_prior(np.array([1.5]), 1, 1)
    with pytest.raises(ValueError, match="both labelled and unlabeled"):
        bbe_prior(np.array([]), np.array([0.1]))


def test_prior_sweep():
    assert prior_sweep([0.1, 0.2], key="learner.prior") == [{"learner.prior": 0.1}, {"learner.prior": 0.2}]
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        prior_sweep([0.5, 1.0])
