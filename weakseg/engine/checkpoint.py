"""Training checkpoints: plain-typed dicts written atomically and read with ``weights_only=True``."""

from __future__ import annotations

import re
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


def unreadable_reason(err: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line (never torch's advice to
    retry with ``weights_only=False``, which would execute code from the file)."""
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds pickled Python objects ({found.group(1)}) besides tensors and plain values; "
                "such files are refused, nothing in them is executed")
    first = text.strip().splitlines()[0] if text.strip() else ""
    if not first or "weights_only" in text:
        return f"not a PyTorch weight file, or a damaged one ({type(err).__name__})"
    return f"not a PyTorch weight file, or a damaged one ({type(err).__name__}: {first[:200]})"


def read_torch_file(path: str | Path, *, what: str = "weight file", error: type[WeaksegError] = WeaksegError,
                    map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; any failure is ``error`` naming the file and the reason."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many unrelated types (UnpicklingError, KeyError, RuntimeError, ...)
        raise error(f"{path}: unreadable {what}: {unreadable_reason(err)}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    payload = read_torch_file(path, what="checkpoint", map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise WeaksegError(f"{path}: not a weakseg checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return payload
