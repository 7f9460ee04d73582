"""Segmentation backbones behind one registry (``create_backbone``, ``list_backbones``)."""

from . import transunet, unet  # noqa: F401  (registration side effects)
from .registry import BACKBONES, BackboneCfg, create_backbone, list_backbones, register_backbone

__all__ = ["BACKBONES", "BackboneCfg", "create_backbone", "list_backbones", "register_backbone"]
