"""HRNetV2 over timm's HRNet: shapes, branch taps, input checks, local weights, one learner epoch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import weakseg  # noqa: F401  (torchvision shim before timm)
from weakseg.learners import create_learner
from weakseg.models import create_backbone, list_backbones
from weakseg.models.registry import WeightsNotFoundError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_backbone("hrnet_tiny", num_classes=3).eval()


def test_registered():
    assert {"hrnet", "hrnet_tiny", "hrnet_w18_small", "hrnet_w18", "hrnet_w32", "hrnet_w48"} <= set(
        list_backbones("hrnet*")
    )


@pytest.mark.parametrize("shape", [(64, 64), (96, 96), (64, 96)])
def test_output_at_input_resolution(tiny, shape):
    with torch.no_grad():
        assert tiny(torch.randn(2, 3, *shape)).shape == (2, 3, *shape)


def test_forward_features_are_the_four_branches_shallowest_first(tiny):
    with torch.no_grad():
        feats = tiny.forward_features(torch.randn(1, 3, 64, 64))
    assert isinstance(feats, list) and len(feats) == 4
    sides = [f.shape[-1] for f in feats]
    assert sides == [16, 8, 4, 2] and sides == sorted(sides, reverse=True)
    assert [(f.shape[1], 64 // f.shape[-1]) for f in feats] == tiny.feature_info
    assert tiny.default_cfg.input_multiple == 32 and tiny.num_classes == 3


def test_bad_input_size(tiny):
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny(torch.randn(1, 3, 48, 48))


def test_variant_widths_and_head():
    with torch.device("meta"):
        w18 = create_backbone("hrnet", num_classes=5)
        small = create_backbone("hrnet_w18_small")
    assert w18.encoder_name == "hrnet_w18" and [c for c, _ in w18.feature_info] == [18, 36, 72, 144]
    assert [r for _, r in w18.feature_info] == [4, 8, 16, 32]
    assert w18.head[0].in_channels == 270 and w18.head[-1].out_channels == 5
    assert [c for c, _ in small.feature_info] == [16, 32, 64, 128]


def test_backward_reaches_every_branch(tiny):
    m = create_backbone("hrnet_tiny")
    m(torch.randn(2, 3, 64, 64)).mean().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_missing_pretrained_path_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"x\.pth.*not found"):
        create_backbone("hrnet_tiny", pretrained_path=tmp_path / "x.pth")


def test_local_encoder_checkpoint_is_loaded(tmp_path):
    import timm

    from weakseg.models.hrnet import TINY_ARCH

    torch.manual_seed(1)
    ref = timm.create_model("hrnet_w18_small", pretrained=False, **TINY_ARCH)  # a classification checkpoint
    torch.save(ref.state_dict(), tmp_path / "enc.pth")
    m = create_backbone("hrnet_tiny", pretrained_path=tmp_path / "enc.pth")
    ref_params = dict(ref.named_parameters())
    loaded = dict(m.encoder.named_parameters())
    assert loaded.keys() <= ref_params.keys()
    assert all(torch.equal(v, ref_params[k]) for k, v in loaded.items())


def test_supervised_seg_trains_one_epoch_with_hrnet_tiny(tmp_path, make_blob_bag):
    for split, seeds in (("train", (0, 1)), ("val", (2,))):
        for s in seeds:
            make_blob_bag(tmp_path / split / f"s{s}.h5", s, grid=2, tile=32, n_blobs=2)
    learner = create_learner("supervised_seg", backbone="hrnet_tiny", batch_size=4, max_epochs=1, device="cpu",
                             random_state=0)
    learner.fit(tmp_path / "train", X_val=tmp_path / "val")
    row = learner.history_[-1]
    assert np.isfinite(row["train_loss"]) and 0 <= row["val_dice_cancer"] <= 1
    assert learner.predict_tiles(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 32, 32)
