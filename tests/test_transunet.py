"""TransUNet: shapes, skip taps, position-embedding resampling, pretrained-key mapping, size."""

from __future__ import annotations

from functools import partial

import pytest
import torch

import weakseg  # noqa: F401  (torchvision shim before timm)
from weakseg.errors import WeaksegError
from weakseg.models import create_backbone, list_backbones
from weakseg.models.registry import WeightsNotFoundError
from weakseg.models.transunet import TransUNet


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny() -> TransUNet:
    torch.manual_seed(0)
    return create_backbone("transunet_tiny", num_classes=3).eval()


def test_variants_registered():
    assert {"transunet_r50_vit_b16", "transunet_small", "transunet_tiny"} <= set(list_backbones("transunet*"))
    with pytest.raises(WeaksegError, match="did you mean 'transunet_tiny'"):
        create_backbone("transunet_tiy")


@pytest.mark.parametrize("size", [224, 256, 512])
def test_output_shape_at_input_resolution(tiny, size):
    with torch.no_grad():
        out = tiny(torch.randn(1, 3, size, size))
    assert out.shape == (1, 3, size, size)


def test_non_square_input_and_bad_size(tiny):
    with torch.no_grad():
        assert tiny(torch.randn(2, 3, 64, 96)).shape == (2, 3, 64, 96)
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny(torch.randn(1, 3, 100, 100))


def test_skip_taps_channels_and_strides(tiny):
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        *skips, tokens = tiny.forward_features(x)
    assert tokens.shape == (1, 64, 8, 8)
    assert [(s.shape[1], 128 // s.shape[-1]) for s in skips] == tiny.skip_info == [(16, 2), (32, 4), (64, 8)]


@pytest.mark.parametrize("n_skip", [0, 1, 2, 3])
def test_n_skip_changes_decoder_inputs(n_skip):
    m = create_backbone("transunet_tiny", n_skip=n_skip)
    skip_in = [blk.conv1[0].in_channels - inc for blk, inc in zip(m.decoder, [64, 32, 16, 16])]
    assert skip_in == ([64, 32, 16] [:n_skip] + [0] * (4 - n_skip))
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)


def test_pos_embed_resampled_for_other_grids(tiny):
    pe = tiny._pos_embed_for((16, 16))
    assert pe.shape == (1, 256, 64)
    assert tiny._pos_embed_for(tiny.grid_size) is tiny.pos_embed
    assert torch.allclose(tiny._pos_embed_for((14, 14)), tiny.pos_embed)  # 224 is the stored grid


def test_full_model_config_and_parameter_count():
    with torch.device("meta"):
        m = create_backbone("transunet_r50_vit_b16", num_classes=9)
    n = sum(p.numel() for p in m.parameters())
    assert n == 105_277_081  # Chen et al. report ~105 M for the 9-class Synapse model
    assert len(m.blocks) == 12 and m.blocks[0].attn.num_heads == 12 and m.patch_embed.out_channels == 768
    assert m.blocks[0].mlp.fc1.out_features == 3072
    assert [len(s.blocks) for s in m.cnn.stages] == [3, 4, 9]
    assert m.skip_info == [(64, 2), (256, 4), (512, 8)]
    assert [b.conv2[0].out_channels for b in m.decoder] == [256, 128, 64, 16]


def _tiny_timm_hybrid():
    from timm.layers import GroupNormAct, StdConv2dSame
    from timm.models.resnetv2 import ResNetV2
    from timm.models.vision_transformer_hybrid import _create_vision_transformer_hybrid

    cnn = ResNetV2(
        layers=[1, 1, 1], channels=(32, 64, 128), num_classes=0, global_pool="", stem_chs=16, stem_type="same",
        preact=False, conv_layer=partial(StdConv2dSame, eps=1e-8), norm_layer=partial(GroupNormAct, num_groups=8),
    )
    return _create_vision_transformer_hybrid("vit_base_r50_s16_224", backbone=cnn, embed_dim=64, depth=2, num_heads=2)


def test_load_pretrained_maps_timm_hybrid_keys(tmp_path):
    torch.manual_seed(0)
    ref = _tiny_timm_hybrid().eval()
    ckpt = tmp_path / "hybrid.pth"
    torch.save(ref.state_dict(), ckpt)
    m = create_backbone("transunet_tiny").eval()
    missing = m.load_pretrained(ckpt)
    assert missing and all(k.startswith(("conv_more", "decoder", "head")) for k in missing)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        tokens = m.forward_features(x)[-1]
        expected = ref.norm(ref.blocks(ref.patch_embed(x) + ref.pos_embed[:, 1:]))  # CLS token dropped
    torch.testing.assert_close(tokens.flatten(2).transpose(1, 2), expected)


def test_load_pretrained_resamples_pos_embed(tmp_path):
    ref = _tiny_timm_hybrid()
    ckpt = tmp_path / "hybrid.pth"
    torch.save(ref.state_dict(), ckpt)
    m = create_backbone("transunet_tiny", img_size=256, pretrained_path=ckpt)
    assert m.pos_embed.shape == (1, 256, 64)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="never downloads"):
        create_backbone("transunet_tiny", pretrained_path=tmp_path / "nope.pth")


def test_interface_metadata(tiny):
    assert tiny.num_classes == 3
    assert tiny.default_cfg.input_multiple == 16
    assert tiny.default_cfg.mean == (0.485, 0.456, 0.406)
