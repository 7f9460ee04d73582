"""Slide → tile bag, and the cohort driver (workers, shards, resume, ``manifest.csv``).

Per slide: resolve the pixel size and the level to read, lay a regular grid in tiling space,
select cells on a low-resolution map (the mask's coarsest level, else :func:`detect_tissue` on
a thumbnail), confirm mask coverage at tile resolution, then read only the kept tiles and stream
them into one HDF5 bag (:class:`~weakseg.bags.BagWriter`, atomic). When a kept tile is exactly
one stored JPEG tile of the slide and the codec is ``jpeg``, its bytes are stored as they are
(no decode, no re-encode, pixels identical to OpenSlide's).
"""

from __future__ import annotations

import contextlib
import csv
import json
import multiprocessing as mp
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from scipy import ndimage

from ..atomic import file_lock
from ..bags import BAG_SUFFIX, CODECS, BagMeta, BagWriter, encode_tile, is_complete_bag
from ..cohort import RowError, SlideRecord, load_source
from ..errors import MaskMismatchError, OutputError, SlideError, WeaksegError
from ..panda import CANCER, decode_mask_rgb, to_common_labels
from ..resolution import Resolution
from ..sharding import parse_shard, take_shard
from ..slide import SlideReader, open_slide
from .grid import TileGrid, candidate_cells
from .report import MANIFEST_NAME, SlideResult, merge_manifest
from .source import TileSource
from ..tissue import detect_tissue

#: Longest side of the low-resolution map used for selection (bounded memory on any slide).
LOWRES_MAX_SIDE = 4096
#: Pixel size (µm/px) at which tissue is detected (PANDA's coarsest level is about 8),
#: refined to at least :data:`DETECT_PX_PER_TILE` map pixels per tile side for small tiles.
DETECT_MPP = 8.0
DETECT_PX_PER_TILE = 8
#: Candidate net on the mask's coarse level (dilated by 2 px) before the exact tile-resolution check.
MASK_MARGIN = 0.15


@dataclass(frozen=True)
class TileConfig:
    """Tiling parameters. ``level`` and ``mpp`` are exclusive; neither means level 0."""

    tile_size: int = 512
    stride: int | None = None  # default: tile_size (no overlap)
    level: int | None = None
    mpp: float | None = None  # target µm/px of the tiles
    min_coverage: float = 0.25
    codec: str = "jpeg"
    quality: int = 90
    slide_mpp: float | None = None  # pixel size for slides that carry none
    overwrite: bool = False
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.tile_size < 8:
            raise WeaksegError(f"tile_size must be ≥ 8, got {self.tile_size}")
        if self.stride is not None and self.stride < 1:
            raise WeaksegError(f"stride must be ≥ 1, got {self.stride}")
        if self.level is not None and self.mpp is not None:
            raise WeaksegError("give either a level or a target mpp, not both")
        if self.level is not None and self.level < 0:
            raise WeaksegError(f"level must be ≥ 0, got {self.level}")
        if self.mpp is not None and not self.mpp > 0:
            raise WeaksegError(f"target mpp must be positive, got {self.mpp}")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise WeaksegError(f"min_coverage must be in [0, 1], got {self.min_coverage}")
        if self.codec not in CODECS:
            raise WeaksegError(f"unknown codec {self.codec!r}; choose one of {', '.join(CODECS)}")
        if not 1 <= self.quality <= 100:
            raise WeaksegError(f"quality must be in 1..100, got {self.quality}")

    @property
    def step(self) -> int:
        return self.stride if self.stride is not None else self.tile_size

    def signature(self) -> str:
        """The settings that determine a bag's content (compared on resume)."""
        keys = ("tile_size", "level", "mpp", "min_coverage", "codec", "quality", "slide_mpp")
        sig = {k: getattr(self, k) for k in keys}
        sig["stride"] = self.step
        return json.dumps(sig, sort_keys=True)


def plan_resolution(slide: SlideReader, level: int | None = None, mpp: float | None = None) -> Resolution:
    """Kept for callers of the old name: :meth:`weakseg.resolution.Resolution.plan`."""
    return Resolution.plan(slide, level, mpp)


def make_grid(slide: SlideReader, res: Resolution, tile_size: int, stride: int) -> TileGrid:
    """The tiling-space grid over :meth:`Resolution.dimensions` (a level's own size when not resized)."""
    w, h = res.dimensions(slide)
    return TileGrid(w, h, tile_size, stride, res.downsample, slide.dimensions)


def _lowres(reader: SlideReader, *, labels: bool = False) -> np.ndarray:
    """The coarsest level as RGB if small enough, else a bounded thumbnail."""
    k = reader.level_count - 1
    if max(reader.level_dimensions[k]) <= LOWRES_MAX_SIDE:
        return reader.read_level(k)
    return reader.thumbnail(LOWRES_MAX_SIDE, labels=labels)


def _mask_level(mask: SlideReader, scale: float) -> int:
    ok = [k for k, d in enumerate(mask.level_downsamples) if d <= scale * (1 + 1e-3)]
    return max(ok, key=lambda k: mask.level_downsamples[k])


@dataclass
class _Selection:
    rows: np.ndarray
    cols: np.ndarray
    coverage: np.ndarray
    label_counts: np.ndarray | None = None  # (k, 256) pixel count of each raw label per kept tile


def _mask_source(mask: SlideReader, grid: TileGrid, res: Resolution | None = None) -> TileSource:
    """Mask tiles at the grid's resolution, read from the mask's coarsest adequate level (nearest)."""
    res = res if res is not None else Resolution(0, grid.scale)
    return TileSource(mask, res.with_level(_mask_level(mask, grid.scale)), grid, nearest=True)


def select_tiles(
    slide: SlideReader, grid: TileGrid, min_coverage: float, mask: SlideReader | None = None
) -> _Selection:
    """Kept grid cells and their coverage; with a mask, coverage is exact at tile resolution.

    Only per-tile label counts are kept in memory, never the mask tiles themselves.
    """
    if mask is None:
        ds = min(DETECT_MPP / slide.mpp, grid.patch_size / DETECT_PX_PER_TILE)
        side = min(LOWRES_MAX_SIDE, max(64, round(max(slide.dimensions) / max(ds, 1.0))))
        tissue = detect_tissue(slide.thumbnail(side))
        cov = grid.coverage(tissue)
        rows, cols = candidate_cells(cov, min_coverage, 0.0)
        return _Selection(rows, cols, cov[rows, cols])
    coarse = decode_mask_rgb(_lowres(mask, labels=True)) > 0
    coarse = ndimage.binary_dilation(coarse, iterations=2)
    rows, cols = candidate_cells(grid.coverage(coarse), min_coverage, MASK_MARGIN)
    keep, keep_cov, keep_n = [], [], []
    t = grid.tile_size
    with _mask_source(mask, grid) as src:
        for i, (x, y) in enumerate(grid.origins(rows, cols)):
            labels = decode_mask_rgb(src.read(int(x), int(y)))
            frac = np.count_nonzero(labels) / (t * t)
            if frac > 0 and frac >= min_coverage:
                keep.append(i)
                keep_cov.append(frac)
                keep_n.append(np.bincount(labels.ravel(), minlength=256))
    counts = np.stack(keep_n) if keep_n else np.zeros((0, 256), np.int64)
    return _Selection(rows[keep], cols[keep], np.asarray(keep_cov, np.float32), counts)


def cancer_fractions(label_counts: np.ndarray, provider: str) -> np.ndarray:
    """Per-tile fraction of pixels whose raw label maps to cancer, from ``(k, 256)`` label counts."""
    present = np.flatnonzero(label_counts.sum(0))
    cancer = present[to_common_labels(present.astype(np.uint8), provider) == CANCER]
    return (label_counts[:, cancer].sum(1) / label_counts.sum(1)).astype(np.float32)


def _meta(record: SlideRecord, res: Resolution, config: TileConfig, mask_path: Path | None) -> BagMeta:
    label = record.label if record.label is not None else (int(record.isup_grade > 0) if record.isup_grade is not None else -1)
    return BagMeta(
        slide_id=record.slide_id,
        label=int(label),
        data_provider=record.data_provider or "",
        isup_grade=record.isup_grade if record.isup_grade is not None else -1,
        gleason_score=record.gleason_score or "",
        level=res.level,
        downsample=float(res.downsample),
        tile_size=config.tile_size,
        stride=config.step,
        mpp=float(res.mpp) if res.mpp is not None else float("nan"),
        slide_path=str(Path(record.slide_path).absolute()),
        mask_path=str(Path(mask_path).absolute()) if mask_path else "",
        extra={"min_coverage": config.min_coverage, "tiling_config": config.signature()},
    )


def bag_path_for(out_dir: str | os.PathLike, slide_id: str) -> Path:
    return Path(out_dir) / f"{slide_id}{BAG_SUFFIX}"


def _resume(bag: Path, config: TileConfig, result: SlideResult) -> SlideResult | None:
    if config.overwrite or not bag.exists() or not is_complete_bag(bag):
        return None
    with h5py.File(bag, "r") as f:
        sig = f.attrs.get("tiling_config", "")
        n = int(f.attrs.get("n_tiles", len(f["coords"])))
    if sig != config.signature():
        result.status, result.reason = "failed", f"{bag.name} exists with other settings ({sig}); use --overwrite"
        return result
    result.status, result.n_tiles = "skipped(resume)", n
    return result


#: Status of a slide another process holds the lock of (``tile_slide(wait=False)``); never in a manifest.
BUSY = "busy"


def _write_failure(path: str | os.PathLike, err: OSError) -> OutputError:
    return OutputError(f"cannot write {path}: {err.strerror or err}")


def slide_lock_path(bag: Path) -> Path:
    """The lock a tiler holds while it decides about and writes ``bag`` (``.<slide_id>.h5.lock``)."""
    return bag.with_name(f".{bag.name}.lock")


def remove_stale_parts(bag: Path) -> None:
    """Delete half-written ``.<slide_id>.h5.*.part`` files; only call while holding the slide's lock.

    Every writer of a bag holds its slide lock while its ``.part`` exists, so a ``.part`` found
    under the lock was left by a process that died.
    """
    for stale in bag.parent.glob(f".{bag.name}.*.part"):
        stale.unlink(missing_ok=True)


def _new_result(record: SlideRecord, bag: Path) -> SlideResult:
    return SlideResult(
        record.slide_id,
        "failed",
        label=record.label if record.label is not None else "",
        provider=record.data_provider or "",
        isup=record.isup_grade if record.isup_grade is not None else "",
        bag=bag.name,  # relative to the manifest's folder (OUT), wherever the run was started
    )


def tile_slide(record: SlideRecord, out_dir: str | os.PathLike, config: TileConfig, *, wait: bool = True) -> SlideResult:
    """Tile one slide into ``out_dir/<slide_id>.h5``; never raises for bad input (see ``status``).

    The slide's lock (:func:`slide_lock_path`) is held from the resume check to the bag's rename,
    so concurrent runs and shards writing one folder never touch each other's files. When another
    process holds it, ``wait=True`` waits for it (then usually resumes its bag) and ``wait=False``
    returns at once with status :data:`BUSY`.
    """
    start = time.perf_counter()
    bag = bag_path_for(out_dir, record.slide_id)
    result = _new_result(record, bag)
    try:
        bag.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(slide_lock_path(bag), blocking=wait, remove=True) as held:
            if held:
                remove_stale_parts(bag)  # left by a killed run
                _tile_locked(record, bag, config, result)
            else:
                result.status, result.reason = BUSY, f"{bag.name} is being written by another process"
    except OSError as err:  # the lock or a stale file cannot be handled: the folder is unusable
        result.status, result.reason = "failed", str(_write_failure(err.filename or slide_lock_path(bag), err))
    if result.status not in ("ok", "skipped(resume)"):
        result.bag = ""
    result.seconds = time.perf_counter() - start
    return result


def _tile_locked(record: SlideRecord, bag: Path, config: TileConfig, result: SlideResult) -> None:
    try:
        if _resume(bag, config, result) is None:
            _tile_into(record, bag, config, result)
    except WeaksegError as err:
        result.status, result.reason = "failed", str(err)
    except Exception as err:  # noqa: BLE001 - one broken slide must not stop a cohort
        result.status, result.reason = "failed", f"{record.slide_path}: {type(err).__name__}: {err}"
    if result.status not in ("ok", "skipped(resume)") and config.overwrite and bag.exists():
        # --overwrite asked for a new bag and none could be made: the old one no longer matches the run
        try:
            bag.unlink()
            note = f"old bag {bag.name} removed (--overwrite)"
        except OSError as err:
            note = f"old bag {bag} could not be removed: {err.strerror or err}"
        result.reason = "; ".join(p for p in (result.reason, note) if p)


def _tile_into(record: SlideRecord, bag: Path, config: TileConfig, result: SlideResult) -> None:
    notes: list[str] = []
    mask_path = record.mask_path
    if mask_path is not None and not Path(mask_path).is_file():
        notes.append(f"mask {mask_path} missing: tiled with the tissue detector, bag has no masks")
        mask_path = None
    elif mask_path is None:
        notes.append("no mask: tiled with the tissue detector")
    with open_slide(record.slide_path, mpp_override=config.slide_mpp) as slide:
        _ = slide.mpp  # bags record µm/px: a slide without a pixel size needs --slide-mpp
        res = Resolution.plan(slide, config.level, config.mpp)
        grid = make_grid(slide, res, config.tile_size, config.step)
        mask = open_slide(mask_path) if mask_path is not None else None
        try:
            if mask is not None and mask.dimensions != slide.dimensions:
                raise MaskMismatchError(
                    f"{mask_path}: mask is {mask.dimensions[0]}x{mask.dimensions[1]} but slide "
                    f"{record.slide_path} is {slide.dimensions[0]}x{slide.dimensions[1]}"
                )
            if 0 in grid.shape:
                at = f"level {res.level}" + (f" resized to {res.mpp:g} µm/px" if res.needs_resize(slide) else "")
                raise SlideError(
                    f"{record.slide_path}: a {config.tile_size}-px tile is larger than the slide at {at} "
                    f"({grid.width}x{grid.height} px), so no whole tile fits; use a smaller --tile-size or a finer level"
                )
            sel = select_tiles(slide, grid, config.min_coverage, mask)
            if len(sel.rows) == 0:
                result.status = "empty"
                result.reason = "; ".join([f"no tile reaches coverage {config.min_coverage:g} (blank slide?)", *notes])
                return
            try:
                cancer = None if sel.label_counts is None else cancer_fractions(sel.label_counts, record.data_provider)
            except ValueError as err:  # a label the provider does not define: the mask's fault, name it
                raise MaskMismatchError(f"{mask_path}: {err} (mask of slide {record.slide_path})") from None
            _write_bag(slide, mask, grid, res, sel, cancer, record, bag, config, mask_path)
        finally:
            if mask is not None:
                mask.close()
    result.status, result.n_tiles, result.reason = "ok", len(sel.rows), "; ".join(notes)


def _write_bag(
    slide: SlideReader,
    mask: SlideReader | None,
    grid: TileGrid,
    res: Resolution,
    sel: _Selection,
    cancer: np.ndarray | None,
    record: SlideRecord,
    bag: Path,
    config: TileConfig,
    mask_path: Path | None,
) -> None:
    origins = grid.origins(sel.rows, sel.cols)
    coords = grid.coords_level0(sel.rows, sel.cols)
    meta = _meta(record, res, config, mask_path)
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(TileSource(slide, res, grid))
        mask_src = stack.enter_context(_mask_source(mask, grid, res)) if mask is not None else None
        # All-or-nothing, so a bag's tiles share one provenance (recorded in its attrs).
        passthrough = config.codec == "jpeg" and all(src.passthrough_ok(int(x), int(y)) for x, y in origins)
        meta.extra["jpeg_passthrough"] = passthrough
        writer = stack.enter_context(
            _Output(
                BagWriter(
                    bag, meta, tile_size=config.tile_size, with_masks=mask is not None,
                    codec=config.codec, quality=config.quality, patch_size=grid.patch_size,
                )
            )
        )

        def tile(k: int, read: Callable[[int, int], object]):
            x, y = (int(v) for v in origins[k])
            try:
                return read(x, y)
            except SlideError as err:  # name the bag tile too: level-0 position
                raise SlideError(f"{err} [bag tile at level-0 x={coords[k][0]}, y={coords[k][1]}]") from err

        for lo in range(0, len(origins), config.batch_size):
            hi = min(lo + config.batch_size, len(origins))
            tiles: list[np.ndarray] = []
            encoded: list[np.ndarray] | None = None
            if passthrough:  # each stored JPEG tile is checked to decode before it is stored
                encoded = [np.frombuffer(tile(k, src.jpeg_stream), np.uint8) for k in range(lo, hi)]
            elif config.codec == "jpeg":
                encoded = [encode_tile(tile(k, src.read), "jpeg", config.quality) for k in range(lo, hi)]
            else:
                tiles = [tile(k, src.read) for k in range(lo, hi)]
            masks = None if mask_src is None else np.stack([decode_mask_rgb(tile(k, mask_src.read)) for k in range(lo, hi)])
            writer.append(
                tiles, coords[lo:hi], sel.coverage[lo:hi], masks=masks,
                cancer_fraction=None if cancer is None else cancer[lo:hi], encoded=encoded,
            )


class _Output:
    """A :class:`BagWriter` whose file-system errors become :class:`OutputError` naming the bag.

    Only the writer's own calls are wrapped, so a full disk or a read-only folder is reported as
    the output's problem, never blamed on the slide being read.
    """

    def __init__(self, writer: BagWriter) -> None:
        self.writer = writer

    def __enter__(self) -> _Output:
        try:
            self.writer.__enter__()
        except OSError as err:
            raise _write_failure(self.writer.path, err) from err
        return self

    def append(self, *args, **kwargs) -> None:
        try:
            self.writer.append(*args, **kwargs)
        except OSError as err:
            raise _write_failure(self.writer.path, err) from err

    def __exit__(self, *exc: object) -> None:
        try:
            self.writer.__exit__(*exc)
        except OSError as err:
            raise _write_failure(self.writer.path, err) from err


# -- cohort driver -------------------------------------------------------------------------


def split_ids(split_file: str | os.PathLike, parts: Sequence[str], fold: int = 0) -> list[str]:
    """Sorted slide ids of the named ``parts`` (``train``, ``val``, ``test``) of ``fold`` in a ``weakseg split`` file."""
    from ..cohort import SPLITS
    from ..splits import load_split

    bad = [p for p in parts if p not in SPLITS]
    if bad or not parts:
        raise WeaksegError(f"--split must name parts of {', '.join(SPLITS)}, got {', '.join(parts) or 'none'}")
    split = load_split(split_file, fold)
    return sorted({i for p in parts for i in split[p]})


def select_records(
    records: Sequence[SlideRecord],
    *,
    ids: Sequence[str] | None = None,
    shard: tuple[int, int] | None = None,
    limit: int | None = None,
    split_ids: Sequence[str] | None = None,
) -> list[SlideRecord]:
    """Filter by ``ids`` and ``split_ids`` (both when given), take shard ``i`` of ``n``
    (:func:`weakseg.sharding.take_shard`: the ids hashing to ``i`` mod ``n``), then ``limit``; sorted by id."""
    chosen = sorted(records, key=lambda r: r.slide_id)
    if split_ids is not None:
        in_split = set(split_ids)
        chosen = [r for r in chosen if r.slide_id in in_split]
    if ids is not None:
        wanted = set(ids)
        chosen = [r for r in chosen if r.slide_id in wanted]
    chosen = take_shard(chosen, shard, key=lambda r: r.slide_id)
    if limit is not None:
        chosen = chosen[:limit]
    return chosen


@dataclass
class CohortReport:
    """All per-slide results of a run (row errors included as ``failed`` rows).

    ``manifest_error`` says why ``manifest.csv`` could not be updated at the end (e.g. a full
    disk); ``unrecorded`` are the results missing from it then.
    """

    results: list[SlideResult]
    manifest: Path
    manifest_error: str | None = None
    unrecorded: list[SlideResult] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(r.failed for r in self.results)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def _row_error_result(err: RowError) -> SlideResult:
    return SlideResult(err.slide_id or f"row-{err.row}", "failed", reason=f"bad CSV row {err.row}: {err.reason}", row=err.row)


def check_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` and make sure files can be made in it; else one :class:`OutputError` naming the path."""
    for p in (out_dir, *out_dir.parents):
        if p.exists():
            if not p.is_dir():
                raise OutputError(f"output folder {out_dir}: {p} exists and is not a folder")
            break
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output folder {out_dir}: {err.strerror or err}") from err
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"output folder {out_dir} is not writable: {err.strerror or err}") from err


class _Manifest:
    """Updates ``manifest.csv`` after every slide; rows it could not write are retried with the next one."""

    def __init__(self, out_dir: Path, forget: Callable[[dict[str, str]], bool] | None) -> None:
        self.out_dir, self.path = out_dir, out_dir / MANIFEST_NAME
        self.pending: list[SlideResult] = []
        self.error: str | None = None
        self._forget = forget

    def add(self, results: Sequence[SlideResult]) -> None:
        self.pending.extend(results)
        try:
            merge_manifest(self.out_dir, self.pending, forget=self._forget)
        except (OSError, ValueError, csv.Error) as err:
            self.error = f"cannot update {self.path}: {getattr(err, 'strerror', None) or err}"
            return
        self.pending, self.error, self._forget = [], None, None


def _crashed(record: SlideRecord, out_dir: Path) -> SlideResult:
    """The result of a slide whose worker died twice, the second time tiling it alone; its ``.part`` removed."""
    bag = bag_path_for(out_dir, record.slide_id)
    result = _new_result(record, bag)
    result.bag = ""
    result.reason = (
        f"{record.slide_path}: the worker process tiling this slide died (killed, or crashed in native code), "
        "also when retried alone; run it with --workers 1 to see how"
    )
    with contextlib.suppress(OSError), file_lock(slide_lock_path(bag), blocking=False, remove=True) as held:
        if held:  # the dead worker's lock is free: clean its half-written bag
            remove_stale_parts(bag)
    return result


def _pool_pass(
    queue: deque[SlideRecord],
    n_workers: int,
    run: Callable[..., Future],
    finish: Callable[[SlideRecord, SlideResult], None],
    fail: Callable[[SlideRecord, BaseException], None],
) -> list[SlideRecord]:
    """Tile ``queue`` with at most ``n_workers`` slides in flight; returns the slides in flight when a worker died.

    A process pool whose worker dies is broken and fails every future still running, so only the
    slides in flight at that moment are lost (returned, in submission order); the queue keeps the rest.
    """
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
        running: dict[Future, SlideRecord] = {}

        def collect(fut: Future) -> bool:
            """Hand on a finished future's result; True when it reports the pool broken."""
            record = running[fut]
            try:
                result = fut.result()
            except BrokenProcessPool:
                return True
            except Exception as err:  # noqa: BLE001 - e.g. a record that cannot be pickled
                del running[fut]
                fail(record, err)
                return False
            del running[fut]
            finish(record, result)
            return False

        while queue or running:
            broken = False
            while queue and len(running) < n_workers:
                record = queue.popleft()
                try:
                    running[run(pool, record)] = record
                except BrokenProcessPool:
                    queue.appendleft(record)
                    broken = True
                    break
            if not broken:
                finished, _ = futures_wait(running, return_when=FIRST_COMPLETED)
                broken = any([collect(f) for f in finished])
            if broken:  # every running future of a broken pool ends now: keep those that finished first
                for fut in list(running):
                    collect(fut)
                return list(running.values())
        return []


def tile_cohort(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: TileConfig,
    *,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[SlideResult], None] | None = None,
    split_file: str | os.PathLike | None = None,
    split: Sequence[str] = (),
    fold: int = 0,
) -> CohortReport:
    """Tile every selected slide of ``source`` into ``out_dir``; ``manifest.csv`` is updated per slide.

    ``split_file`` (from ``weakseg split``) with ``split`` (e.g. ``["test"]`` or ``["train", "val"]``)
    and ``fold`` selects those slides (and, with ``ids``, those of them also in ``ids``); ids of the
    split that ``source`` lacks are recorded as failed rows, like unknown ``ids``.

    Slides another process is tiling into ``out_dir`` are done last, after waiting for its lock.
    With ``workers > 1`` a worker that dies (killed, or crashed in native code) loses only the
    slides in flight: the rest continue in a fresh pool, the lost ones are retried one at a time,
    and a slide whose worker dies again alone is the one recorded as failed.
    """
    if workers < 1:
        raise WeaksegError(f"workers must be ≥ 1, got {workers}")
    if split and split_file is None:
        raise WeaksegError("--split needs --split-file (a file from 'weakseg split')")
    if split_file is not None:
        in_split = split_ids(split_file, split, fold)  # validated before any slide is read
        ids = in_split if ids is None else [i for i in ids if i in set(in_split)]
    records, row_errors = load_source(source)
    chosen = select_records(records, ids=ids, shard=shard, limit=limit)
    bad_rows = [_row_error_result(e) for e in row_errors if ids is None or e.slide_id in set(ids)]
    if ids is not None:
        known = {r.slide_id for r in records} | {e.slide_id for e in row_errors}
        bad_rows += [SlideResult(i, "failed", reason=f"slide id not in {source}") for i in sorted(set(ids) - known)]
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    # bad-row entries of earlier runs for the ids this run covers are replaced by this run's
    scope = set(ids) if ids is not None else {r.slide_id for r in records} | {r.slide_id for r in bad_rows}
    manifest = _Manifest(out_dir, forget=lambda row: bool(row.get("row")) and row["slide_id"] in scope)
    results: list[SlideResult] = list(bad_rows)
    manifest.add(bad_rows)
    if on_start is not None:
        on_start(len(chosen))

    def done(result: SlideResult) -> None:
        results.append(result)
        manifest.add([result])
        if on_result is not None:
            on_result(result)

    busy: list[SlideRecord] = []

    def finish(record: SlideRecord, result: SlideResult) -> None:
        if result.status == BUSY:
            busy.append(record)
        else:
            done(result)

    def fail(record: SlideRecord, err: BaseException) -> None:
        result = _new_result(record, bag_path_for(out_dir, record.slide_id))
        result.bag, result.reason = "", f"{record.slide_path}: {type(err).__name__}: {err}"
        done(result)

    def run_all(batch: list[SlideRecord], wait: bool) -> None:
        if workers == 1 or len(batch) <= 1:
            for record in batch:
                finish(record, tile_slide(record, out_dir, config, wait=wait))
            return

        def run(pool: ProcessPoolExecutor, record: SlideRecord) -> Future:
            return pool.submit(tile_slide, record, out_dir, config, wait=wait)

        queue, lost = deque(batch), []
        while queue:
            lost += _pool_pass(queue, workers, run, finish, fail)
        queue = deque(sorted(lost, key=batch.index))
        while queue:  # retried one at a time: a worker that dies now names its slide
            for record in _pool_pass(queue, 1, run, finish, fail):
                done(_crashed(record, out_dir))

    run_all(chosen, wait=False)
    if busy:  # slides other processes were writing: wait for their locks (their bags then resume)
        run_all(list(busy), wait=True)
    return CohortReport(results, manifest.path, manifest.error, list(manifest.pending))


__all__ = [
    "CohortReport",
    "Resolution",
    "TileConfig",
    "make_grid",
    "parse_shard",
    "plan_resolution",
    "select_records",
    "select_tiles",
    "tile_cohort",
    "tile_slide",
]
