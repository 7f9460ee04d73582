"""Work past one process: shards of a cohort, one worker process per device, per-item status tables.

One implementation for ``weakseg tile``, ``weakseg embed`` and ``weakseg predict``:

- :func:`parse_shard` / :func:`take_shard`: ``--shard i/n`` takes the items whose key (slide id; a
  bag's file stem) hashes to ``i`` modulo ``n`` (:func:`shard_of`). The assignment depends on each
  key alone, so the n tasks of a Slurm array cover every item exactly once whatever each task's
  working folder, listing order, or which bags other tasks have written so far.
- :func:`parse_devices`: ``--devices 0,1,2,3`` (CUDA ordinals), ``cpu,cpu``, ``cuda:1`` ..., and
  ``--workers N`` (N workers spread round-robin over the devices).
- :func:`run_workers`: one spawned process per device entry, items handed out from one queue
  (dynamic: a slow slide never holds up the others). A worker that dies (killed, out of memory,
  a crash in native code) loses only its item in flight, which is reported to ``on_lost``; a fresh
  worker takes its place. Each worker loads its model once (``init``).
- :func:`merge_rows`: upsert rows into a CSV under an exclusive file lock (``.<name>.lock``, the
  kernel drops it when its holder dies) and rewrite it atomically, like the tiler's ``manifest.csv``:
  concurrent shards and workers writing one folder never lose each other's rows, and a killed
  writer leaves the previous complete file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import multiprocessing as mp
import hashlib
import os
import multiprocessing.connection  # noqa: F401  (mp.connection.wait)
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .atomic import atomic_write_text, file_lock
from .errors import WeaksegError

T = TypeVar("T")


# -- shards ------------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0 ≤ i < n) → ``(i, n)``."""
    try:
        i, n = (int(p) for p in str(text).split("/"))
    except ValueError:
        raise WeaksegError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise WeaksegError(f"--shard {text}: need 0 <= i < n")
    return i, n


def as_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"``, ``(i, n)`` or ``None`` → ``(i, n)`` or ``None`` (validated)."""
    if shard is None:
        return None
    if isinstance(shard, str):
        return parse_shard(shard)
    i, n = (int(v) for v in shard)
    return parse_shard(f"{i}/{n}")


def shard_of(key: object, n: int) -> int:
    """The shard (of ``n``) that ``key`` belongs to: BLAKE2b-64 of ``str(key)`` modulo ``n``.

    It depends on the key alone, not on which other items exist: the tiler's shard 3/64 and the
    embedder's shard 3/64 hold the same slides even while other tasks are still writing bags, and a
    slide that failed to tile shifts no other slide to another shard (as every-n-th-of-a-sorted-list
    would). A cryptographic hash, not CRC-32: CRC is linear, so ids that differ in a few bits
    (``slide0`` … ``slide3``) can all land in one shard.
    """
    digest = hashlib.blake2b(str(key).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def take_shard(items: Iterable[T], shard: str | tuple[int, int] | None, key: Callable[[T], Any] = str) -> list[T]:
    """The items of shard ``i`` of ``n`` (:func:`shard_of` of ``key(item)`` is ``i``), sorted by ``key``
    (all of them, sorted, without a shard)."""
    chosen = sorted(items, key=key)
    parsed = as_shard(shard)
    if parsed is None:
        return chosen
    i, n = parsed
    return [item for item in chosen if shard_of(key(item), n) == i]


# -- devices -----------------------------------------------------------------------------------
def parse_devices(devices: str | Sequence[str] | None, workers: int = 1, default: str = "cpu") -> list[str]:
    """One torch device per worker process.

    ``devices``: ``"0,1,2,3"`` (CUDA ordinals → ``cuda:0`` …), ``"cpu,cpu"``, ``"cuda:0,cuda:1"`` or a
    list of those; ``None`` → ``[default]``. ``workers`` (≥ 1): that many workers spread round-robin
    over the devices; a device list longer than ``workers`` gives one worker per device.
    """
    if workers < 1:
        raise WeaksegError(f"--workers must be ≥ 1, got {workers}")
    if devices is None or (isinstance(devices, str) and not devices.strip()):
        names = [default]
    else:
        parts = devices.split(",") if isinstance(devices, str) else list(devices)
        names = []
        for part in (str(p).strip() for p in parts):
            if not part:
                raise WeaksegError(f"--devices: empty entry in {devices!r}")
            if part.isdigit():
                part = f"cuda:{part}"
            kind = part.split(":")[0]
            if kind not in ("cpu", "cuda", "mps", "xpu"):
                raise WeaksegError(f"--devices: {part!r} is not a device (use e.g. 0,1 or cuda:0 or cpu,cpu)")
            names.append(part)
    n = max(workers, len(names))
    return [names[k % len(names)] for k in range(n)]


def cpu_threads(devices: Sequence[str]) -> int:
    """Torch threads per CPU worker: the machine's cores shared by the CPU workers (at least 1)."""
    n_cpu = sum(1 for d in devices if d.split(":")[0] == "cpu")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, n_cpu))


# -- worker processes ----------------------------------------------------------------------------
def _worker_main(init: Callable, init_args: tuple, work: Callable, device: str, threads: int, wid: int,
                 tasks: Any, results: Any) -> None:  # pragma: no cover - runs in the spawned child
    if device.split(":")[0] == "cpu":
        with contextlib.suppress(Exception):
            import torch

            torch.set_num_threads(threads)
    try:
        state = init(device, *init_args)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("init_error", wid, None, _picklable(err)))
        return
    results.put(("ready", wid, None, None))
    while True:
        task = tasks.get()
        if task is None:
            break
        idx, item = task
        results.put(("start", wid, idx, None))
        try:
            payload = work(state, item)
        except BaseException as err:  # noqa: BLE001 - the item is reported lost, the worker goes on
            results.put(("error", wid, idx, f"{type(err).__name__}: {err}"))
            continue
        results.put(("done", wid, idx, payload))


def _picklable(err: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001
        return WeaksegError(f"{type(err).__name__}: {err}")


def run_workers(
    items: Sequence[T],
    init: Callable[..., Any],
    work: Callable[[Any, T], Any],
    devices: Sequence[str],
    *,
    init_args: tuple = (),
    on_done: Callable[[int, Any], None] | None = None,
    on_lost: Callable[[int, str], None] | None = None,
    poll: float = 0.2,
) -> None:
    """Run ``work(init(device, *init_args), item)`` for every item, one spawned process per entry of ``devices``.

    ``init`` and ``work`` must be module-level functions (they are pickled by name). ``work`` should
    catch the item's own errors and return a payload; ``on_done(index, payload)`` runs in this process.
    An item whose worker raised or died is passed to ``on_lost(index, reason)``; a worker that died is
    replaced. An ``init`` error (e.g. a missing CUDA device or weight file) is raised here.
    """
    if not items:
        return
    ctx = mp.get_context("spawn")  # CUDA and threads do not survive fork
    # results: a SimpleQueue writes each message to the pipe before ``put`` returns (no feeder thread), so a
    # worker killed right after reporting an item has reported it
    tasks, results = ctx.Queue(), ctx.SimpleQueue()
    for idx, item in enumerate(items):
        tasks.put((idx, item))
    threads = cpu_threads(devices)
    procs: dict[int, tuple[Any, str]] = {}
    n_started = 0
    max_started = len(devices[: len(items)]) + len(items)  # a worker that keeps dying is not restarted forever

    def start(device: str) -> None:
        nonlocal n_started
        wid = n_started
        n_started += 1
        proc = ctx.Process(target=_worker_main, args=(init, init_args, work, device, threads, wid, tasks, results),
                           name=f"weakseg-worker-{wid}", daemon=True)
        proc.start()
        procs[wid] = (proc, device)
        tasks.put(None)  # one stop sign per worker, behind every item

    for device in devices[: len(items)]:
        start(device)
    pending = set(range(len(items)))
    inflight: dict[int, int] = {}
    ready: set[int] = set()

    def handle(msg: tuple) -> None:
        kind, wid, idx, payload = msg
        if kind == "init_error":
            raise payload
        if kind == "ready":
            ready.add(wid)
            return
        if kind == "start":
            inflight[wid] = idx
            return
        inflight.pop(wid, None)
        if idx not in pending:
            return
        pending.discard(idx)
        if kind == "done":
            if on_done is not None:
                on_done(idx, payload)
        elif on_lost is not None:
            on_lost(idx, str(payload))

    try:
        while pending:
            if not results.empty():
                handle(results.get())
                continue
            for wid, (proc, device) in list(procs.items()):
                if proc.is_alive():
                    continue
                while not results.empty():  # its last messages are in the pipe
                    handle(results.get())
                del procs[wid]
                proc.join()
                if wid not in ready:  # died while starting (an import error, a broken environment)
                    if not procs:
                        raise WeaksegError(f"worker processes on {device} did not start (exit code {proc.exitcode}); "
                                           "see the messages above")
                    continue
                idx = inflight.pop(wid, None)
                if idx is not None and idx in pending:
                    pending.discard(idx)
                    if on_lost is not None:
                        on_lost(idx, f"worker on {device} died (exit code {proc.exitcode}) while on this item")
                if proc.exitcode != 0 and pending and n_started < max_started:
                    start(device)
            if pending and procs:
                mp.connection.wait([results._reader], timeout=poll)  # noqa: SLF001 - SimpleQueue has no get(timeout)
            if not procs and pending:  # every worker gone with items unaccounted for
                for idx in sorted(pending):
                    if on_lost is not None:
                        on_lost(idx, "no worker took this item (workers died)")
                pending.clear()
    finally:
        for proc, _ in procs.values():
            if proc.is_alive():
                proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        tasks.close()
        results.close()


# -- status tables -------------------------------------------------------------------------------
def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV written by :func:`merge_rows` (empty when absent)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def write_rows(path: str | os.PathLike, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """Write ``rows`` as CSV atomically (missing columns empty, extra keys ignored)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else str(row.get(c)) for c in columns})
    atomic_write_text(path, buf.getvalue())


def lock_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def merge_rows(
    path: str | os.PathLike,
    rows: Iterable[dict[str, Any]],
    key: Sequence[str],
    columns: Sequence[str],
    *,
    forget: Callable[[dict[str, str]], bool] | None = None,
    keep_existing: bool = False,
    after: Callable[[list[dict[str, str]]], None] | None = None,
    sort_key: Callable[[tuple[str, ...]], Any] | None = None,
) -> list[dict[str, str]]:
    """Upsert ``rows`` into the CSV at ``path`` under its lock; rows are sorted by ``key``
    (or by ``sort_key`` of the key tuple). The one locked-CSV merge of weakseg: the tiler's
    ``manifest.csv``, predict's ``status.csv`` and embed's ``features.csv`` all go through it.

    ``forget`` drops existing rows first; ``keep_existing`` adds only rows whose key is new;
    ``after(all_rows)`` runs still under the lock (to rewrite views of the table, e.g. ``slides.csv``).
    Returns the merged rows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_path(path)):
        old = read_rows(path)
        table = {tuple(r.get(k, "") for k in key): r for r in old}
        if forget is not None:
            table = {k: r for k, r in table.items() if not forget(r)}
        for row in rows:
            clean = {c: "" if row.get(c) is None else str(row.get(c)) for c in columns}
            k = tuple(clean[c] for c in key)
            if keep_existing and k in table:
                continue
            table[k] = clean
        merged = [table[k] for k in sorted(table, key=sort_key)]
        if not path.is_file() or merged != old or (old and list(old[0]) != list(columns)):  # a rerun that
            write_rows(path, merged, columns)  # skips everything rewrites nothing
        if after is not None:
            after(merged)
    return merged


__all__ = [
    "as_shard",
    "cpu_threads",
    "merge_rows",
    "parse_devices",
    "parse_shard",
    "read_rows",
    "run_workers",
    "shard_of",
    "take_shard",
    "write_rows",
]
