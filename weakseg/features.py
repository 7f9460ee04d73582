"""Feature cache: per-tile encoder features stored in a sidecar file next to each bag.

Sidecar layout (``format`` ``weakseg-features/1``), ``<bag stem>.features.hdf5`` (HDF5; the
``.hdf5`` suffix keeps sidecars out of bag listings, which match ``*.h5``):

file attributes
    ``format``, ``bag`` (bag file name), ``n_tiles``.
``/<key>/features``
    float32 ``(n_tiles, dim)``, row ``i`` = tile ``i`` of the bag (same order as ``coords``).
``/<key>`` attributes
    ``encoder`` (registry or timm name), ``checkpoint`` (path given, or ``""``),
    ``checkpoint_sha256`` (first 16 hex digits, or ``random-init-seed<N>``), ``preprocessing``
    (JSON: input size, mean, std, channel order), ``dim``, ``n_tiles``, ``complete``.

``key`` is ``<encoder>-<10 hex digits>``, a hash of the encoder name, the preprocessing and the
weights' digest, so several encoders (or checkpoints) coexist in one sidecar. Every write copies
the sidecar to a temporary sibling, adds the group and renames it into place (atomic); a bag whose
key is already complete is skipped, so an interrupted ``weakseg embed`` resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np
import torch

from .atomic import atomic_path
from .bags import Bag, list_bags, read_rows
from .encoders import checkpoint_digest, create_encoder, normalize_images, resolve_weights
from .errors import BagError

T = TypeVar("T")
FEATURES_FORMAT = "weakseg-features/1"
SIDECAR_SUFFIX = ".features.hdf5"


def sidecar_path(bag_path: str | os.PathLike) -> Path:
    """``<dir>/<bag stem>.features.hdf5`` for the bag at ``bag_path``."""
    p = Path(bag_path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def is_sidecar(path: str | os.PathLike) -> bool:
    return Path(path).name.endswith(SIDECAR_SUFFIX)


def feature_key(encoder: str, preprocessing: dict[str, Any], digest: str) -> str:
    """Cache key of one encoder configuration (see module doc)."""
    blob = json.dumps({"encoder": encoder, "preprocessing": preprocessing, "weights": digest}, sort_keys=True)
    return f"{encoder.replace('/', '_')}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def list_feature_keys(bag_path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Complete feature sets of a bag: ``{key: attributes}`` (empty when there is no sidecar)."""
    side = sidecar_path(bag_path)
    if not side.is_file():
        return {}
    with h5py.File(side, "r") as f:
        return {k: dict(g.attrs) for k, g in f.items() if g.attrs.get("complete", False)}


def resolve_feature_key(bag_path: str | os.PathLike, key: str | None = None) -> str:
    """``key`` if the bag has it; with ``key=None`` the bag's only feature set."""
    keys = list_feature_keys(bag_path)
    side = sidecar_path(bag_path)
    if not keys:
        raise BagError(f"{side}: no cached features for bag {Path(bag_path).name}; run `weakseg embed` first")
    if key is None:
        if len(keys) > 1:
            raise BagError(f"{side}: several feature sets {sorted(keys)}; choose one with feature_key=")
        return next(iter(keys))
    if key not in keys:
        raise BagError(f"{side}: no feature set {key!r} (available: {', '.join(sorted(keys))})")
    return key


def read_features(bag_path: str | os.PathLike, key: str | None = None,
                  idx: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """float32 ``(k, dim)`` features of tiles ``idx`` (all when ``None``) from the bag's sidecar."""
    key = resolve_feature_key(bag_path, key)
    with h5py.File(sidecar_path(bag_path), "r") as f:
        return read_rows(f[key]["features"], idx)


@dataclass(frozen=True)
class EmbedResult:
    """Outcome of embedding one bag: ``status`` is ``"written"`` or ``"skipped"`` (already cached)."""

    bag: Path
    sidecar: Path
    key: str
    status: str


class FeatureExtractor:
    """An encoder in eval mode plus the preprocessing that defines its cache key."""

    def __init__(self, encoder: str, *, pretrained_path: str | os.PathLike | None = None, random_init: bool = False,
                 tile_size: int = 224, device: str = "cpu", seed: int = 0) -> None:
        self.name = encoder
        self.checkpoint = None if pretrained_path is None else Path(pretrained_path)
        weights = None if random_init and pretrained_path is None else resolve_weights(encoder, pretrained_path)
        torch.manual_seed(seed)
        self.module = create_encoder(encoder, in_chans=3, input_size=tile_size, pretrained_path=weights,
                                     random_init=weights is None).to(device).eval()
        if self.module.input_kind != "image":
            raise BagError(f"encoder {encoder!r} does not take images; choose an image encoder to embed tiles")
        self.device = torch.device(device)
        self.digest = checkpoint_digest(weights) if weights is not None else f"random-init-seed{seed}"
        self.preprocessing = {"input_size": tile_size, "mean": list(self.module.mean), "std": list(self.module.std),
                              "channels": "RGB", "scale": "1/255"}
        self.key = feature_key(encoder, self.preprocessing, self.digest)

    @torch.inference_mode()
    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        x = normalize_images(torch.from_numpy(np.ascontiguousarray(tiles)).to(self.device), self.module)
        return self.module(x).float().cpu().numpy()


def prefetch(batches: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``batches``, produced by a background thread up to ``depth`` ahead of the consumer.

    The bag's HDF5 reads and JPEG decoding (which release the GIL) then overlap the encoder's forward
    pass; an error in the producer is raised in the consumer at its place in the sequence.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((end, None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            q.put((end, err))

    thread = threading.Thread(target=produce, name="weakseg-embed-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


def embed_bag(bag_path: str | os.PathLike, extractor: FeatureExtractor, *, batch_size: int = 64,
              overwrite: bool = False) -> EmbedResult:
    """Write ``extractor``'s features of every tile of one bag into its sidecar (atomic, resumable)."""
    bag_path = Path(bag_path)
    side = sidecar_path(bag_path)
    if not overwrite and extractor.key in list_feature_keys(bag_path):
        return EmbedResult(bag_path, side, extractor.key, "skipped")
    with Bag(bag_path) as bag:
        if bag.tile_size != extractor.preprocessing["input_size"]:
            raise BagError(f"{bag_path}: tile size {bag.tile_size} differs from the extractor's "
                           f"{extractor.preprocessing['input_size']}")
        with contextlib.closing(prefetch(bag.iter_tiles(batch_size))) as batches:  # stopped before the bag closes
            feats = [extractor(tiles) for _, tiles in batches]
        n = len(bag)
    dim = extractor.module.out_dim
    arr = np.concatenate(feats).astype(np.float32) if feats else np.zeros((0, dim), np.float32)
    with atomic_path(side, suffix=".h5") as tmp:
        if side.is_file():
            shutil.copyfile(side, tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs.update({"format": FEATURES_FORMAT, "bag": bag_path.name, "n_tiles": n})
            if extractor.key in f:
                del f[extractor.key]
            g = f.create_group(extractor.key)
            g.create_dataset("features", data=arr, chunks=(min(max(n, 1), 256), dim) if n else None)
            g.attrs.update({
                "encoder": extractor.name,
                "checkpoint": "" if extractor.checkpoint is None else str(extractor.checkpoint),
                "checkpoint_sha256": extractor.digest,
                "preprocessing": json.dumps(extractor.preprocessing, sort_keys=True),
                "dim": dim, "n_tiles": n, "complete": True,
            })
    return EmbedResult(bag_path, side, extractor.key, "written")


#: ``<bag folder>/features.csv``: one row per bag and feature key, merged across shards, workers and reruns
EMBED_STATUS_CSV = "features.csv"
EMBED_STATUS_COLUMNS = ("bag", "key", "encoder", "status", "n_tiles", "error", "seconds", "device")


def embed_bags(
    bags: str | os.PathLike | Sequence[str | os.PathLike],
    encoder: str,
    *,
    pretrained_path: str | os.PathLike | None = None,
    random_init: bool = False,
    batch_size: int = 64,
    device: str = "cpu",
    seed: int = 0,
    overwrite: bool = False,
    on_bag: Callable[[EmbedResult], None] | None = None,
    failures: list[tuple[Path, str]] | None = None,
    shard: str | tuple[int, int] | None = None,
    workers: int = 1,
    devices: str | Sequence[str] | None = None,
) -> list[EmbedResult]:
    """Embed every bag of a folder (or list) with ``encoder``; already cached bags are skipped.

    Weights come from ``pretrained_path`` or the offline timm/Hugging Face caches; ``random_init=True``
    must be passed explicitly to embed with untrained weights.

    ``failures``: when given, a bag that cannot be embedded (unreadable, an undecodable tile, another
    tile size, a sidecar that cannot be written) is appended as ``(path, message)`` and the others are
    still embedded; otherwise its error propagates. A failed bag gets no new feature set.
    Errors of the encoder itself (name, checkpoint) always propagate.

    At scale (:mod:`weakseg.sharding`): ``shard="i/n"`` embeds the bags whose file stem (= slide id)
    hashes to ``i`` mod ``n`` (the slides of the tiler's ``--shard``); ``devices`` (``"0,1"``,
    ``"cpu,cpu"``; default ``[device]``) / ``workers`` run one worker process per entry, each with its own copy of the encoder. Each bag's outcome is merged into
    ``<bag folder>/features.csv`` (``bag, key, encoder, status`` = ``written``/``skipped``/``failed``, …)
    under a file lock; a bag already embedded keeps its ``written`` row.
    """
    from .sharding import as_shard, parse_devices, run_workers, take_shard

    paths = [Path(p) for p in bags] if isinstance(bags, (list, tuple)) else list_bags(bags)
    paths = [p for p in paths if not is_sidecar(p)]
    if not paths:
        raise BagError(f"{bags}: no bags to embed")
    paths = take_shard(paths, as_shard(shard), key=lambda p: p.stem)
    device_list = parse_devices(devices, workers, default=device)
    if not paths:  # a shard with nothing to do (more shards than bags)
        return []
    tile_size = None
    for p in paths:  # the first readable bag sets the tile size (with failures collected, bad ones are recorded below)
        try:
            with Bag(p) as first:
                tile_size = first.tile_size
            break
        except Exception:
            if failures is None:
                raise
    if tile_size is None:  # no bag could be opened: nothing can be done
        with Bag(paths[0]):
            pass
        raise BagError(f"{bags}: no readable bags to embed")  # pragma: no cover - Bag() raised above
    init_args = (encoder, None if pretrained_path is None else str(pretrained_path), random_init, tile_size, seed,
                 batch_size, overwrite)
    results: list[EmbedResult] = []
    errors: list[tuple[Path, str]] = []

    def collect(outcome: tuple[str, Any]) -> None:
        kind, value = outcome
        if kind == "failed":
            errors.append(value)
            if failures is None:
                return
            failures.append(value)
            return
        results.append(value)
        if on_bag is not None:
            on_bag(value)

    if len(device_list) == 1:  # one worker: this process
        state = _embed_init(device_list[0], *init_args)
        for p in paths:
            outcome = _embed_task(state, p, raise_errors=failures is None)
            collect(outcome)
        return results

    def lost(idx: int, reason: str) -> None:
        _record_embed(paths[idx], {"bag": paths[idx].name, "encoder": encoder, "status": "failed", "error": reason})
        collect(("failed", (paths[idx], f"{paths[idx]}: {reason}")))

    run_workers(paths, _embed_init, _embed_task, device_list, init_args=init_args,
                on_done=lambda _, outcome: collect(outcome), on_lost=lost)
    if errors and failures is None:
        bag, message = errors[0]
        raise BagError(message if str(bag) in message else f"{bag}: {message}")
    return results


def _embed_init(device: str, encoder: str, pretrained_path: str | None, random_init: bool, tile_size: int, seed: int,
                batch_size: int, overwrite: bool) -> tuple[FeatureExtractor, int, bool]:
    """Worker set-up (:func:`weakseg.sharding.run_workers`): the encoder on ``device``, built once."""
    extractor = FeatureExtractor(encoder, pretrained_path=pretrained_path, random_init=random_init,
                                 tile_size=tile_size, device=device, seed=seed)
    return extractor, batch_size, overwrite


def _embed_task(state: tuple[FeatureExtractor, int, bool], path: Path, *,
                raise_errors: bool = False) -> tuple[str, Any]:
    """Embed one bag and merge its row into ``features.csv``: ``("ok", EmbedResult)`` or ``("failed", (path, message))``."""
    import time

    extractor, batch_size, overwrite = state
    t0 = time.perf_counter()
    row = {"bag": path.name, "key": extractor.key, "encoder": extractor.name, "device": str(extractor.device)}
    try:
        res = embed_bag(path, extractor, batch_size=batch_size, overwrite=overwrite)
    except Exception as err:  # one bad bag never stops the others (when the caller collects failures)
        message = " ".join(str(err).split()) or type(err).__name__
        row.update(status="failed", error=message, seconds=f"{time.perf_counter() - t0:.2f}")
        _record_embed(path, row)
        if raise_errors:
            raise
        return "failed", (path, message)
    n = list_feature_keys(path).get(extractor.key, {}).get("n_tiles", "")
    row.update(status=res.status, n_tiles=n, seconds=f"{time.perf_counter() - t0:.2f}")
    _record_embed(path, row, keep_existing=res.status == "skipped")
    return "ok", res


def _record_embed(path: Path, row: dict[str, Any], *, keep_existing: bool = False) -> None:
    from .sharding import merge_rows

    row = {**row, "key": row.get("key", "")}
    # the row of a worker that died (no key known then) goes when the bag is done
    stale = (lambda r: r.get("bag") == row["bag"] and not r.get("key")) if row["key"] else None
    with contextlib.suppress(OSError):  # a read-only bag folder: the sidecar write failed already, or it is cached
        merge_rows(path.parent / EMBED_STATUS_CSV, [row], ("bag", "key"), EMBED_STATUS_COLUMNS,
                   keep_existing=keep_existing, forget=stale)
