"""Run-directory records: layout names and the environment snapshot ``env.json``."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text

RECIPE_FILE = "recipe.yaml"
ENV_FILE = "env.json"
METRICS_FILE = "metrics.csv"
CURVES_FILE = "curves.png"
MODEL_FILE = "model.pt"
SPLIT_FILE = "split.json"
CHECKPOINT_DIR = "checkpoints"

_PACKAGES = ("weakseg", "torch", "timm", "numpy", "openslide-python", "openslide-bin", "h5py", "scikit-learn")


def utc_now() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_run_dir(name: str, root: str | Path = "runs") -> Path:
    """``<root>/<name>-<UTC timestamp>``, e.g. ``runs/abmil_gated-20260122-031500``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{name}-{stamp}"


def git_commit(path: str | Path | None = None) -> str | None:
    """Commit of the git checkout holding ``path`` (the weakseg source by default), or None.

    Asks ``git rev-parse HEAD``; without a usable git binary, reads ``.git/HEAD`` directly.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return _read_git_head(where)


def _read_git_head(where: Path) -> str | None:
    for folder in (where, *where.parents):
        head = folder / ".git" / "HEAD"
        if head.is_file():
            text = head.read_text().strip()
            if not text.startswith("ref: "):
                return text or None
            ref = folder / ".git" / text[5:]
            return ref.read_text().strip() if ref.is_file() else None
    return None


def collect_env(device: str | None = None) -> dict[str, Any]:
    """Versions, platform, device, source commit, command line and start time of this process."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    try:
        import openslide

        versions["openslide_library"] = openslide.__library_version__
    except Exception:  # openslide missing or its C library not loadable: record that, don't fail the run
        versions["openslide_library"] = None
    env: dict[str, Any] = {
        "versions": versions,
        "platform": platform.platform(),
        "device": device,
        "git_commit": git_commit(),
        "command": sys.argv,
        "started": utc_now(),
    }
    if device is not None and device.startswith("cuda"):
        import torch

        env["cuda"] = {"version": torch.version.cuda, "name": torch.cuda.get_device_name(torch.device(device))}
    return env


def write_env(run_dir: str | Path, device: str | None = None, **extra: Any) -> Path:
    """Write ``env.json`` (see :func:`collect_env`) plus ``extra`` fields into ``run_dir``."""
    path = Path(run_dir) / ENV_FILE
    atomic_write_text(path, json.dumps({**collect_env(device), **extra}, indent=2, default=str) + "\n")
    return path
