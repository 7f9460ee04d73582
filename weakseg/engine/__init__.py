"""The training engine: :class:`Trainer`, optimisers and schedules, checkpoints, run-directory records."""

from .checkpoint import load_checkpoint, save_checkpoint
from .contract import Resume, StepOutput, Trainable, TrainConfig, TrainResult, resolve_resume
from .optim import OPTIMIZERS, SCHEDULERS, LRSchedule, build_optimizer
from .seeding import epoch_generator, seed_everything
from .trainer import NonFiniteLossError, Trainer, TrainingError, resolve_device

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "LRSchedule",
    "NonFiniteLossError",
    "Resume",
    "StepOutput",
    "TrainConfig",
    "TrainResult",
    "Trainable",
    "Trainer",
    "TrainingError",
    "build_optimizer",
    "epoch_generator",
    "load_checkpoint",
    "resolve_device",
    "resolve_resume",
    "save_checkpoint",
    "seed_everything",
]
