"""HRNetV2 segmentation (Wang et al. 2019) over timm's HRNet encoders (``features_only``).

The encoder keeps four parallel branches at strides 4, 8, 16 and 32 (timm's raw branch outputs,
``feature_location=""``; its extra stride-2 stem tap is not used). The HRNetV2 head upsamples
every branch bilinearly to the 1/4 branch, concatenates them, applies a 1×1 conv-BN-ReLU and a
1×1 conv to ``num_classes``, and upsamples the logits bilinearly to input resolution.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import check_input, encoder_cfg, timm_features
from .registry import register_backbone

#: timm's four branch outputs (strides 4, 8, 16, 32); index 0 is the stride-2 stem.
BRANCH_INDICES = (1, 2, 3, 4)


def _stage(block: str, num_blocks: tuple[int, ...], channels: tuple[int, ...]) -> dict:
    return dict(num_modules=1, num_branches=len(channels), block_type=block, num_blocks=num_blocks,
                num_channels=channels, fuse_method="SUM")


#: ``hrnet_tiny``: timm's ``hrnet_w18_small`` with half the branch widths, one block per branch and
#: a 16-channel first stem conv (timm's HRNet accepts architecture overrides as keyword arguments).
TINY_ARCH = dict(
    stem_width=16,
    stage1=_stage("BOTTLENECK", (1,), (16,)),
    stage2=_stage("BASIC", (1, 1), (8, 16)),
    stage3=_stage("BASIC", (1, 1, 1), (8, 16, 32)),
    stage4=_stage("BASIC", (1, 1, 1, 1), (8, 16, 32, 64)),
)


class HRNetSeg(nn.Module):
    """HRNetV2: a timm HRNet encoder and the concatenate-all-branches 1×1 head.

    Args:
        encoder: a timm HRNet name (``hrnet_w18_small``, ``hrnet_w18_small_v2``, ``hrnet_w18``,
            ``hrnet_w32``, ``hrnet_w48``, ...), built with ``pretrained=False``.
        num_classes: output channels of the head.
        head_channels: width of the 1×1 conv-BN-ReLU (default: the concatenated width, as in HRNetV2).
        pretrained_path: optional local timm checkpoint of ``encoder`` (nothing is downloaded;
            classification-head keys in it are ignored).
        encoder_kwargs: extra keyword arguments for ``timm.create_model`` (e.g. architecture overrides).
    """

    def __init__(
        self,
        encoder: str = "hrnet_w18",
        num_classes: int = 2,
        head_channels: int | None = None,
        pretrained_path: str | os.PathLike | None = None,
        encoder_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self.encoder = timm_features(encoder, pretrained_path, feature_location="", out_indices=BRANCH_INDICES,
                                     **(encoder_kwargs or {}))
        chs = self.encoder.feature_info.channels()
        reds = self.encoder.feature_info.reduction()
        self.num_classes = num_classes
        self.encoder_name = encoder
        #: (channels, stride) of each branch, shallowest (highest resolution) first.
        self.feature_info: list[tuple[int, int]] = list(zip(chs, reds))
        self.default_cfg = encoder_cfg(self.encoder)
        width = sum(chs)
        hidden = head_channels or width
        self.head = nn.Sequential(
            nn.Conv2d(width, hidden, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_classes, kernel_size=1),
        )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Branch outputs at strides 4, 8, 16, 32, shallowest first (as in :attr:`feature_info`)."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        check_input(x, self.default_cfg.input_multiple, f"HRNet ({self.encoder_name})")
        feats = self.forward_features(x)
        size = feats[0].shape[-2:]
        y = torch.cat(
            [feats[0], *(F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:])], dim=1
        )
        return F.interpolate(self.head(y), size=(h, w), mode="bilinear", align_corners=False)


@register_backbone("hrnet")
def hrnet(num_classes: int = 2, encoder: str = "hrnet_w18", **kwargs) -> HRNetSeg:
    """HRNetV2 over the timm HRNet named by ``encoder`` (default ``hrnet_w18``)."""
    return HRNetSeg(encoder=encoder, num_classes=num_classes, **kwargs)


@register_backbone("hrnet_w18_small")
def hrnet_w18_small(num_classes: int = 2, **kwargs) -> HRNetSeg:
    """HRNetV2-W18-Small (v1): branch widths 16/32/64/128."""
    return HRNetSeg(encoder="hrnet_w18_small", num_classes=num_classes, **kwargs)


@register_backbone("hrnet_w18_small_v2")
def hrnet_w18_small_v2(num_classes: int = 2, **kwargs) -> HRNetSeg:
    """HRNetV2-W18-Small-v2: branch widths 18/36/72/144, two modules per stage."""
    return HRNetSeg(encoder="hrnet_w18_small_v2", num_classes=num_classes, **kwargs)


@register_backbone("hrnet_w18")
def hrnet_w18(num_classes: int = 2, **kwargs) -> HRNetSeg:
    """HRNetV2-W18: branch widths 18/36/72/144."""
    return HRNetSeg(encoder="hrnet_w18", num_classes=num_classes, **kwargs)


@register_backbone("hrnet_w32")
def hrnet_w32(num_classes: int = 2, **kwargs) -> HRNetSeg:
    """HRNetV2-W32: branch widths 32/64/128/256."""
    return HRNetSeg(encoder="hrnet_w32", num_classes=num_classes, **kwargs)


@register_backbone("hrnet_w48")
def hrnet_w48(num_classes: int = 2, **kwargs) -> HRNetSeg:
    """HRNetV2-W48 (the paper's segmentation model): branch widths 48/96/192/384."""
    return HRNetSeg(encoder="hrnet_w48", num_classes=num_classes, **kwargs)


@register_backbone("hrnet_tiny")
def hrnet_tiny(num_classes: int = 2, **kwargs) -> HRNetSeg:
    """A quarter-million-parameter HRNetV2 (``hrnet_w18_small`` at half width) for CPU tests and demos."""
    kwargs["encoder_kwargs"] = {**TINY_ARCH, **(kwargs.get("encoder_kwargs") or {})}
    return HRNetSeg(encoder="hrnet_w18_small", num_classes=num_classes, **kwargs)
