"""topk_mil: pseudo-label rules (tiny bags included), aggregation, training through HDF5 bags."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weakseg.data import write_toy_bags
from weakseg.errors import WeaksegError
from weakseg.learners import create_learner
from weakseg.learners.mil import aggregate, aggregate_scores, topk_targets
from weakseg.metrics.mil import binary_auc


def _targets(logits: list[float], label: int, alpha: float = 0.2, beta: float = 0.2):
    x = torch.tensor([logits])
    t, w = topk_targets(x, torch.ones_like(x, dtype=torch.bool), torch.tensor([float(label)]), alpha, beta)
    return t[0].tolist(), w[0].tolist()


def test_positive_bag_top_and_bottom() -> None:
    logits = [0.5, 3.0, -2.0, 1.0, 0.0, 2.0, -1.0, -3.0, 0.2, 0.1]
    t, w = _targets(logits, 1)  # n = 10: top 2 → 1, bottom 2 → 0, rest masked
    assert [i for i, v in enumerate(t) if v == 1] == [1, 5]
    assert [i for i, v in enumerate(w) if v == 1] == [1, 2, 5, 7]


def test_negative_bag_all_zero() -> None:
    t, w = _targets([3.0, 1.0, -1.0], 0)
    assert t == [0.0, 0.0, 0.0] and w == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("n", [1, 2, 4])
def test_tiny_positive_bags_keep_one_top_tile(n: int) -> None:
    t, w = _targets(list(np.linspace(-1, 1, n)), 1)
    assert t[-1] == 1.0 and sum(t) == 1  # max(1, ⌊0.2 n⌋) = 1
    assert sum(w) == 1  # ⌊0.2 n⌋ = 0 bottom tiles


def test_overlapping_fractions_never_conflict() -> None:
    t, w = _targets([0.0, 1.0, 2.0], 1, alpha=0.9, beta=0.9)
    assert t == [0.0, 1.0, 1.0] and w == [1.0, 1.0, 1.0]


def test_padded_positions_are_never_selected() -> None:
    logits = torch.tensor([[0.5, 9.0, 9.0], [1.0, -1.0, 9.0]])
    mask = torch.tensor([[True, False, False], [True, True, False]])
    t, w = topk_targets(logits, mask, torch.tensor([1.0, 0.0]))
    assert t.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert w.tolist() == [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]


def test_small_bags_are_filled_and_loss_is_finite() -> None:
    m = create_learner("topk_mil", encoder="features", bag_size=4, batch_size=2, device="cpu")
    src = m.prepare_data([np.ones((1, 3), np.float32), np.ones((6, 3), np.float32)], [1, 0])
    m.device_, m.data_info_ = torch.device("cpu"), m.data_info(src)
    m.module_ = m.build_module(m.data_info_)
    batch = next(iter(m.train_batches(src, 0, np.random.default_rng(0))))
    assert batch.mask.sum(1).tolist() == [4, 4]
    assert sorted(len(set(i.tolist()) - {-1}) for i in batch.idx) == [1, 4]  # 1 tile drawn 4 times; 4 of 6 distinct
    out = m.training_step(batch)
    assert torch.isfinite(out.loss) and out.logs["selected_tiles"] == 1 + 4


def test_aggregation() -> None:
    s = torch.tensor([[0.1, 0.9, 0.3, 0.5, 0.0], [0.2, 0.4, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    assert torch.allclose(aggregate(s, mask, "max"), torch.tensor([0.9, 0.4]))
    assert torch.allclose(aggregate(s, mask, "mean"), torch.tensor([0.36, 0.3]))
    assert torch.allclose(aggregate(s, mask, "topk_mean", 0.4), torch.tensor([0.7, 0.4]))
    assert aggregate_scores([0.2], "topk_mean") == pytest.approx(0.2)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(s, mask, "median")


def test_invalid_parameters_are_named() -> None:
    m = create_learner("topk_mil", encoder="features", alpha=0.0, device="cpu")
    with pytest.raises(WeaksegError, match="alpha"):
        m.fit([np.ones((3, 2), np.float32)] * 2, [0, 1])


def test_fit_on_hdf5_bags_finds_lesion_tiles(tmp_path) -> None:
    paths = write_toy_bags(tmp_path, n_bags=10, n_tiles=(4, 12), tile_size=16, seed=1)
    m = create_learner("topk_mil", encoder="colon27", bag_size=8, lr=1e-3, max_epochs=4, aggregation="topk_mean",
                       device="cpu")
    m.fit(paths[:8], X_val=paths[8:])
    assert m.history_[-1]["val_slide_auc"] == 1.0
    assert binary_auc([0, 1] * 5, m.predict_proba(paths)[:, 1]) == 1.0
    from weakseg.bags import Bag

    scores = np.concatenate([m.instance_scores(p) for p in paths])
    truth = np.concatenate([Bag(p).cancer_fraction for p in paths]) > 0.5
    assert binary_auc(truth, scores) > 0.95


def test_recipe_validates() -> None:
    from weakseg.recipes import find_recipe, load_recipe

    paper = load_recipe(find_recipe("topk_mil_lerousseau2020")).build_learner()
    assert (paper.alpha, paper.beta, paper.bag_size, paper.lr, paper.max_epochs) == (0.2, 0.2, 150, 5e-4, 20)
    assert load_recipe(find_recipe("topk_mil_lerousseau2020"), profile="tiny").build_learner().device == "cpu"
