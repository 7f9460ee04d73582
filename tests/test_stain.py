"""Stain normalisation: references, per-tile normalisation, persistence with the model, recipe errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from weakseg.data.stain import fit_reference, normalize
from weakseg.errors import RecipeError, WeaksegError
from weakseg.learners import create_learner
from weakseg.learners.base import Learner

T = 32


def _he_tiles(n: int, seed: int, h_gain: float = 1.0, e_gain: float = 1.0) -> np.ndarray:
    """H&E-like tiles by Beer-Lambert: eosin everywhere, haematoxylin blobs (nuclei); the gains mimic
    a stronger or weaker stain of one slide."""
    from skimage.color import hed2rgb

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:T, :T]
    tiles = []
    for _ in range(n):
        hed = np.zeros((T, T, 3))
        hed[..., 1] = 0.25 + 0.05 * rng.random((T, T))
        for _ in range(5):
            cy, cx = rng.integers(4, T - 4, 2)
            hed[..., 0] += 0.6 * ((yy - cy) ** 2 + (xx - cx) ** 2 < 14)
        hed[..., 0] *= h_gain
        hed[..., 1] *= e_gain
        tiles.append(np.clip(hed2rgb(hed) * 255, 0, 255))
    return np.stack(tiles).astype(np.uint8)


def _tissue_mean(x: torch.Tensor) -> torch.Tensor:
    tissue = x.min(dim=1).values < 220 / 255  # (B, H, W)
    return torch.stack([x[:, c][tissue].mean() for c in range(3)])


def _cast_towards(ref_tiles: np.ndarray, cast: np.ndarray, method: str) -> tuple[float, float]:
    ref = fit_reference(ref_tiles, method)
    x = torch.from_numpy(cast).permute(0, 3, 1, 2).float() / 255
    y = normalize(x, ref)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    target = _tissue_mean(torch.from_numpy(ref_tiles).permute(0, 3, 1, 2).float() / 255)
    return float((_tissue_mean(x) - target).abs().sum()), float((_tissue_mean(y) - target).abs().sum())


def test_reinhard_pulls_a_stain_change_towards_the_reference():
    before, after = _cast_towards(_he_tiles(16, 0), _he_tiles(8, 1, h_gain=0.6, e_gain=1.8), "reinhard")
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("method", ["reinhard", "macenko"])
def test_normalisation_of_real_tissue_towards_the_reference(method, shared_data: Path):
    from PIL import Image

    def crops(name: str) -> np.ndarray:
        img = np.asarray(Image.open(shared_data / "tiles" / name).convert("RGB"))
        return np.stack([img[y:y + 128, x:x + 128] for y in (0, 128, 256) for x in (0, 128, 256)])

    ref_tiles = crops("tissue-level0-4302-10273-4814-10785.png")
    cast = np.clip(crops("tissue-level0-7352-11762-7864-12274.png") * np.array([0.85, 0.95, 1.1]), 0, 255).astype(np.uint8)
    before, after = _cast_towards(ref_tiles, cast, method)
    assert after < 0.6 * before, (before, after)


def test_none_is_identity_and_unknown_method_is_named():
    x = torch.rand(2, 3, 8, 8)
    assert normalize(x, None) is x
    with pytest.raises(WeaksegError, match="unknown method 'vahadane'"):
        fit_reference(_he_tiles(2, 0), "vahadane")


def test_reference_is_saved_with_the_model_and_applied_at_predict_time(tmp_path: Path, make_bag):
    tiles = _he_tiles(9, 2)
    masks = np.ones((9, T, T), np.uint8)
    masks[:, :8] = 2
    make_bag(tmp_path / "s0.h5", tiles, masks)
    learner = create_learner("supervised_seg", backbone="unet_tiny", stain_norm="reinhard", batch_size=3,
                             max_epochs=1, device="cpu", random_state=0)
    learner.fit(tmp_path / "s0.h5")
    ref = learner.data_info_["stain"]
    assert ref["method"] == "reinhard" and len(ref["mean"]) == 3
    before = learner.predict_tiles(tiles[:2])
    learner.save(tmp_path / "model.pt")
    loaded = Learner.load(tmp_path / "model.pt")
    assert loaded.data_info_["stain"] == ref
    np.testing.assert_allclose(loaded.predict_tiles(tiles[:2]), before, atol=1e-6)


def test_recipe_rejects_unknown_stain_method():
    from weakseg.recipes import load_recipe
    from weakseg.study import RECIPES

    with pytest.raises(RecipeError, match=r"learner.params.stain_norm: unknown method 'reinhart'"):
        load_recipe(RECIPES / "supervised_transunet.yaml", profile="tiny", overrides=["learner.params.stain_norm=reinhart"])
