"""``OUT/manifest.csv``: one row per slide with its tiling status, merged across runs and shards."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..atomic import atomic_write_text

MANIFEST_NAME = "manifest.csv"
STATUSES = ("ok", "skipped(resume)", "empty", "failed")


@dataclass
class SlideResult:
    """Outcome of tiling one slide (a ``manifest.csv`` row)."""

    slide_id: str
    status: str
    reason: str = ""
    n_tiles: int = 0
    label: int | str = ""
    provider: str = ""
    isup: int | str = ""
    seconds: float = 0.0
    bag: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "empty")


COLUMNS = tuple(f.name for f in fields(SlideResult))


def read_manifest(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Rows of an existing manifest keyed by ``slide_id`` (empty when absent)."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {row["slide_id"]: row for row in csv.DictReader(fh) if row.get("slide_id")}


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    """Exclusive lock so concurrent shards writing one manifest never lose each other's rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / f".{MANIFEST_NAME}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def merge_manifest(out_dir: str | os.PathLike, results: Iterable[SlideResult]) -> Path:
    """Upsert ``results`` into ``out_dir/manifest.csv`` (atomic, sorted by slide id)."""
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST_NAME
    with _locked(out_dir):
        rows = read_manifest(path)
        for r in results:
            row = asdict(r)
            row["seconds"] = f"{r.seconds:.2f}"
            rows[r.slide_id] = {k: str(v) for k, v in row.items()}
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for key in sorted(rows):
            writer.writerow({c: rows[key].get(c, "") for c in COLUMNS})
        atomic_write_text(path, buf.getvalue())
    return path
