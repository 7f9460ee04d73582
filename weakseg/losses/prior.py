"""Class-prior estimation for PU learning: π = p(y = +1) *within the unlabeled data*.

Two families. The SCAR estimators take scores of a classifier trained to separate labelled
(s = 1) from unlabeled (s = 0) samples, evaluated on *held-out* samples (never on its training
data), and assume the labelled positives are a random sample of all positives (SCAR):

* :func:`elkan_noto_prior` (Elkan & Noto, KDD 2008): c = E[g(x) | labelled] is the labelling
  frequency p(s = 1 | y = 1) under SCAR when labelled and unlabeled samples come from one
  draw; then #positives = n_L / c and π_U = n_L (1 − c) / (c · n_U). Needs calibrated g.
* :func:`bbe_prior` (Garg et al., NeurIPS 2021, "best bin estimation"): for a threshold t,
  q_p(t) / q_u(t) are the fractions of held-out labelled / unlabeled scores ≥ t; the ratio
  q_u / q_p upper-bounds π_U and is tight in the top bin that is pure positive. Ranking only,
  no calibration needed.

Region annotations break SCAR (a few whole regions, eroded, are labelled: their pixels are no
random sample of the cancer pixels), and both are far off on such labels (BBE mostly too low,
Elkan–Noto too high; ``benchmarks/bench_prior.py``). The negative-slide estimator needs slide
labels instead of SCAR:

* :func:`negative_slide_prior` / :class:`NegativeSlidePriorEstimator` (method
  ``"negative_slides_acc"``): the unlabeled tissue N of slides labelled 0 (ISUP 0) is benign, so
  all unlabeled cancer lies in the other slides' unlabeled tissue U₊, and π = π₊ · |U₊| / |U|.
  π₊ comes from adjusted classify-and-count (:func:`adjusted_count_prior`, Forman 2008) with a
  classifier h of labelled positives P vs N, cross-fitted by slide: threshold t where 10 % of
  N scores above it (at least 0.5), π₊ = (q_U₊(t) − q_N(t)) / (q_P(t) − q_N(t)) with q the
  shares above t. It assumes that above t, N passes as often as U₊'s benign tissue and P as
  often as U₊'s cancer — not that either is a random sample.
* :func:`estimate_bag_prior` runs it on PU bags from cheap pixel features (:func:`pixel_features`:
  HED stain and brightness with local means and standard deviations at three scales), using
  only ``pu_labels``, tiles and slide labels (never the ground-truth masks).

:class:`PriorEstimator` wraps BBE or Elkan–Noto around any scikit-learn classifier with a
held-out split. :func:`prior_sweep` turns candidate priors into recipe overrides for a
sensitivity study.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

METHODS = ("bbe", "elkan_noto")
NEGATIVE_SLIDE_METHOD = "negative_slides_acc"


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


def _weighted_quantile(x: np.ndarray, w: np.ndarray | None, q: float) -> float:
    order = np.argsort(x, kind="stable")
    cum = np.cumsum(np.ones(len(x)) if w is None else w[order])
    return float(x[order][min(len(x) - 1, int(np.searchsorted(cum, q * cum[-1])))])


def adjusted_count_prior(
    scores_labeled: np.ndarray, scores_negative: np.ndarray, scores_mixture: np.ndarray, *,
    negative_rate: float | None = 0.1, min_threshold: float | None = 0.5, weights_labeled: np.ndarray | None = None,
    weights_negative: np.ndarray | None = None, weights_mixture: np.ndarray | None = None, min_gap: float = 0.05,
) -> float:
    """Positive share of a mixture by adjusted classify-and-count (Forman 2008).

    With scores h of samples of the positive component (``scores_labeled``), of the negative
    component (``scores_negative``) and of the mixture, each optionally weighted (how many pixels
    a sample stands for): the threshold t is the ``1 − negative_rate`` quantile of the negative
    scores, raised to ``min_threshold`` when below it; tpr / fpr / q are the shares of positive /
    negative / mixture scores above t, and π = (q − fpr) / (tpr − fpr), clipped to [0, 1].
    ``negative_rate=None`` uses mean scores instead of counts (probabilistic ACC, Bella et al.
    2010). Exact when the components' score distributions equal those of the mixture's parts.
    A strict threshold makes it insensitive to how the negative component's *bulk* differs from
    the mixture's negatives (e.g. benign pixels beside cancer, whose local features borrow from
    it), a loose one to how the labelled positives' *tail* differs from the mixture's positives;
    ``min_threshold`` (0.5 for probabilities of a classifier balanced between the components)
    keeps t in the gap when the scores nearly separate the components. Labelled and negative
    scores must be held out (cross-fitted). Raises ``ValueError`` when tpr − fpr < ``min_gap``
    (h cannot tell the components apart).
    """
    arrays = []
    for name, sc, w in (("labelled", scores_labeled, weights_labeled), ("negative", scores_negative, weights_negative),
                        ("mixture", scores_mixture, weights_mixture)):
        sc = np.asarray(sc, dtype=np.float64).ravel()
        w = None if w is None else np.asarray(w, dtype=np.float64).ravel()
        if sc.size == 0:
            raise ValueError(f"adjusted_count_prior needs {name} scores")
        if w is not None and (w.shape != sc.shape or (w < 0).any() or w.sum() <= 0):
            raise ValueError(f"{name} weights must be non-negative, one per score, with a positive sum")
        arrays.append((sc, w))
    if negative_rate is None:
        pos, neg, mix = (float(np.average(sc, weights=w)) for sc, w in arrays)
    else:
        if not 0.0 < negative_rate < 1.0:
            raise ValueError(f"negative_rate must be in (0, 1), got {negative_rate}")
        t = _weighted_quantile(*arrays[1], 1.0 - negative_rate)
        if min_threshold is not None:
            t = max(t, min_threshold)
        pos, neg, mix = (float(np.average(sc > t, weights=w)) for sc, w in arrays)
    if pos - neg < min_gap:
        raise ValueError(f"labelled positives ({pos:.3f}) do not exceed the negative component ({neg:.3f}) by "
                         f"{min_gap} in {'mean score' if negative_rate is None else 'share above threshold'}: "
                         "the scores cannot separate them")
    return float(np.clip((mix - neg) / (pos - neg), 0.0, 1.0))


def negative_slide_prior(
    scores_labeled: np.ndarray, scores_negative: np.ndarray, scores_unlabeled_positive: np.ndarray,
    n_unlabeled_positive: float, n_unlabeled_negative: float, *, negative_rate: float | None = 0.1,
    weights_labeled: np.ndarray | None = None, weights_negative: np.ndarray | None = None,
    weights_unlabeled_positive: np.ndarray | None = None,
) -> tuple[float, float]:
    """π within all unlabeled data when part of it comes from slides known to hold no cancer.

    ``scores_negative``: unlabeled samples of slides labelled 0 (benign, the negative
    component); ``scores_unlabeled_positive``: unlabeled samples of the other slides (the
    mixture); ``n_unlabeled_*``: how many unlabeled pixels each part has in all (the samples may
    be subsampled). Returns ``(π, π₊)``: π₊ the cancer share within the other slides' unlabeled
    data (:func:`adjusted_count_prior`), π = π₊ · n₊ / (n₊ + n₀).
    """
    if n_unlabeled_positive < 0 or n_unlabeled_negative < 0 or n_unlabeled_positive + n_unlabeled_negative <= 0:
        raise ValueError(f"unlabeled counts must be >= 0 with a positive sum, got {n_unlabeled_positive}, "
                         f"{n_unlabeled_negative}")
    pi_pos = adjusted_count_prior(
        scores_labeled, scores_negative, scores_unlabeled_positive, negative_rate=negative_rate,
        weights_labeled=weights_labeled, weights_negative=weights_negative, weights_mixture=weights_unlabeled_positive)
    share = n_unlabeled_positive / (n_unlabeled_positive + n_unlabeled_negative)
    return pi_pos * share, pi_pos


def _weighted_sum(w: np.ndarray | None, mask: np.ndarray) -> float:
    return float(mask.sum()) if w is None else float(w[mask].sum())


class NegativeSlidePriorEstimator:
    """π within the unlabeled data from labelled positives, unlabeled data and slide labels.

    Needs no SCAR assumption: the labelled positives may be a biased sample of the positives
    (a few whole regions, eroded). Assumes instead:

    * slides labelled 0 hold no cancer, so their unlabeled tissue N is benign (and they have no
      labelled positives); all unlabeled cancer is in the other slides' unlabeled tissue U₊;
    * above a strict threshold of a classifier h (where ``negative_rate`` of N passes, and at
      least 0.5), the negative slides' tissue passes as often as the benign tissue of U₊ does,
      and the labelled positives as often as U₊'s cancer does (:func:`adjusted_count_prior`;
      not that either is a random sample);
    * samples of one slide share a ``groups`` value (cross-fitting is by slide, so h never
      scores the slides it was trained on).

    h (default: standardised logistic regression, C = 0.01, classes balanced) learns labelled
    positives vs negative-slide samples on ``n_splits − 1`` folds of slides (stratified by slide
    kind), at most ``max_train_per_class`` rows a class drawn in proportion to their weights,
    and scores the held-out fold; then :func:`negative_slide_prior` with ``negative_rate``.

    Args:
        classifier: a scikit-learn classifier with ``predict_proba`` and ``sample_weight``.
        n_splits: slide folds for cross-fitting (at most the number of slides of either kind).
        negative_rate: share of negative-slide samples above the threshold (``None``: PACC).
        max_train_per_class: training rows per class and fold (``None``: all).
        random_state: seed of the folds and the training subsample.

    After :meth:`fit`: ``prior_`` (π within all unlabeled samples, by their weights),
    ``prior_positive_slides_`` (π₊), ``positive_share_`` (n₊ / n), ``scores_`` (held-out h of
    every sample), ``method_`` (``"negative_slides_acc"``).
    """

    def __init__(self, classifier=None, n_splits: int = 6, negative_rate: float | None = 0.1,
                 max_train_per_class: int | None = 20_000, random_state: int | None = 0) -> None:
        self.classifier = classifier
        self.n_splits = n_splits
        self.negative_rate = negative_rate
        self.max_train_per_class = max_train_per_class
        self.random_state = random_state

    def fit(self, X: np.ndarray, s: np.ndarray, negative_slide: np.ndarray, groups: np.ndarray,
            sample_weight: np.ndarray | None = None) -> NegativeSlidePriorEstimator:
        """``X`` ``(n, d)``; ``s`` 1 labelled positive / 0 unlabeled; ``negative_slide`` True for
        samples of slides labelled 0; ``groups`` slide ids; ``sample_weight`` how many pixels
        (or samples) each row stands for (default 1)."""
        from sklearn.base import clone
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedGroupKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, dtype=np.float64)
        s = np.asarray(s).ravel()
        neg = np.asarray(negative_slide, dtype=bool).ravel()
        groups = np.asarray(groups).ravel()
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).ravel()
        if not (len(X) == len(s) == len(neg) == len(groups)) or (w is not None and len(w) != len(X)):
            raise ValueError("X, s, negative_slide, groups (and sample_weight) must have one row per sample")
        if not np.isin(s, (0, 1)).all():
            raise ValueError("s must hold 1 (labelled) and 0 (unlabeled) entries only")
        if (s[neg] == 1).any():
            raise ValueError("slides labelled 0 cannot hold labelled positives")
        is_p, is_n, is_u = s == 1, (s == 0) & neg, (s == 0) & ~neg
        n_neg_slides, n_pos_slides = len(np.unique(groups[is_n])), len(np.unique(groups[is_p]))
        if n_neg_slides == 0:
            raise ValueError("no unlabeled samples from slides labelled 0: the negative-slide prior needs "
                             "cancer-free slides (give the prior, sweep it, or use a SCAR estimator)")
        if n_pos_slides == 0:
            raise ValueError("no labelled positive samples")
        k = min(int(self.n_splits), n_neg_slides, n_pos_slides)
        if k < 2:
            raise ValueError(f"cross-fitting by slide needs >= 2 slides labelled 0 and >= 2 slides with labelled "
                             f"positives, got {n_neg_slides} and {n_pos_slides}")
        # slide-level strata: negative slides vs the others, so every fold trains on both kinds
        kind = np.where(neg, 0, 1)
        folds = StratifiedGroupKFold(k, shuffle=True, random_state=self.random_state)
        base = self.classifier if self.classifier is not None else make_pipeline(
            StandardScaler(), LogisticRegression(C=0.01, max_iter=1000))
        scores = np.full(len(X), np.nan)
        train_rows = is_p | is_n
        ww = np.ones(len(X)) if w is None else w
        rng = np.random.default_rng(self.random_state)
        for tr, te in folds.split(X, kind, groups):
            tr = tr[train_rows[tr]]
            rows, weights = [], []
            for c in (0, 1):
                r = tr[s[tr] == c]
                if r.size == 0:
                    raise ValueError("a cross-fitting fold lacks labelled positives or negative-slide samples; "
                                     "use fewer n_splits")
                if self.max_train_per_class is not None and r.size > self.max_train_per_class:
                    # drawn in proportion to the pixels they stand for: a pixel-uniform sample, equal weights
                    r = rng.choice(r, self.max_train_per_class, replace=False, p=ww[r] / ww[r].sum())
                    cw = np.ones(r.size)
                else:
                    cw = ww[r].copy()
                rows.append(r)
                weights.append(cw / cw.sum())  # classes balanced
            tr = np.concatenate(rows)
            cw = np.concatenate(weights) * (len(tr) / 2)
            clf = clone(base)
            fit_kw = {f"{clf.steps[-1][0]}__sample_weight" if hasattr(clf, "steps") else "sample_weight": cw}
            clf.fit(X[tr], s[tr], **fit_kw)
            scores[te] = clf.predict_proba(X[te])[:, list(clf.classes_).index(1)]
        self.scores_ = scores
        n_u_pos, n_u_neg = _weighted_sum(w, is_u), _weighted_sum(w, is_n)
        if n_u_pos == 0:
            self.prior_, self.prior_positive_slides_ = 0.0, 0.0  # all unlabeled tissue is on negative slides
        else:
            sub = (lambda m: None) if w is None else (lambda m: w[m])
            self.prior_, self.prior_positive_slides_ = negative_slide_prior(
                scores[is_p], scores[is_n], scores[is_u], n_u_pos, n_u_neg, negative_rate=self.negative_rate,
                weights_labeled=sub(is_p), weights_negative=sub(is_n), weights_unlabeled_positive=sub(is_u))
        self.positive_share_ = n_u_pos / (n_u_pos + n_u_neg)
        self.method_ = NEGATIVE_SLIDE_METHOD if self.negative_rate is not None else "negative_slides_pacc"
        return self


# -- pixel features and bags ----------------------------------------------------------------------
FEATURE_SIGMAS_UM = (2.0, 5.0, 12.0)


def pixel_features(tiles: np.ndarray, sigmas: Sequence[float] = (1.5, 4.0, 10.0)) -> np.ndarray:
    """Cheap per-pixel colour/texture features: uint8 ``(B, T, T, 3)`` → float32 ``(B, T, T, F)``.

    Haematoxylin, eosin and DAB optical densities (``skimage.color.rgb2hed``) and brightness,
    plus their local means and standard deviations at each scale in ``sigmas`` (pixels; a box
    window of the same standard deviation, width ≈ 3.46 σ, whose cost does not grow with σ):
    F = 4 + 8 · len(sigmas).
    """
    from scipy import ndimage
    from skimage.color import rgb2hed

    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3:
        raise ValueError(f"pixel_features expects (B, T, T, 3) tiles, got {tiles.shape}")
    x = tiles.astype(np.float32) / 255.0
    hed = rgb2hed(x.reshape(-1, 3)).reshape(x.shape).astype(np.float32)
    base = np.concatenate([hed, x.mean(-1, keepdims=True)], -1)
    out = [base]
    sq = base * base
    for sigma in sigmas:
        width = max(1, int(round(sigma * math.sqrt(12))))
        m = ndimage.uniform_filter(base, (1, width, width, 1), mode="reflect")
        m2 = ndimage.uniform_filter(sq, (1, width, width, 1), mode="reflect")
        out += [m, np.sqrt(np.maximum(m2 - m * m, 0.0))]
    return np.concatenate(out, -1)


@dataclass
class PixelSample:
    """Pixels sampled from PU bags by :func:`sample_bag_pixels` (one row per sampled pixel)."""

    X: np.ndarray               #: ``(n, F)`` float32 :func:`pixel_features`
    s: np.ndarray               #: 1 labelled positive, 0 unlabeled
    negative_slide: np.ndarray  #: True on slides labelled 0 (cancer-free)
    groups: np.ndarray          #: slide index
    weights: np.ndarray         #: pixels each row stands for
    n_labeled: int              #: labelled pixels in all bags
    n_unlabeled_negative: int   #: unlabeled pixels of slides labelled 0
    n_unlabeled_other: int      #: unlabeled pixels of the other slides
    n_negative_slides: int
    n_other_slides: int


def sample_bag_pixels(
    bags: str | os.PathLike | Sequence[str | os.PathLike], *, pixels_per_tile: int = 256,
    max_tiles_per_slide: int | None = 64, sigmas_um: Sequence[float] = FEATURE_SIGMAS_UM,
    random_state: int | None = 0,
) -> PixelSample:
    """Features of random labelled and unlabeled pixels of PU bags, with their pixel counts.

    Reads only ``pu_labels``, tiles and each slide's ``label`` attribute (0: cancer-free; any
    other value, unknown included, counts as possibly cancerous; a slide with labelled
    positives is never cancer-free): never the ground-truth masks. Features
    (:func:`pixel_features`, scales ``sigmas_um`` converted to pixels with the bag's ``mpp``,
    taken as 1 µm/px when unknown) come from up to ``max_tiles_per_slide`` random
    tiles a slide and ``pixels_per_tile`` random pixels of each kind (labelled / unlabeled) a
    tile, each weighted by the pixels it stands for; only those tiles are read, so pixel counts
    are exact for slides with at most ``max_tiles_per_slide`` tiles and scaled up from the
    sampled tiles otherwise. Seeded by ``random_state``.
    """
    from ..bags import Bag
    from ..data.sources import resolve_bag_paths
    from ..weaken import PU_POSITIVE, PU_UNLABELED, read_pu_labels

    rng = np.random.default_rng(random_state)
    X, s, neg, grp, wts = [], [], [], [], []
    n_lab = 0
    n_unl = {True: 0, False: 0}  # unlabeled pixels on negative / other slides
    n_slides = {True: 0, False: 0}
    for g, path in enumerate(resolve_bag_paths(bags)):
        with Bag(path) as bag:
            n = len(bag)
            if n == 0:
                continue
            take = np.arange(n)
            if max_tiles_per_slide is not None and n > max_tiles_per_slide:
                take = np.sort(rng.choice(n, max_tiles_per_slide, replace=False))
            tile_scale = n / len(take)
            labels = np.concatenate([read_pu_labels(bag, take[lo:lo + 256]) for lo in range(0, len(take), 256)])
            is_neg = bool(bag.label == 0 and not (labels == PU_POSITIVE).any())
            n_slides[is_neg] += 1
            n_lab += int((labels == PU_POSITIVE).sum() * tile_scale)
            n_unl[is_neg] += int((labels == PU_UNLABELED).sum() * tile_scale)
            mpp = float(bag.meta.mpp)
            sigmas = [sg / (mpp if np.isfinite(mpp) and mpp > 0 else 1.0) for sg in sigmas_um]
            step = max(1, (1 << 20) // (bag.tile_size ** 2))  # features of about a million pixels at a time
            for lo in range(0, len(take), step):
                idx = take[lo:lo + step]
                feats = pixel_features(bag.read_tiles(idx), sigmas)
                for j in range(len(idx)):
                    for value in (PU_POSITIVE, PU_UNLABELED):
                        ys, xs = np.nonzero(labels[lo + j] == value)
                        if ys.size == 0:
                            continue
                        k = min(pixels_per_tile, ys.size)
                        pick = rng.choice(ys.size, k, replace=False)
                        X.append(feats[j, ys[pick], xs[pick]])
                        s.append(np.full(k, int(value == PU_POSITIVE), dtype=np.int8))
                        neg.append(np.full(k, is_neg))
                        grp.append(np.full(k, g))
                        wts.append(np.full(k, ys.size / k * tile_scale))
    if not X:
        raise ValueError(f"{bags}: no labelled or unlabeled tissue pixels")
    return PixelSample(
        X=np.concatenate(X), s=np.concatenate(s), negative_slide=np.concatenate(neg), groups=np.concatenate(grp),
        weights=np.concatenate(wts), n_labeled=n_lab, n_unlabeled_negative=n_unl[True],
        n_unlabeled_other=n_unl[False], n_negative_slides=n_slides[True], n_other_slides=n_slides[False],
    )


@dataclass
class PriorEstimate:
    """What :func:`estimate_bag_prior` found: π and how it was obtained."""

    prior: float                  #: π, cancer share within all unlabeled tissue pixels
    method: str                   #: ``"negative_slides_acc"``
    prior_positive_slides: float  #: π₊, within the unlabeled tissue of slides not labelled 0
    positive_share: float         #: share of the unlabeled pixels on slides not labelled 0
    n_negative_slides: int
    n_other_slides: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def estimate_bag_prior(
    bags: str | os.PathLike | Sequence[str | os.PathLike] | PixelSample, *, pixels_per_tile: int = 256,
    max_tiles_per_slide: int | None = 64, sigmas_um: Sequence[float] = FEATURE_SIGMAS_UM,
    classifier=None, n_splits: int = 6, negative_rate: float | None = 0.1, max_train_per_class: int | None = 20_000,
    random_state: int | None = 0,
) -> PriorEstimate:
    """π within the unlabeled tissue of PU bags by :class:`NegativeSlidePriorEstimator`.

    Pixels and counts come from :func:`sample_bag_pixels` (or pass its result as ``bags``):
    only ``pu_labels``, tiles and slide labels are read, never the ground-truth masks. The
    share of unlabeled pixels on slides not labelled 0 uses the sample's pixel counts. Seeded by
    ``random_state``. Raises ``ValueError`` when no slide is labelled 0 (the assumption the
    estimate rests on is then unavailable: give π or sweep it) or fewer than two slides of a
    kind take part.
    """
    sample = bags if isinstance(bags, PixelSample) else sample_bag_pixels(
        bags, pixels_per_tile=pixels_per_tile, max_tiles_per_slide=max_tiles_per_slide, sigmas_um=sigmas_um,
        random_state=random_state)
    n_u = sample.n_unlabeled_other + sample.n_unlabeled_negative
    if n_u == 0:
        raise ValueError("no unlabeled tissue pixels")
    if sample.n_negative_slides == 0:
        raise ValueError("no slide is labelled 0: the negative-slide prior needs cancer-free slides "
                         "(give the prior, sweep it, or use a SCAR estimator)")
    est = NegativeSlidePriorEstimator(classifier=classifier, n_splits=n_splits, negative_rate=negative_rate,
                                      max_train_per_class=max_train_per_class, random_state=random_state).fit(
        sample.X, sample.s, sample.negative_slide, sample.groups, sample.weights)
    share = sample.n_unlabeled_other / n_u
    return PriorEstimate(prior=est.prior_positive_slides_ * share, method=est.method_,
                         prior_positive_slides=est.prior_positive_slides_, positive_share=share,
                         n_negative_slides=sample.n_negative_slides, n_other_slides=sample.n_other_slides)


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
