"""HoVer-Net (Graham et al., Medical Image Analysis 2019): one encoder, three decoder branches.

* **NP** (nuclear pixels): 2 logits, background / nucleus;
* **HV**: 2 regressions, horizontal and vertical distance of each nuclear pixel to its
  instance's centre of mass, in [-1, 1] (``tanh`` is not applied: the paper regresses them linearly);
* **NC** (nucleus type, optional): ``num_classes`` logits (0 = background), absent when ``num_classes`` is 0.

The encoder is any timm ``features_only`` model: the paper's pre-activation ResNet-50
(timm ``resnetv2_50``) for ``hovernet``, smaller ones for the CPU and test variants. Each branch
is a U-Net style decoder over the encoder's feature maps (same padding, the seed's "fast" mode):
the module maps ``(B, 3, H, W)`` to ``(B, 4 + num_classes, H, W)`` with channels
``[np0, np1, h, v, nc...]`` (:data:`NP`, :data:`HV`, :func:`nc_slice`). Only the centre
``out_size`` of a ``in_size`` window is trusted (``default_cfg.in_size/out_size``, 256/164 as in
the fast mode): the learner trains on that centre and stitches slide maps from it, so the
border effects of padding never reach a prediction. The paper's "original" mode (valid
convolutions, 270 in / 80 out) is not implemented.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .base import check_input, encoder_cfg, timm_features
from .registry import BackboneCfg, register_backbone
from .unet import UNetBlock

#: channel slices of the output tensor
NP = slice(0, 2)
HV = slice(2, 4)


def nc_slice(num_classes: int) -> slice:
    """Channels of the NC branch (empty when ``num_classes`` is 0)."""
    return slice(4, 4 + num_classes)


@dataclass(frozen=True)
class HoVerCfg(BackboneCfg):
    """:class:`BackboneCfg` plus the window contract: ``in_size`` px in, the centre ``out_size`` px trusted."""

    in_size: int = 256
    out_size: int = 164


class _Branch(nn.Module):
    """A U-Net decoder from the deepest map back to input resolution, ending in ``out_ch`` channels."""

    def __init__(self, chs: Sequence[int], n_extra: int, decoder_channels: Sequence[int], out_ch: int) -> None:
        super().__init__()
        skip_chs = list(reversed(chs[:-1])) + [0] * n_extra
        in_chs = [chs[-1], *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(UNetBlock(i, s, o) for i, s, o in zip(in_chs, skip_chs, decoder_channels))
        self.head = nn.Conv2d(decoder_channels[-1], out_ch, kernel_size=1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        skips = feats[-2::-1]
        y = feats[-1]
        for i, block in enumerate(self.blocks):
            y = block(y, skips[i] if i < len(skips) else None)
        return self.head(y)


class HoVerNet(nn.Module):
    """HoVer-Net over a timm encoder; see the module doc for the output layout.

    Args:
        encoder: timm model name (``features_only``; built with ``pretrained=False``).
        num_classes: nucleus types of the NC branch (0: no NC branch).
        decoder_channels: channels of each decoder block (one per encoder map below the deepest,
            plus one per ×2 step from the shallowest map to input resolution).
        pretrained_path: local timm checkpoint of the encoder (nothing is downloaded).
        in_size / out_size: the window contract (see :class:`HoVerCfg`).
    """

    def __init__(self, encoder: str = "resnetv2_50", num_classes: int = 0,
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
                 pretrained_path: str | os.PathLike | None = None, in_size: int = 256, out_size: int = 164,
                 encoder_kwargs: dict | None = None) -> None:
        super().__init__()
        if not 0 < out_size <= in_size or (in_size - out_size) % 2:
            raise ValueError(f"out_size must be in (0, in_size] with an even difference, got {in_size}/{out_size}")
        self.encoder = timm_features(encoder, pretrained_path, **(encoder_kwargs or {}))
        chs = self.encoder.feature_info.channels()
        reds = self.encoder.feature_info.reduction()
        n_extra = max(reds[0].bit_length() - 1, 0)
        if len(decoder_channels) != len(chs) - 1 + n_extra:
            raise ValueError(f"encoder {encoder!r} (reductions {reds}) needs {len(chs) - 1 + n_extra} decoder channels, "
                             f"got {len(decoder_channels)}")
        self.num_classes = int(num_classes)
        self.encoder_name = encoder
        self.default_cfg = encoder_cfg(self.encoder, HoVerCfg, in_size=in_size, out_size=out_size)
        self.np_branch = _Branch(chs, n_extra, decoder_channels, 2)
        self.hv_branch = _Branch(chs, n_extra, decoder_channels, 2)
        self.nc_branch = _Branch(chs, n_extra, decoder_channels, self.num_classes) if self.num_classes else None

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder feature maps, shallowest first."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.default_cfg.input_multiple, f"HoVer-Net ({self.encoder_name})")
        feats = self.forward_features(x)
        outs = [self.np_branch(feats), self.hv_branch(feats)]
        if self.nc_branch is not None:
            outs.append(self.nc_branch(feats))
        return torch.cat(outs, dim=1)


@register_backbone("hovernet")
def hovernet(num_classes: int = 0, pretrained_path: str | None = None, **kwargs) -> HoVerNet:
    """The paper's setup: pre-activation ResNet-50 encoder (timm ``resnetv2_50``), 256 px in, 164 px trusted."""
    return HoVerNet("resnetv2_50", num_classes, pretrained_path=pretrained_path, **kwargs)


@register_backbone("hovernet_cpu")
def hovernet_cpu(num_classes: int = 0, pretrained_path: str | None = None, **kwargs) -> HoVerNet:
    """timm's ``test_resnet`` encoder (0.4 M) with 16–32-channel decoders, 128 px in / 96 trusted: a step of
    8 windows takes ~0.15–0.3 s on 2 CPU cores (the ``cpu`` profile; chosen for speed, see the README)."""
    cfg = dict(decoder_channels=(32, 32, 16, 16, 16), in_size=128, out_size=96)
    return HoVerNet("test_resnet", num_classes, pretrained_path=pretrained_path, **{**cfg, **kwargs})


@register_backbone("hovernet_tiny")
def hovernet_tiny(num_classes: int = 0, pretrained_path: str | None = None, **kwargs) -> HoVerNet:
    """timm's ``test_resnet`` encoder with 8–16-channel decoders, for tests."""
    cfg = dict(decoder_channels=(16, 16, 8, 8, 8), in_size=64, out_size=48)
    return HoVerNet("test_resnet", num_classes, pretrained_path=pretrained_path, **{**cfg, **kwargs})


__all__ = ["HV", "NP", "HoVerCfg", "HoVerNet", "hovernet", "hovernet_cpu", "hovernet_tiny", "nc_slice"]
