"""U-Net decoder over any timm encoder (``features_only``), the seeds' baseline backbone.

Each decoder block upsamples to the next shallower feature map (nearest), concatenates it and
applies two 3×3 conv-BN-ReLU; blocks without skips continue ×2 until input resolution, then a
3×3 head produces the logits.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import check_input, encoder_cfg, timm_features
from .registry import register_backbone
from .transunet import ConvBNReLU


class UNetBlock(nn.Module):
    """Upsample to ``size`` (or ×2), concatenate an optional skip, two conv-BN-ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_ch + skip_ch, out_ch)
        self.conv2 = ConvBNReLU(out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            x = torch.cat([x, skip], dim=1)
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv2(self.conv1(x))


class UNet(nn.Module):
    """U-Net with a timm encoder.

    Args:
        encoder: any timm model name supporting ``features_only`` (built with ``pretrained=False``).
        num_classes: output channels of the head.
        decoder_channels: one entry per decoder block: ``len(features) - 1`` skip blocks plus
            ``log2(first reduction)`` blocks back to input resolution (5 for ResNets).
        pretrained_path: optional local timm checkpoint of ``encoder`` (nothing is downloaded).
        encoder_kwargs: extra keyword arguments for ``timm.create_model``.
    """

    def __init__(
        self,
        encoder: str = "resnet18",
        num_classes: int = 2,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        pretrained_path: str | os.PathLike | None = None,
        encoder_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self.encoder = timm_features(encoder, pretrained_path, **(encoder_kwargs or {}))
        chs = self.encoder.feature_info.channels()
        reds = self.encoder.feature_info.reduction()
        n_extra = int(round(math.log2(reds[0])))
        n_blocks = len(chs) - 1 + n_extra
        if len(decoder_channels) != n_blocks:
            raise ValueError(
                f"encoder {encoder!r} (reductions {reds}) needs {n_blocks} decoder channels, got {len(decoder_channels)}"
            )
        self.num_classes = num_classes
        self.encoder_name = encoder
        #: (channels, stride) of each encoder feature map, shallowest first.
        self.feature_info: list[tuple[int, int]] = list(zip(chs, reds))
        self.default_cfg = encoder_cfg(self.encoder)
        skip_chs = list(reversed(chs[:-1])) + [0] * n_extra
        in_chs = [chs[-1], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(UNetBlock(i, s, o) for i, s, o in zip(in_chs, skip_chs, decoder_channels))
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, kernel_size=3, padding=1)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder feature maps, shallowest first (channels/strides as in :attr:`feature_info`)."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.default_cfg.input_multiple, f"U-Net ({self.encoder_name})")
        feats = self.forward_features(x)
        skips = feats[-2::-1]
        y = feats[-1]
        for i, block in enumerate(self.decoder):
            y = block(y, skips[i] if i < len(skips) else None)
        return self.head(y)


@register_backbone("unet")
def unet(num_classes: int = 2, encoder: str = "resnet18", **kwargs) -> UNet:
    """U-Net over the timm encoder named by ``encoder``."""
    return UNet(encoder=encoder, num_classes=num_classes, **kwargs)


@register_backbone("unet_resnet18")
def unet_resnet18(num_classes: int = 2, **kwargs) -> UNet:
    """U-Net over ResNet-18 (the seeds' baseline)."""
    return UNet(encoder="resnet18", num_classes=num_classes, **kwargs)


@register_backbone("unet_resnet34")
def unet_resnet34(num_classes: int = 2, **kwargs) -> UNet:
    """U-Net over ResNet-34."""
    return UNet(encoder="resnet34", num_classes=num_classes, **kwargs)


@register_backbone("unet_tiny")
def unet_tiny(num_classes: int = 2, **kwargs) -> UNet:
    """A sub-million-parameter U-Net over timm's ``test_resnet`` for CPU tests and demos."""
    kwargs.setdefault("decoder_channels", (64, 32, 16, 16, 8))
    return UNet(encoder="test_resnet", num_classes=num_classes, **kwargs)
