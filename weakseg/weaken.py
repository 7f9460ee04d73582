"""Simulate weak supervision from fully annotated bags.

``weaken_bags`` writes one *weak bag* per source bag. A weak bag does not copy tiles: its
``tiles`` and ``coords`` are HDF5 external links (stored relative to the weak bag's folder,
which HDF5 resolves against the linking file, so the two folders may move together). Layout:

``tiles``, ``coords``
    external links to the source bag (read through by :class:`weakseg.bags.Bag`).
``masks``, ``coverage``, ``cancer_fraction``
    copied from the source: ground truth kept for *evaluation only*.
``pu_labels`` (``supervision == "pu"`` only)
    uint8 ``(N, T, T)``: ``1`` labelled positive, ``0`` unlabeled tissue, ``255`` excluded
    (background); ``2`` labelled negative, written only by ``weakseg annotate --negatives``
    (:mod:`weakseg.annotate`) and read as ``0`` by :func:`read_pu_labels` unless asked.

File attributes: the source's, plus ``supervision`` (``"slide"`` | ``"pu"``),
``positive_fraction``, ``erode``, ``weaken_seed`` and ``source_bag`` (relative path).

PU regions are the 8-connected components of the slide's cancer mask stitched on a
low-resolution canvas of the tile grid (one canvas cell per ``cell`` tile pixels, a cell is
cancer when any of its pixels is). A fraction ``positive_fraction`` of them (at least one on a
slide with cancer) is kept, chosen with a generator seeded by ``(seed, slide_id)`` so results do
not depend on the order or the number of slides. Kept cancer pixels are eroded by ``erode``
pixels away from other labels; tile borders do not count as region boundaries.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from .bags import Bag, derived_bag_writer, label_dataset, list_bags
from .errors import BagError
from .labels import CANCER, PU_EXCLUDED, PU_NEGATIVE, PU_POSITIVE, PU_UNLABELED  # noqa: F401  (re-exported)
from .panda import to_common_labels

Supervision = Literal["slide", "pu"]
MODES: tuple[str, ...] = ("slide", "pu")


def weaken_bags(
    src: str | os.PathLike,
    out: str | os.PathLike,
    mode: Supervision,
    *,
    positive_fraction: float = 0.1,
    erode: int = 4,
    seed: int = 0,
    cell: int | None = None,
    on_bag: Callable[[Path], None] | None = None,
    failures: list[tuple[Path, str]] | None = None,
) -> list[Path]:
    """Write a weak bag into ``out`` for every fully annotated bag under ``src``.

    Args:
        src: a bag file or a folder of bags; every bag needs ``masks``.
        out: output folder (must differ from the source folder).
        mode: ``"slide"`` keeps only slide labels, ``"pu"`` adds partial positive labels.
        positive_fraction: fraction of cancer regions kept as labelled positives (``pu``).
        erode: pixels eroded from kept regions' boundaries (``pu``).
        seed: base seed of the region sampling.
        cell: canvas cell size in tile pixels for the region components (default ``T // 32``).
        on_bag: called with each written path (progress reporting).
        failures: when given, a source bag that cannot be weakened (unreadable, no masks, ...) is
            appended as ``(path, message)`` and the others are still written; otherwise its
            error propagates. A failed bag leaves no output file.

    Returns:
        Paths of the written weak bags, in source order.
    """
    if mode not in MODES:
        raise ValueError(f"unknown supervision mode {mode!r}; choose one of {MODES}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must lie in [0, 1], got {positive_fraction}")
    if erode < 0:
        raise ValueError(f"erode must be >= 0, got {erode}")
    sources = list_bags(src)
    if not sources:
        raise BagError(f"{src}: no bags found")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources:
        target = out / path.name
        if target.resolve() == path.resolve():
            raise BagError(f"{path}: output folder {out} is the source folder; choose another")
        try:
            weaken_bag(path, target, mode, positive_fraction=positive_fraction, erode=erode, seed=seed, cell=cell)
        except Exception as err:  # one bad bag never stops the others (when the caller collects failures)
            if failures is None:
                raise
            failures.append((path, " ".join(str(err).split()) or type(err).__name__))
            continue
        written.append(target)
        if on_bag is not None:
            on_bag(target)
    return written


def weaken_bag(
    src: str | os.PathLike,
    target: str | os.PathLike,
    mode: Supervision,
    *,
    positive_fraction: float = 0.1,
    erode: int = 4,
    seed: int = 0,
    cell: int | None = None,
) -> Path:
    """Write the weak bag of one source bag to ``target`` (see :func:`weaken_bags`)."""
    src, target = Path(src), Path(target)
    with Bag(src) as bag:
        if not bag.has_masks:
            raise BagError(f"{src}: bag has no masks; weak labels are simulated from full annotations")
        _write_weak_bag(bag, target, mode, positive_fraction=positive_fraction, erode=erode, seed=seed, cell=cell)
    return target


def _write_weak_bag(
    bag: Bag, target: Path, mode: Supervision, *, positive_fraction: float, erode: int, seed: int, cell: int | None
) -> None:
    with derived_bag_writer(bag, target) as f:
        if mode == "pu":
            ds = label_dataset(f, "pu_labels", len(bag), bag.tile_size)
            for sl, labels in iter_pu_labels(bag, positive_fraction, erode=erode, seed=seed, cell=cell):
                ds[sl] = labels
        f.attrs["supervision"] = mode
        f.attrs["positive_fraction"] = float(positive_fraction) if mode == "pu" else 0.0
        f.attrs["erode"] = int(erode) if mode == "pu" else 0
        f.attrs["weaken_seed"] = int(seed)


def read_pu_labels(bag: Bag, idx: np.ndarray | None = None, *, negatives: bool = False) -> np.ndarray:
    """PU targets ``(k, T, T)`` of a weak bag written in ``pu`` mode, in the order of ``idx``.

    Labelled negatives (:data:`PU_NEGATIVE`) read as :data:`PU_UNLABELED` (PU learners take
    none) unless ``negatives``.
    """
    if "pu_labels" not in bag.h5:
        raise BagError(f"{bag.path}: no 'pu_labels' dataset (supervision={bag.meta.extra.get('supervision')!r})")
    labels = bag.read("pu_labels", idx)
    if not negatives:
        labels[labels == PU_NEGATIVE] = PU_UNLABELED
    return labels


def iter_pu_labels(
    bag: Bag,
    positive_fraction: float,
    *,
    erode: int = 4,
    seed: int = 0,
    cell: int | None = None,
    batch_size: int = 64,
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(tile slice, uint8 (k, T, T) PU labels)`` for one fully annotated bag, batch by batch."""
    t = bag.tile_size
    cell = max(1, t // 32) if cell is None else int(cell)
    origin = _tile_origins(bag)
    components = _region_components(bag, origin, cell, batch_size)
    n_regions = int(components.max(initial=0))
    rng = np.random.default_rng([int(seed), zlib.crc32(bag.slide_id.encode())])
    n_keep = 0 if n_regions == 0 or positive_fraction == 0 else max(1, int(round(positive_fraction * n_regions)))
    kept_lut = np.zeros(n_regions + 1, dtype=bool)
    kept_lut[rng.choice(np.arange(1, n_regions + 1), size=n_keep, replace=False) if n_keep else []] = True
    structure = np.ones((3, 3), dtype=bool)
    for sl, common in _iter_common_masks(bag, batch_size):
        out = np.where(common == 0, PU_EXCLUDED, PU_UNLABELED).astype(np.uint8)
        for j, i in enumerate(range(sl.start, sl.stop)):
            cancer = common[j] == CANCER
            if not cancer.any():
                continue
            rows, cols = _canvas_index(origin[i], t, cell)
            keep = cancer & kept_lut[components[np.ix_(rows, cols)]]
            if erode and keep.any():
                keep = ndimage.binary_erosion(keep, structure, iterations=erode, border_value=1)
            out[j][keep] = PU_POSITIVE
        yield sl, out


def _iter_common_masks(bag: Bag, batch_size: int) -> Iterator[tuple[slice, np.ndarray]]:
    provider = bag.meta.data_provider
    for lo in range(0, len(bag), batch_size):
        sl = slice(lo, min(lo + batch_size, len(bag)))
        try:
            common = to_common_labels(bag.read_masks(np.arange(sl.start, sl.stop)), provider)
        except ValueError as err:
            raise BagError(f"{bag.path}: masks of tiles {sl.start}..{sl.stop - 1}: {err}") from err
        yield sl, common


def _tile_origins(bag: Bag) -> np.ndarray:
    """Tile top-left corners in tile-pixel units (level-0 coords / level-0 pixels per tile pixel)."""
    scale = bag.patch_size / bag.tile_size
    return np.floor(bag.coords / scale).astype(np.int64)


def _canvas_index(origin: np.ndarray, t: int, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """Canvas row and column of every tile pixel (origin is (x, y) in tile-pixel units)."""
    x0, y0 = origin
    return (y0 + np.arange(t)) // cell, (x0 + np.arange(t)) // cell


def _region_components(bag: Bag, origin: np.ndarray, cell: int, batch_size: int) -> np.ndarray:
    """Label the cancer regions on a canvas of the tile grid (absolute tile-pixel coords // cell)."""
    t = bag.tile_size
    if len(bag) == 0:
        return np.zeros((1, 1), dtype=np.int32)
    shape = ((origin[:, 1].max() + t) // cell + 1, (origin[:, 0].max() + t) // cell + 1)
    canvas = np.zeros(shape, dtype=bool)
    for sl, common in _iter_common_masks(bag, batch_size):
        for j, i in enumerate(range(sl.start, sl.stop)):
            ys, xs = np.nonzero(common[j] == CANCER)
            if ys.size:
                rows, cols = _canvas_index(origin[i], t, cell)
                canvas[rows[ys], cols[xs]] = True
    labels, _ = ndimage.label(canvas, structure=np.ones((3, 3), dtype=bool))
    return labels
