"""``OUT/manifest.csv``: one row per slide with its tiling status, merged across runs and shards.

Rows are keyed by ``(slide_id, row)``: ``row`` is empty for a slide's tiling result and holds the
source CSV line of a bad row, so a bad row that shares its slide id with a good one keeps its own
manifest row.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path


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
    from ..sharding import merge_rows

    path = Path(out_dir) / MANIFEST_NAME
    rows = [{**asdict(r), "seconds": f"{r.seconds:.2f}"} for r in results]
    merge_rows(path, rows, ("slide_id", "row"), COLUMNS, forget=forget, sort_key=_sort_key)
    return path
