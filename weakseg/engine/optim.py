"""Optimisers and learning-rate schedules.

Every schedule is a multiplier of the base learning rate, evaluated by the trainer before each
optimiser step. ``interval`` says what the schedule counts:

* ``"iteration"`` (default for ``cosine``, ``poly`` and ``cyclic``): optimiser steps. ``cosine``
  and ``poly`` follow the training progress ``(epoch + step / steps_per_epoch) / max_epochs``,
  which needs ``len()`` of the epoch's batches; when the batches have no length they fall back
  to per-epoch updates.
* ``"epoch"`` (default for ``step``): completed epochs; the learning rate is constant within an epoch.

Schedules and their parameters (``scheduler_params``):

``none``    constant learning rate.
``cosine``  ``min_lr_factor`` (0.0): half-cosine from ``lr`` to ``lr * min_lr_factor``.
``poly``    ``power`` (0.9): ``lr * (1 - progress) ** power`` (TransUNet, DeepLab).
``cyclic``  ``max_lr`` (``10 * lr``), ``step_size_up`` (2000), ``step_size_down`` (= up): triangular
            cycle between ``lr`` and ``max_lr`` (Smith 2017, ``torch.optim.lr_scheduler.CyclicLR``).
``step``    ``step_size`` (30), ``gamma`` (0.1): multiply by ``gamma`` every ``step_size`` intervals.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

import torch

from ..errors import WeaksegError

OPTIMIZERS = ("adamw", "adam", "sgd")
INTERVALS = ("iteration", "epoch")
SCHEDULERS: dict[str, dict[str, Any]] = {
    "none": {},
    "cosine": {"min_lr_factor": 0.0, "interval": "iteration"},
    "poly": {"power": 0.9, "interval": "iteration"},
    "cyclic": {"max_lr": None, "step_size_up": 2000, "step_size_down": None, "interval": "iteration"},
    "step": {"step_size": 30, "gamma": 0.1, "interval": "epoch"},
}
_PARAM_TYPES: dict[str, type] = {
    "min_lr_factor": float, "power": float, "max_lr": float, "step_size_up": int,
    "step_size_down": int, "step_size": int, "gamma": float, "interval": str,
}


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_optimizer(name: str) -> str:
    """Validate an optimiser name (case-insensitive) and return it in lower case."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise WeaksegError(f"unknown optimizer {name!r}{_suggest(key, OPTIMIZERS)} (choose one of {', '.join(OPTIMIZERS)})")
    return key


def build_optimizer(name: str, params: Iterable[Any], *, lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """``adamw``, ``adam`` or ``sgd`` (with ``momentum``; Nesterov off) over ``params``."""
    key = check_optimizer(name)
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)


#: top-level submodules that make up a backbone's encoder, unless the module lists its own in an
#: ``encoder_names`` attribute: ``encoder`` (U-Net, HRNet, HoVer-Net: the timm feature extractor);
#: TransUNet's ResNetV2 ``cnn``, ``patch_embed``, ``pos_embed``, the ViT ``blocks`` and their final ``norm``
ENCODER_NAMES = ("encoder", "cnn", "patch_embed", "pos_embed", "blocks", "norm")


def encoder_names(module: torch.nn.Module) -> tuple[str, ...]:
    """The top-level submodule names of a backbone's encoder: its ``encoder_names``, else :data:`ENCODER_NAMES`."""
    from .distributed import unwrap

    return tuple(getattr(unwrap(module), "encoder_names", ENCODER_NAMES))


def encoder_parameters(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` of the encoder of a backbone: those whose first name component is in the
    module's ``encoder_names`` (default :data:`ENCODER_NAMES`). A backbone without any is an error."""
    from .distributed import unwrap

    module = unwrap(module)
    names = encoder_names(module)
    found = [(n, p) for n, p in module.named_parameters() if n.split(".", 1)[0] in names]
    if not found:
        raise WeaksegError(f"{type(module).__name__} has no encoder parameters (no top-level submodule named "
                           f"{', '.join(names)}); give the backbone an 'encoder_names' attribute")
    return found


def param_groups(module: torch.nn.Module, *, lr: float, encoder_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """Optimiser parameter groups for discriminative learning rates: ``{"params", "lr", "name"}`` for the
    encoder (:func:`encoder_parameters`, ``lr * encoder_lr_mult``) and the rest (``lr``); groups without
    parameters are left out. Hand them to :func:`build_optimizer` in place of ``module.parameters()``."""
    enc = {id(p) for _, p in encoder_parameters(module)}
    from .distributed import unwrap

    params = list(unwrap(module).parameters())
    groups = [{"name": "encoder", "params": [p for p in params if id(p) in enc], "lr": float(lr) * float(encoder_lr_mult)},
              {"name": "decoder", "params": [p for p in params if id(p) not in enc], "lr": float(lr)}]
    return [g for g in groups if g["params"]]


class LRSchedule:
    """A learning-rate multiplier as a pure function of (epoch, step); its only state is the position."""

    def __init__(self, name: str = "none", params: dict[str, Any] | None = None, *, max_epochs: int, lr: float) -> None:
        key = str(name).lower()
        if key not in SCHEDULERS:
            raise WeaksegError(f"unknown scheduler {name!r}{_suggest(key, SCHEDULERS)} (choose one of {', '.join(SCHEDULERS)})")
        defaults = SCHEDULERS[key]
        given = dict(params or {})
        for param, value in given.items():
            if param not in defaults:
                valid = ", ".join(defaults) or "none"
                raise WeaksegError(
                    f"scheduler {key!r} has no parameter {param!r}{_suggest(param, defaults)} (valid: {valid})"
                )
            try:
                given[param] = _PARAM_TYPES[param](value)
            except (TypeError, ValueError):
                raise WeaksegError(
                    f"scheduler {key!r} parameter {param!r}: expected {_PARAM_TYPES[param].__name__}, got {value!r}"
                ) from None
        self.name = key
        self.params = {**defaults, **given}
        self.max_epochs = int(max_epochs)
        self.lr = float(lr)
        if key != "none" and self.params["interval"] not in INTERVALS:
            raise WeaksegError(f"scheduler {key!r}: interval must be one of {INTERVALS}, got {self.params['interval']!r}")
        if key == "cyclic":
            if self.params["max_lr"] is None:
                self.params["max_lr"] = 10.0 * self.lr
            if self.params["step_size_down"] is None:
                self.params["step_size_down"] = self.params["step_size_up"]
            if self.params["step_size_up"] < 1 or self.params["step_size_down"] < 1:
                raise WeaksegError("scheduler 'cyclic': step_size_up and step_size_down must be >= 1")
        if key == "step" and self.params["step_size"] < 1:
            raise WeaksegError("scheduler 'step': step_size must be >= 1")

    @property
    def needs_epoch_length(self) -> bool:
        """True when the schedule moves within an epoch by its progress (``cosine``/``poly`` per iteration)."""
        return self.name in ("cosine", "poly") and self.params["interval"] == "iteration"

    def factor(self, epoch: int, step: int, steps_per_epoch: int | None, global_step: int) -> float:
        """Multiplier of the base learning rate for optimiser step ``step`` of ``epoch`` (both 0-based).

        ``global_step`` counts optimiser steps since the start of training; ``steps_per_epoch``
        is ``None`` when the epoch's batches have no length.
        """
        if self.name == "none":
            return 1.0
        p = self.params
        per_iter = p["interval"] == "iteration"
        if self.name in ("cosine", "poly"):
            frac = step / steps_per_epoch if per_iter and steps_per_epoch else 0.0
            progress = min(1.0, (epoch + frac) / max(1, self.max_epochs))
            if self.name == "cosine":
                lo = p["min_lr_factor"]
                return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * progress))
            return (1.0 - progress) ** p["power"]
        t = global_step if per_iter else epoch
        if self.name == "step":
            return p["gamma"] ** (t // p["step_size"])
        up, down = p["step_size_up"], p["step_size_down"]
        x = t % (up + down)
        height = x / up if x < up else 1.0 - (x - up) / down
        return 1.0 + (p["max_lr"] / self.lr - 1.0) * height
