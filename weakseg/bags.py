"""The tile-bag contract: one HDF5 file per slide, written atomically, read lazily.

Layout (``format_version`` 1), also documented in the README:

``tiles``
    ``codec == "raw"`` (optionally with h5py ``lzf``/``gzip`` filters): uint8 ``(N, T, T, 3)``,
    one tile per chunk. ``codec == "jpeg"``: a 1-D variable-length uint8 dataset of ``N``
    encoded images, attrs ``codec``, ``quality`` and ``tile_shape``. ``Bag.read_tiles``
    decodes transparently.
``masks``
    uint8 ``(N, T, T)`` raw provider labels (lossless), present only when the slide has a mask.
``coords``
    int64 ``(N, 2)`` level-0 top-left ``(x, y)``; attrs ``patch_size`` (level-0 pixels covered
    by one tile) and ``patch_level`` (CLAM-compatible).
``coverage``
    float32 ``(N,)`` tissue / mask coverage that selected the tile.
``cancer_fraction``
    float32 ``(N,)`` fraction of cancer pixels (common label map), only with a mask.

File attributes: see :data:`REQUIRED_ATTRS`, plus ``slide_path``, ``mask_path`` and
``complete`` (set last; a bag without it is treated as absent).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .atomic import atomic_path
from .errors import BagError

FORMAT_VERSION = 1
BAG_SUFFIX = ".h5"
CODECS = ("raw", "lzf", "gzip", "jpeg")
REQUIRED_ATTRS = (
    "slide_id",
    "data_provider",
    "isup_grade",
    "gleason_score",
    "label",
    "level",
    "downsample",
    "tile_size",
    "stride",
    "mpp",
    "format_version",
)


@dataclass
class BagMeta:
    """Slide-level metadata stored as HDF5 file attributes of a bag."""

    slide_id: str
    label: int = -1
    data_provider: str = ""
    isup_grade: int = -1
    gleason_score: str = ""
    level: int = 0
    downsample: float = 1.0
    tile_size: int = 512
    stride: int = 512
    mpp: float = float("nan")
    slide_path: str = ""
    mask_path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_attrs(self) -> dict[str, Any]:
        attrs = {k: v for k, v in self.__dict__.items() if k != "extra"}
        attrs.update(self.extra)
        attrs["format_version"] = FORMAT_VERSION
        return attrs

    @classmethod
    def from_attrs(cls, attrs: h5py.AttributeManager | dict) -> BagMeta:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in attrs.items():
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, bytes):
                value = value.decode()
            if key in known:
                values[key] = value
            elif key not in ("format_version", "complete"):
                extra[key] = value
        return cls(**values, extra=extra)


def encode_tile(tile: np.ndarray, codec: str, quality: int = 90) -> np.ndarray:
    """Encode one ``(T, T, 3)`` uint8 tile to a 1-D uint8 buffer (``jpeg`` only)."""
    if codec != "jpeg":
        raise ValueError(f"encode_tile only handles 'jpeg', got {codec!r}")
    import imagecodecs

    return np.frombuffer(imagecodecs.jpeg8_encode(tile, level=quality), dtype=np.uint8)


def decode_tile(buf: np.ndarray, codec: str) -> np.ndarray:
    """Decode a buffer written by :func:`encode_tile`."""
    if codec != "jpeg":
        raise ValueError(f"decode_tile only handles 'jpeg', got {codec!r}")
    import imagecodecs

    return imagecodecs.jpeg8_decode(np.asarray(buf, dtype=np.uint8).tobytes())


class BagWriter:
    """Stream tiles into a new bag; the file appears under its final name only on success.

    >>> with BagWriter(path, meta, tile_size=512, with_masks=True, codec="jpeg") as w:
    ...     w.append(tiles, coords, coverage, masks=masks, cancer_fraction=cf)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        meta: BagMeta,
        *,
        tile_size: int,
        with_masks: bool,
        codec: str = "jpeg",
        quality: int = 90,
        patch_size: int | None = None,
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}; choose one of {CODECS}")
        self.path = Path(path)
        self.meta = meta
        self.tile_size = tile_size
        self.with_masks = with_masks
        self.codec = codec
        self.quality = quality
        self.patch_size = patch_size if patch_size is not None else int(round(tile_size * meta.downsample))
        self._ctx = None
        self._h5: h5py.File | None = None
        self.n = 0

    def __enter__(self) -> BagWriter:
        self._ctx = atomic_path(self.path, suffix=BAG_SUFFIX)
        tmp = self._ctx.__enter__()
        self._h5 = h5py.File(tmp, "w")
        t = self.tile_size
        f = self._h5
        if self.codec == "jpeg":
            d = f.create_dataset("tiles", (0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.uint8), chunks=(64,))
            d.attrs["quality"] = self.quality
        else:
            comp = None if self.codec == "raw" else self.codec
            d = f.create_dataset(
                "tiles", (0, t, t, 3), maxshape=(None, t, t, 3), dtype=np.uint8,
                chunks=(1, t, t, 3), compression=comp,
            )
        d.attrs["codec"] = self.codec
        d.attrs["tile_shape"] = (t, t, 3)
        if self.with_masks:
            f.create_dataset("masks", (0, t, t), maxshape=(None, t, t), dtype=np.uint8, chunks=(1, t, t), compression="lzf")
            f.create_dataset("cancer_fraction", (0,), maxshape=(None,), dtype=np.float32, chunks=(4096,))
        c = f.create_dataset("coords", (0, 2), maxshape=(None, 2), dtype=np.int64, chunks=(4096, 2))
        c.attrs["patch_size"] = self.patch_size
        c.attrs["patch_level"] = self.meta.level
        f.create_dataset("coverage", (0,), maxshape=(None,), dtype=np.float32, chunks=(4096,))
        for k, v in self.meta.to_attrs().items():
            f.attrs[k] = v
        f.attrs["tile_size"] = t  # the stored tiles' size is authoritative
        return self

    def append(
        self,
        tiles: Sequence[np.ndarray] | np.ndarray,
        coords: np.ndarray,
        coverage: np.ndarray,
        *,
        masks: np.ndarray | None = None,
        cancer_fraction: np.ndarray | None = None,
        encoded: Sequence[np.ndarray] | None = None,
    ) -> None:
        """Append a batch of tiles. ``encoded`` passes pre-encoded JPEG buffers (codec ``jpeg``)."""
        f = self._h5
        assert f is not None, "BagWriter used outside its context"
        k = len(coords)
        if k == 0:
            return
        lo, hi = self.n, self.n + k
        for name in ("tiles", "coords", "coverage") + (("masks", "cancer_fraction") if self.with_masks else ()):
            f[name].resize(hi, axis=0)
        if self.codec == "jpeg":
            bufs = encoded if encoded is not None else [encode_tile(np.asarray(t), "jpeg", self.quality) for t in tiles]
            batch = np.empty(k, dtype=object)
            for i, b in enumerate(bufs):
                batch[i] = np.asarray(b, dtype=np.uint8)
            if k == 1 or len({len(b) for b in batch}) == 1:
                # h5py reads an object array of equal-length buffers as a 2-D array and cannot
                # broadcast it (nor a one-element one) into a vlen slice: write those tile by tile
                for i, b in enumerate(batch):
                    f["tiles"][lo + i] = b
            else:  # one vlen write per batch, not per tile
                f["tiles"][lo:hi] = batch
        else:
            f["tiles"][lo:hi] = np.asarray(tiles, dtype=np.uint8)
        f["coords"][lo:hi] = np.asarray(coords, dtype=np.int64).reshape(k, 2)
        f["coverage"][lo:hi] = np.asarray(coverage, dtype=np.float32)
        if self.with_masks:
            if masks is None or cancer_fraction is None:
                raise BagError(f"{self.path}: bag declared with masks but a batch came without them")
            f["masks"][lo:hi] = np.asarray(masks, dtype=np.uint8)
            f["cancer_fraction"][lo:hi] = np.asarray(cancer_fraction, dtype=np.float32)
        self.n = hi

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._h5 is not None and self._ctx is not None
        try:
            if exc_type is None:
                self._h5.attrs["n_tiles"] = self.n
                self._h5.attrs["complete"] = True
            self._h5.close()
        except BaseException as err:  # e.g. a full disk on the final flush: the temporary file goes now,
            self._ctx.__exit__(type(err), err, err.__traceback__)  # not whenever the GC closes the context
            raise
        self._ctx.__exit__(exc_type, exc, tb)


class Bag:
    """Lazy, fork-safe reader of one bag (the HDF5 handle is opened per process on first use)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BagError(f"{self.path}: no such bag")
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        try:
            with h5py.File(self.path, "r") as f:
                self._read_header(f)
        except (OSError, KeyError) as err:
            source = ""
            with contextlib.suppress(OSError):
                with h5py.File(self.path, "r") as f:
                    source = str(f.attrs.get("source_bag", ""))
            hint = f"; its tiles link to {source!r} (relative to {self.path.parent}), which must exist" if source else ""
            raise BagError(f"{self.path}: unreadable bag ({err}){hint}") from err
        if self.format_version > FORMAT_VERSION:
            raise BagError(f"{self.path}: format_version {self.format_version} is newer than this weakseg ({FORMAT_VERSION})")

    def _read_header(self, f: h5py.File) -> None:
        if not f.attrs.get("complete", False):
            raise BagError(f"{self.path}: incomplete bag (no 'complete' attribute); re-run the tiler")
        missing = [a for a in REQUIRED_ATTRS if a not in f.attrs]
        if missing:
            raise BagError(f"{self.path}: missing file attributes {missing}")
        self.meta = BagMeta.from_attrs(f.attrs)
        self.format_version = int(f.attrs["format_version"])
        self.codec = str(f["tiles"].attrs.get("codec", "raw"))
        self.coords = f["coords"][:]
        self.patch_size = int(f["coords"].attrs["patch_size"])
        self.coverage = f["coverage"][:]
        self.has_masks = "masks" in f
        self.cancer_fraction = f["cancer_fraction"][:] if self.has_masks else None

    # -- handle management -------------------------------------------------------------
    @property
    def h5(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_pid"] = None
        return state

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- data --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.coords)

    @property
    def slide_id(self) -> str:
        return self.meta.slide_id

    @property
    def label(self) -> int:
        return int(self.meta.label)

    @property
    def tile_size(self) -> int:
        return int(self.meta.tile_size)

    def read(self, name: str, idx: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Rows ``idx`` of the bag's dataset ``name`` in the caller's order (all rows when ``None``).

        ``idx`` may be unsorted and repeat rows (see :func:`read_rows`); ``tiles`` come back as
        stored (encoded when ``codec == "jpeg"``; :meth:`read_tiles` decodes them).
        """
        if name not in self.h5:
            raise BagError(f"{self.path}: no {name!r} dataset")
        return read_rows(self.h5[name], idx, where=self.path)

    def read_tiles(self, idx: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Tiles as uint8 ``(k, T, T, 3)`` in the order of ``idx`` (all tiles when ``None``)."""
        idx = np.arange(len(self)) if idx is None else idx
        raw = self.read("tiles", idx)
        if self.codec != "jpeg":
            return raw
        t = self.tile_size
        out = np.empty((len(raw), t, t, 3), dtype=np.uint8)
        for i, buf in enumerate(raw):
            out[i] = decode_tile(buf, "jpeg")
        return out

    def read_masks(self, idx: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Raw provider labels as uint8 ``(k, T, T)``."""
        if not self.has_masks:
            raise BagError(f"{self.path}: bag has no masks (slide {self.slide_id} was tiled without one)")
        return self.read("masks", idx)

    def iter_tiles(self, batch_size: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(indices, tiles)`` batches in storage order (sequential I/O)."""
        for lo in range(0, len(self), batch_size):
            idx = np.arange(lo, min(lo + batch_size, len(self)))
            yield idx, self.read_tiles(idx)


def read_rows(ds: h5py.Dataset, idx: Sequence[int] | np.ndarray | None = None, *, where: object = None) -> np.ndarray:
    """Rows ``idx`` of an HDF5 dataset in the order of ``idx`` (all rows when ``None``).

    h5py reads only strictly increasing indices, so the distinct rows are read once in sorted
    order and scattered back: ``read_rows(ds, idx)`` equals ``ds[:][idx]`` for any 1-D integer
    ``idx`` (unsorted, repeated or empty) without loading the rest. A row outside
    ``0..len(ds)-1`` raises :class:`IndexError` naming ``where`` (default: the dataset's file).
    """
    if idx is None:
        return ds[()]
    idx = np.asarray(idx, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= len(ds)):
        where = ds.file.filename if where is None else where
        raise IndexError(f"{where}: row index out of range 0..{len(ds) - 1} in {ds.name}")
    if idx.size == 0:
        return np.empty((0, *ds.shape[1:]), dtype=ds.dtype)
    uniq, inverse = np.unique(idx, return_inverse=True)
    return ds[uniq][inverse.ravel()]


#: datasets a derived bag copies from its source (ground truth and selection, evaluation only)
DERIVED_COPIES = ("masks", "coverage", "cancer_fraction")


@contextlib.contextmanager
def derived_bag_writer(source: Bag, target: str | os.PathLike) -> Iterator[h5py.File]:
    """Write a bag derived from ``source`` (weak labels, pseudo-labels) without copying its tiles.

    Yields the open HDF5 file to add label datasets and attributes to. It already holds the
    source's attributes, ``tiles``/``coords`` as external links stored relative to ``target``'s
    folder (the attribute ``source_bag``), and copies of :data:`DERIVED_COPIES`. The file appears
    under ``target`` atomically, marked ``complete``, only when the block succeeds.
    """
    target = Path(target)
    rel = os.path.relpath(source.path.resolve(), target.resolve().parent)
    with atomic_path(target, suffix=BAG_SUFFIX) as tmp, h5py.File(source.path, "r") as s, h5py.File(tmp, "w") as f:
        for key, value in s.attrs.items():
            f.attrs[key] = value
        f.attrs["complete"] = False
        for name in ("tiles", "coords"):
            f[name] = h5py.ExternalLink(rel, "/" + name)
        for name in DERIVED_COPIES:
            if name in s:
                s.copy(s[name], f, name=name)
        f.attrs["source_bag"] = rel
        yield f
        f.attrs["complete"] = True


def label_dataset(f: h5py.File, name: str, n: int, tile_size: int) -> h5py.Dataset:
    """A per-pixel uint8 label dataset ``(n, T, T)``, one tile per chunk, lzf-compressed."""
    t = tile_size
    return f.create_dataset(name, (n, t, t), maxshape=(None, t, t), dtype=np.uint8, chunks=(1, t, t), compression="lzf")


def is_complete_bag(path: str | os.PathLike) -> bool:
    """True when ``path`` is a bag that finished writing (used by the tiler's resume)."""
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete", False))
    except (OSError, KeyError):
        return False


def list_bags(source: str | os.PathLike) -> list[Path]:
    """Bag files in a folder (sorted by name), or the single bag ``source`` names."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise BagError(f"{source}: neither a bag file nor a folder of bags")
    return sorted(p for p in source.glob(f"*{BAG_SUFFIX}") if not p.name.startswith("."))


def open_bags(source: str | os.PathLike) -> list[Bag]:
    """Open every bag under ``source``."""
    return [Bag(p) for p in list_bags(source)]
