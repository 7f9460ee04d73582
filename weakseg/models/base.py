"""Pieces every timm-encoder backbone shares: the encoder from local weights only, its input contract,
and the input-size check of ``forward``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn

from .registry import BackboneCfg, WeightsNotFoundError


def timm_features(encoder: str, pretrained_path: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(encoder, features_only=True, ...)``; weights only from a local ``pretrained_path``
    (a missing file is a :class:`WeightsNotFoundError`; nothing is downloaded)."""
    if pretrained_path is not None:
        path = Path(pretrained_path)
        if not path.is_file():
            raise WeightsNotFoundError(f"{path}: pretrained checkpoint for encoder {encoder!r} not found")
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    else:
        kwargs["pretrained"] = False
    return timm.create_model(encoder, features_only=True, **kwargs)


def encoder_cfg(encoder: nn.Module, cls: type[BackboneCfg] = BackboneCfg, **fields: Any) -> BackboneCfg:
    """The backbone's input contract: the timm encoder's normalisation, input sides a multiple of its deepest stride."""
    cfg = encoder.pretrained_cfg
    return cls(mean=tuple(cfg.get("mean", BackboneCfg.mean)), std=tuple(cfg.get("std", BackboneCfg.std)),
               input_multiple=encoder.feature_info.reduction()[-1], **fields)


def check_input(x: torch.Tensor, multiple: int, what: str) -> None:
    """Input sides must be multiples of the encoder's deepest stride (a ``ValueError`` naming the model)."""
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"{what} input sides must be multiples of {multiple}, got {h}×{w}")


__all__ = ["check_input", "encoder_cfg", "timm_features"]
