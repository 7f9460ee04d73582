"""MIL bag sources: the same read interface over in-memory arrays and HDF5 bags.

A source holds ``n`` bags with labels and reads any subset of a bag's instances on demand:

``labels``              int64 ``(n,)`` bag labels (``-1`` = unknown)
``ids``                 one name per bag
``kind``                ``"image"`` (``(k, C, H, W)`` float in [0, 1], or uint8 ``(k, H, W, C)`` tiles) or
                        ``"features"`` (``(k, D)`` float)
``instance_shape``      shape of one instance as the encoder sees it: ``(C, H, W)`` or ``(D,)``
``n_instances(i)``      instance count of bag ``i``
``read(i, idx)``        instances ``idx`` of bag ``i`` (a numpy array)

:class:`H5Bags` opens nothing until a bag is read, reads only the requested tiles (or cached
feature rows), and pickles without open handles, so DataLoader workers can fork or spawn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from ..bags import Bag, list_bags, read_rows
from ..errors import BagError, WeaksegError
from ..features import is_sidecar, resolve_feature_key, sidecar_path

class InMemoryBags:
    """Bags given as a list of arrays: ``(N, C, H, W)`` images in [0, 1] or ``(N, D)`` features."""

    def __init__(self, bags: Sequence[np.ndarray], y: Sequence[int] | np.ndarray | None = None) -> None:
        if len(bags) == 0:
            raise WeaksegError("no bags given")
        self.bags = [np.asarray(b) for b in bags]
        shapes = {b.shape[1:] for b in self.bags}
        if len(shapes) != 1:
            raise WeaksegError(f"bags must share the instance shape, got {sorted(shapes)}")
        if any(len(b) == 0 for b in self.bags):
            raise WeaksegError(f"bag {next(i for i, b in enumerate(self.bags) if len(b) == 0)} is empty")
        self.instance_shape = tuple(int(s) for s in self.bags[0].shape[1:])
        if len(self.instance_shape) == 1:
            self.kind = "features"
        elif len(self.instance_shape) == 3:
            self.kind = "image"
        else:
            raise WeaksegError(f"instances must be (D,) features or (C, H, W) images, got {self.instance_shape}")
        labels = np.full(len(self.bags), -1) if y is None else np.asarray(y)
        if labels.shape != (len(self.bags),):
            raise WeaksegError(f"y has shape {labels.shape}, expected ({len(self.bags)},)")
        self.labels = labels.astype(np.int64)
        self.ids = [str(i) for i in range(len(self.bags))]

    def __len__(self) -> int:
        return len(self.bags)

    def n_instances(self, i: int) -> int:
        return len(self.bags[i])

    def read(self, i: int, idx: np.ndarray) -> np.ndarray:
        return self.bags[i][idx]


class H5Bags:
    """Bags stored as HDF5 files (the tiler's output), streamed tile by tile.

    ``features=None`` reads tiles (uint8 ``(k, T, T, 3)``); ``features=True`` or a cache key reads
    rows of the bag's feature sidecar (see :mod:`weakseg.features`). Labels come from each bag's
    ``label`` attribute unless ``y`` is given.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike],
                 y: Sequence[int] | np.ndarray | None = None, *, features: bool | str | None = None) -> None:
        self.paths = resolve_bag_paths(paths)
        self.bags = [Bag(p) for p in self.paths]
        self.ids = [b.slide_id for b in self.bags]
        labels = np.array([b.label for b in self.bags]) if y is None else np.asarray(y)
        if labels.shape != (len(self.bags),):
            raise WeaksegError(f"y has shape {labels.shape}, expected ({len(self.bags)},)")
        self.labels = labels.astype(np.int64)
        empty = [str(p) for p, b in zip(self.paths, self.bags) if len(b) == 0]
        if empty:
            raise BagError(f"bags without tiles: {', '.join(empty[:3])}")
        self._files: dict[int, h5py.File] = {}
        self._pid: int | None = None
        if features is None or features is False:
            self.kind = "image"
            self.feature_key: str | None = None
            t = self.bags[0].tile_size
            self.instance_shape: tuple[int, ...] = (3, t, t)
            sizes = {b.tile_size for b in self.bags}
            if len(sizes) > 1:
                raise BagError(f"bags have different tile sizes {sorted(sizes)}; re-tile them consistently")
        else:
            self.kind = "features"
            key = None if features is True else str(features)
            self.feature_key = resolve_feature_key(self.paths[0], key)
            for p in self.paths[1:]:
                resolve_feature_key(p, self.feature_key)
            with h5py.File(sidecar_path(self.paths[0]), "r") as f:
                self.instance_shape = (int(f[self.feature_key]["features"].shape[1]),)

    def __len__(self) -> int:
        return len(self.bags)

    def n_instances(self, i: int) -> int:
        return len(self.bags[i])

    def read(self, i: int, idx: np.ndarray) -> np.ndarray:
        if self.kind == "image":
            return self.bags[i].read_tiles(idx)
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(i)
        if f is None:
            f = self._files[i] = h5py.File(sidecar_path(self.paths[i]), "r")
        return read_rows(f[self.feature_key]["features"], idx)

    def close(self) -> None:
        for b in self.bags:
            b.close()
        if self._pid == os.getpid():
            for f in self._files.values():
                f.close()
        self._files = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_pid"] = {}, None
        return state


MILSource = InMemoryBags | H5Bags


def resolve_bag_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """A folder, one bag file, or a list of bag files → bag paths (feature sidecars excluded)."""
    if isinstance(paths, (str, os.PathLike)):
        out = list_bags(paths)
    else:
        out = [Path(p) for p in paths]
    out = [p for p in out if not is_sidecar(p)]
    if not out:
        raise BagError(f"{paths}: no bags found")
    return out


def as_source(X: object, y: object = None, *, features: bool | str | None = None) -> MILSource:
    """Wrap ``X`` (bag folder/path(s), a source, or a list of arrays) into a bag source."""
    if isinstance(X, (InMemoryBags, H5Bags)):
        return X
    if isinstance(X, (str, os.PathLike)):
        return H5Bags(X, y, features=features)
    if isinstance(X, (list, tuple)) and X and isinstance(X[0], (str, os.PathLike)):
        return H5Bags(X, y, features=features)
    if isinstance(X, (list, tuple)):
        if y is None:
            raise WeaksegError("in-memory bags need labels y (HDF5 bags read them from their 'label' attribute)")
        return InMemoryBags(X, y)
    raise WeaksegError(f"cannot use {type(X).__name__} as MIL bags: pass a bag folder, bag paths or a list of arrays")
