"""Training checkpoints: plain-typed dicts written atomically and read with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import WeaksegError

CHECKPOINT_FORMAT = "weakseg-checkpoint/1"
LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and plain Python types only) to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise WeaksegError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several unrelated types for corrupt files
        raise WeaksegError(f"{path}: unreadable checkpoint ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise WeaksegError(f"{path}: not a weakseg checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return payload
