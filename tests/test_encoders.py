"""Instance encoders: shapes of the papers' CNNs, timm backbones, weight files (never downloaded)."""

from __future__ import annotations

import pytest
import torch

from weakseg.encoders import EncoderWeightsError, create_encoder, list_encoders, normalize_images, resolve_weights
from weakseg.errors import WeaksegError


def test_registered_encoders() -> None:
    assert {"colon27", "features", "lenet_mnist"} <= set(list_encoders())


@pytest.mark.parametrize(("name", "chans", "size", "dim"), [("lenet_mnist", 1, 28, 800), ("lenet_mnist", 1, 8, 200),
                                                            ("colon27", 3, 27, 1200)])
def test_paper_cnn_shapes(name: str, chans: int, size: int, dim: int) -> None:
    enc = create_encoder(name, in_chans=chans, input_size=size)
    assert enc.out_dim == dim and enc.input_kind == "image"
    assert enc(torch.zeros(2, chans, size, size)).shape == (2, dim)


def test_timm_backbone_and_features() -> None:
    enc = create_encoder("resnet18", in_chans=3, input_size=32).eval()
    assert enc.out_dim == 512 and len(enc.mean) == 3
    assert enc(torch.zeros(1, 3, 32, 32)).shape == (1, 512)
    feat = create_encoder("features", in_dim=7)
    x = torch.randn(3, 7)
    assert feat.input_kind == "features" and torch.equal(feat(x), x)
    with pytest.raises(WeaksegError, match="did you mean 'colon27'"):
        create_encoder("colon72")


def test_normalize_images_uint8_and_float() -> None:
    enc = create_encoder("lenet_mnist", in_chans=1, input_size=8)
    u8 = torch.full((1, 8, 8, 1), 255, dtype=torch.uint8)
    assert torch.allclose(normalize_images(u8, enc), torch.ones(1, 1, 8, 8))
    assert torch.allclose(normalize_images(torch.zeros(1, 1, 8, 8), enc), -torch.ones(1, 1, 8, 8))


def test_missing_weight_file_is_a_clear_error(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(EncoderWeightsError, match=str(missing)):
        create_encoder("resnet18", pretrained_path=missing)


def test_no_cached_weights_names_places_and_flags(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(EncoderWeightsError) as err:
        resolve_weights("resnet18", None)
    assert "--pretrained-path" in str(err.value) and "--random-init" in str(err.value) and str(tmp_path) in str(err.value)


def test_offline_cache_hit_and_checkpoint_roundtrip(tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    src = create_encoder("resnet18", input_size=32)
    hf = tmp_path / "hf" / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc"
    hf.mkdir(parents=True)
    torch.save(src.model.state_dict(), hf / "pytorch_model.bin")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert resolve_weights("resnet18", None) == hf / "pytorch_model.bin"
    loaded = create_encoder("resnet18", input_size=32, random_init=False)
    x = torch.randn(1, 3, 32, 32)
    src.eval(), loaded.eval()
    assert torch.allclose(src(x), loaded(x))
    small = create_encoder("colon27")
    torch.save(small.state_dict(), tmp_path / "colon.pt")
    again = create_encoder("colon27", pretrained_path=tmp_path / "colon.pt")
    assert all(torch.equal(a, b) for a, b in zip(small.state_dict().values(), again.state_dict().values()))
