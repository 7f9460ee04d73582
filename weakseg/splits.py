"""Deterministic, stratified, group-aware K-fold splits into train / val / test.

Every slide lands in exactly one of ``n_folds`` disjoint *test* parts; fold ``f`` tests on part
``f``, validates on a ``val_fraction`` of all slides drawn from the other parts, and trains on
the rest (``n_folds=10, val_fraction=0.1`` is CLAM's 80/10/10; ``val_fraction=0`` is plain
K-fold cross-validation). Slides sharing a group (``group_col``, e.g. a case id or a cluster of
duplicate sections) always share a split.

Stratification is by sorting, then apportioning: groups are ordered by stratum (e.g. provider ×
ISUP), then by a seeded shuffle of their sorted ids, and dealt to the parts in that order so each
part gets its share of every contiguous run. A stratum too small to reach every part therefore
pools with its neighbours in sort order (same provider, adjacent grade) instead of failing.
The result depends only on the ids, their attributes and the seed: never on input order or
Python's hash seed.

Every split weakseg makes comes from here: ``weakseg split`` and the demo use
:func:`make_splits`; ``api.train`` without a split file uses :func:`make_holdout` (one
train / val split, stratified by slide label).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path
from .bags import list_bags, open_bags
from .cohort import PANDA_CSV, SPLITS, cohort_frame, load_source
from .errors import ManifestError
from .panda import RowError, read_csv_rows, read_train_csv

SPLIT_COLUMNS = ("slide_id", "fold", "split")
DEFAULT_STRATIFY = ("data_provider", "isup_grade")


def make_splits(
    table: pd.DataFrame,
    n_folds: int = 5,
    seed: int = 0,
    *,
    group_col: str | None = None,
    stratify: Sequence[str] = DEFAULT_STRATIFY,
    val_fraction: float = 0.1,
    id_col: str = "slide_id",
) -> pd.DataFrame:
    """Long-format splits: one ``(slide_id, fold, split)`` row per slide and fold.

    ``table`` holds one row per slide with a unique ``id_col``; ``stratify`` and ``group_col``
    name further columns of it (a missing group value makes the slide its own group).
    Raises :class:`ValueError` on bad arguments or too few groups for the requested parts.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    if not 0 <= val_fraction < 1 - 1 / n_folds:
        raise ValueError(f"val_fraction must be in [0, {1 - 1 / n_folds:.3f}) with {n_folds} folds, got {val_fraction}")
    slides, members, group_strata, sizes = _groups(table, id_col, stratify, group_col)
    if len(sizes) < n_folds:
        raise ValueError(f"{len(sizes)} groups cannot fill {n_folds} folds")

    seeds = np.random.SeedSequence(seed).spawn(n_folds + 1)
    groups = np.arange(len(sizes))
    part = _deal(groups, group_strata, sizes, np.full(n_folds, 1 / n_folds), seeds[0])
    rows = []
    for fold in range(n_folds):
        split = np.full(len(sizes), "train", dtype=object)
        split[part == fold] = "test"
        if val_fraction > 0:
            pool = np.flatnonzero(part != fold)
            weights = np.array([val_fraction, 1 - 1 / n_folds - val_fraction])
            in_val = _deal(pool, group_strata, sizes, weights, seeds[fold + 1]) == 0
            if not in_val.any():
                raise ValueError(f"fold {fold}: too few groups for val_fraction={val_fraction}")
            split[pool[in_val]] = "val"
        rows.append(pd.DataFrame({"slide_id": slides, "fold": fold, "split": split[members]}))
    return pd.concat(rows, ignore_index=True)


def make_holdout(
    table: pd.DataFrame,
    val_fraction: float,
    seed: int = 0,
    *,
    stratify: Sequence[str] = ("label",),
    id_col: str = "slide_id",
) -> dict[str, list[str]]:
    """One train / val split: ``{"train": [...], "val": [...]}`` slide ids, each sorted.

    Each stratum (by default each slide label) gives ``round(val_fraction * n)`` of its ``n``
    slides to ``val``, but at least one and never all of them, so both sides keep every label
    of two or more slides (a validation AUC is defined); strata are visited in sorted order and
    their slides drawn with one generator seeded by ``seed``. This is ``api.train``'s split of a
    bag folder. Unlike :func:`make_splits`' proportional dealing (which may leave a small stratum
    out of ``val``) it apportions each stratum on its own.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    slides, members, strata, _ = _groups(table, id_col, stratify, None)
    by_stratum: dict[tuple, list[str]] = {}
    for slide, g in zip(slides.tolist(), members):
        by_stratum.setdefault(strata[g], []).append(slide)
    rng = np.random.default_rng(seed)
    val: list[str] = []
    for stratum in sorted(by_stratum):
        ids = sorted(by_stratum[stratum])
        k = min(max(1, round(val_fraction * len(ids))), len(ids) - 1)
        val += [ids[i] for i in rng.permutation(len(ids))[:k]]
    return {"train": sorted(set(slides.tolist()) - set(val)), "val": sorted(val)}


def _groups(
    table: pd.DataFrame, id_col: str, stratify: Sequence[str], group_col: str | None
) -> tuple[np.ndarray, np.ndarray, list[tuple], np.ndarray]:
    """Validated slides sorted by id, each one's group, each group's stratum and size."""
    needed = [id_col, *stratify, *([group_col] if group_col else [])]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the table; it has {list(table.columns)}")
    ids = table[id_col].astype("string")
    if ids.isna().any() or (ids == "").any():
        raise ValueError(f"column {id_col}: empty slide id")
    dupes = sorted(set(ids[ids.duplicated()]))
    if dupes:
        raise ValueError(f"column {id_col}: duplicate slide ids {dupes[:5]}")

    order = np.argsort(ids.to_numpy(dtype=str), kind="stable")
    slides = ids.to_numpy(dtype=str)[order]
    strata = [_stratum_key(row) for row in table[list(stratify)].iloc[order].itertuples(index=False)]
    if group_col:
        raw_groups = table[group_col].iloc[order]
        group_of = [f"g:{g}" if not pd.isna(g) and str(g) != "" else f"s:{s}" for g, s in zip(raw_groups, slides)]
    else:
        group_of = [f"s:{s}" for s in slides]

    names = sorted(set(group_of))
    index = {name: i for i, name in enumerate(names)}
    members = np.array([index[g] for g in group_of], dtype=np.int64)
    sizes = np.bincount(members, minlength=len(names))
    return slides, members, _group_strata(members, strata, len(names)), sizes


def _stratum_key(values: tuple) -> tuple:
    """Sortable key of a stratum: numbers numerically, then strings, then missing values."""
    key = []
    for value in values:
        if pd.isna(value) or value == "":
            key.append((2, 0.0, ""))
        elif isinstance(value, (int, float, np.integer, np.floating)):
            key.append((0, float(value), ""))
        else:
            key.append((1, 0.0, str(value)))
    return tuple(key)


def _group_strata(members: np.ndarray, strata: list[tuple], n_groups: int) -> list[tuple]:
    """Each group's stratum: the most common among its slides (ties: the smallest)."""
    counts: list[Counter] = [Counter() for _ in range(n_groups)]
    for g, stratum in zip(members, strata):
        counts[g][stratum] += 1
    return [min(c, key=lambda s: (-c[s], s)) for c in counts]


def _deal(
    groups: np.ndarray, strata: list[tuple], sizes: np.ndarray, weights: np.ndarray, seed: np.random.SeedSequence
) -> np.ndarray:
    """Assign ``groups`` to bins in proportion to ``weights``, stratum by stratum.

    Groups are visited in (stratum, seeded shuffle) order; each goes to the bin whose load per
    unit weight after taking it is smallest (D'Hondt apportionment), ties broken by a seeded
    bin order so no bin is systematically favoured.
    """
    rng = np.random.default_rng(seed)
    shuffle = rng.permutation(len(groups)).tolist()
    tie_rank = rng.permutation(len(weights)).tolist()
    w = weights.tolist()
    visit = sorted(range(len(groups)), key=lambda i: (strata[groups[i]], shuffle[i]))
    load = [0.0] * len(w)
    bins = np.empty(len(groups), dtype=np.int64)
    for i in visit:
        size = int(sizes[groups[i]])
        best = min(range(len(w)), key=lambda b: ((load[b] + size) / w[b], tie_rank[b]))
        bins[i] = best
        load[best] += size
    return bins


# -- files --------------------------------------------------------------------------------


def write_splits(splits: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a :func:`make_splits` frame as CSV (atomically), sorted by fold and slide id."""
    missing = [c for c in SPLIT_COLUMNS if c not in splits.columns]
    if missing:
        raise ValueError(f"splits frame lacks columns {missing}")
    out = splits[list(SPLIT_COLUMNS)].sort_values(["fold", "slide_id"], kind="stable")
    with atomic_path(path, suffix=".csv") as tmp:
        out.to_csv(tmp, index=False, lineterminator="\n")


def read_splits(path: str | os.PathLike) -> pd.DataFrame:
    """A validated split file (columns ``slide_id``, ``fold``, ``split``)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such split file")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in SPLIT_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{path}: missing columns {missing}; the file has {list(frame.columns)}")
    bad_fold = ~frame["fold"].str.fullmatch(r"\d+")
    bad_split = ~frame["split"].isin(SPLITS)
    for mask, column in ((bad_fold, "fold"), (bad_split, "split"), (frame["slide_id"] == "", "slide_id")):
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise ManifestError(f"{path}: row {i + 2}: bad {column} {frame[column].iloc[i]!r}")
    frame["fold"] = frame["fold"].astype(int)
    dup = frame.duplicated(["fold", "slide_id"])
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise ManifestError(f"{path}: row {i + 2}: slide {frame['slide_id'].iloc[i]!r} listed twice in fold {frame['fold'].iloc[i]}")
    return frame[list(SPLIT_COLUMNS)]


def load_split(path: str | os.PathLike, fold: int) -> dict[str, list[str]]:
    """Slide ids of one fold: ``{"train": [...], "val": [...], "test": [...]}``, each sorted."""
    frame = read_splits(path)
    folds = sorted(frame["fold"].unique().tolist())
    if fold not in folds:
        raise ManifestError(f"{path}: no fold {fold}; the file has folds {folds}")
    part = frame[frame["fold"] == fold]
    return {name: sorted(part.loc[part["split"] == name, "slide_id"]) for name in SPLITS}


# -- sources ------------------------------------------------------------------------------


def load_table(source: str | os.PathLike) -> tuple[pd.DataFrame, list[RowError]]:
    """One row per slide of a PANDA folder, ``train.csv``, manifest CSV or folder of bags.

    Slide files need not exist: a split is made from metadata. A PANDA ``train.csv`` keeps its
    extra columns (e.g. a case or duplicate-cluster id to group by); a manifest offers ``case_id``.
    """
    source = Path(source)
    if source.is_dir():
        if (source / PANDA_CSV).is_file():
            source = source / PANDA_CSV
        elif list_bags(source):
            return _bag_table(source), []
        else:
            raise ManifestError(f"{source}: neither a PANDA folder (no {PANDA_CSV}) nor a folder of bags")
    header, _ = read_csv_rows(source)
    if "slide_path" not in header and "image_id" in header:
        table, errors = read_train_csv(source)
        return table.drop(columns=["row", "flags"]).rename(columns={"image_id": "slide_id"}), errors
    records, errors = load_source(source, check_files=False)
    return cohort_frame(records), errors


def _bag_table(folder: Path) -> pd.DataFrame:
    rows = []
    for bag in open_bags(folder):
        meta = bag.meta
        bag.close()
        rows.append(
            {
                **meta.extra,
                "slide_id": meta.slide_id,
                "data_provider": meta.data_provider or None,
                "isup_grade": meta.isup_grade if meta.isup_grade >= 0 else None,
                "gleason_score": meta.gleason_score or None,
                "label": meta.label if meta.label >= 0 else None,
            }
        )
    frame = pd.DataFrame(rows)
    return frame.astype({"isup_grade": "Int64", "label": "Int64"})
