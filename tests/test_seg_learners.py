"""nnpu_seg / supervised_seg on tiny synthetic bags: data, training, inference, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import weakseg  # noqa: F401
from weakseg.data.augment import dihedral_pair
from weakseg.data.seg import SegTileDataset, random_crop
from weakseg.errors import BagError, WeaksegError
from weakseg.learners import create_learner
from weakseg.learners.base import Learner
from weakseg.losses import pu_risks, pu_zero_one_risk
from weakseg.recipes import list_recipes, load_recipe
from weakseg.weaken import weaken_bags

T = 32
GRID = 3
FAST = dict(batch_size=6, max_epochs=2, device="cpu", random_state=0)


def _slide(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 96×96 slide: benign tissue (bluish), cancer squares (reddish), a background strip."""
    rng = np.random.default_rng(seed)
    lab = np.ones((T * GRID, T * GRID), dtype=np.uint8)
    lab[:, -12:] = 0
    for _ in range(4):
        y, x = rng.integers(0, T * GRID - 20, 2)
        lab[y:y + 14, x:x + 14] = 2
    colours = np.array([[240, 240, 240], [90, 90, 200], [200, 60, 80]], dtype=np.float64)
    img = colours[lab] + rng.normal(0, 20, lab.shape + (3,))
    return np.clip(img, 0, 255).astype(np.uint8), lab


def _write_bag(path: Path, seed: int, t: int = T) -> None:
    """The bag of :func:`_slide` cut into ``t``-px tiles (conftest's ``write_bag``; test_ddp uses it too)."""
    from conftest import write_bag

    img, lab = _slide(seed)
    write_bag(path, image=img, labels=lab, tile_size=t, slide_id=f"s{seed}")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("segbags")
    for split, seeds in (("train", (0, 1, 2)), ("val", (3,))):
        for s in seeds:
            _write_bag(root / "full" / split / f"s{s}.h5", s)
        weaken_bags(root / "full" / split, root / "pu" / split, "pu", positive_fraction=0.5, erode=0, seed=0)
    _write_bag(root / "full" / "odd" / "s5.h5", 5, t=24)
    weaken_bags(root / "full" / "odd", root / "pu" / "odd", "pu", positive_fraction=1.0, erode=0, seed=0)
    return {"full": root / "full", "pu": root / "pu"}


def test_dataset_targets(bags):
    pu = SegTileDataset(bags["pu"] / "train", target="pu")
    full = SegTileDataset(bags["full"] / "train", target="full")
    assert len(pu) == len(full) == 3 * GRID * GRID and pu.tile_size == T
    rows = np.array([5, 0, 20])
    images, targets = pu.read(rows)
    assert images.shape == (3, T, T, 3) and targets.shape == (3, T, T)
    truth = pu.truth(rows)
    assert set(np.unique(targets)) <= {0, 1, 255}
    assert np.all((targets == 1) <= (truth == 2)) and np.all((targets == 255) == (truth == 0))
    _, ft = full.read(rows)
    np.testing.assert_array_equal(ft, np.select([truth == 0, truth == 1], [255, 0], 1))
    assert pu.has_positive.any() and (pu.has_positive <= full.has_positive).all()
    with pytest.raises(BagError, match="pu_labels"):
        SegTileDataset(bags["full"] / "train", target="pu")


def test_joint_augmentation_keeps_pixels_aligned():
    rng = np.random.default_rng(0)
    x = torch.arange(2 * 3 * 8 * 8).view(2, 3, 8, 8)
    y = x[:, 0].clone()
    for _ in range(5):
        xa, ya = dihedral_pair(x, y, torch.Generator().manual_seed(int(rng.integers(2**31))))
        torch.testing.assert_close(xa[:, 0], ya)
        xc, yc = random_crop(x, y, 4, rng)
        assert xc.shape == (2, 3, 4, 4)
        torch.testing.assert_close(xc[:, 0], yc)


@pytest.fixture(scope="module")
def nnpu(bags):
    learner = create_learner("nnpu_seg", prior=0.3, backbone="unet_tiny", lr=0.05, **FAST)
    return learner.fit(bags["pu"] / "train", X_val=bags["pu"] / "val")


def test_nnpu_fit_history_and_metrics(nnpu):
    assert len(nnpu.history_) == 2
    row = nnpu.history_[-1]
    for key in ("train_nnpu_risk", "train_negative_risk", "train_ascent", "val_pu_risk", "val_dice_cancer", "val_ap_cancer"):
        assert np.isfinite(row[key]), key


def test_streamed_validation_matches_whole_set_risks(nnpu, bags):
    data = SegTileDataset(bags["pu"] / "val", target="pu")
    images, targets = data.read(np.arange(len(data)))
    prob = torch.from_numpy(nnpu.predict_tiles(images)).double()
    labels = torch.from_numpy(targets)
    metrics = nnpu.evaluate(data)
    risks = pu_risks(torch.logit(prob.clamp(1e-6, 1 - 1e-6)), labels, 0.3)
    assert metrics["nnpu_risk"] == pytest.approx(risks.nnpu.item(), rel=1e-6)
    assert metrics["pu_risk"] == pytest.approx(pu_zero_one_risk(prob >= 0.5, labels, 0.3), rel=1e-6)


def test_predict_tiles_any_size(nnpu, bags):
    rng = np.random.default_rng(0)
    for size in (T, 40):
        p = nnpu.predict_tiles(rng.integers(0, 255, (3, size, size, 3), dtype=np.uint8))
        assert p.shape == (3, size, size) and p.dtype == np.float32 and 0 <= p.min() and p.max() <= 1
    with pytest.raises(WeaksegError, match="uint8"):
        nnpu.predict_tiles(np.zeros((1, T, T, 3), dtype=np.float32))


def test_slide_outputs(nnpu, bags):
    paths = sorted((bags["pu"] / "train").glob("*.h5"))
    scores = nnpu.instance_scores(paths[0])
    assert scores.shape == (GRID * GRID,)
    proba = nnpu.predict_proba(bags["pu"] / "train")
    assert proba.shape == (3, 2) and np.allclose(proba.sum(1), 1)
    assert proba[0, 1] == pytest.approx(scores.max())


def test_save_load_roundtrip(nnpu, tmp_path):
    tiles = np.random.default_rng(1).integers(0, 255, (2, T, T, 3), dtype=np.uint8)
    loaded = Learner.load(nnpu.save(tmp_path / "m.pt"))
    np.testing.assert_allclose(loaded.predict_tiles(tiles), nnpu.predict_tiles(tiles), atol=1e-6)
    assert loaded.get_params()["prior"] == 0.3


def test_training_is_deterministic(bags):
    kw = dict(prior=0.3, backbone="unet_tiny", **{**FAST, "max_epochs": 1})
    a = create_learner("nnpu_seg", **kw).fit(bags["pu"] / "train")
    b = create_learner("nnpu_seg", **kw).fit(bags["pu"] / "train")
    for (k, va), vb in zip(a.module_.state_dict().items(), b.module_.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)


def test_nnpu_learns_to_rank_cancer(bags):
    learner = create_learner("nnpu_seg", prior=0.25, backbone="unet_tiny", optimizer="adam", lr=3e-3,
                             scheduler="none", **{**FAST, "max_epochs": 6})
    metrics = learner.fit(bags["pu"] / "train").evaluate(SegTileDataset(bags["pu"] / "val", target="pu"))
    val = SegTileDataset(bags["pu"] / "val", target="pu")
    _, targets = val.read(np.arange(len(val)))
    truth = val.truth(np.arange(len(val)))
    prevalence = (truth == 2).sum() / (truth > 0).sum()  # the AP of a random ranking
    assert prevalence < 0.2 and metrics["ap_cancer"] > 0.6
    # BBE on held-out bags moves a wrong guess of π (0.25) towards π within the unlabeled tissue
    true_prior = (truth[targets == 0] == 2).mean()
    assert abs(learner.estimate_prior(bags["pu"] / "val") - true_prior) < abs(0.25 - true_prior) / 2


def test_supervised_transunet_fit(bags):
    learner = create_learner("supervised_seg", backbone="transunet_tiny", **{**FAST, "max_epochs": 1})
    learner.fit(bags["full"] / "train", X_val=bags["full"] / "val")
    row = learner.history_[-1]
    assert np.isfinite(row["train_loss"]) and 0 <= row["val_dice_cancer"] <= 1
    assert learner.predict_tiles(np.zeros((1, T, T, 3), np.uint8)).shape == (1, T, T)


def test_bad_configuration(bags):
    with pytest.raises(WeaksegError, match="prior"):
        create_learner("nnpu_seg", prior=1.5, **FAST).fit(bags["pu"] / "train")
    with pytest.raises(WeaksegError, match="crop_size 20"):
        create_learner("nnpu_seg", crop_size=20, backbone="unet_tiny", **FAST).fit(bags["pu"] / "train")
    with pytest.raises(WeaksegError, match=r"multiples of 32\); set crop_size"):
        create_learner("nnpu_seg", backbone="unet_tiny", **FAST).fit(bags["pu"] / "odd")
    with pytest.raises(BagError, match="ground-truth masks|pu_labels"):
        create_learner("nnpu_seg", **FAST).fit(bags["full"] / "train")


SEG_RECIPES = ("nnpu_transunet", "pu_unet", "supervised_transunet")


@pytest.mark.parametrize("name", SEG_RECIPES)
def test_shipped_recipes_validate(name):
    assert name in {p.stem for p in list_recipes()}
    for profile in (None, "tiny"):
        recipe = load_recipe(name, profile=profile)
        learner = recipe.build_learner()
        assert learner.get_params()["backbone"].startswith(("transunet", "unet"))
    full = load_recipe(name).learner.params
    if "transunet" in name:
        assert (full["optimizer"], full["lr"], full["momentum"], full["weight_decay"], full["scheduler"],
                full["batch_size"]) == ("sgd", 0.01, 0.9, 1e-4, "poly", 24)
    if name.startswith(("nnpu", "pu")):
        assert (full["beta"], full["gamma"], full["loss"]) == (0.0, 1.0, "sigmoid")


def test_tiny_profile_trains_end_to_end(bags, tmp_path):
    from weakseg.api import load_run, train

    run = train("nnpu_transunet", tmp_path / "run", profile="tiny",
                overrides=[f"data.bags={bags['pu'] / 'train'}", f"data.val_bags={bags['pu'] / 'val'}"])
    learner = load_run(run)
    assert learner.predict_tiles(np.zeros((2, T, T, 3), np.uint8)).shape == (2, T, T)
