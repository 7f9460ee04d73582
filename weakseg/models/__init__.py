"""Segmentation backbones behind one registry (``create_backbone``, ``list_backbones``)."""

from .registry import BACKBONES, BackboneCfg, WeightsNotFoundError, create_backbone, list_backbones, register_backbone
from .hovernet import HoVerNet
from .hrnet import HRNetSeg
from .transunet import TransUNet
from .unet import UNet

__all__ = [
    "BACKBONES", "BackboneCfg", "HoVerNet", "HRNetSeg", "TransUNet", "UNet", "WeightsNotFoundError", "create_backbone", "list_backbones",
    "register_backbone",
]
