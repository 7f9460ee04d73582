"""mil_seg: MIL tile scores → round-0 pseudo-masks → refined segmentation, on tiny slide-labelled bags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import weakseg  # noqa: F401
from weakseg import api
from weakseg.bags import Bag, BagMeta, BagWriter
from weakseg.data.seg import SegTileDataset
from weakseg.errors import WeaksegError
from weakseg.learners import create_learner
from weakseg.learners.base import Learner
from weakseg.learners.mil_seg import tile_pseudo_labels
from weakseg.recipes import load_recipe
from weakseg.refine import IGNORE, NEGATIVE, POSITIVE, ROUNDS_CSV, read_pseudo_labels
from weakseg.tiling.tissue import detect_tissue
from weakseg.weaken import weaken_bags

T, GRID = 32, 4
BENIGN, CANCER, GLASS = (205, 140, 185), (110, 40, 140), 245
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "mil_refine_transunet.yaml"
# random-init tiny encoder: beta=0 (no bottom-tile negatives) keeps cancer tiles from locking at 0
MIL = dict(encoder="colon27", bag_size=16, alpha=0.2, beta=0.0, lr=3e-3, augment=False)
SEG = dict(backbone="unet_tiny", batch_size=8)


def write_slide(path: Path, slide_id: str, cells: list[int], seed: int) -> None:
    """A 4×4-tile slide: pink benign tissue, a glass strip, a dark round "cancer" blob in each of ``cells``."""
    side = T * GRID
    rng = np.random.default_rng(seed)
    lab = np.ones((side, side), np.uint8)
    lab[:, :10] = 0
    yy, xx = np.ogrid[:side, :side]
    for c in cells:
        cy, cx = (c // GRID) * T + rng.integers(12, 20), (c % GRID) * T + rng.integers(12, 20)
        lab[((yy - cy) ** 2 + (xx - cx) ** 2 < 64) & (lab > 0)] = 2
    rgb = np.array([(GLASS,) * 3, BENIGN, CANCER], float)[lab]
    rgb = np.clip(rgb + rng.normal(0, 10, rgb.shape) * (lab > 0)[..., None], 0, 255).astype(np.uint8)
    coords = np.array([(x * T, y * T) for y in range(GRID) for x in range(GRID)])
    tiles = np.stack([rgb[y:y + T, x:x + T] for x, y in coords])
    masks = np.stack([lab[y:y + T, x:x + T] for x, y in coords])
    meta = BagMeta(slide_id=slide_id, label=int(bool(cells)), data_provider="karolinska", tile_size=T, stride=T)
    with BagWriter(path, meta, tile_size=T, with_masks=True, codec="raw") as w:
        w.append(tiles, coords, np.ones(len(coords)), masks=masks, cancer_fraction=(masks == 2).mean((1, 2)))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def weak(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("milseg")
    rng = np.random.default_rng(0)
    for i in range(4):
        write_slide(root / "full" / f"p{i}.h5", f"p{i}", list(rng.choice(GRID * GRID, 4, replace=False)), i)
    for i in range(2):
        write_slide(root / "full" / f"n{i}.h5", f"n{i}", [], 10 + i)
    weaken_bags(root / "full", root / "weak", "slide")
    return root / "weak"


@pytest.fixture(scope="module")
def fitted(weak: Path, tmp_path_factory) -> tuple[Learner, Path]:
    run = tmp_path_factory.mktemp("milseg_run")
    m = create_learner("mil_seg", mil_params=dict(MIL, max_epochs=12), seg_params=dict(SEG, max_epochs=3),
                       rounds=2, tol=0.0, device="cpu", random_state=0)
    return m.fit(weak, run_dir=run), run


def test_tile_pseudo_labels_rules() -> None:
    scores = np.array([0.5, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2, 0.0, 0.6, 0.4])
    labels = tile_pseudo_labels(scores, 1, top=0.2, bottom=0.3)
    assert list(np.flatnonzero(labels == POSITIVE)) == [1, 5]
    assert list(np.flatnonzero(labels == NEGATIVE)) == [2, 6, 7]
    assert (labels == IGNORE).sum() == 5
    assert (tile_pseudo_labels(scores, 0) == NEGATIVE).all()
    assert list(tile_pseudo_labels([0.2, 0.1], 1, top=0.2, bottom=0.9)) == [POSITIVE, NEGATIVE]  # never 0 top tiles
    with pytest.raises(WeaksegError, match="pseudo_top"):
        tile_pseudo_labels(scores, 1, top=0.0)
    with pytest.raises(WeaksegError, match="slide label"):
        tile_pseudo_labels(scores, -1)


def test_round0_masks_follow_mil_scores(fitted, weak: Path) -> None:
    model, run = fitted
    for path in sorted(weak.glob("*.h5")):
        with Bag(path) as src, Bag(run / "rounds" / "r0" / "labels" / path.name) as lab:
            labels, tiles = read_pseudo_labels(lab), src.read_tiles()
            tissue = np.stack([detect_tissue(t) for t in tiles])
            assert (labels[~tissue] == IGNORE).all()
            expected = tile_pseudo_labels(model.mil_.instance_scores(src), src.label, 0.2, 0.2)
            np.testing.assert_array_equal(labels[tissue], np.broadcast_to(expected[:, None, None], labels.shape)[tissue])
            if src.label == 0:
                assert set(np.unique(labels[tissue])) == {NEGATIVE}
            else:
                per_tile = [set(np.unique(t[m])) for t, m in zip(labels, tissue)]
                assert sum(s == {POSITIVE} for s in per_tile) == 3 and sum(s == {NEGATIVE} for s in per_tile) == 3


def test_fit_outputs_and_rounds(fitted, weak: Path) -> None:
    model, run = fitted
    table = pd.read_csv(run / ROUNDS_CSV)
    assert list(table["round"]) == [0, 1] and list(model.rounds_["round"]) == [0, 1]
    assert (run / "mil" / "learner.pt").is_file() and (run / "mil" / "metrics.csv").is_file()
    assert (run / "rounds" / "r1" / "learner.pt").is_file()
    with Bag(weak / "p0.h5") as bag:
        tiles = bag.read_tiles(np.arange(5))
        p = model.predict_tiles(tiles)
        assert p.shape == (5, T, T) and p.dtype == np.float32 and 0 <= p.min() and p.max() <= 1
        assert model.instance_scores(bag).shape == (len(bag),)
    proba = model.predict_proba(weak)
    assert proba.shape == (6, 2) and np.allclose(proba.sum(1), 1)
    # the blob is learnable from slide labels alone: MIL separates the slides, refinement helps the maps
    assert proba[:2, 1].max() < proba[2:, 1].min()  # n0, n1 then p0..p3
    assert table["dice_pred"].iloc[-1] > 0.6


def test_save_load_round_trip(fitted, weak: Path, tmp_path: Path) -> None:
    model, _ = fitted
    path = model.save(tmp_path / "model.pt")
    torch.load(path, map_location="cpu", weights_only=True)
    loaded = Learner.load(path)
    with Bag(weak / "p1.h5") as bag:
        tiles = bag.read_tiles()
        np.testing.assert_array_equal(loaded.predict_tiles(tiles), model.predict_tiles(tiles))
        np.testing.assert_array_equal(loaded.instance_scores(bag), model.instance_scores(bag))
    pd.testing.assert_frame_equal(loaded.rounds_, model.rounds_, check_dtype=False)


def test_pseudo_label_bags_train_supervised_seg(fitted) -> None:
    _, run = fitted
    data = SegTileDataset(run / "rounds" / "r0" / "labels", target="full")
    images, targets = data.read(np.arange(len(data)))
    with Bag(run / "rounds" / "r0" / "labels" / "p0.h5") as lab:
        np.testing.assert_array_equal(targets[data.index[:, 0] == data.paths.index(lab.path)], read_pseudo_labels(lab))
    assert data.has_positive.sum() == 4 * 3  # the three top tiles of each positive slide


def test_same_seed_same_result_and_resume(weak: Path, tmp_path: Path) -> None:
    def fit(name: str, resume: bool = False) -> Learner:
        m = create_learner("mil_seg", mil_params=dict(MIL, max_epochs=1), seg_params=dict(SEG, max_epochs=1),
                           rounds=1, device="cpu", random_state=0)
        return m.fit(weak, run_dir=tmp_path / name, resume=resume)

    with Bag(weak / "p2.h5") as bag:
        tiles = bag.read_tiles(np.arange(4))
    first = fit("a").predict_tiles(tiles)
    np.testing.assert_array_equal(first, fit("b").predict_tiles(tiles))
    assert pd.read_csv(tmp_path / "a" / ROUNDS_CSV).equals(pd.read_csv(tmp_path / "b" / ROUNDS_CSV))
    mil_model = tmp_path / "a" / "mil" / "learner.pt"
    stamp = mil_model.stat().st_mtime_ns
    np.testing.assert_array_equal(fit("a", resume=True).predict_tiles(tiles), first)  # finished MIL stage reused
    assert mil_model.stat().st_mtime_ns == stamp


def test_bad_parameters(weak: Path, tmp_path: Path) -> None:
    with pytest.raises(WeaksegError, match="policy"):
        create_learner("mil_seg", policy="median").fit(weak, run_dir=tmp_path / "a")
    with pytest.raises(WeaksegError, match="seg_learner"):
        create_learner("mil_seg", seg_learner="topk_mil").fit(weak, run_dir=tmp_path / "b")
    with pytest.raises(WeaksegError, match="mil_learner"):
        create_learner("mil_seg", mil_learner="supervised_seg").fit(weak, run_dir=tmp_path / "c")


def test_recipe_tiny_profile_trains_end_to_end(weak: Path, tmp_path: Path) -> None:
    recipe = load_recipe(RECIPE, profile="tiny")
    assert recipe.learner.name == "mil_seg" and recipe.learner.params["seg_params"]["backbone"] == "transunet_tiny"
    fast = [f"data.bags={weak}", "learner.params.rounds=1",
            f"learner.params.mil_params={dict(MIL, max_epochs=1)}", f"learner.params.seg_params={dict(SEG, max_epochs=1)}"]
    run = api.train(RECIPE, tmp_path / "run", overrides=fast, profile="tiny")
    assert (run / "model.pt").is_file() and (run / "mil" / "learner.pt").is_file() and (run / ROUNDS_CSV).is_file()
    table = api.evaluate(run, weak)
    assert {"slide", "pixel"} <= set(table["level"])
