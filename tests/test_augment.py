"""Training-time augmentation: specs, label consistency, reproducibility, recipe errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weakseg.data.augment import PRESETS, Augmenter, AugmentSpec, hed_jitter, parse_augment
from weakseg.errors import WeaksegError


def _batch(n: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand((n, 3, size, size), generator=g)
    y = torch.randint(0, 3, (n, size, size), generator=g)
    y[:, :4] = 255  # background code must survive every geometric transform exactly
    return x, y


def test_parse_values():
    assert parse_augment(True) == PRESETS["flips"] == AugmentSpec(flips=True)
    assert parse_augment(False).is_identity and parse_augment(None).is_identity
    assert parse_augment("he") == PRESETS["he"]
    spec = parse_augment({"preset": "he", "elastic": 0.2, "noise": 0})
    assert spec.elastic == 0.2 and spec.noise == 0.0 and spec.hed == PRESETS["he"].hed


@pytest.mark.parametrize("value, words", [
    ("heavy", "unknown preset 'heavy'"),
    ({"flip": True}, "unknown key(s) ['flip']"),
    ({"blur": 2.0}, "augment.blur is a probability"),
    ({"hed": -0.1}, "augment.hed: expected a non-negative number"),
    ({"flips": 1}, "augment.flips: expected true/false"),
    (3, "expected true/false, a preset name or a mapping"),
])
def test_parse_errors_name_the_key(value, words):
    with pytest.raises(WeaksegError, match=None) as err:
        parse_augment(value)
    assert words in str(err.value)


@pytest.mark.parametrize("preset", ["flips", "he", "strong"])
def test_labels_stay_valid_and_aligned(preset):
    x, y = _batch()
    spec = PRESETS[preset]
    xa, ya = Augmenter(spec)(x, y, np.random.default_rng(1))
    assert xa.shape == x.shape and ya.shape == y.shape and ya.dtype == y.dtype
    assert xa.min() >= 0 and xa.max() <= 1
    assert set(ya.unique().tolist()) <= {0, 1, 2, 255}
    if not spec.elastic:  # a pure D4 move: every label map is a rotation/flip of the original
        for a, b in zip(ya, y):
            assert any(torch.equal(a, t) for t in _d4(b))


def test_geometry_is_shared_by_image_and_label():
    """With only geometric transforms, a label equal to the image's first channel stays equal to it."""
    x, _ = _batch()
    y = (x[:, 0] * 1000).round().long()
    xa, ya = Augmenter({"flips": True, "elastic": 1.0, "elastic_alpha": 0.0})(x, y, np.random.default_rng(3))
    torch.testing.assert_close((xa[:, 0] * 1000).round().long(), ya)


def test_pixel_transforms_leave_labels_alone():
    x, y = _batch()
    xa, ya = Augmenter({"hed": 0.05, "brightness": 0.2, "blur": 1.0, "median": 1.0, "noise": 0.05})(x, y, np.random.default_rng(0))
    assert torch.equal(ya, y)
    assert not torch.allclose(xa, x)


def test_same_generator_same_result():
    x, y = _batch()
    a = Augmenter("strong")
    r1 = a(x, y, np.random.default_rng(7))
    r2 = a(x, y, np.random.default_rng(7))
    r3 = a(x, y, np.random.default_rng(8))
    assert torch.equal(r1[0], r2[0]) and torch.equal(r1[1], r2[1])
    assert not torch.equal(r1[0], r3[0])


def test_hed_jitter_zero_sigma_is_identity():
    x, _ = _batch()
    x = x.clamp(0.05, 1.0)
    torch.testing.assert_close(hed_jitter(x, 0.0), x, atol=1e-4, rtol=1e-4)


def test_recipe_typo_in_augment_is_a_named_error(tmp_path):
    from weakseg.errors import RecipeError
    from weakseg.recipes import load_recipe
    from weakseg.study import RECIPES

    with pytest.raises(RecipeError, match=r"learner.params.augment: unknown key\(s\) \['hde'\]"):
        load_recipe(RECIPES / "supervised_transunet.yaml", profile="tiny", overrides=["learner.params.augment={hde: 0.1}"])


def _d4(t: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for u in (t, t.flip(-1)):
        out += [torch.rot90(u, k, dims=(-2, -1)) for k in range(4)]
    return out
