"""Backbone registry in the timm manner: ``register_backbone``, ``create_backbone``, ``list_backbones``.

A backbone is a segmentation network mapping ``(B, 3, H, W)`` images to ``(B, C, H, W)``
logits at input resolution. Every registered backbone exposes ``num_classes``,
``forward_features`` and ``default_cfg`` (a :class:`BackboneCfg`). Plugins register more
through the ``weakseg.backbones`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch.nn as nn

from ..errors import WeightsNotFoundError  # noqa: F401  (re-exported: defined in weakseg.errors)
from ..registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneCfg:
    """Input contract of a backbone: normalisation and the multiple that input sides must be of."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_multiple: int = 32
    default_input_size: int = 224

    def normalise(self, x: Any) -> Any:
        """Backbone input of images ``(B, 3, H, W)``: uint8, or float already in [0, 1]."""
        import torch

        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return (x - mean) / std


BACKBONES: Registry[nn.Module] = Registry("backbone", entry_point_group="weakseg.backbones")
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_backbone(name: str) -> Callable[[F], F]:
    """Decorator registering a backbone factory ``f(num_classes=2, pretrained_path=None, **kw) -> nn.Module``
    under ``name``: ``@register_backbone("my_unet")``."""
    return BACKBONES.register(name)  # type: ignore[return-value]


def list_backbones(pattern: str = "*") -> list[str]:
    """Sorted names of registered backbones matching a shell-style ``pattern``."""
    return BACKBONES.list(pattern)


def create_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the registered backbone ``name`` (keyword arguments go to its factory,
    e.g. ``num_classes``, ``pretrained_path``)."""
    return BACKBONES.create(name, **kwargs)
