"""Cohort sources: turn a PANDA folder or a manifest CSV into validated :class:`SlideRecord` s.

Two sources are understood by :func:`load_source`:

* a **PANDA folder** (or its ``train.csv``): ``train.csv``, ``train_images/<id>.tiff`` and,
  optionally per slide, ``train_label_masks/<id>_mask.tiff``;
* a **manifest CSV** with a ``slide_path`` column and the optional columns of
  :data:`MANIFEST_COLUMNS`; relative paths are relative to the CSV's folder.

Bad rows never abort the load: they come back as :class:`RowError` (1-based CSV line numbers)
while the good rows load. Only a file that is unusable as a whole raises
:class:`~weakseg.errors.ManifestError`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import ManifestError
from .panda import (
    PROVIDERS,
    RowError,
    check_slide_id,
    gleason_to_isup,
    isup_flag,
    read_csv_rows,
    normalize_gleason,
    parse_int,
    read_train_csv,
)

__all__ = [
    "MANIFEST_COLUMNS",
    "SPLITS",
    "CohortWarning",
    "RowError",
    "SlideRecord",
    "cohort_frame",
    "load_source",
]

MANIFEST_COLUMNS = (
    "slide_path",
    "slide_id",
    "mask_path",
    "label",
    "data_provider",
    "isup_grade",
    "gleason_score",
    "split",
    "case_id",
)
SPLITS = ("train", "val", "test")
PANDA_CSV = "train.csv"
PANDA_IMAGES = "train_images"
PANDA_MASKS = "train_label_masks"


class CohortWarning(UserWarning):
    """A file-level problem that does not stop loading (e.g. an unknown manifest column)."""


@dataclass
class SlideRecord:
    """One slide of a cohort, as the tiler consumes it.

    ``label`` is the slide label (1 = cancer) or ``None`` when unknown; ``data_provider`` is
    ``""`` when unknown; ``warnings`` holds non-fatal notes (``"no mask"``, an ISUP that
    contradicts its Gleason score); ``case_id`` groups sections of one case for splitting.
    """

    slide_id: str
    slide_path: Path
    mask_path: Path | None
    label: int | None
    data_provider: str
    isup_grade: int | None
    gleason_score: str | None
    split: str | None
    warnings: list[str] = field(default_factory=list)
    case_id: str | None = None


def load_source(source: str | os.PathLike, *, check_files: bool = True) -> tuple[list[SlideRecord], list[RowError]]:
    """Records (sorted by ``slide_id``) and dropped rows of a PANDA folder, its ``train.csv``, or a manifest.

    With ``check_files=False`` slide and mask files are not required to exist (e.g. to build
    splits from a CSV on a machine without the images).
    """
    source = Path(source)
    if source.is_dir():
        if not (source / PANDA_CSV).is_file():
            raise ManifestError(f"{source}: a folder source must be a PANDA folder with {PANDA_CSV}")
        return _load_panda(source / PANDA_CSV, check_files)
    header, _ = read_csv_rows(source)
    if "slide_path" not in header and "image_id" in header:
        return _load_panda(source, check_files)
    return _load_manifest(source, check_files)


def cohort_frame(records: list[SlideRecord]) -> pd.DataFrame:
    """One row per record: ``slide_id``, ``data_provider``, ``isup_grade``, ``gleason_score``, ``label``, ``split``, ``case_id``."""
    columns = ["slide_id", "data_provider", "isup_grade", "gleason_score", "label", "split", "case_id"]
    frame = pd.DataFrame([{c: getattr(r, c) for c in columns} for r in records], columns=columns)
    return frame.astype({"isup_grade": "Int64", "label": "Int64"})


def _load_panda(csv_path: Path, check_files: bool) -> tuple[list[SlideRecord], list[RowError]]:
    root = csv_path.parent.absolute()
    table, errors = read_train_csv(csv_path)
    records = []
    for row in table.itertuples(index=False):
        slide_path = root / PANDA_IMAGES / f"{row.image_id}.tiff"
        if check_files and not slide_path.is_file():
            errors.append(RowError(row.row, row.image_id, f"image {PANDA_IMAGES}/{row.image_id}.tiff not found"))
            continue
        mask_path: Path | None = root / PANDA_MASKS / f"{row.image_id}_mask.tiff"
        notes = [row.flags] if row.flags else []
        if not mask_path.is_file():
            mask_path = None
            notes.append("no mask")
        records.append(
            SlideRecord(
                slide_id=row.image_id,
                slide_path=slide_path,
                mask_path=mask_path,
                label=int(row.isup_grade > 0),
                data_provider=row.data_provider,
                isup_grade=int(row.isup_grade),
                gleason_score=row.gleason_score,
                split=None,
                warnings=notes,
            )
        )
    return sorted(records, key=lambda r: r.slide_id), sorted(errors, key=lambda e: e.row)


def _load_manifest(csv_path: Path, check_files: bool) -> tuple[list[SlideRecord], list[RowError]]:
    header, rows = read_csv_rows(csv_path)
    if "slide_path" not in header:
        raise ManifestError(f"{csv_path}: a manifest needs a 'slide_path' column; the file has {header}")
    unknown = [c for c in header if c not in MANIFEST_COLUMNS]
    if unknown:
        warnings.warn(f"{csv_path}: ignoring unknown columns {unknown}", CohortWarning, stacklevel=3)
    base = csv_path.parent.absolute()
    records: list[SlideRecord] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        cells = {c: cells.get(c, "") for c in MANIFEST_COLUMNS}
        slide_id = cells["slide_id"] or (Path(cells["slide_path"]).stem if cells["slide_path"] else None)
        try:
            record = _manifest_record(cells, base, check_files)
            if record.slide_id in seen:
                raise ValueError(f"slide id {record.slide_id!r} duplicates row {seen[record.slide_id]}")
        except ValueError as err:
            errors.append(RowError(line, slide_id, str(err)))
            continue
        seen[record.slide_id] = line
        records.append(record)
    return sorted(records, key=lambda r: r.slide_id), errors


def _resolve(cell: str, base: Path, column: str, check_files: bool) -> Path:
    path = Path(cell).expanduser()
    path = path if path.is_absolute() else base / path
    if check_files and not path.is_file():
        raise ValueError(f"column {column}: file {path} not found")
    return path


def _manifest_record(cells: dict[str, str], base: Path, check_files: bool) -> SlideRecord:
    """Build one record from a manifest row; ValueError naming the column on a bad cell."""
    if not cells["slide_path"]:
        raise ValueError("column slide_path: empty")
    slide_path = _resolve(cells["slide_path"], base, "slide_path", check_files)
    if cells["slide_id"]:
        slide_id = check_slide_id(cells["slide_id"], "slide_id")
    else:
        slide_id = check_slide_id(slide_path.stem, "slide_id (empty, so taken from the slide_path file name)")
    mask_path = _resolve(cells["mask_path"], base, "mask_path", check_files) if cells["mask_path"] else None
    provider = cells["data_provider"].lower()
    if mask_path is not None and provider not in PROVIDERS:
        raise ValueError(
            f"column data_provider: {cells['data_provider']!r} is not one of {', '.join(PROVIDERS)}, "
            "which a mask needs to decode its labels"
        )
    label = parse_int(cells["label"], "label", range(2)) if cells["label"] else None
    isup = parse_int(cells["isup_grade"], "isup_grade", range(6)) if cells["isup_grade"] else None
    gleason = None
    if cells["gleason_score"]:
        try:
            gleason = normalize_gleason(cells["gleason_score"])
            gleason_isup = gleason_to_isup(gleason)
        except ValueError as err:
            raise ValueError(f"column gleason_score: {err}") from None
    split = cells["split"].lower() or None
    if split is not None and split not in SPLITS:
        raise ValueError(f"column split: {cells['split']!r} is not one of {', '.join(SPLITS)}")

    notes = []
    if isup is not None and gleason is not None and (flag := isup_flag(isup, gleason)):
        notes.append(flag)
    implied = isup if isup is not None else (gleason_isup if gleason is not None else None)
    if label is None and implied is not None:
        label = int(implied > 0)
    elif label is not None and implied is not None and label != int(implied > 0):
        notes.append(f"label {label} contradicts ISUP {implied}; kept label {label}")
    return SlideRecord(
        slide_id=slide_id,
        slide_path=slide_path,
        mask_path=mask_path,
        label=label,
        data_provider=provider,
        isup_grade=isup,
        gleason_score=gleason,
        split=split,
        warnings=notes,
        case_id=cells["case_id"] or None,
    )
