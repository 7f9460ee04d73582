"""Pseudo-label bags: one per slide and round, linking the tiles of the bag they refine.

Layout: the attributes of the source bag plus ``supervision = "pseudo"``, ``refine_round`` and
``source_bag``; ``tiles`` and ``coords`` are external links (relative) to the source bag;
``masks``/``coverage``/``cancer_fraction`` are copied (ground truth, evaluation only);
``pseudo_labels`` uint8 ``(N, T, T)`` holds the round's targets (1 positive, 0 negative,
255 ignored) and ``pu_labels`` their PU view (1 positive, 0 other tissue, 255 background), so
PU learners (``nnpu_seg``) train on the refined positives unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import h5py
import numpy as np

from ..bags import Bag, derived_bag_writer, label_dataset
from ..errors import BagError
from ..labels import IGNORE, POSITIVE, PU_EXCLUDED, PU_POSITIVE, PU_UNLABELED



@contextmanager
def label_bag_writer(source: Bag, target: str | os.PathLike, round_index: int) -> Iterator[h5py.Dataset]:
    """Create ``target`` for ``source`` and yield its ``pseudo_labels`` dataset to fill.

    ``pu_labels`` is derived from ``pseudo_labels`` on success; the file appears atomically.
    """
    with derived_bag_writer(source, target) as f:
        pseudo = label_dataset(f, "pseudo_labels", len(source), source.tile_size)
        yield pseudo
        pu = label_dataset(f, "pu_labels", len(source), source.tile_size)
        for lo in range(0, len(source), 64):
            labels = pseudo[lo : lo + 64]
            pu[lo : lo + len(labels)] = np.where(labels == POSITIVE, PU_POSITIVE, np.where(labels == IGNORE, PU_EXCLUDED, PU_UNLABELED))
        f.attrs["supervision"] = "pseudo"
        f.attrs["refine_round"] = int(round_index)


def read_pseudo_labels(bag: Bag, idx: np.ndarray | None = None) -> np.ndarray:
    """Pseudo-label targets ``(k, T, T)`` of a refinement round's bag, in the order of ``idx``."""
    if "pseudo_labels" not in bag.h5:
        raise BagError(f"{bag.path}: no 'pseudo_labels' dataset (not written by weakseg.refine)")
    return bag.read("pseudo_labels", idx)
