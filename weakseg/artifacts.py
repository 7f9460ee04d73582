"""Stage artifacts: every stage's output folder carries one record of how and whether it was made.

A record (``artifact.json`` in the stage's folder) holds the stage name, the settings the
artifact was made with, their hash, a status (``running``, ``done``, ``failed``), the weakseg
version and timestamps. A stage asks :func:`stage` before doing its work:

>>> with stage(folder, "weaken", {"mode": "pu", "fraction": 0.3}) as st:   # doctest: +SKIP
...     if not st.reused:
...         make_the_weak_bags(folder)

``st.reused`` is true only when the folder holds a ``done`` record with the *same* settings hash.
Otherwise the stage does its work again: with ``clear=True`` a folder made with *other*
settings (or without a record) is emptied first, while one left ``running``/``failed`` with the
same settings is kept, so a resumable stage continues where it stopped (``st.resumed``). The
record is written atomically: ``running`` before the work, ``done`` after it, ``failed`` (with
the error) when it raises. ``record=`` puts the record elsewhere than ``folder/artifact.json``
(for a folder that must start empty, such as a training run directory).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import WeaksegError

RECORD = "artifact.json"
STATUSES = ("running", "done", "failed")


def canonical(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as they read back from JSON (tuples → lists, paths → strings), so equal settings compare equal."""
    return json.loads(json.dumps(dict(settings), default=str, sort_keys=True))


def settings_hash(settings: Mapping[str, Any]) -> str:
    """A short stable hash of ``settings`` (SHA-256 of their canonical JSON, 16 hex digits)."""
    text = json.dumps(canonical(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ArtifactRecord:
    """What ``artifact.json`` holds."""

    stage: str
    settings: dict[str, Any]
    settings_hash: str
    status: str
    started: str
    finished: str | None = None
    error: str | None = None
    version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("weakseg")
    except Exception:  # noqa: BLE001 - a source checkout that is not installed
        return "unknown"


def read_record(folder: str | Path, record: str | Path | None = None) -> ArtifactRecord | None:
    """The record of ``folder`` (``None`` when there is none); a damaged record is an error naming the file."""
    path = Path(record) if record is not None else Path(folder) / RECORD
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        record = ArtifactRecord(**data)
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as err:
        raise WeaksegError(f"{path}: not a weakseg artifact record ({type(err).__name__}: {err}); "
                           "delete the folder to redo this stage") from None
    if record.status not in STATUSES:
        raise WeaksegError(f"{path}: unknown status {record.status!r} (expected one of {STATUSES})")
    return record


def _write(path: Path, record: ArtifactRecord) -> None:
    atomic_write_text(path, json.dumps(asdict(record), indent=2, sort_keys=True) + "\n")


def is_done(folder: str | Path, stage_name: str, settings: Mapping[str, Any], record: str | Path | None = None) -> bool:
    """Whether ``folder`` holds a finished ``stage_name`` artifact made with exactly ``settings``."""
    found = read_record(folder, record)
    return (found is not None and found.stage == stage_name and found.status == "done"
            and found.settings_hash == settings_hash(settings))


@dataclass
class Stage:
    """The handle :func:`stage` yields: ``reused`` says whether the finished artifact is taken as it is."""

    folder: Path
    name: str
    settings: dict[str, Any]
    reused: bool
    resumed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return settings_hash(self.settings)


@contextmanager
def stage(folder: str | Path, name: str, settings: Mapping[str, Any], *, clear: bool = False,
          record: str | Path | None = None) -> Iterator[Stage]:
    """Run stage ``name`` into ``folder`` unless a finished artifact with the same settings is there.

    ``clear=True`` empties a folder made with other settings (or holding no record) before the work
    is redone, so old files never mix with new ones; an unfinished artifact with the same settings
    is kept (``Stage.resumed``). Anything put in ``Stage.extra`` during the block is stored in the
    record.
    """
    folder = Path(folder)
    path = Path(record) if record is not None else folder / RECORD
    settings = canonical(settings)
    digest = settings_hash(settings)
    found = read_record(folder, path)
    same = found is not None and found.stage == name and found.settings_hash == digest
    if same and found.status == "done":  # type: ignore[union-attr]
        yield Stage(folder, name, settings, reused=True, extra=dict(found.extra))  # type: ignore[union-attr]
        return
    if clear and folder.exists() and not same:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = ArtifactRecord(stage=name, settings=settings, settings_hash=digest, status="running",
                           started=_now(), version=_version())
    _write(path, state)
    handle = Stage(folder, name, settings, reused=False, resumed=same)
    try:
        yield handle
    except BaseException as err:
        state.status, state.finished = "failed", _now()
        state.error = f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"
        _write(path, state)
        raise
    state.status, state.finished, state.extra = "done", _now(), canonical(handle.extra)
    _write(path, state)


__all__ = ["RECORD", "ArtifactRecord", "Stage", "canonical", "is_done", "read_record", "settings_hash", "stage"]
