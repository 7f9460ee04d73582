"""Stage artifacts: every stage's output folder carries one record of how and whether it was made.

A record (``artifact.json`` in the stage's folder) holds the stage name, the settings the
artifact was made with, their hash, a status (``running``, ``done``, ``failed``), the weakseg
version and timestamps. A stage asks :func:`stage` before doing its work:

>>> with stage(folder, "weaken", {"mode": "pu", "fraction": 0.3}) as st:   # doctest: +SKIP
...     if not st.reused:
...         make_the_weak_bags(folder)

``st.reused`` is true only when the folder holds a ``done`` record with the *same* settings hash;
a record made with other settings, or one left ``running``/``failed`` by an interrupted run, is
not reused (the stage redoes its work; with ``clear=True`` the folder is emptied first). The
record is written atomically: ``running`` before the work, ``done`` after it, ``failed`` (with
the error) when it raises, so a later run can tell an interrupted artifact from a finished one.
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


def read_record(folder: str | Path) -> ArtifactRecord | None:
    """The record in ``folder`` (``None`` when there is none); a damaged record is an error naming the file."""
    path = Path(folder) / RECORD
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


def _write(folder: Path, record: ArtifactRecord) -> None:
    atomic_write_text(folder / RECORD, json.dumps(asdict(record), indent=2, sort_keys=True) + "\n")


def is_done(folder: str | Path, stage_name: str, settings: Mapping[str, Any]) -> bool:
    """Whether ``folder`` holds a finished ``stage_name`` artifact made with exactly ``settings``."""
    record = read_record(folder)
    return (record is not None and record.stage == stage_name and record.status == "done"
            and record.settings_hash == settings_hash(settings))


@dataclass
class Stage:
    """The handle :func:`stage` yields: ``reused`` says whether the finished artifact is taken as it is."""

    folder: Path
    name: str
    settings: dict[str, Any]
    reused: bool
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def stage(folder: str | Path, name: str, settings: Mapping[str, Any], *, clear: bool = False) -> Iterator[Stage]:
    """Run stage ``name`` into ``folder`` unless a finished artifact with the same settings is there.

    ``clear=True`` empties the folder before redoing the work (for stages whose old files would
    otherwise mix with new ones). Anything put in ``Stage.extra`` during the block is stored in
    the record.
    """
    folder = Path(folder)
    settings = canonical(settings)
    digest = settings_hash(settings)
    if is_done(folder, name, settings):
        yield Stage(folder, name, settings, reused=True)
        return
    if clear and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = ArtifactRecord(stage=name, settings=settings, settings_hash=digest, status="running",
                            started=_now(), version=_version())
    _write(folder, record)
    handle = Stage(folder, name, settings, reused=False)
    try:
        yield handle
    except BaseException as err:
        record.status, record.finished = "failed", _now()
        record.error = f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"
        _write(folder, record)
        raise
    record.status, record.finished, record.extra = "done", _now(), canonical(handle.extra)
    _write(folder, record)


__all__ = ["RECORD", "ArtifactRecord", "Stage", "canonical", "is_done", "read_record", "settings_hash", "stage"]
