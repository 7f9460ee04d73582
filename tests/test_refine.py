"""Pseudo-label refinement: Dice rises on toy data, the stopping rule, fixed labels stay fixed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

import weakseg  # noqa: F401
from weakseg.bags import Bag, BagMeta, BagWriter
from weakseg.capabilities import InstanceScorerMixin, PixelPredictorMixin
from weakseg.errors import WeaksegError
from weakseg.refine import (
    IGNORE, NEGATIVE, POSITIVE, ROUNDS_CSV, ThresholdPolicy, TopKPolicy, initial_targets, read_pseudo_labels, refine,
)
from weakseg.weaken import weaken_bags

T, GRID = 16, 4
CANCER_RGB, BENIGN_RGB, GLASS = (150, 60, 160), (205, 140, 185), 245


def write_slide(path: Path, slide_id: str, squares: list[tuple[int, int, int]], seed: int) -> None:
    side = T * GRID
    lab = np.ones((side, side), dtype=np.uint8)
    lab[:, :8] = 0  # a glass strip
    for y, x, s in squares:
        lab[y : y + s, x : x + s] = 2
    rng = np.random.default_rng(seed)
    rgb = np.array([(GLASS,) * 3, BENIGN_RGB, CANCER_RGB], dtype=float)[lab]
    rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape) * (lab > 0)[..., None], 0, 255).astype(np.uint8)
    coords = np.array([(x * T, y * T) for y in range(GRID) for x in range(GRID)])
    tiles = np.stack([rgb[y : y + T, x : x + T] for x, y in coords])
    masks = np.stack([lab[y : y + T, x : x + T] for x, y in coords])
    meta = BagMeta(slide_id=slide_id, label=int(bool(squares)), data_provider="karolinska", tile_size=T, stride=T)
    with BagWriter(path, meta, tile_size=T, with_masks=True, codec="raw") as w:
        w.append(tiles, coords, np.ones(len(coords)), masks=masks, cancer_fraction=(masks == 2).mean((1, 2)))


@pytest.fixture
def weak(tmp_path: Path) -> Path:
    full = tmp_path / "full"
    squares = [(10, 12, 9), (30, 40, 10), (44, 14, 8), (12, 44, 9), (50, 50, 8), (28, 22, 7)]
    write_slide(full / "p1.h5", "p1", squares, 1)
    write_slide(full / "p2.h5", "p2", squares[::-1][:4], 2)
    write_slide(full / "n1.h5", "n1", [], 3)
    weaken_bags(full, tmp_path / "weak", "pu", positive_fraction=0.2, erode=0, seed=0)
    return tmp_path / "weak"


class PixelLogReg(PixelPredictorMixin, BaseEstimator):
    """A tiny per-pixel colour model trained on pseudo labels (255 ignored): any estimator declaring pixels works."""

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, paths: list[Path]) -> PixelLogReg:
        xs, ys = [], []
        for p in paths:
            with Bag(p) as bag:
                labels = read_pseudo_labels(bag)
                keep = labels != IGNORE
                xs.append(bag.read_tiles()[keep] / 255.0)
                ys.append(labels[keep])
        self.model_ = LogisticRegression(C=self.C).fit(np.concatenate(xs), np.concatenate(ys))
        return self

    def predict_tiles(self, tiles: np.ndarray) -> np.ndarray:
        p = self.model_.predict_proba(tiles.reshape(-1, 3) / 255.0)[:, 1]
        return p.reshape(tiles.shape[:3]).astype(np.float32)


class Constant(InstanceScorerMixin):
    """Predicts the same probability everywhere; fitting is a no-op (not an estimator: refine deep-copies it)."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.fits = 0

    def fit(self, paths: list[Path]) -> Constant:
        self.fits += 1
        return self

    def instance_scores(self, bag: Bag) -> np.ndarray:
        return np.full(len(bag), self.p)


def test_refinement_raises_dice(weak: Path, tmp_path: Path) -> None:
    res = refine(PixelLogReg(), weak, tmp_path / "run", policy=TopKPolicy(top=0.08, bottom=0.6), rounds=3, tol=0.0)
    table = pd.read_csv(tmp_path / "run" / ROUNDS_CSV)
    assert list(table["round"]) == [0, 1, 2]
    # the naive PU start (unlabeled = negative) predicts little cancer; refined labels fix that
    assert table["dice_pred"].iloc[-1] > table["dice_pred"].iloc[0] + 0.3
    assert table["dice_labels"].iloc[1] > table["dice_labels"].iloc[0]
    assert table["dice_pred"].iloc[-1] > 0.8
    assert (tmp_path / "run" / "rounds" / "r2" / "labels" / "p1.h5").is_file()
    assert isinstance(res.learner, PixelLogReg) and len(res.label_dirs) == 4


def test_stopping_rule(weak: Path, tmp_path: Path) -> None:
    learner = Constant(0.9)
    res = refine(learner, weak, tmp_path / "a", policy=ThresholdPolicy(0.7, 0.3), rounds=5, tol=0.01)
    assert list(res.rounds["changed"]) == [pytest.approx(1.0), 0.0]  # all free pixels flip once, then stable
    res = refine(learner, weak, tmp_path / "b", policy=ThresholdPolicy(0.7, 0.3), rounds=3, tol=0.0)
    assert len(res.rounds) == 3
    with pytest.raises(ValueError, match="rounds"):
        refine(learner, weak, tmp_path / "c", rounds=0)


@pytest.mark.parametrize("p", [0.05, 0.5, 0.95])
def test_fixed_labels_stay_fixed(weak: Path, tmp_path: Path, p: float) -> None:
    res = refine(Constant(p), weak, tmp_path / "run", policy=ThresholdPolicy(0.7, 0.3), rounds=2, tol=0.0)
    free_label = POSITIVE if p > 0.7 else NEGATIVE if p < 0.3 else IGNORE
    for name in ("p1", "n1"):
        with Bag(weak / f"{name}.h5") as src, Bag(res.label_dirs[-1] / f"{name}.h5") as out:
            targets, fixed = initial_targets(src, np.arange(len(src)), src.read_tiles())
            labels = read_pseudo_labels(out)
            np.testing.assert_array_equal(labels[fixed], targets[fixed])
            assert (labels[~fixed] == free_label).all()
            if name == "n1":
                assert fixed.all() and set(np.unique(labels)) == {NEGATIVE, IGNORE}
            else:
                assert (labels[targets == POSITIVE] == POSITIVE).all()  # given positives survive p = 0.05
            np.testing.assert_array_equal(out.read_tiles([3]), src.read_tiles([3]))  # tiles linked


def test_top_k_policy_thresholds() -> None:
    hist = np.zeros(256, dtype=np.int64)
    hist[[10, 100, 200, 250]] = [40, 30, 20, 10]
    hi, lo = TopKPolicy(top=0.3, bottom=0.4).thresholds(hist, 1)
    values = np.repeat(np.arange(256), hist) / 255
    assert np.mean(values > hi) == pytest.approx(0.3) and np.mean(values < lo) == pytest.approx(0.4)
    hi, lo = TopKPolicy(top=0.05, bottom=0.1).thresholds(hist, 1)  # cut-offs inside a tie: nobody
    assert not (values > hi).any() and not (values < lo).any()
    with pytest.raises(ValueError):
        TopKPolicy(top=0.7, bottom=0.5)
    with pytest.raises(ValueError):
        ThresholdPolicy(hi=0.2, lo=0.5)


def test_slide_supervision_starts_from_painted_labels(tmp_path: Path) -> None:
    write_slide(tmp_path / "full" / "p1.h5", "p1", [(10, 12, 9)], 1)
    (path,) = weaken_bags(tmp_path / "full", tmp_path / "weak", "slide")
    with Bag(path) as bag:
        tiles = bag.read_tiles()
        targets, fixed = initial_targets(bag, np.arange(len(bag)), tiles)
        truth = bag.read_masks()
    assert not fixed.any() or (targets[fixed] == IGNORE).all()
    tissue = targets != IGNORE
    assert (targets[tissue] == POSITIVE).all()
    assert np.mean(tissue == (truth > 0)) > 0.9  # tissue detection roughly finds the tissue


def test_initial_callable_sets_free_pixels_only(weak: Path, tmp_path: Path) -> None:
    def ignore_all(bag: Bag, idx: np.ndarray, tiles: np.ndarray) -> np.ndarray:
        return np.full((len(idx), T, T), IGNORE, dtype=np.uint8)

    res = refine(Constant(0.5), weak, tmp_path / "run", rounds=1, initial=ignore_all)
    with Bag(weak / "p1.h5") as src, Bag(res.label_dirs[0] / "p1.h5") as r0:
        targets, fixed = initial_targets(src, np.arange(len(src)), src.read_tiles())
        labels = read_pseudo_labels(r0)
    np.testing.assert_array_equal(labels[fixed], targets[fixed])
    assert (labels[~fixed] == IGNORE).all()
    assert res.rounds["coverage"].iloc[0] < 0.5  # free tissue counts as unlabelled
    with pytest.raises(WeaksegError, match="n1.h5: initial labels of tiles 0..15"):
        refine(Constant(0.5), weak, tmp_path / "bad", rounds=1, initial=lambda b, i, t: np.zeros((1,), np.uint8))
