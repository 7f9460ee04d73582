"""U-Net over timm encoders: shapes, feature taps, configuration errors, registry."""

from __future__ import annotations

import pytest
import torch

import weakseg  # noqa: F401  (torchvision shim before timm)
from weakseg.models import create_backbone, list_backbones
from weakseg.models.registry import WeightsNotFoundError


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_backbone("unet_tiny", num_classes=2).eval()


def test_registered():
    assert {"unet", "unet_resnet18", "unet_resnet34", "unet_tiny"} <= set(list_backbones("unet*"))


@pytest.mark.parametrize("shape", [(64, 64), (96, 128)])
def test_output_at_input_resolution(tiny, shape):
    with torch.no_grad():
        assert tiny(torch.randn(2, 3, *shape)).shape == (2, 2, *shape)


def test_feature_taps_match_feature_info(tiny):
    with torch.no_grad():
        feats = tiny.forward_features(torch.randn(1, 3, 64, 64))
    assert [(f.shape[1], 64 // f.shape[-1]) for f in feats] == tiny.feature_info
    assert [r for _, r in tiny.feature_info] == [2, 4, 8, 16, 32]


def test_bad_input_size(tiny):
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny(torch.randn(1, 3, 48, 48))


def test_decoder_length_checked():
    with pytest.raises(ValueError, match="needs 5 decoder channels"):
        create_backbone("unet", encoder="test_resnet", decoder_channels=(16, 8))


def test_resnet18_variant_channels():
    with torch.device("meta"):
        m = create_backbone("unet_resnet18", num_classes=3)
    assert [c for c, _ in m.feature_info] == [64, 64, 128, 256, 512]
    assert m.head.out_channels == 3 and m.default_cfg.input_multiple == 32


def test_missing_encoder_weights(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="not found"):
        create_backbone("unet_tiny", pretrained_path=tmp_path / "x.pth")


def test_backward_reaches_encoder(tiny):
    m = create_backbone("unet_tiny")
    m(torch.randn(2, 3, 64, 64)).mean().backward()
    assert all(p.grad is not None for p in m.encoder.parameters() if p.requires_grad)


def test_local_encoder_checkpoint_is_loaded(tmp_path):
    import timm

    torch.manual_seed(1)
    ref = timm.create_model("test_resnet", pretrained=False)
    torch.save(ref.state_dict(), tmp_path / "enc.pth")
    m = create_backbone("unet_tiny", pretrained_path=tmp_path / "enc.pth")
    ref_params = dict(ref.named_parameters())
    loaded = dict(m.encoder.named_parameters())
    assert loaded.keys() <= ref_params.keys()
    assert all(torch.equal(v, ref_params[k]) for k, v in loaded.items())
