"""PANDA conventions: providers, mask label maps, Gleason → ISUP, and ``train.csv`` parsing.

PANDA (Prostate cANcer graDe Assessment, Kaggle 2020) ships ``train.csv`` with one row per
slide (``image_id``, ``data_provider``, ``isup_grade``, ``gleason_score``) and RGB label masks
whose label sits in the red channel. The two providers annotate differently, so everything
downstream works on the :data:`COMMON_LABELS` map produced by :func:`to_common_labels`.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ManifestError
from .labels import (  # noqa: F401  (re-exported: the label values live in weakseg.labels)
    BACKGROUND,
    BENIGN,
    CANCER,
    COMMON_LABELS,
    COMMON_THRESHOLDS,
    KAROLINSKA_LABELS,
    PROVIDERS,
    RADBOUD_LABELS,
)

TRAIN_CSV_COLUMNS = ("image_id", "data_provider", "isup_grade", "gleason_score")
NEGATIVE_SCORES = ("negative", "0+0")  # Radboud writes "negative", Karolinska "0+0"

_ISUP_BY_GLEASON = {
    (3, 3): 1,
    (3, 4): 2,
    (4, 3): 3,
    (4, 4): 4,
    (3, 5): 4,
    (5, 3): 4,
    (4, 5): 5,
    (5, 4): 5,
    (5, 5): 5,
}
_GLEASON_RE = re.compile(r"^\s*([0-9])\s*\+\s*([0-9])\s*$")
# A slide id becomes a file name (bags, maps): ASCII letters, digits, "." "_" "-"; no leading dot or dash.
SLIDE_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")

_LABEL_NAMES = {"radboud": RADBOUD_LABELS, "karolinska": KAROLINSKA_LABELS}

# Both maps to COMMON_LABELS are monotone: the common label is the number of COMMON_THRESHOLDS
# the raw label reaches. Two compares are ~3x faster than a 256-entry lookup table on uint8
# masks (benchmarks/bench_labels.py).


@dataclass
class RowError:
    """A CSV row that was dropped; ``row`` is the 1-based line number (the header is line 1)."""

    row: int
    slide_id: str | None
    reason: str

    def __str__(self) -> str:
        who = f" ({self.slide_id})" if self.slide_id else ""
        return f"row {self.row}{who}: {self.reason}"


def normalize_provider(provider: str) -> str:
    """Lower-case, stripped provider name; :class:`ManifestError` if it is not a PANDA provider."""
    name = str(provider).strip().lower()
    if name not in PROVIDERS:
        raise ManifestError(f"unknown data_provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
    return name


def normalize_gleason(score: str) -> str:
    """Canonical spelling of a Gleason score (``"4 + 3"`` → ``"4+3"``, ``"Negative"`` → ``"negative"``)."""
    text = str(score).strip().lower()
    if text == "negative":
        return text
    match = _GLEASON_RE.match(text)
    if match is None:
        raise ValueError(f"unparsable Gleason score {score!r}; expected 'major+minor' or 'negative'")
    return f"{match[1]}+{match[2]}"


def gleason_to_isup(score: str) -> int:
    """ISUP grade group (0-5) of a Gleason score such as ``"4+3"``; ``"negative"``/``"0+0"`` → 0."""
    text = normalize_gleason(score)
    if text in NEGATIVE_SCORES:
        return 0
    major, minor = (int(part) for part in text.split("+"))
    try:
        return _ISUP_BY_GLEASON[(major, minor)]
    except KeyError:
        raise ValueError(f"Gleason score {score!r} has no ISUP grade (patterns must be 3-5)") from None


def is_negative(score: str) -> bool:
    """True when a Gleason score means no cancer (``"negative"`` or ``"0+0"``)."""
    return gleason_to_isup(score) == 0


def label_names(provider: str) -> dict[int, str]:
    """Raw mask label → name for a provider."""
    return dict(_LABEL_NAMES[normalize_provider(provider)])


def to_common_labels(raw: np.ndarray, provider: str) -> np.ndarray:
    """Map raw provider mask labels to :data:`COMMON_LABELS` (uint8, same shape).

    Radboud ``{0→0, 1,2→1, 3,4,5→2}``, Karolinska unchanged. Raises :class:`ManifestError` for
    an unknown provider and :class:`ValueError` when the mask holds a label the provider does not
    define (a wrong provider or a corrupt mask).
    """
    name = normalize_provider(provider)
    n_labels = len(_LABEL_NAMES[name])
    raw = np.asarray(raw)
    if not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(f"mask labels must be integers, got dtype {raw.dtype}")
    low = 0 if raw.dtype == np.uint8 or not raw.size else int(raw.min())
    if raw.size and (low < 0 or int(raw.max()) >= n_labels):
        bad = np.unique(raw[(raw < 0) | (raw >= n_labels)]).tolist()
        shown = ", ".join(map(str, bad[:8])) + (f", … ({len(bad)} values)" if len(bad) > 8 else "")
        raise ValueError(f"mask labels [{shown}] are not defined for provider {name!r} (0..{n_labels - 1})")
    first, *rest = COMMON_THRESHOLDS[name]
    out = (raw >= first).view(np.uint8)
    for threshold in rest:
        out += raw >= threshold
    return out


def decode_mask_rgb(rgb: np.ndarray) -> np.ndarray:
    """Raw labels (uint8 ``(H, W)``) from a PANDA mask region: the label is the red channel.

    Accepts ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (what OpenSlide's ``read_region`` returns).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) or (H, W, 4) mask region, got shape {rgb.shape}")
    return np.ascontiguousarray(rgb[..., 0], dtype=np.uint8)


# -- CSV parsing ----------------------------------------------------------------------------


def read_csv_rows(path: str | os.PathLike) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and ``(line_number, row)`` pairs of a CSV; names and cells are stripped.

    ``line_number`` is the 1-based line where the row ends (header = line 1), so users can find
    it in an editor; blank rows are skipped. A duplicate column name or a row with more cells
    than the header raises :class:`ManifestError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise ManifestError(f"{path}: empty file (no header)")
        dupes = sorted({name for name in header if header.count(name) > 1})
        if dupes:
            raise ManifestError(f"{path}: duplicate column names {dupes}")
        rows = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header):
                raise ManifestError(f"{path}: row {reader.line_num} has {len(cells)} cells but the header has {len(header)}")
            cells = [cell.strip() for cell in cells] + [""] * (len(header) - len(cells))
            rows.append((reader.line_num, dict(zip(header, cells))))
    return header, rows


def parse_int(text: str, column: str, allowed: range) -> int:
    """An integer cell (``"2"`` or ``"2.0"``) within ``allowed``; ValueError naming the column."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"column {column}: {text!r} is not an integer") from None
    if not value.is_integer() or int(value) not in allowed:
        raise ValueError(f"column {column}: {text!r} is not an integer in {allowed.start}..{allowed.stop - 1}")
    return int(value)


def check_slide_id(text: str, column: str) -> str:
    """A slide id usable as a file name; ValueError naming the column otherwise."""
    if not text:
        raise ValueError(f"column {column}: empty")
    if not SLIDE_ID_RE.match(text):
        raise ValueError(f"column {column}: {text!r} is not a valid slide id (letters, digits, '.', '_', '-')")
    return text


def isup_flag(isup: int, gleason: str) -> str:
    """A warning text when ``isup`` contradicts ``gleason``, else ``""``."""
    expected = gleason_to_isup(gleason)
    if expected == isup:
        return ""
    return f"isup_grade {isup} contradicts gleason_score {gleason} (ISUP {expected}); kept as given"


def read_train_csv(path: str | os.PathLike) -> tuple[pd.DataFrame, list[RowError]]:
    """Validate a PANDA ``train.csv``: good rows as a DataFrame, bad rows as :class:`RowError`.

    The frame holds the four PANDA columns (provider and Gleason spelling normalised,
    ``isup_grade`` int), any extra columns as strings, ``row`` (CSV line number) and ``flags``
    (``""`` or a warning, e.g. an ISUP that contradicts its Gleason score; such rows are kept).
    Rows with a bad or duplicate id, unknown provider, ISUP outside 0-5 or unparsable Gleason
    score are dropped and reported. A missing column raises :class:`ManifestError`.
    """
    path = Path(path)
    header, rows = read_csv_rows(path)
    missing = [c for c in TRAIN_CSV_COLUMNS if c not in header]
    if missing:
        raise ManifestError(f"{path}: missing columns {missing}; the file has {header}")
    extra = [c for c in header if c not in (*TRAIN_CSV_COLUMNS, "row", "flags")]
    records: list[dict[str, object]] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        image_id = cells["image_id"] or None
        try:
            check_slide_id(cells["image_id"], "image_id")
            if image_id in seen:
                raise ValueError(f"column image_id: duplicate of row {seen[image_id]}")
            provider = cells["data_provider"].lower()
            if provider not in PROVIDERS:
                raise ValueError(f"column data_provider: {cells['data_provider']!r} is not one of {', '.join(PROVIDERS)}")
            isup = parse_int(cells["isup_grade"], "isup_grade", range(6))
            try:
                gleason = normalize_gleason(cells["gleason_score"])
                flag = isup_flag(isup, gleason)
            except ValueError as err:
                raise ValueError(f"column gleason_score: {err}") from None
        except ValueError as err:
            errors.append(RowError(line, image_id, str(err)))
            continue
        seen[image_id] = line
        record = {"image_id": image_id, "data_provider": provider, "isup_grade": isup, "gleason_score": gleason}
        record.update({c: cells[c] for c in extra})
        record.update(row=line, flags=flag)
        records.append(record)
    columns = [*TRAIN_CSV_COLUMNS, *extra, "row", "flags"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame = frame.astype({"isup_grade": "int64", "row": "int64"})
    return frame, errors
