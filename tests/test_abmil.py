"""abmil: attention pooling, CLAM-SB instance loss, learning on digit bags and HDF5 bags."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weakseg.data import make_digit_bags, write_toy_bags
from weakseg.learners import Learner, create_learner
from weakseg.learners.mil import AttentionPool, InstanceClassifiers, clam_instance_loss, smooth_top1_svm
from weakseg.metrics.mil import binary_auc


@pytest.mark.parametrize("gated", [False, True])
def test_attention_sums_to_one_and_ignores_padding(gated: bool) -> None:
    torch.manual_seed(0)
    pool = AttentionPool(6, 4, gated=gated).eval()
    h = torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    z, raw, w = pool(h, mask)
    assert torch.allclose(w.sum(1), torch.ones(2))
    assert (w[1, 2:] == 0).all() and torch.isinf(raw[1, 2:]).all()
    z_alone, _, w_alone = pool(h[1:2, :2], None)  # the same bag without padding
    assert torch.allclose(z[1], z_alone[0], atol=1e-6) and torch.allclose(w[1, :2], w_alone[0])
    h2 = h.clone()
    h2[1, 2:] = 1e3  # garbage in padded positions changes nothing
    assert torch.allclose(pool(h2, mask)[0], z)


def test_gated_differs_from_plain() -> None:
    torch.manual_seed(0)
    plain, gated = AttentionPool(6, 4), AttentionPool(6, 4, gated=True)
    gated.V.load_state_dict(plain.V.state_dict())
    gated.w.load_state_dict(plain.w.state_dict())
    h = torch.randn(1, 5, 6)
    assert plain.U is None and gated.U is not None
    assert not torch.allclose(plain(h)[2], gated(h)[2])


def test_smooth_top1_svm_matches_definition() -> None:
    s = torch.tensor([[2.0, 0.5], [0.0, 3.0]])
    y = torch.tensor([0, 0])
    expected = torch.stack([torch.logsumexp(torch.tensor([2.0, 1.5]), 0) - 2.0,
                            torch.logsumexp(torch.tensor([0.0, 4.0]), 0) - 0.0]).mean()
    assert torch.allclose(smooth_top1_svm(s, y), expected)


@pytest.mark.parametrize("n", [1, 3, 8, 20])
def test_clam_k_is_min_of_b_and_n(n: int) -> None:
    torch.manual_seed(0)
    heads = InstanceClassifiers(4)
    h = torch.randn(2, 20, 4, requires_grad=True)
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[0, :n] = True
    mask[1, :20] = True
    raw = torch.randn(2, 20).masked_fill(~mask, float("-inf"))
    for fn in ("svm", "ce"):
        loss = clam_instance_loss(h, raw, mask, torch.tensor([1, 0]), heads, k_sample=8, loss=fn)
        assert torch.isfinite(loss)
        loss.backward()
        assert h.grad[0, n:].abs().sum() == 0  # padded instances never take part
        h.grad = None


def _digits(n: int, seed: int, split: str) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray]]:
    bags, y, inst = make_digit_bags(n, seed=seed, split=split)
    return [b.reshape(len(b), -1) for b in bags], y, inst  # 64-d pixel "features"


def test_digit_bags_are_learnable() -> None:
    Xtr, ytr, _ = _digits(200, 0, "train")
    Xte, yte, ite = _digits(60, 1, "test")
    m = create_learner("abmil", encoder="features", gated=True, batch_size=2, lr=1e-3, max_epochs=4, device="cpu")
    m.fit(Xtr, ytr)
    p = m.predict_proba(Xte)
    assert p.shape == (60, 2) and np.allclose(p.sum(1), 1)
    assert binary_auc(yte, p[:, 1]) > 0.8
    scores = np.concatenate([m.instance_scores(b) for b in Xte])
    assert binary_auc(np.concatenate(ite), scores) > 0.8  # instance logits find the 9s
    raw, w = m.attention(Xte[0])
    assert raw.shape == w.shape == (len(Xte[0]),) and np.isclose(w.sum(), 1)


def test_same_seed_same_metrics() -> None:
    X, y, _ = _digits(30, 0, "train")
    Xv, yv, _ = _digits(20, 1, "test")
    runs = [create_learner("abmil", encoder="features", max_epochs=2, device="cpu", random_state=seed)
            .fit(X, y, X_val=Xv, y_val=yv).history_ for seed in (3, 3, 4)]
    key = ["train_loss", "val_slide_auc"]
    assert [[h[k] for k in key] for h in runs[0]] == [[h[k] for k in key] for h in runs[1]]
    assert runs[0][0]["train_loss"] != runs[2][0]["train_loss"]


def test_lenet_on_digit_images_with_clam() -> None:
    bags, y, _ = make_digit_bags(12, seed=0)
    m = create_learner("abmil", encoder="lenet_mnist", instance_loss="clam", instance_score="instance_classifier",
                       gated=True, dropout=0.25, embed_dim=32, attention_dim=16, batch_size=3, max_epochs=1,
                       device="cpu")
    m.fit(bags, y)
    assert np.isfinite(m.history_[0]["train_loss"]) and "train_instance_loss" in m.history_[0]
    s = m.instance_scores(bags[0])
    assert s.shape == (len(bags[0]),) and ((0 <= s) & (s <= 1)).all()


def test_hdf5_bags_fit_predict_save_load(tmp_path) -> None:
    paths = write_toy_bags(tmp_path / "bags", n_bags=10, n_tiles=(5, 12), tile_size=16, seed=0)
    m = create_learner("abmil", encoder="colon27", embed_dim=32, attention_dim=16, lr=1e-3, max_epochs=4,
                       max_instances=8, augment=True, device="cpu")
    m.fit(tmp_path / "bags")  # labels from the bags' 'label' attribute
    p = m.predict_proba(paths)[:, 1]
    assert binary_auc([0, 1] * 5, p) == 1.0
    from weakseg.bags import Bag

    with Bag(paths[1]) as bag:
        scores = m.instance_scores(bag)
        assert binary_auc(bag.cancer_fraction > 0.5, scores) > 0.9
    assert np.array_equal(scores, m.instance_scores(paths[1]))  # inference is deterministic (no augmentation)
    m.save(tmp_path / "abmil.pt")
    loaded = Learner.load(tmp_path / "abmil.pt")
    np.testing.assert_allclose(loaded.predict_proba(paths), m.predict_proba(paths), atol=1e-6)


@pytest.mark.parametrize("name", ["abmil_gated", "clam_sb"])
def test_recipes_validate(name: str) -> None:
    from weakseg.recipes import find_recipe, load_recipe

    for profile in (None, "tiny"):
        learner = load_recipe(find_recipe(name), profile=profile).build_learner()
        assert learner.name == "abmil" and learner.gated
    assert learner.device == "cpu"
