"""Class-prior estimators on synthetic data with a known prior within the unlabeled set, on PU bags,
in nnpu_seg, and on real GlaS tissue with region labels (skipped without ../shared/data)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

from weakseg.losses.prior import (
    NegativeSlidePriorEstimator, PriorEstimator, adjusted_count_prior, bbe_prior, elkan_noto_prior, estimate_bag_prior,
    negative_slide_prior, pixel_features, prior_sweep, sample_bag_pixels,
)


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


# -- region labels: the negative-slide estimator ---------------------------------------------------
def _region_pu(seed: int, pi_pos: float = 0.4, n_slides: int = 20, n: int = 400, sep: float = 2.5):
    """Slides of 2-D samples; the first half are cancer-free (label 0). Labelled positives are a
    *biased* sample of the cancer: about half of the cancer samples of one 'region' (x1 > 1), like
    a few annotated, eroded regions; SCAR fails. Returns X, s, negative_slide, groups, true π_U."""
    rng = np.random.default_rng(seed)
    X, s, neg, groups, y = [], [], [], [], []
    for k in range(n_slides):
        is_neg = k < n_slides // 2
        yk = np.zeros(n, bool) if is_neg else rng.random(n) < pi_pos
        x = rng.normal(size=(n, 2))
        x[:, 0] += np.where(yk, sep, -sep)
        sk = yk & (x[:, 1] > 1.0) & (rng.random(n) < 0.5)
        for out, value in ((X, x), (s, sk.astype(int)), (neg, np.full(n, is_neg)), (groups, np.full(n, k)), (y, yk)):
            out.append(value)
    X, s, neg, groups, y = map(np.concatenate, (X, s, neg, groups, y))
    return X, s, neg, groups, y[s == 0].mean()


@pytest.mark.parametrize("seed", [0, 1])
def test_negative_slide_prior_survives_biased_labels(seed):
    X, s, neg, groups, true = _region_pu(seed)
    bbe = PriorEstimator("bbe", random_state=seed).fit(X, s).prior_
    assert bbe < 0.5 * true  # SCAR broken: BBE is far too low
    est = NegativeSlidePriorEstimator(random_state=seed).fit(X, s, neg, groups)
    assert est.prior_ == pytest.approx(true, rel=0.1)
    assert est.method_ == "negative_slides_acc" and np.isfinite(est.scores_).all()
    assert est.prior_ == pytest.approx(est.prior_positive_slides_ * est.positive_share_)
    assert est.positive_share_ == pytest.approx((~neg & (s == 0)).sum() / (s == 0).sum())
    again = NegativeSlidePriorEstimator(random_state=seed).fit(X, s, neg, groups)
    assert again.prior_ == est.prior_  # seeded


def test_negative_slide_prior_weights_stand_for_pixels():
    # dropping half the unlabeled rows of the other slides and doubling their weight changes nothing much
    X, s, neg, groups, true = _region_pu(0)
    keep = (s == 1) | neg | (np.arange(len(s)) % 2 == 0)
    w = np.where((s == 0) & ~neg, 2.0, 1.0)[keep]
    est = NegativeSlidePriorEstimator(random_state=0).fit(X[keep], s[keep], neg[keep], groups[keep], w)
    assert est.prior_ == pytest.approx(true, rel=0.15)


def test_adjusted_count_formula():
    pos = np.r_[np.ones(80), np.zeros(20)]   # tpr 0.8 above any threshold in (0, 1]
    neg = np.r_[np.ones(10), np.zeros(90)]   # 10 % of the negatives pass
    mix = np.r_[np.ones(38), np.zeros(62)]   # 0.38 = 0.8 π + 0.1 (1 − π)  →  π = 0.4
    assert adjusted_count_prior(pos, neg, mix, negative_rate=0.1) == pytest.approx(0.4)
    assert adjusted_count_prior(pos, neg, mix, negative_rate=None) == pytest.approx(0.4)  # PACC, same means
    # weights: the mixture's first half stands for 3 pixels each → share of ones = 38·3 / (50·3 + 50)
    w = np.r_[np.full(50, 3.0), np.ones(50)]
    q = 38 * 3 / 200
    assert adjusted_count_prior(pos, neg, mix, negative_rate=None, weights_mixture=w) == pytest.approx((q - 0.1) / 0.7)
    pi, pi_pos = negative_slide_prior(pos, neg, mix, n_unlabeled_positive=300, n_unlabeled_negative=100)
    assert pi_pos == pytest.approx(0.4) and pi == pytest.approx(0.3)
    with pytest.raises(ValueError, match="cannot separate"):
        adjusted_count_prior(neg, neg, mix)
    with pytest.raises(ValueError, match="negative_rate"):
        adjusted_count_prior(pos, neg, mix, negative_rate=1.0)


def test_negative_slide_prior_errors():
    X, s, neg, groups, _ = _region_pu(0, n_slides=6, n=100)
    with pytest.raises(ValueError, match="labelled 0"):
        NegativeSlidePriorEstimator().fit(X, s, np.zeros(len(s), bool), groups)
    with pytest.raises(ValueError, match="cannot hold labelled positives"):
        NegativeSlidePriorEstimator().fit(X, s, np.ones(len(s), bool), groups)
    one_neg = neg & (groups == 0)
    keep = one_neg | ~neg
    with pytest.raises(ValueError, match=">= 2 slides labelled 0"):
        NegativeSlidePriorEstimator().fit(X[keep], s[keep], neg[keep], groups[keep])


def test_pixel_features_shape():
    tiles = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    f = pixel_features(tiles, sigmas=(1.0, 3.0))
    assert f.shape == (2, 16, 16, 4 + 8 * 2) and f.dtype == np.float32 and np.isfinite(f).all()
    flat = pixel_features(np.full((1, 8, 8, 3), 128, np.uint8), sigmas=(2.0,))
    assert np.allclose(flat[..., 8:12], 0, atol=1e-6)  # no local variation on a flat tile


# -- on PU bags, and in nnpu_seg -------------------------------------------------------------------
T, GRID = 32, 3


def _write_bag(path, seed: int, label: int) -> None:
    """A 96×96 slide: benign tissue (bluish), on label-1 slides reddish cancer squares, a background strip."""
    from weakseg.bags import BagMeta, BagWriter

    rng = np.random.default_rng(seed)
    lab = np.ones((T * GRID, T * GRID), dtype=np.uint8)
    lab[:, -12:] = 0
    for _ in range(4 if label else 0):
        y, x = rng.integers(0, T * GRID - 20, 2)
        lab[y:y + 14, x:x + 14] = 2
    colours = np.array([[240, 240, 240], [90, 90, 200], [200, 60, 80]], dtype=np.float64)
    img = np.clip(colours[lab] + rng.normal(0, 20, lab.shape + (3,)), 0, 255).astype(np.uint8)
    coords = np.array([(x * T, y * T) for y in range(GRID) for x in range(GRID)])
    tiles = np.stack([img[y:y + T, x:x + T] for x, y in coords])
    masks = np.stack([lab[y:y + T, x:x + T] for x, y in coords])
    # 4 µm/px: a cancer square is ~56 µm across, like a gland; the feature windows (2-12 µm) stay local
    meta = BagMeta(slide_id=f"s{seed}", label=label, data_provider="karolinska", tile_size=T, stride=T, mpp=4.0)
    with BagWriter(path, meta, tile_size=T, with_masks=True, codec="raw") as w:
        w.append(tiles, coords, np.ones(len(coords)), masks=masks, cancer_fraction=(masks == 2).mean((1, 2)))


@pytest.fixture(scope="module")
def pu_bags(tmp_path_factory):
    from weakseg.weaken import weaken_bags

    root = tmp_path_factory.mktemp("priorbags")
    for seed in range(8):
        _write_bag(root / "full" / f"s{seed}.h5", seed, label=int(seed >= 4))
    weaken_bags(root / "full", root / "pu", "pu", positive_fraction=0.5, erode=2, seed=0)
    return root / "pu"


def _true_prior(pu) -> float:
    from weakseg.study import unlabeled_prior

    return unlabeled_prior(pu)


def test_estimate_bag_prior_on_pu_bags(pu_bags):
    sample = sample_bag_pixels(pu_bags, random_state=0)
    assert sample.n_negative_slides == 4 and sample.n_other_slides == 4
    assert set(np.unique(sample.s)) == {0, 1} and not sample.s[sample.negative_slide].any()
    est = estimate_bag_prior(pu_bags, random_state=0)
    assert est.method == "negative_slides_acc"
    assert est.prior == pytest.approx(_true_prior(pu_bags), rel=0.3)
    assert est.prior == estimate_bag_prior(pu_bags, random_state=0).prior


def test_nnpu_seg_estimates_prior_when_not_given(pu_bags, caplog):
    from weakseg.learners import create_learner

    learner = create_learner("nnpu_seg", backbone="unet_tiny", device="cpu", random_state=0)
    assert learner.prior is None
    data = learner.prepare_data(pu_bags)
    with caplog.at_level("INFO", logger="weakseg.engine"):
        info = learner.data_info(data)
    assert info["prior_method"] == learner.prior_method_ == "negative_slides_acc"
    assert info["prior"] == learner.prior_ == pytest.approx(_true_prior(pu_bags), rel=0.3)
    assert "negative_slides_acc" in caplog.text
    given = create_learner("nnpu_seg", prior=0.2, backbone="unet_tiny", device="cpu")
    assert "prior" not in given.data_info(data) and (given.prior_, given.prior_method_) == (0.2, "given")


def test_nnpu_seg_falls_back_without_negative_slides(tmp_path):
    from weakseg.learners import create_learner
    from weakseg.weaken import weaken_bags

    for seed in range(3):
        _write_bag(tmp_path / "full" / f"s{seed}.h5", seed, label=1)
    weaken_bags(tmp_path / "full", tmp_path / "pu", "pu", positive_fraction=0.5, erode=0, seed=0)
    learner = create_learner("nnpu_seg", backbone="unet_tiny", device="cpu")
    with pytest.warns(UserWarning, match="labelled 0"):
        info = learner.data_info(learner.prepare_data(tmp_path / "pu"))
    assert info["prior"] == 0.5 and learner.prior_method_ == "fallback"
    with pytest.raises(ValueError, match="labelled 0"):
        estimate_bag_prior(tmp_path / "pu")


@pytest.mark.shared
def test_negative_slide_prior_on_glas_region_labels(shared_data, tmp_path):
    """Real GlaS tissue, 10 % of the cancer regions labelled (weaken seed 0): relative error ≤ 0.3
    (benchmarks/bench_prior.py measures more seeds and the full-size sample)."""
    from weakseg.tiling.tiler import TileConfig, tile_cohort
    from weakseg.weaken import weaken_bags

    tile_cohort(shared_data / "glas_train", tmp_path / "bags", TileConfig(mpp=1.24, tile_size=128))
    weaken_bags(tmp_path / "bags", tmp_path / "pu", "pu", positive_fraction=0.1, seed=0)
    true = _true_prior(tmp_path / "pu")
    est = estimate_bag_prior(tmp_path / "pu", pixels_per_tile=64, max_train_per_class=5000, random_state=0)
    assert est.n_negative_slides == 37 and est.n_other_slides == 48
    assert abs(est.prior / true - 1) <= 0.3, (est, true)
