"""TransUNet (Chen et al., 2021): R50-ViT-B/16 hybrid encoder + cascaded upsampler (CUP) decoder.

Encoder: ResNetV2 stages with weight-standardised convolutions and GroupNorm (timm's
``ResNetV2``, "same" padding as in ``vit_base_r50_s16_224``), a 1×1 patch embedding of the
1/16 map, and a ViT (no CLS token, learned 2-D position embedding resampled to any input whose
sides are multiples of 16). Decoder: 3×3 conv to ``head_channels``, then four blocks
(bilinear ×2, concat skip, two 3×3 conv-BN-ReLU); skips are tapped at the stem before max-pool
(/2), ``stages[0]`` (/4) and ``stages[1]`` (/8); the last ``n_skip`` of those are used,
deepest first.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import GroupNormAct, StdConv2dSame, resample_abs_pos_embed
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import Block

from .registry import BackboneCfg, WeightsNotFoundError, register_backbone

PATCH_STRIDE = 16


class ConvBNReLU(nn.Sequential):
    """3×3 convolution (no bias), BatchNorm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class DecoderBlock(nn.Module):
    """Bilinear ×2 upsampling, optional skip concatenation, two conv-BN-ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_ch + skip_ch, out_ch)
        self.conv2 = ConvBNReLU(out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class TransUNet(nn.Module):
    """R50-ViT hybrid TransUNet returning per-pixel logits at input resolution.

    Args:
        num_classes: output channels of the segmentation head.
        img_size: side the position embedding is stored for (other multiples of 16 resample it).
        layers: bottleneck units per ResNetV2 stage (three stages, output stride 16).
        stage_channels: output channels of the three stages.
        stem_channels: channels of the 7×7 stem.
        gn_groups: GroupNorm groups in the CNN.
        embed_dim, depth, num_heads, mlp_ratio: ViT configuration.
        head_channels: channels of the decoder's first 3×3 conv.
        decoder_channels: outputs of the four decoder blocks.
        n_skip: how many skips (0-3, deepest first: /8, /4, /2) the decoder concatenates.
        drop_path_rate: stochastic depth in the ViT blocks.
    """

    def __init__(
        self,
        num_classes: int = 2,
        img_size: int = 224,
        layers: Sequence[int] = (3, 4, 9),
        stage_channels: Sequence[int] = (256, 512, 1024),
        stem_channels: int = 64,
        gn_groups: int = 32,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        head_channels: int = 512,
        decoder_channels: Sequence[int] = (256, 128, 64, 16),
        n_skip: int = 3,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(layers) != 3 or len(stage_channels) != 3:
            raise ValueError("TransUNet needs exactly three ResNetV2 stages (output stride 16)")
        if len(decoder_channels) != 4:
            raise ValueError("TransUNet's decoder has exactly four blocks")
        if not 0 <= n_skip <= 3:
            raise ValueError(f"n_skip must be in 0..3, got {n_skip}")
        if img_size % PATCH_STRIDE:
            raise ValueError(f"img_size must be a multiple of {PATCH_STRIDE}, got {img_size}")
        self.num_classes = num_classes
        self.n_skip = n_skip
        self.default_cfg = BackboneCfg(input_multiple=PATCH_STRIDE, default_input_size=img_size)

        self.cnn = ResNetV2(
            layers=list(layers),
            channels=tuple(stage_channels),
            num_classes=0,
            global_pool="",
            stem_chs=stem_channels,
            stem_type="same",
            preact=False,
            conv_layer=partial(StdConv2dSame, eps=1e-8),
            norm_layer=partial(GroupNormAct, num_groups=gn_groups),
        )
        #: (channels, stride) of the skip taps, shallowest first: stem, stages[0], stages[1].
        self.skip_info: list[tuple[int, int]] = [(stem_channels, 2), (stage_channels[0], 4), (stage_channels[1], 8)]

        self.grid_size = (img_size // PATCH_STRIDE, img_size // PATCH_STRIDE)
        self.patch_embed = nn.Conv2d(stage_channels[2], embed_dim, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_size[0] * self.grid_size[1], embed_dim))
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.Sequential(
            *[Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=dpr[i], norm_layer=norm) for i in range(depth)]
        )
        self.norm = norm(embed_dim)

        self.conv_more = ConvBNReLU(embed_dim, head_channels)
        used = [c for c, _ in reversed(self.skip_info)][:n_skip]
        skip_chs = used + [0] * (4 - n_skip)
        in_chs = [head_channels, *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(in_chs, skip_chs, decoder_channels))
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, kernel_size=3, padding=1)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # -- encoder -------------------------------------------------------------------------
    def _pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        if grid == self.grid_size:
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, list(grid), list(self.grid_size), num_prefix_tokens=0)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encode ``x``; feature maps shallowest first, as every backbone returns them: the CNN skips
        at ``/2, /4, /8`` (channels as in :attr:`skip_info`) and the ``(B, embed_dim, H/16, W/16)``
        transformer token map last."""
        h, w = x.shape[-2:]
        if h % PATCH_STRIDE or w % PATCH_STRIDE:
            raise ValueError(f"TransUNet input sides must be multiples of {PATCH_STRIDE}, got {h}×{w}")
        stem = self.cnn.stem
        s2 = stem.norm(stem.conv(x))
        s4 = self.cnn.stages[0](stem.pool(s2))
        s8 = self.cnn.stages[1](s4)
        s16 = self.cnn.stages[2](s8)
        t = self.patch_embed(s16)
        grid = (t.shape[-2], t.shape[-1])
        t = t.flatten(2).transpose(1, 2) + self._pos_embed_for(grid)
        t = self.norm(self.blocks(t))
        t = t.transpose(1, 2).reshape(x.shape[0], -1, *grid)
        return [s2, s4, s8, t]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *skips, tokens = self.forward_features(x)
        y = self.conv_more(tokens)
        deep_first = skips[::-1]
        for i, block in enumerate(self.decoder):
            y = block(y, deep_first[i] if i < self.n_skip else None)
        return self.head(y)

    # -- pretrained weights ----------------------------------------------------------------
    def load_pretrained(self, path: str | os.PathLike, strict_encoder: bool = True) -> list[str]:
        """Load a local timm ``vit_base_r50_s16_224`` checkpoint into the encoder.

        Accepts ``.pth``/``.pt``/``.bin`` (``torch.load``) or ``.safetensors`` files holding the
        timm state dict (optionally under a ``state_dict``/``model`` key). The CLS token is
        dropped, the position embedding resampled to this model's grid, the classifier head
        ignored. Returns the names of model parameters the checkpoint did not provide
        (the decoder and head). Nothing is downloaded.
        """
        path = Path(path)
        if not path.is_file():
            raise WeightsNotFoundError(
                f"{path}: pretrained checkpoint not found (expected a local timm vit_base_r50_s16_224 "
                "state dict; weakseg never downloads weights)"
            )
        state = _read_state_dict(path)
        mapped = timm_hybrid_to_transunet(state, self.grid_size)
        own = self.state_dict()
        bad = [k for k, v in mapped.items() if k in own and own[k].shape != v.shape]
        if bad:
            raise ValueError(f"{path}: shape mismatch for {bad[:5]} (is this a vit_base_r50_s16 checkpoint?)")
        unknown = [k for k in mapped if k not in own]
        if strict_encoder and unknown:
            raise ValueError(f"{path}: unexpected encoder keys {unknown[:5]}")
        self.load_state_dict({k: v for k, v in mapped.items() if k in own}, strict=False)
        return [k for k in own if k not in mapped]


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def timm_hybrid_to_transunet(state: dict[str, torch.Tensor], grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Map timm ``vit_base_r50_s16_*`` keys onto :class:`TransUNet` keys.

    ``patch_embed.backbone.*`` → ``cnn.*``, ``patch_embed.proj`` → ``patch_embed``, ``blocks``
    and ``norm`` unchanged; ``cls_token``, ``head``/``fc_norm`` dropped; the position
    embedding loses its CLS slot and is bicubically resampled from its square grid to ``grid``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("patch_embed.backbone."):
            out["cnn." + key[len("patch_embed.backbone."):]] = value
        elif key.startswith("patch_embed.proj."):
            out["patch_embed." + key[len("patch_embed.proj."):]] = value
        elif key.startswith(("blocks.", "norm.")):
            out[key] = value
        elif key == "pos_embed":
            n = value.shape[1]
            prefix = next((k for k in (0, 1) if math.isqrt(n - k) ** 2 == n - k), None)
            if prefix is None:
                raise ValueError(f"pos_embed of {n} tokens is neither a square grid nor a grid + CLS token")
            src = math.isqrt(n - prefix)
            out["pos_embed"] = resample_abs_pos_embed(value[:, prefix:], list(grid), [src, src], num_prefix_tokens=0)
    return out


def _transunet(num_classes: int = 2, pretrained_path: str | os.PathLike | None = None, **kwargs) -> TransUNet:
    model = TransUNet(num_classes=num_classes, **kwargs)
    if pretrained_path is not None:
        model.load_pretrained(pretrained_path)
    return model


@register_backbone("transunet_r50_vit_b16")
def transunet_r50_vit_b16(num_classes: int = 2, pretrained_path: str | None = None, **kwargs) -> TransUNet:
    """The paper's R50-ViT-B/16 TransUNet (~105 M parameters at 224×224)."""
    return _transunet(num_classes, pretrained_path, **kwargs)


@register_backbone("transunet_small")
def transunet_small(num_classes: int = 2, pretrained_path: str | None = None, **kwargs) -> TransUNet:
    """A reduced TransUNet (R26-ish CNN, 384-d ViT, 4 layers) for single-GPU experiments."""
    cfg = dict(
        layers=(2, 2, 2), stage_channels=(128, 256, 512), stem_channels=32, embed_dim=384, depth=4,
        num_heads=6, head_channels=256, decoder_channels=(128, 64, 32, 16),
    )
    return _transunet(num_classes, pretrained_path, **{**cfg, **kwargs})


@register_backbone("transunet_cpu")
def transunet_cpu(num_classes: int = 2, pretrained_path: str | None = None, **kwargs) -> TransUNet:
    """A ~0.9 M-parameter TransUNet between ``transunet_tiny`` and ``transunet_small`` for CPU experiments."""
    cfg = dict(
        layers=(1, 2, 2), stage_channels=(48, 96, 192), stem_channels=24, gn_groups=8, embed_dim=128, depth=2,
        num_heads=4, head_channels=96, decoder_channels=(64, 32, 24, 16),
    )
    return _transunet(num_classes, pretrained_path, **{**cfg, **kwargs})


@register_backbone("transunet_tiny")
def transunet_tiny(num_classes: int = 2, pretrained_path: str | None = None, **kwargs) -> TransUNet:
    """A few-hundred-thousand-parameter TransUNet for CPU tests and demos."""
    cfg = dict(
        layers=(1, 1, 1), stage_channels=(32, 64, 128), stem_channels=16, gn_groups=8, embed_dim=64, depth=2,
        num_heads=2, head_channels=64, decoder_channels=(32, 16, 16, 8),
    )
    return _transunet(num_classes, pretrained_path, **{**cfg, **kwargs})
