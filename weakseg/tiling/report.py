"""``OUT/manifest.csv``: one row per slide with its tiling status, merged across runs and shards.

Rows are keyed by ``(slide_id, row)``: ``row`` is empty for a slide's tiling result and holds the
source CSV line of a bad row, so a bad row that shares its slide id with a good one keeps its own
manifest row.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..atomic import atomic_write_text, file_lock

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
    row: int | str = ""  # source CSV line of a bad row; empty for a slide's result

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "empty")


COLUMNS = tuple(f.name for f in fields(SlideResult))


def read_manifest(path: str | os.PathLike) -> dict[tuple[str, str], dict[str, str]]:
    """Rows of an existing manifest keyed by ``(slide_id, row)`` (empty when absent)."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        return {(r["slide_id"], r.get("row") or ""): r for r in csv.DictReader(fh) if r.get("slide_id")}


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    """Exclusive lock so concurrent shards writing one manifest never lose each other's rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(out_dir / f".{MANIFEST_NAME}.lock"):
        yield


def _sort_key(key: tuple[str, str]) -> tuple[str, int]:
    slide_id, row = key
    return slide_id, int(row) if row.isdigit() else -1


def merge_manifest(
    out_dir: str | os.PathLike,
    results: Iterable[SlideResult],
    *,
    forget: Callable[[dict[str, str]], bool] | None = None,
) -> Path:
    """Upsert ``results`` into ``out_dir/manifest.csv`` (atomic, sorted by slide id then row).

    ``forget`` drops existing rows for which it is true first (a run's stale bad-row entries).
    File-system errors propagate as :class:`OSError`; the manifest is then unchanged.
    """
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST_NAME
    with _locked(out_dir):
        rows = read_manifest(path)
        if forget is not None:
            rows = {k: v for k, v in rows.items() if not forget(v)}
        for r in results:
            row = asdict(r)
            row["seconds"] = f"{r.seconds:.2f}"
            rows[(r.slide_id, str(r.row))] = {k: str(v) for k, v in row.items()}
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for key in sorted(rows, key=_sort_key):
            writer.writerow({c: rows[key].get(c, "") for c in COLUMNS})
        atomic_write_text(path, buf.getvalue())
    return path
