"""Test-time augmentation of the segmentation learners: exact D4 equivariance, off during validation."""

from __future__ import annotations

import numpy as np
import pytest

from weakseg.learners import create_learner

T = 32


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, make_bag):
    root = tmp_path_factory.mktemp("tta")
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 255, (9, T, T, 3), dtype=np.uint8)
    masks = np.ones((9, T, T), np.uint8)
    masks[:, :10, :20] = 2
    make_bag(root / "s0.h5", tiles, masks)
    learner = create_learner("supervised_seg", backbone="unet_tiny", tta=True, batch_size=3, max_epochs=1,
                             device="cpu", random_state=0)
    return learner.fit(root / "s0.h5"), tiles, root / "s0.h5"


def test_tta_is_the_mean_over_d4_and_equivariant(fitted) -> None:
    learner, tiles, _ = fitted
    with_tta = learner.predict_tiles(tiles[:3])
    plain = learner.predict_tiles(tiles[:3], tta=False)
    assert with_tta.shape == plain.shape == (3, T, T)
    manual = np.zeros_like(plain)
    for k in range(4):
        for flip in (False, True):
            moved = np.rot90(tiles[:3], k, axes=(1, 2))
            moved = moved[:, :, ::-1] if flip else moved
            p = learner.predict_tiles(np.ascontiguousarray(moved), tta=False)
            p = p[:, :, ::-1] if flip else p
            manual += np.rot90(p, -k, axes=(1, 2))
    np.testing.assert_allclose(with_tta, manual / 8, atol=1e-5)
    rotated = learner.predict_tiles(np.ascontiguousarray(np.rot90(tiles[:3], 1, axes=(1, 2))))
    np.testing.assert_allclose(rotated, np.rot90(with_tta, 1, axes=(1, 2)), atol=1e-5)


def test_validation_scores_the_plain_model(fitted, monkeypatch) -> None:
    learner, _, bag = fitted
    seen = []
    original = type(learner).predict_tiles

    def spy(self, tiles, *, tta=None):
        seen.append(tta)
        return original(self, tiles, tta=tta)

    monkeypatch.setattr(type(learner), "predict_tiles", spy)
    learner.evaluate(learner.prepare_data(bag))
    assert seen and all(t is False for t in seen)
