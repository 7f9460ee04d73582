"""The training engine: :class:`Trainer`, optimisers and schedules, checkpoints, run-directory records."""

from .checkpoint import load_checkpoint, save_checkpoint
from .optim import OPTIMIZERS, SCHEDULERS, LRSchedule, build_optimizer
from .seeding import epoch_generator, seed_everything
from .trainer import NonFiniteLossError, Trainer, TrainingError, resolve_device

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "LRSchedule",
    "NonFiniteLossError",
    "Trainer",
    "TrainingError",
    "build_optimizer",
    "epoch_generator",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
]
