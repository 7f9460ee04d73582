"""weakseg/learners/base.py: a learner counts as fitted only once fit() returned or load() restored it.

The engine sets ``module_``/``device_``/``data_info_`` before the first epoch, so a fit that fails
mid-training leaves those behind; predicting with that half-trained module must be refused.
"""

from __future__ import annotations

import numpy as np
import pytest
from weakseg.errors import WeaksegError
from weakseg.learners import create_learner

LEARNERS = ["abmil", "topk_mil"]


def _bags(n: int = 8, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Feature bags (N, 4): positive bags hold a few instances shifted by +2."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    bags = []
    for label in y:
        x = rng.normal(size=(int(rng.integers(3, 7)), 4)).astype(np.float32)
        if label:
            x[:2] += 2.0
        bags.append(x)
    return bags, y


def _learner(name: str):
    return create_learner(name, encoder="features", max_epochs=2, batch_size=2, device="cpu", random_state=0)


def _fail_on_step(learner, step: int) -> None:
    """Make the ``step``-th training step (counted across fits) raise, after earlier steps trained the module."""
    original = learner.training_step
    calls = {"n": 0}

    def training_step(batch):
        calls["n"] += 1
        if calls["n"] == step:
            raise RuntimeError("boom in training_step")
        return original(batch)

    learner.training_step = training_step


@pytest.mark.parametrize("name", LEARNERS)
def test_fit_failing_mid_training_leaves_the_learner_unfitted(name, tmp_path):
    bags, y = _bags()
    learner = _learner(name)
    _fail_on_step(learner, 3)
    with pytest.raises(RuntimeError, match="boom"):
        learner.fit(bags, y)
    assert hasattr(learner, "module_")  # what the engine set before training is still there …
    with pytest.raises(WeaksegError, match="not fitted"):  # … yet the learner does not pass as fitted
        learner.predict_proba(bags)
    with pytest.raises(WeaksegError, match="not fitted"):
        learner.instance_scores(bags[0])
    with pytest.raises(WeaksegError, match="not fitted"):
        learner.save(tmp_path / "half.pt")
    assert learner.__sklearn_is_fitted__() is False


@pytest.mark.parametrize("name", LEARNERS)
def test_refit_failing_after_a_successful_fit_leaves_the_learner_unfitted(name):
    bags, y = _bags()
    learner = _learner(name)
    _fail_on_step(learner, 100 + 3)  # far beyond the first fit's steps
    learner.fit(bags, y)
    assert learner.predict_proba(bags).shape == (len(bags), 2)
    learner.max_epochs = 200  # the second fit reaches step 103
    with pytest.raises(RuntimeError, match="boom"):
        learner.fit(bags, y)
    with pytest.raises(WeaksegError, match="not fitted"):
        learner.predict_proba(bags)


@pytest.mark.parametrize("name", LEARNERS)
def test_fit_with_validation_then_save_and_load_are_fitted(name, tmp_path):
    bags, y = _bags()
    learner = _learner(name)
    with pytest.raises(WeaksegError, match="not fitted"):
        learner.save(tmp_path / "unfitted.pt")
    learner.fit(bags, y, X_val=bags, y_val=y)  # validation predicts while fit runs
    assert learner.__sklearn_is_fitted__() is True
    assert len(learner.history_) == 2
    proba = learner.predict_proba(bags)
    loaded = type(learner).load(learner.save(tmp_path / "learner.pt"))
    assert loaded.__sklearn_is_fitted__() is True
    np.testing.assert_allclose(loaded.predict_proba(bags), proba, atol=1e-6)


@pytest.mark.parametrize("name", ["abmil", "topk_mil"])
def test_unfitted_mil_learner_says_so_before_reading_bags(name, tmp_path) -> None:
    """Never fitted: predict_proba / instance_scores raise the not-fitted error, not an AttributeError."""
    learner = create_learner(name)
    with pytest.raises(WeaksegError, match="not fitted yet"):
        learner.predict_proba([np.zeros((3, 4), np.float32)])
    with pytest.raises(WeaksegError, match="not fitted yet"):
        learner.instance_scores(np.zeros((3, 4), np.float32))
