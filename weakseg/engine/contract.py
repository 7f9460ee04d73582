"""The training contract between :class:`~weakseg.engine.Trainer` and the learners it trains.

* :class:`TrainConfig` declares the trainer's settings once (name, default, check). A learner's
  constructor exposes them as parameters of its own (scikit-learn reads parameters from the
  constructor signature) and hands them over with :meth:`TrainConfig.from_params`.
* :class:`Trainable` is the typed protocol of hooks the trainer calls; the trainer never writes a
  learner's attributes: it hands the module it built to :meth:`Trainable.bind_module` and returns
  a :class:`TrainResult` from which the learner sets its own fitted state.
* :class:`StepOutput` is what a training step may return instead of a bare loss tensor.
* :func:`resolve_resume` is the one place ``resume="auto"`` is decided.

This module imports nothing from the learners: ``weakseg.learners`` depends on ``weakseg.engine``,
never the other way round.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from ..errors import WeaksegError

#: ``resume`` as every ``fit`` accepts it: ``True`` (a checkpoint must exist), ``False`` (a
#: checkpoint is an error) or ``"auto"`` (continue when a checkpoint exists, else start)
Resume = bool | Literal["auto"]
#: autocast dtypes ``amp_dtype`` accepts (``"auto"``: bfloat16 where supported, else float16)
AMP_DTYPES = ("auto", "bfloat16", "float16")
#: ``torch.compile`` modes ``torch_compile`` accepts besides ``True`` / ``False``
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                  low_open: bool = False, integer: bool = False, none: bool = False) -> None:
    """A finite number (an integer if asked) within ``[low, high]`` (``(low, …`` with ``low_open``)."""
    if value is None and none:
        return
    kinds = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kinds) and not isinstance(value, bool) and (
        isinstance(value, numbers.Integral) or math.isfinite(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" if low is not None else ""
        bound += f"{' and ' if bound else ''}<= {high}" if high is not None else ""
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:20]}… ({len(repr(value))} characters)"
        kind = "integer" if integer else "number"
        raise WeaksegError(f"{name} must be a finite {kind} {bound}{' or null' if none else ''}, got {shown}")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of the training loop, declared once.

    ``scheduler`` / ``scheduler_params``: see :mod:`weakseg.engine.optim`. Training stops once
    ``patience`` epochs pass without improvement of the monitored validation metric, never before
    ``min_epochs``. ``device`` ``"auto"`` is CUDA when available (``cuda:LOCAL_RANK`` under
    ``torchrun``).

    GPU path: ``amp`` (``"auto"``: on CUDA only; ``True``: also on CPU; ``False``) runs the training
    steps under autocast in ``amp_dtype`` (``"auto"``: bfloat16 where the device supports it, else
    float16; float16 uses a gradient scaler). ``channels_last`` trains the module (and its 4-D
    inputs) in channels-last memory format; ``torch_compile`` (``False``, ``True`` or a
    ``torch.compile`` mode such as ``"max-autotune"``) compiles the training module (the saved
    weights are the plain module's). ``sync_bn`` turns batch norm layers into ``SyncBatchNorm``
    when several processes train (CUDA only; ignored with a warning on CPU). ``deterministic``
    asks torch for deterministic algorithms (``torch.use_deterministic_algorithms``, cuDNN
    deterministic and not benchmarking, ``CUBLAS_WORKSPACE_CONFIG=:4096:8``); otherwise cuDNN
    benchmarks its kernels on CUDA.
    """

    max_epochs: int = 10
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "none"
    scheduler_params: dict[str, Any] | None = None
    grad_clip: float | None = None
    patience: int | None = None
    min_epochs: int = 0
    device: str = "auto"
    amp: bool | str = "auto"
    amp_dtype: str = "auto"
    channels_last: bool = False
    torch_compile: bool | str = False
    sync_bn: bool = False
    deterministic: bool = False
    random_state: int = 0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The setting names, in declaration order (a learner exposes each as a constructor parameter)."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrainConfig:
        """The config of a learner's parameters: the settings it has, defaults for the others; checked."""
        return cls(**{k: params[k] for k in cls.names() if k in params})

    def __post_init__(self) -> None:
        from .optim import LRSchedule, check_optimizer

        _check_number("max_epochs", self.max_epochs, low=1, integer=True)
        check_optimizer(self.optimizer)
        _check_number("lr", self.lr, low=0.0, low_open=True)
        _check_number("weight_decay", self.weight_decay, low=0.0)
        _check_number("momentum", self.momentum, low=0.0, high=1.0)
        _check_number("grad_clip", self.grad_clip, low=0.0, low_open=True, none=True)
        _check_number("patience", self.patience, low=1, integer=True, none=True)
        _check_number("min_epochs", self.min_epochs, low=0, integer=True)
        _check_number("random_state", self.random_state, low=0, high=2**63 - 1, integer=True)
        if self.amp not in ("auto", True, False):
            raise WeaksegError(f"amp must be 'auto', true or false, got {self.amp!r}")
        if self.amp_dtype not in AMP_DTYPES:
            raise WeaksegError(f"amp_dtype must be one of {AMP_DTYPES}, got {self.amp_dtype!r}")
        if self.torch_compile not in (True, False) and self.torch_compile not in COMPILE_MODES:
            raise WeaksegError(f"torch_compile must be true, false or one of {COMPILE_MODES}, got {self.torch_compile!r}")
        for name in ("channels_last", "sync_bn", "deterministic"):
            if not isinstance(getattr(self, name), bool):
                raise WeaksegError(f"{name} must be true or false, got {getattr(self, name)!r}")
        # the scheduler name and its parameters, before any data is touched
        LRSchedule(self.scheduler, self.scheduler_params, max_epochs=int(self.max_epochs), lr=float(self.lr))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StepOutput:
    """What a training step returns when a plain loss tensor is not enough.

    ``loss`` is the objective to back-propagate; ``lr_scale`` multiplies every parameter
    group's learning rate for this step only (nnPU's ascent branch uses γ); ``logs`` are
    scalars averaged per epoch into ``metrics.csv``.
    """

    loss: Any
    lr_scale: float = 1.0
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns: the trained module (best epoch's weights, eval mode) and its record.

    ``best_epoch`` counts from 0 (``None`` when the monitored metric was never finite);
    ``resumed_from`` is the number of epochs a resumed run found done (``None``: a fresh run).
    """

    module: Any
    device: Any
    data_info: dict[str, Any]
    history: list[dict[str, Any]]
    monitor: str
    best_epoch: int | None
    best_value: float | None
    resumed_from: int | None = None


@runtime_checkable
class Trainable(Protocol):
    """The hooks :class:`~weakseg.engine.Trainer` calls (``TorchLearner`` implements them).

    ``monitor`` names the validation metric (from :meth:`evaluate`) that selects the best epoch,
    ``monitor_mode`` is ``"max"`` or ``"min"``.
    """

    monitor: str
    monitor_mode: str

    def data_info(self, data: Any) -> dict[str, Any]:
        """Plain-typed facts about the training data that :meth:`build_module` needs (saved in checkpoints)."""

    def build_module(self, info: dict[str, Any]) -> Any:
        """The ``torch.nn.Module`` to train."""

    def param_groups(self, module: Any) -> list[dict[str, Any]]:
        """Optimiser parameter groups (``{"params": [...], "lr": ...}``; a group without ``lr`` uses the
        config's): discriminative learning rates. ``TorchLearner`` gives one group of all parameters."""

    def bind_module(self, module: Any, device: Any, info: dict[str, Any]) -> None:
        """Called once before the first step with the module being trained: the learner keeps it for its hooks."""

    def train_batches(self, data: Any, epoch: int, rng: np.random.Generator) -> Iterable[Any]:
        """Batches of one epoch (a sized iterable where possible: per-step schedules need the length)."""

    def training_step(self, batch: Any) -> Any:
        """A scalar loss tensor or a :class:`StepOutput`."""

    def evaluate(self, data: Any) -> dict[str, float]:
        """Validation metrics, including ``monitor``."""


def resolve_resume(resume: Resume, checkpoint: Path) -> bool:
    """Whether to continue from ``checkpoint``: ``"auto"`` continues when it exists.

    ``True`` without the file and ``False`` with it are errors naming it (a run is never silently
    restarted over, nor silently continued).
    """
    if resume not in (True, False, "auto"):
        raise WeaksegError(f"resume must be true, false or 'auto', got {resume!r}")
    exists = checkpoint.is_file()
    if resume == "auto":
        return exists
    if resume and not exists:
        raise WeaksegError(f"{checkpoint}: nothing to resume (no checkpoint in this run directory)")
    if not resume and exists:
        raise WeaksegError(f"{checkpoint.parent.parent}: already holds a training checkpoint; "
                           "resume it or choose a new directory")
    return bool(resume)


__all__ = ["Resume", "StepOutput", "Trainable", "TrainConfig", "TrainResult", "resolve_resume"]
