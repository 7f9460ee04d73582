"""Slide-map driver: sliding-window inference over a whole slide -> probability map files.

Per slide ``<id>`` it writes into ``out_dir`` (every file atomically):

``<id>.prob.tif``
    tiled pyramidal TIFF, uint8 ``round(p * 255)``, deflate; 0 where no window was predicted.
``<id>.mask.tif``
    same geometry, 255 where ``p >= threshold`` else 0.
``<id>.overlay.png``
    the probability map (overview resolution) over the slide thumbnail, readable as it is
    (:func:`~weakseg.maps.overlay.overlay_figure`): ``magma`` colours, transparent at p ≤ 0.2 and
    fully opaque from the threshold on, the predicted outline at the threshold (dashed blue), the
    ground-truth cancer outline (green) when a mask is given, a colour bar and a title.
``<id>.geojson``
    predicted cancer regions as QuPath ``Tumor`` annotations in level-0 pixels.
``<id>.json``
    sidecar metadata (also in the TIFFs' ImageDescription): ``downsample`` = level-0 pixels per
    map pixel, ``mpp`` = µm per map pixel, the read ``level``, ``resize`` (level pixels per window
    pixel, 1 = read as stored), ``read_downsample`` / ``read_mpp`` (the windows' resolution),
    window geometry, threshold, window counts.

Windows are read at one :class:`~weakseg.resolution.Resolution` (a bag's, for
``weakseg predict``) through the same :class:`~weakseg.resolution.RegionReader` the tiler uses:
each window is its level box resized to ``window × window`` exactly as a tile is, so the window
at a bag tile's position holds that tile's pixels.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..atomic import atomic_write_text
from ..resolution import RegionReader, Resolution
from ..slide import SlideReader, open_slide
from ..tissue import detect_tissue
from .geojson import mask_to_features, write_geojson
from .overlay import blend_overlay, overlay_figure, truth_outline, write_png
from .pyramid import read_raw_strips, write_pyramid
from .stitch import StitchGrid, stream_stitch

#: ``predict_tiles(tiles uint8 (B, T, T, 3)) -> float32 (B, T, T)`` cancer probabilities.
PredictTiles = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SlideMap:
    """Paths and geometry of one slide's predicted map."""

    slide_id: str
    prob_tiff: Path
    mask_tiff: Path
    overlay_png: Path
    geojson: Path
    sidecar: Path
    downsample: float
    shape: tuple[int, int]
    n_windows: int
    n_predicted: int


def predict_slide_map(
    slide_path: str | os.PathLike,
    predict_tiles: PredictTiles,
    out_dir: str | os.PathLike,
    *,
    window: int = 512,
    step: int = 256,
    level: int | None = None,
    mpp: float | None = None,
    resolution: Resolution | None = None,
    batch_size: int = 32,
    tissue_only: bool = True,
    map_downsample: int = 4,
    threshold: float = 0.5,
    slide_mpp: float | None = None,
    slide_id: str | None = None,
    overview_max_side: int = 1024,
    title: str | None = None,
    truth_mask: str | os.PathLike | None = None,
    truth_provider: str = "",
    legend: bool = True,
) -> SlideMap:
    """Predict a whole slide window by window and write its map files (see module doc).

    Args:
        slide_path: any slide :func:`weakseg.slide.open_slide` reads.
        predict_tiles: the model, ``uint8 (B, window, window, 3) -> float32 (B, window, window)``.
        out_dir: output folder.
        window, step: window side and stride in window pixels (overlap = window - step).
        level: pyramid level to read as stored (default 0); exclusive with ``mpp`` and ``resolution``.
        mpp: target µm/px of the windows, as ``weakseg tile --mpp`` (:meth:`Resolution.plan`:
            a level within 2 % is read as stored, else the next finer level is resized).
        resolution: the windows' :class:`~weakseg.resolution.Resolution` (e.g. a bag's,
            :meth:`Resolution.from_bag_meta`); overrides ``level`` and ``mpp``.
        batch_size: windows per ``predict_tiles`` call.
        tissue_only: skip windows without tissue in a low-resolution tissue mask.
        map_downsample: window pixels per map pixel (window predictions are block-averaged).
        threshold: probability threshold of the mask, the overlay's predicted outline and the GeoJSON.
        slide_mpp: level-0 pixel size override for slides without one.
        slide_id: file stem of the outputs (default: the slide file name up to its first dot).
        overview_max_side: longer side of the thumbnail, tissue mask, overlay and GeoJSON raster.
        title: the overlay's title (default: the slide id); e.g. ``"<slide id> · <method>"``.
        truth_mask, truth_provider: a PANDA-style label mask of the slide (label in R) and its data
            provider: its cancer outline is drawn on the overlay (a mask that cannot be read is noted
            on the overlay, never an error).
        legend: ``False`` writes the bare blended image instead (thumbnail size, no legend).
    """
    if level is not None and mpp is not None:
        raise ValueError("pass either level or mpp, not both")
    slide_path, out_dir = Path(slide_path), Path(out_dir)
    slide_id = slide_id or slide_path.name.split(".")[0]
    with open_slide(slide_path, mpp_override=slide_mpp) as slide:
        res = resolution.validate(slide) if resolution is not None else Resolution.plan(slide, level, mpp)
        width, height = res.dimensions(slide)
        grid = StitchGrid(height, width, window, step, map_downsample)
        thumb = slide.thumbnail(overview_max_side)
        tissue = detect_tissue(thumb) if tissue_only else None
        # map pixels outside (slightly grown) tissue stay unpredicted: models never train on glass
        grown = ndimage.binary_dilation(tissue, iterations=1) if tissue is not None else None
        downsample = res.downsample * map_downsample
        level0_mpp = slide.mpp if slide.has_mpp else res.level0_mpp
        meta: dict[str, Any] = {
            "weakseg_map": 1,
            "slide": str(slide_path),
            "slide_id": slide_id,
            "level": res.level,
            "downsample": downsample,
            "mpp": level0_mpp * downsample if level0_mpp is not None else None,
            "resize": res.resize_factor(slide),
            "read_downsample": res.downsample,
            "read_mpp": level0_mpp * res.downsample if level0_mpp is not None else None,
            "window": window,
            "step": step,
            "map_downsample": map_downsample,
            "threshold": threshold,
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{slide_id}-") as scratch:
            base = Path(scratch) / "prob.raw"
            overview = _Overview(grid.out_shape, overview_max_side)
            reader = _WindowReader(slide, res, grid, predict_tiles, batch_size, tissue)
            with open(base, "wb") as sink, reader:
                for row0, values, covered in stream_stitch(grid, reader):
                    if grown is not None:
                        covered = covered & _tissue_rows(grown, row0, covered.shape, grid.out_shape)
                    u8 = _to_u8(values, covered)
                    sink.write(u8.tobytes())
                    overview.add(values, covered)
            meta.update(n_windows=reader.n_windows, n_predicted=reader.n_predicted, shape=list(grid.out_shape))
            paths = _paths(out_dir, slide_id)
            cut = int(round(threshold * 255))
            write_pyramid(paths["prob_tiff"], read_raw_strips(base, grid.out_shape), grid.out_shape, mpp=meta["mpp"], metadata=meta)
            mask_strips = (np.where(s >= cut, 255, 0).astype(np.uint8) for s in read_raw_strips(base, grid.out_shape))
            write_pyramid(paths["mask_tiff"], mask_strips, grid.out_shape, mpp=meta["mpp"], metadata=meta)
        prob, covered = overview.result()
        if legend:
            truth, notes = None, []
            if truth_mask:
                try:
                    truth = truth_outline(truth_mask, truth_provider, overview_max_side)
                except Exception as err:  # noqa: BLE001 - the outline is an aid, not a reason to lose the map
                    notes.append(f"ground truth unreadable: {type(err).__name__}")
            overlay_figure(paths["overlay_png"], thumb, prob, covered > 0, title=title or slide_id, truth=truth,
                           threshold=threshold, notes=notes)
        else:
            write_png(paths["overlay_png"], blend_overlay(thumb, prob, covered > 0))
        features = mask_to_features(prob >= threshold, downsample * overview.factor)
        write_geojson(paths["geojson"], features)
        meta["n_regions"] = len(features)
        result = SlideMap(
            slide_id=slide_id, downsample=downsample, shape=grid.out_shape,
            n_windows=reader.n_windows, n_predicted=reader.n_predicted, **paths,
        )
        atomic_write_text(paths["sidecar"], json.dumps({**meta, "files": {k: v.name for k, v in paths.items()}}, indent=2))
    return result


def _paths(out_dir: Path, slide_id: str) -> dict[str, Path]:
    suffixes = {"prob_tiff": ".prob.tif", "mask_tiff": ".mask.tif", "overlay_png": ".overlay.png", "geojson": ".geojson", "sidecar": ".json"}
    return {k: out_dir / f"{slide_id}{s}" for k, s in suffixes.items()}


def _tissue_rows(tissue: np.ndarray, row0: int, strip: tuple[int, int], out_shape: tuple[int, int]) -> np.ndarray:
    """The low-resolution ``tissue`` mask sampled (nearest) on map rows ``row0 … row0 + strip[0]``."""
    ty = ((np.arange(row0, row0 + strip[0]) + 0.5) * tissue.shape[0] / out_shape[0]).astype(np.int64)
    tx = ((np.arange(strip[1]) + 0.5) * tissue.shape[1] / out_shape[1]).astype(np.int64)
    return tissue[np.ix_(np.minimum(ty, tissue.shape[0] - 1), np.minimum(tx, tissue.shape[1] - 1))]


def _to_u8(values: np.ndarray, covered: np.ndarray) -> np.ndarray:
    return np.where(covered, np.rint(np.clip(values, 0, 1) * 255), 0).astype(np.uint8)


class _WindowReader:
    """The ``predict_band`` callable of :func:`stream_stitch`.

    A background thread reads the tissue windows of every band, in order, up to ``depth``
    batches ahead of the model (slide decoding and the model both release the GIL), so reading
    overlaps inference. Each run of adjacent windows is read as one strip of *level* pixels
    (the union of the windows' level boxes) whose rows shared with the previous band are copied
    rather than decoded again; every window is then cut out of its strip at its own level box
    and resized (when the resolution resizes) by the shared :class:`RegionReader`, so it holds
    exactly the pixels :meth:`RegionReader.read` (and the tiler) gives for that box. Use as a
    context manager: leaving it stops the thread.
    """

    _END = object()

    def __init__(
        self, slide: SlideReader, res: Resolution | int, grid: StitchGrid, predict_tiles: PredictTiles,
        batch_size: int, tissue: np.ndarray | None, depth: int = 2,
    ) -> None:
        if not isinstance(res, Resolution):  # a bare level, read as stored
            res = Resolution(int(res), slide.level_downsamples[int(res)])
        self.slide, self.res, self.grid = slide, res, grid
        self.predict_tiles, self.batch_size, self.tissue = predict_tiles, batch_size, tissue
        self.reader = RegionReader(slide, res)
        self.ds = res.downsample  # level-0 pixels per window pixel
        self.n_windows = self.n_predicted = 0
        if tissue is not None:
            w0, h0 = slide.dimensions
            self.tissue_scale = (tissue.shape[1] / w0, tissue.shape[0] / h0)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="weakseg-window-reader", daemon=True)

    def __enter__(self) -> _WindowReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)
        self._thread.join()
        self.reader.close()

    def _has_tissue(self, x: int, y: int) -> bool:
        if self.tissue is None:
            return True
        sx, sy = self.tissue_scale
        span = self.grid.window * self.ds
        x0, y0 = int(x * self.ds * sx), int(y * self.ds * sy)
        x1, y1 = math.ceil((x * self.ds + span) * sx), math.ceil((y * self.ds + span) * sy)
        return bool(self.tissue[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].any())

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.05)
                return True
        return False

    def _produce(self) -> None:
        w, b = self.grid.window, self.batch_size
        cache: list[tuple[int, int, np.ndarray]] = []
        prev_rows: tuple[int, int] | None = None
        try:
            for y in (int(v) for v in self.grid.ys):
                kept = np.array([x for x in self.grid.xs if self._has_tissue(int(x), y)], dtype=np.int64)
                fresh = []
                _, ly0, _, lh = self.reader.level_box(0, y, w, w)
                rows = (ly0, ly0 + lh)
                runs = np.split(kept, np.flatnonzero(np.diff(kept) != self.grid.step) + 1) if len(kept) else []
                for run in runs:
                    boxes = [self.reader.level_box(int(x), y, w, w) for x in run]
                    lx0, lx1 = boxes[0][0], max(bx + bw for bx, _, bw, _ in boxes)
                    strip = self._strip(rows, lx0, lx1, cache, prev_rows)
                    fresh.append((lx0, lx1, strip))
                    for lo in range(0, len(run), b):
                        chunk = run[lo : lo + b]
                        tiles = np.stack([
                            self.reader.fit(strip[:, bx - lx0 : bx - lx0 + bw], w, w)
                            for bx, _, bw, _ in boxes[lo : lo + b]
                        ])
                        if not self._put((y, chunk, tiles)):
                            return
                cache, prev_rows = fresh, rows
                if not self._put((y, None, self._END)):
                    return
        except BaseException as err:  # re-raised in the consumer
            self._put(err)

    def _strip(
        self, rows: tuple[int, int], x0: int, x1: int, cache: list[tuple[int, int, np.ndarray]],
        prev_rows: tuple[int, int] | None,
    ) -> np.ndarray:
        """Level rows ``rows`` x level columns ``[x0, x1)``; rows the previous band already read
        (its strips in ``cache``, level rows ``prev_rows``) are copied, so each level pixel is
        decoded about once."""
        y0, y1 = rows
        out = np.empty((y1 - y0, x1 - x0, 3), dtype=np.uint8)
        k = max(min(prev_rows[1], y1) - y0, 0) if prev_rows is not None else 0
        if k:
            top = y0 - prev_rows[0]  # first shared row inside the previous strips
            covered = np.zeros(x1 - x0, dtype=bool)
            for cx0, cx1, prev in cache:
                a, b = max(x0, cx0), min(x1, cx1)
                if a < b:
                    out[:k, a - x0 : b - x0] = prev[top : top + k, a - cx0 : b - cx0]
                    covered[a - x0 : b - x0] = True
            edges = np.flatnonzero(np.diff(np.concatenate([[1], covered.view(np.int8), [1]])))
            for g0, g1 in zip(edges[::2], edges[1::2]):
                out[:k, g0:g1] = self.reader.read_level(x0 + int(g0), y0, int(g1 - g0), k)
        if y1 - y0 > k:
            out[k:] = self.reader.read_level(x0, y0 + k, x1 - x0, y1 - y0 - k)
        return out

    def _next(self) -> tuple[int, np.ndarray | None, object]:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def __call__(self, y: int, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.n_windows += len(xs)
        w = self.grid.window
        kept, preds = [], []
        while True:
            band_y, batch, tiles = self._next()
            if band_y != y:
                raise RuntimeError(f"window reader out of step: got band {band_y}, expected {y}")
            if tiles is self._END:
                break
            out = np.asarray(self.predict_tiles(tiles), dtype=np.float32)
            if out.shape != (len(batch), w, w):
                raise ValueError(f"predict_tiles returned shape {out.shape} for {len(batch)} windows of {w} px; expected {(len(batch), w, w)}")
            if not np.isfinite(out).all():
                raise ValueError(f"predict_tiles returned non-finite values for windows at y={y}")
            kept.append(batch)
            preds.append(out)
        self.n_predicted += sum(len(b) for b in kept)
        if not kept:
            return np.empty(0, dtype=np.int64), np.empty((0, w, w), dtype=np.float32)
        return np.concatenate(kept), np.concatenate(preds)


class _Overview:
    """Block-mean accumulator of the streamed map at a small overview resolution."""

    def __init__(self, shape: tuple[int, int], max_side: int) -> None:
        self.factor = max(1, math.ceil(max(shape) / max_side))
        f = self.factor
        self.shape = shape
        oshape = (-(-shape[0] // f), -(-shape[1] // f))
        self.sum = np.zeros(oshape, dtype=np.float64)
        self.cov = np.zeros(oshape, dtype=np.float64)
        self.count = np.zeros(oshape, dtype=np.float64)
        self.row = 0

    def add(self, values: np.ndarray, covered: np.ndarray) -> None:
        f, w = self.factor, self.shape[1]
        pad = (-w) % f
        rows = (self.row + np.arange(len(values))) // f
        for arr, acc in ((np.where(covered, values, 0), self.sum), (covered, self.cov), (np.ones_like(values), self.count)):
            cols = np.pad(arr.astype(np.float64), ((0, 0), (0, pad))).reshape(len(arr), -1, f).sum(2)
            np.add.at(acc, rows, cols)
        self.row += len(values)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean probability over covered pixels, covered fraction)`` per overview pixel."""
        prob = np.divide(self.sum, self.cov, out=np.zeros_like(self.sum), where=self.cov > 0)
        return prob.astype(np.float32), (self.cov / self.count).astype(np.float32)
