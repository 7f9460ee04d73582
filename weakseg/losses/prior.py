"""Class-prior estimation for PU learning: π = p(y = +1) *within the unlabeled data*.

Both estimators take scores of a classifier trained to separate labelled (s = 1) from
unlabeled (s = 0) samples, evaluated on *held-out* samples (never on its training data):

* :func:`elkan_noto_prior` (Elkan & Noto, KDD 2008): c = E[g(x) | labelled] is the labelling
  frequency p(s = 1 | y = 1) under SCAR when labelled and unlabeled samples come from one
  draw; then #positives = n_L / c and π_U = n_L (1 − c) / (c · n_U). Needs calibrated g.
* :func:`bbe_prior` (Garg et al., NeurIPS 2021, "best bin estimation"): for a threshold t,
  q_p(t) / q_u(t) are the fractions of held-out labelled / unlabeled scores ≥ t; the ratio
  q_u / q_p upper-bounds π_U and is tight in the top bin that is pure positive. Ranking only,
  no calibration needed.

:class:`PriorEstimator` wraps either around any scikit-learn classifier with a held-out split.
:func:`prior_sweep` turns candidate priors into recipe overrides for a sensitivity study.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

METHODS = ("bbe", "elkan_noto")


def elkan_noto_prior(scores_labeled: np.ndarray, n_labeled: int, n_unlabeled: int) -> float:
    """π within the unlabeled data from held-out scores g(x) = p(s = 1 | x) of labelled samples.

    ``n_labeled`` / ``n_unlabeled`` are the sizes of the labelled and unlabeled sets the
    classifier was trained to separate (the population the labelling frequency refers to).
    """
    scores = np.asarray(scores_labeled, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("elkan_noto_prior needs at least one held-out labelled score")
    if n_labeled <= 0 or n_unlabeled <= 0:
        raise ValueError(f"n_labeled and n_unlabeled must be positive, got {n_labeled}, {n_unlabeled}")
    if scores.min() < 0 or scores.max() > 1:
        raise ValueError("Elkan-Noto scores must be probabilities in [0, 1]")
    c = float(scores.mean())
    if c <= 0:
        raise ValueError("mean labelled score is 0: the classifier does not recognise labelled samples")
    return float(np.clip(n_labeled * (1 - c) / (c * n_unlabeled), 0.0, 1.0))


def bbe_prior(
    scores_labeled: np.ndarray, scores_unlabeled: np.ndarray, delta: float = 0.1, gamma: float = 0.01
) -> float:
    """Best-bin estimate of π within the unlabeled data (Garg et al. 2021, Algorithm 1).

    Chooses the threshold t minimising q_u(t)/q_p(t) + (1 + γ)/q_p(t) · (√(log(4/δ)/2n_p) +
    √(log(4/δ)/2n_u)) and returns q_u(t)/q_p(t) there. Scores only need to rank.
    """
    sp = np.sort(np.asarray(scores_labeled, dtype=np.float64).ravel())
    su = np.sort(np.asarray(scores_unlabeled, dtype=np.float64).ravel())
    if sp.size == 0 or su.size == 0:
        raise ValueError("bbe_prior needs held-out scores of both labelled and unlabeled samples")
    thresholds = np.unique(sp)
    q_p = 1.0 - np.searchsorted(sp, thresholds, side="left") / sp.size  # fraction ≥ t
    q_u = 1.0 - np.searchsorted(su, thresholds, side="left") / su.size
    slack = math.sqrt(math.log(4 / delta) / (2 * sp.size)) + math.sqrt(math.log(4 / delta) / (2 * su.size))
    bound = q_u / q_p + (1 + gamma) / q_p * slack
    best = int(np.argmin(bound))
    return float(min(1.0, q_u[best] / q_p[best]))


class PriorEstimator:
    """Fit a labelled-vs-unlabeled classifier on part of the data, estimate π_U on the rest.

    Args:
        method: ``"bbe"`` (default) or ``"elkan_noto"``.
        classifier: a scikit-learn classifier with ``predict_proba`` (default: logistic regression).
        holdout: fraction of samples kept out of classifier training to compute the estimate.
        random_state: seed of the stratified split.

    After :meth:`fit`, ``prior_`` holds π_U and ``classifier_`` the fitted classifier.
    """

    def __init__(self, method: str = "bbe", classifier=None, holdout: float = 0.5, random_state: int | None = 0) -> None:
        self.method = method
        self.classifier = classifier
        self.holdout = holdout
        self.random_state = random_state

    def fit(self, X: np.ndarray, s: np.ndarray) -> PriorEstimator:
        """``X`` ``(n, d)`` features, ``s`` ``(n,)`` with 1 = labelled positive, 0 = unlabeled."""
        from sklearn.base import clone
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split

        if self.method not in METHODS:
            raise ValueError(f"unknown prior estimation method {self.method!r}; choose one of {METHODS}")
        X = np.asarray(X)
        s = np.asarray(s).ravel()
        if len(X) != len(s):
            raise ValueError(f"X has {len(X)} rows but s has {len(s)}")
        if not np.isin(s, (0, 1)).all() or s.min() == s.max():
            raise ValueError("s must hold both 1 (labelled) and 0 (unlabeled) entries and nothing else")
        X_fit, X_out, s_fit, s_out = train_test_split(
            X, s, test_size=self.holdout, stratify=s, random_state=self.random_state
        )
        clf = clone(self.classifier) if self.classifier is not None else LogisticRegression(max_iter=1000)
        self.classifier_ = clf.fit(X_fit, s_fit)
        scores = self.classifier_.predict_proba(X_out)[:, list(self.classifier_.classes_).index(1)]
        if self.method == "bbe":
            self.prior_ = bbe_prior(scores[s_out == 1], scores[s_out == 0])
        else:
            self.prior_ = elkan_noto_prior(scores[s_out == 1], int((s == 1).sum()), int((s == 0).sum()))
        return self


def prior_sweep(priors: Iterable[float], key: str = "learner.params.prior") -> list[dict[str, float]]:
    """Recipe overrides ``[{key: π}, ...]`` for a sensitivity sweep over candidate priors."""
    out = []
    for p in priors:
        p = float(p)
        if not 0.0 < p < 1.0:
            raise ValueError(f"class prior must be in (0, 1), got {p}")
        out.append({key: p})
    if not out:
        raise ValueError("prior_sweep needs at least one prior")
    return out
