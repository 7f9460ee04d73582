"""The pseudo-label refinement loop (self-training), generic over learners.

Round ``k`` fits a fresh copy of the learner on the round's label bags, predicts every training
tile, and lets a :class:`~weakseg.refine.policy.LabelPolicy` write the next round's labels;
fixed pixels (given positives, negative slides, background) never change. It stops after
``rounds`` fits or once fewer than ``tol`` of the free tissue pixels changed label.

Run directory::

    run_dir/rounds.csv                      one row per round (rewritten after each round)
    run_dir/rounds/r{k}/labels/<slide>.h5   labels that round k trained on (see weakseg.refine.labels)
    run_dir/rounds/r{k}/learner.pt          the round's fitted learner (learners with ``save``)

``rounds.csv`` columns: ``round``, ``dice_labels`` / ``coverage`` (the round's labels: cancer
Dice against the ground truth, counting ignored pixels as not positive; fraction of tissue
labelled), ``dice_pred`` / ``iou_pred`` / ``ap_pred`` (the fitted model on the training bags,
pooled), ``changed`` (fraction of free tissue pixels whose label differs in the next round),
``n_free``. Ground-truth columns are empty when the bags have no masks.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..atomic import atomic_write_text
from ..capabilities import learner_tags
from ..bags import Bag, list_bags
from ..errors import WeaksegError
from ..metrics.seg import SlideCounts, SlideTruth, slide_counts
from ..panda import to_common_labels
from .labels import label_bag_writer, read_pseudo_labels
from .policy import IGNORE, N_BINS, NEGATIVE, POSITIVE, LabelPolicy, ThresholdPolicy, initial_targets, relabel

ROUNDS_CSV = "rounds.csv"
#: ``(bag, tile indices, uint8 tiles) -> uint8 (k, T, T)`` round-0 targets (see :func:`refine`)
InitialLabels = Callable[[Bag, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class RefineResult:
    """The last fitted learner, the per-round table and each round's label folder."""

    learner: Any
    rounds: pd.DataFrame
    label_dirs: list[Path] = field(default_factory=list)


def refine(
    learner: Any,
    bags: str | os.PathLike | Sequence[str | os.PathLike],
    run_dir: str | os.PathLike,
    *,
    policy: LabelPolicy | None = None,
    rounds: int = 3,
    tol: float = 0.01,
    batch_size: int = 32,
    fit_params: dict[str, Any] | None = None,
    on_round: Callable[[dict[str, float]], None] | None = None,
    initial: InitialLabels | None = None,
) -> RefineResult:
    """Refine pseudo-labels over ``rounds`` fits of ``learner`` (see module doc).

    Args:
        learner: an unfitted estimator with ``fit(paths, **fit_params)`` and either
            ``predict_tiles(uint8 (B, T, T, 3)) -> (B, T, T)`` or ``instance_scores(bag) -> (N,)``,
            both probabilities in [0, 1]. Each round fits a fresh copy (``get_params`` or deepcopy).
        bags: weak bags (``weakseg weaken``: ``pu`` or ``slide`` supervision), a folder or a list.
        run_dir: output folder.
        policy: label policy (default ``ThresholdPolicy(0.7, 0.3)``).
        rounds: maximum number of fits (>= 1).
        tol: stop when the fraction of free tissue pixels changing label falls below this.
        batch_size: tiles per prediction call.
        fit_params: extra keyword arguments of ``fit``.
        on_round: called with each round's row.
        initial: round-0 targets ``(bag, idx, tiles) -> uint8 (k, T, T)`` (1 / 0 / 255) for the
            free pixels, e.g. MIL tile scores made into pseudo-masks; fixed pixels keep those of
            :func:`initial_targets`. Default: :func:`initial_targets`.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    policy = policy or ThresholdPolicy()
    paths = list_bags(bags) if isinstance(bags, (str, os.PathLike)) else [Path(p) for p in bags]
    if not paths:
        raise WeaksegError(f"{bags}: no bags to refine")
    run_dir = Path(run_dir)
    sources = [Bag(p) for p in paths]
    try:
        ids = [b.slide_id for b in sources]
        if len(set(ids)) != len(ids):
            raise WeaksegError(f"{bags}: duplicate slide ids among the bags")
        label_dirs = [_round_dir(run_dir, 0)]
        label_stats = _write_initial(sources, label_dirs[0], batch_size, initial)
        rows: list[dict[str, float]] = []
        model = None
        for k in range(rounds):
            model = _fresh(learner).fit([label_dirs[k] / f"{i}.h5" for i in ids], **(fit_params or {}))
            if callable(getattr(model, "save", None)):
                model.save(label_dirs[k].parent / "learner.pt")
            label_dirs.append(_round_dir(run_dir, k + 1))
            pred_counts, next_stats, changed, n_free = _relabel_round(model, sources, label_dirs[k], label_dirs[k + 1], policy, k + 1, batch_size)
            row = {"round": k, **_label_scores(label_stats), **_pred_scores(pred_counts),
                   "changed": changed / n_free if n_free else 0.0, "n_free": n_free}
            rows.append(row)
            atomic_write_text(run_dir / ROUNDS_CSV, pd.DataFrame(rows).to_csv(index=False))
            if on_round is not None:
                on_round(row)
            label_stats = next_stats
            if row["changed"] < tol:
                break
        return RefineResult(model, pd.DataFrame(rows), label_dirs)
    finally:
        for bag in sources:
            bag.close()


def _round_dir(run_dir: Path, k: int) -> Path:
    d = run_dir / "rounds" / f"r{k}" / "labels"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _fresh(learner: Any) -> Any:
    """An unfitted copy (:func:`sklearn.base.clone`; a deep copy of an object that is not an estimator)."""
    from sklearn.base import clone

    return clone(learner, safe=False)


def _batches(bag: Bag, batch_size: int):
    for lo in range(0, len(bag), batch_size):
        yield np.arange(lo, min(lo + batch_size, len(bag)))


def _truth(bag: Bag, idx: np.ndarray, tissue: np.ndarray) -> SlideTruth | None:
    if not bag.has_masks:
        return None
    labels = to_common_labels(bag.read_masks(idx), bag.meta.data_provider)
    return SlideTruth(bag.slide_id, labels, tissue=tissue, provider=bag.meta.data_provider, label=bag.label)


def _label_counts(labels: np.ndarray, tissue: np.ndarray, truth: SlideTruth | None) -> dict[str, Any]:
    stats: dict[str, Any] = {"labelled": int(np.sum(tissue & (labels != IGNORE))), "tissue": int(np.sum(tissue))}
    if truth is not None:
        stats["counts"] = slide_counts((labels == POSITIVE).astype(np.float32), truth)
    return stats


def _merge(stats: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"labelled": sum(s["labelled"] for s in stats), "tissue": sum(s["tissue"] for s in stats)}
    counts = [s["counts"] for s in stats if "counts" in s]
    if counts and len(counts) == len(stats):
        out["counts"] = _sum_counts(counts)
    return out


def _sum_counts(counts: list[SlideCounts]) -> SlideCounts:
    total = counts[0]
    for c in counts[1:]:
        total = total + c
    return total


def _label_scores(stats: dict[str, Any]) -> dict[str, float]:
    dice = stats["counts"].scores()["dice_cancer"] if "counts" in stats else float("nan")
    return {"dice_labels": dice, "coverage": stats["labelled"] / stats["tissue"] if stats["tissue"] else float("nan")}


def _pred_scores(counts: SlideCounts | None) -> dict[str, float]:
    if counts is None:
        return {"dice_pred": float("nan"), "iou_pred": float("nan"), "ap_pred": float("nan")}
    s = counts.scores()
    return {"dice_pred": s["dice_cancer"], "iou_pred": s["iou_cancer"], "ap_pred": s["ap_cancer"]}


def _write_initial(sources: list[Bag], out: Path, batch_size: int, initial: InitialLabels | None) -> dict[str, Any]:
    stats = []
    for bag in sources:
        with label_bag_writer(bag, out / f"{bag.slide_id}.h5", 0) as ds:
            for idx in _batches(bag, batch_size):
                read = initial is not None or "pu_labels" not in bag.h5
                tiles = bag.read_tiles(idx) if read else np.empty((len(idx), 0, 0, 3), np.uint8)
                targets, fixed = initial_targets(bag, idx, tiles)
                tissue = targets != IGNORE
                if initial is not None:
                    custom = np.asarray(initial(bag, idx, tiles))
                    if custom.shape != targets.shape or not np.isin(custom, (NEGATIVE, POSITIVE, IGNORE)).all():
                        raise WeaksegError(f"{bag.path}: initial labels of tiles {idx[0]}..{idx[-1]} must be "
                                           f"uint8 {targets.shape} with values 0, 1 or 255")
                    targets = np.where(fixed, targets, custom).astype(np.uint8)
                ds[idx[0] : idx[-1] + 1] = targets
                stats.append(_label_counts(targets, tissue, _truth(bag, idx, tissue)))
    return _merge(stats)


def _predict(model: Any, bag: Bag) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``(idx, tiles) -> (k, T, T)`` probabilities from ``predict_tiles`` or broadcast ``instance_scores``."""
    if learner_tags(model).pixel_maps:
        return lambda idx, tiles: np.asarray(model.predict_tiles(tiles), dtype=np.float32)
    if learner_tags(model).instance_scores:
        scores = np.asarray(model.instance_scores(bag), dtype=np.float32)
        t = bag.tile_size
        return lambda idx, tiles: np.broadcast_to(scores[idx, None, None], (len(idx), t, t))
    raise WeaksegError(f"{type(model).__name__} declares neither predict_tiles nor instance_scores "
                       "(weakseg.capabilities.PixelPredictorMixin / InstanceScorerMixin)")


def _relabel_round(
    model: Any, sources: list[Bag], current: Path, out: Path, policy: LabelPolicy, round_index: int, batch_size: int
) -> tuple[SlideCounts | None, dict[str, Any], int, int]:
    """Predict every bag, pick thresholds, write the next labels; return counts and change stats."""
    pred_counts: list[SlideCounts] = []
    stats: list[dict[str, Any]] = []
    changed = n_free = 0
    for bag in sources:
        predict = _predict(model, bag)
        with Bag(current / f"{bag.slide_id}.h5") as cur, tempfile.TemporaryDirectory(dir=out) as scratch:
            with h5py.File(Path(scratch) / "prob.h5", "w") as probs:
                t = bag.tile_size
                ds = probs.create_dataset("p", (len(bag), t, t), dtype=np.uint8, chunks=(1, t, t))
                hist = np.zeros(N_BINS, dtype=np.int64)
                for idx in _batches(bag, batch_size):
                    tiles = bag.read_tiles(idx)
                    p = predict(idx, tiles)
                    if p.shape != (len(idx), t, t) or not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
                        raise WeaksegError(f"{type(model).__name__}: predictions for {bag.path} must be finite "
                                           f"probabilities of shape {(len(idx), t, t)}")
                    u8 = np.rint(p * 255).astype(np.uint8)
                    ds[idx[0] : idx[-1] + 1] = u8
                    targets, fixed = initial_targets(bag, idx, tiles)
                    free = ~fixed
                    hist += np.bincount(u8[free], minlength=N_BINS)
                    truth = _truth(bag, idx, targets != IGNORE)
                    if truth is not None:
                        pred_counts.append(slide_counts(p, truth))
                hi, lo = policy.thresholds(hist, bag.label)
                with label_bag_writer(bag, out / f"{bag.slide_id}.h5", round_index) as new_ds:
                    for idx in _batches(bag, batch_size):
                        tiles = bag.read_tiles(idx) if "pu_labels" not in bag.h5 else np.empty((len(idx), 0, 0, 3), np.uint8)
                        targets, fixed = initial_targets(bag, idx, tiles)
                        new = relabel(ds[idx[0] : idx[-1] + 1], targets, fixed, hi, lo)
                        new_ds[idx[0] : idx[-1] + 1] = new
                        free = ~fixed
                        changed += int(np.sum(free & (new != read_pseudo_labels(cur, idx))))
                        n_free += int(free.sum())
                        tissue = targets != IGNORE
                        stats.append(_label_counts(new, tissue, _truth(bag, idx, tissue)))
    return (_sum_counts(pred_counts) if pred_counts else None), _merge(stats), changed, n_free
