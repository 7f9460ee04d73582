"""Top-level Python API behind the ``train``, ``predict`` and ``evaluate`` commands.

>>> run = weakseg.api.train("recipes/abmil_gated.yaml", profile="tiny")
>>> weakseg.api.predict(run, "data/test_bags", "maps/")
>>> weakseg.api.evaluate(run, "data/test_bags")          # tidy DataFrame, also written as CSV/markdown
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_write_text
from .bags import Bag, list_bags
from .engine.rundir import MODEL_FILE, RECIPE_FILE, SPLIT_FILE, default_run_dir
from .engine.distributed import env_info
from .engine.seeding import seed_everything
from .errors import BagError, RecipeError, ResolutionMismatchError, WeaksegError, describe_failure, locate_tile
from .learners.base import Learner, learner_tags
from .nuclei.data import is_nuclei_folder
from .recipes import DataSpec, Recipe, import_run_plugins, load_recipe, parse_yaml

SLIDES_CSV = "slides.csv"
FAILURES_CSV = "failures.csv"
EVAL_DIR = "evaluation"
OnItem = Callable[[str], None]
#: recipe keys that may differ when resuming (train a finished run for more epochs)
RESUMABLE_CHANGES = ("learner.params.max_epochs",)
#: relative difference of µm/px (and of downsample) that still counts as the same resolution (as the tiler)
RESOLUTION_TOLERANCE = 0.02


# -- train -----------------------------------------------------------------------------------
def train(recipe: str | os.PathLike | Recipe, out: str | os.PathLike | None = None, overrides: Iterable[str] = (),
          profile: str | None = None, *, resume: bool = False) -> Path:
    """Train the recipe's learner; returns the run directory.

    ``out`` defaults to ``runs/<recipe name>-<UTC timestamp>``. ``resume=True`` continues the
    run in ``out`` from its last checkpoint (from scratch when it stopped before finishing an
    epoch); the recipe must resolve to the one it started with, except
    ``learner.params.max_epochs`` (raise it to train a finished run further).

    Everything is validated (recipe, learner parameters, bags) before the run directory is
    written. When ``fit`` fails, a run directory this call created and in which no weights were
    saved is removed; an existing one holding only a failed start's records (no ``*.pt``) is
    reused by the next ``train`` instead of being refused. A bag whose tiles cannot be read is a
    :class:`~weakseg.errors.BagError` naming the bag and tile. The training bags' tile size, µm/px,
    level and downsample are saved with the model (``training_resolution_``) for
    :func:`check_resolution`.
    """
    if isinstance(recipe, Recipe):
        if profile is not None or tuple(overrides):
            raise WeaksegError("profile and overrides apply to recipe files; pass a path, not a Recipe")
    else:
        recipe = load_recipe(recipe, profile=profile, overrides=overrides)
    if resume and out is None:
        raise WeaksegError("resuming needs the run directory (--out RUN_DIR)")
    if out is None and env_info().enabled:
        raise WeaksegError("under torchrun give the run directory (--out RUN_DIR): each rank would name its own")
    run_dir = Path(out) if out is not None else default_run_dir(recipe.name)
    if resume:
        _check_same_recipe(run_dir, recipe)
    elif run_dir.exists() and any(run_dir.iterdir()) and not _is_failed_start(run_dir):
        raise WeaksegError(f"{run_dir}: run directory exists and is not empty; use --resume or another --out")

    seed_everything(recipe.seed)
    split = split_bags(recipe.data, recipe.seed)
    learner = recipe.build_learner()
    try:  # a Recipe built without check_learner: its parameters are still checked before anything is written
        learner._validate_params()
    except WeaksegError as err:
        raise RecipeError(f"{recipe.source}: learner.params: {err}") from None
    resolution = None if is_nuclei_folder(recipe.data.bags) else training_resolution(split["train"])
    created = not run_dir.exists()
    main = env_info().is_main  # under torchrun only rank 0 writes the run directory
    if main:
        atomic_write_text(run_dir / RECIPE_FILE, recipe.to_yaml())
        atomic_write_text(run_dir / SPLIT_FILE, json.dumps(
            {name: [str(p) for p in paths] for name, paths in split.items()}, indent=2) + "\n")
    val = split["val"] or None
    try:
        if learner_tags(learner).resumable:  # "auto": a run stopped before its first checkpoint starts afresh
            learner.fit(split["train"], X_val=val, run_dir=run_dir, resume="auto" if resume else False)
        else:
            learner.fit(split["train"])
    except WeaksegError:
        if main:
            _discard_failed_start(run_dir, created)
        raise
    except Exception as err:
        if main:
            _discard_failed_start(run_dir, created)
        where = locate_tile(err)
        if where is None:  # not a bag that cannot be read: a bug, shown with its traceback
            raise
        bag, row = where
        tile = f"tile {row}: " if row is not None else ""
        raise BagError(f"{bag}: {tile}{type(err).__name__}: {' '.join(str(err).split())}; training stopped: "
                       "replace or remove this bag and run the same command again") from err
    if resolution is not None:
        learner.training_resolution_ = resolution
    if main:
        learner.save(run_dir / MODEL_FILE)
    return run_dir


def _is_failed_start(run_dir: Path) -> bool:
    """A run directory whose training never saved weights: its recipe and split only (plus ``env.json``).

    Such a directory (a start that failed or was killed before the first checkpoint) is reused
    by a new ``train`` with the same ``--out`` instead of blocking it.
    """
    return (run_dir / RECIPE_FILE).is_file() and not any(run_dir.rglob("*.pt"))


def _discard_failed_start(run_dir: Path, created: bool) -> None:
    """After a failed ``fit``: remove the run directory this call created when nothing was trained in it."""
    if created and run_dir.is_dir() and _is_failed_start(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)


def training_resolution(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """Tile size, µm/px, level and downsample shared by the training bags (``None`` where they differ).

    Saved with the model (``training_resolution`` in ``model.pt``) and checked by
    :func:`check_resolution` when the model predicts or is evaluated.
    """
    metas = []
    for path in paths:
        with Bag(path) as bag:
            metas.append(bag.meta)
    out: dict[str, Any] = {"n_bags": len(metas)}
    for key in ("tile_size", "level"):
        values = {int(getattr(m, key)) for m in metas}
        out[key] = values.pop() if len(values) == 1 else None
    for key in ("mpp", "downsample"):
        values = [float(getattr(m, key)) for m in metas]
        same = values and all(math.isfinite(v) and v > 0 for v in values) and max(values) <= min(values) * (
            1 + RESOLUTION_TOLERANCE)
        out[key] = float(np.median(values)) if same else None
    return out


def _differ(a: float | None, b: float | None) -> bool | None:
    """Whether two positive sizes differ beyond :data:`RESOLUTION_TOLERANCE` (``None``: unknown)."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or a <= 0 or b <= 0:
        return None
    return max(a, b) > min(a, b) * (1 + RESOLUTION_TOLERANCE)


def _describe_resolution(res: dict[str, Any]) -> str:
    parts = [f"tile size {res['tile_size']} px" if res.get("tile_size") is not None else None,
             f"{res['mpp']:.3f} µm/px" if res.get("mpp") is not None else None,
             f"level {res['level']}" if res.get("level") is not None else None,
             f"downsample {res['downsample']:.3g}" if res.get("downsample") is not None else None]
    return ", ".join(p for p in parts if p) or "unknown"


def check_resolution(learner: Learner, paths: Sequence[Path], *, allow: bool = False) -> None:
    """Refuse bags whose tile size or pixel size differs from the model's training bags.

    Compares each bag's ``tile_size`` and ``mpp`` (within 2 %; ``downsample`` when either µm/px is
    unknown) with the ``training_resolution_`` saved by :func:`train`. Models saved without it, and
    ``allow=True`` (``--allow-resolution-mismatch``), skip the check. Unreadable bags are left to the
    per-slide failure handling.
    """
    trained = getattr(learner, "training_resolution_", None)
    if allow or not trained:
        return
    bad = []
    for path in paths:
        try:
            with Bag(path) as bag:
                meta = bag.meta
        except WeaksegError:
            continue
        diffs = []
        if trained.get("tile_size") is not None and int(meta.tile_size) != trained["tile_size"]:
            diffs.append(f"tile size {int(meta.tile_size)} px")
        mpp_differs = _differ(float(meta.mpp), trained.get("mpp"))
        if mpp_differs:
            diffs.append(f"{float(meta.mpp):.3f} µm/px")
        elif mpp_differs is None and _differ(float(meta.downsample), trained.get("downsample")):
            diffs.append(f"downsample {float(meta.downsample):.3g}")
        if diffs:
            bad.append(f"{path.name} ({', '.join(diffs)})")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; … ({len(bad)} bags)" if len(bad) > 5 else "")
        raise ResolutionMismatchError(
            f"{len(bad)} of {len(paths)} bag(s) differ from the resolution the model was trained at "
            f"({_describe_resolution(trained)}): {shown}. Tile the slides as the training bags were, or pass "
            "--allow-resolution-mismatch (allow_resolution_mismatch=True) to predict anyway")


def _check_same_recipe(run_dir: Path, recipe: Recipe) -> None:
    stored_path = run_dir / RECIPE_FILE
    if not stored_path.is_file():
        raise WeaksegError(f"{run_dir}: not a run directory to resume (no {RECIPE_FILE})")
    stored = parse_yaml(stored_path.read_text(), source=str(stored_path))
    changed = [k for k in _diff_keys(stored, recipe.resolved()) if k not in RESUMABLE_CHANGES]
    if changed:
        raise RecipeError(f"{stored_path}: the recipe differs from the one this run started with "
                          f"(at {', '.join(changed)}); start a new run instead")


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b), key=str)
                for k in _diff_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))]
    return [] if a == b else [prefix or "<root>"]


def split_bags(data: DataSpec, seed: int) -> dict[str, list[Path]]:
    """Train / val / test bag paths of a recipe's ``data`` section.

    ``val_bags``: every bag of ``bags`` trains, ``val_bags`` validates. ``split_file``: slide ids
    of ``fold`` from :func:`weakseg.splits.load_split` (bags missing from the split are not
    used). Neither: :func:`weakseg.splits.make_holdout` with ``val_fraction`` and ``seed``,
    stratified by slide label. A nuclei folder (``images/``, ``instances/``: see
    :mod:`weakseg.nuclei.data`) is split the same way by image, giving the images' paths.
    """
    if is_nuclei_folder(data.bags):
        return _split_nuclei(data, seed)
    bags = _bags_by_id(data.bags)
    if data.val_bags is not None:
        return {"train": sorted(bags.values()), "val": sorted(_bags_by_id(data.val_bags).values()), "test": []}
    if data.split_file is not None:
        from .splits import load_split

        ids = load_split(data.split_file, data.fold)
        missing = sorted(i for part in ids.values() for i in part if i not in bags)
        if len(missing) == sum(len(part) for part in ids.values()):
            raise WeaksegError(f"{data.split_file}: none of its slides has a bag in {data.bags}")
        split = {name: [bags[i] for i in part if i in bags] for name, part in ids.items()}
        if not split["train"]:
            raise WeaksegError(f"{data.split_file}: fold {data.fold} has no training slide with a bag in {data.bags}")
        return split
    from .splits import make_holdout

    labels = []
    for slide_id, path in bags.items():
        with Bag(path) as bag:
            labels.append({"slide_id": slide_id, "label": bag.label})
    ids = make_holdout(pd.DataFrame(labels), data.val_fraction, seed, stratify=("label",))
    return {"train": [bags[i] for i in ids["train"]], "val": [bags[i] for i in ids["val"]], "test": []}


def _split_nuclei(data: DataSpec, seed: int) -> dict[str, list[Path]]:
    from .nuclei.data import IMAGE_DIR
    from .splits import make_holdout

    if data.val_bags is not None or data.split_file is not None:
        raise WeaksegError(f"{data.bags}: a nuclei folder is split by val_fraction only (no val_bags / split_file)")
    images = {p.stem: p for p in sorted((Path(data.bags) / IMAGE_DIR).glob("*.png"))}
    if len(images) < 2:
        raise WeaksegError(f"{data.bags}: a nuclei folder needs at least 2 images to split, found {len(images)}")
    ids = make_holdout(pd.DataFrame({"slide_id": list(images), "label": 0}), data.val_fraction, seed, stratify=("label",))
    return {"train": [images[i] for i in ids["train"]], "val": [images[i] for i in ids["val"]], "test": []}


def _bags_by_id(folder: Path) -> dict[str, Path]:
    paths = list_bags(folder)
    if not paths:
        raise WeaksegError(f"{folder}: no bags ({'*.h5'} files) in this folder")
    out: dict[str, Path] = {}
    for path in paths:
        with Bag(path) as bag:
            if bag.slide_id in out:
                raise WeaksegError(f"{path}: slide {bag.slide_id!r} also has the bag {out[bag.slide_id]}")
            out[bag.slide_id] = path
    return out


# -- loading a run -----------------------------------------------------------------------------
def load_run(run_dir: str | os.PathLike, *, allow_plugins: bool = False) -> Learner:
    """The fitted learner of a run directory.

    The ``plugins:`` of its ``recipe.yaml`` are imported first, but only from installed packages
    (never a module that only the working folder or the run directory provides: a shared run
    directory must not run code); ``allow_plugins=True`` (``--allow-plugins``) lifts that.
    """
    run_dir = Path(run_dir)
    model = run_dir / MODEL_FILE
    if not model.is_file():
        raise WeaksegError(f"{run_dir}: no {MODEL_FILE} (not a run directory, or training did not finish)")
    recipe = run_dir / RECIPE_FILE
    if recipe.is_file():
        raw = parse_yaml(recipe.read_text(), source=str(recipe)) or {}
        plugins = raw.get("plugins") or [] if isinstance(raw, dict) else []
        if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
            raise RecipeError(f"{recipe}: plugins must be a list of module names")
        import_run_plugins(plugins, str(recipe), run_dir, allow=allow_plugins)
    return Learner.load(model)


# -- predict ---------------------------------------------------------------------------------
#: ``out/status.csv``: one row per bag, merged across shards, workers and reruns under a lock
STATUS_CSV = "status.csv"
STATUS_COLUMNS = ("bag", "slide_id", "status", "label", "prob", "data_provider", "tile", "error", "seconds",
                  "device", "model", "fingerprint", "path")
SLIDE_COLUMNS = ("slide_id", "label", "prob", "data_provider")
FAILURE_COLUMNS = ("bag", "tile", "error")


def predict(run_dir: str | os.PathLike, bags: str | os.PathLike, out: str | os.PathLike, *,
            on_slide: OnItem | None = None, allow_plugins: bool = False,
            allow_resolution_mismatch: bool = False, shard: str | tuple[int, int] | None = None,
            workers: int = 1, devices: str | Sequence[str] | None = None, overwrite: bool = False,
            on_status: Callable[[str, str], None] | None = None, quantize: str | None = None) -> Path:
    """Write per-slide maps and ``slides.csv`` (``slide_id, label, prob, data_provider``) into ``out``.

    MIL learners get a tile-score map (:func:`weakseg.heatmaps.write_tile_score_map`); learners
    with ``predict_tiles`` (segmentation) a pixel map over the whole slide
    (:func:`weakseg.maps.predict.predict_slide_map`). A slide that fails for any reason (an
    unreadable bag or tile, a NaN from the model, ...) is a row of ``failures.csv``
    (``bag, tile, error``) and the others go on; without failures no ``failures.csv`` is left.
    Bags at another tile size or µm/px than the training bags are refused up front
    (:func:`check_resolution`) unless ``allow_resolution_mismatch``; ``allow_plugins`` see :func:`load_run`.

    At scale (:mod:`weakseg.sharding`): ``shard="i/n"`` predicts the bags whose file stem (= slide id)
    hashes to ``i`` mod ``n`` (:func:`weakseg.sharding.take_shard`, the slides of the tiler's
    ``--shard``); ``devices`` (``"0,1,2,3"``, ``"cpu,cpu"``) / ``workers`` run one worker process per
    entry. Every finished slide is merged at once into ``out/status.csv`` (one row per bag: status
    ``ok``/``failed``, the model file's digest and the bag's fingerprint) under a file lock, and
    ``slides.csv`` / ``failures.csv`` are rewritten from it, so shards and workers writing one ``out``
    never lose rows. A rerun skips bags whose row is ``ok`` for the same model and the same bag file
    (``overwrite=True`` redoes them); rows of another model are dropped. Map files are written
    atomically, so a killed worker leaves no partial file and no row for its slide.
    ``on_status(slide, status)``: ``ok``, ``failed`` or ``skipped(resume)`` per bag.
    """
    from .sharding import as_shard, merge_rows, parse_devices, run_workers, take_shard

    learner = load_run(run_dir, allow_plugins=allow_plugins)
    paths = take_shard(list_bags(bags), as_shard(shard), key=lambda p: p.stem)
    check_resolution(learner, paths, allow=allow_resolution_mismatch)
    if quantize is not None:  # int8 on CPU (weakseg.quantize.quantize_learner), calibrated on a few tiles of the bags
        from .quantize import quantize_learner; quantize_learner(learner, paths, quantize)  # noqa: E702
    device_list = parse_devices(devices, workers)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from .encoders import checkpoint_digest

    model = checkpoint_digest(Path(run_dir) / MODEL_FILE) + (f"+{quantize}" if quantize else "")
    method = Path(run_dir).name
    status_path = out / STATUS_CSV
    # rows of another model (an earlier run into this folder) are dropped; views rewritten
    merged = merge_rows(status_path, [], ("bag",), STATUS_COLUMNS, forget=lambda r: r.get("model") != model,
                        after=lambda rows: _write_views(rows, out))
    done = {r["bag"]: r for r in merged}
    todo = []
    for path in paths:
        row = done.get(path.name)
        if (not overwrite and row is not None and row.get("status") == "ok"
                and row.get("fingerprint") == _bag_fingerprint(path)):
            _notify(on_slide, on_status, row.get("slide_id") or path.stem, "skipped(resume)")
        else:
            todo.append(path)
    if len(device_list) == 1:  # one worker: this process
        device = device_list[0]
        state = (learner if device == "cpu" else _to_device(learner, device), out, method, model, device)
        for path in todo:
            row = _predict_task(state, path)
            _notify(on_slide, on_status, row["slide_id"], row["status"])
        return out

    def lost(idx: int, reason: str) -> None:
        path = todo[idx]
        row = _status_row(path, path.stem, "failed", model, device="", error=f"{path}: {reason}")
        _record_status(out, row)
        _notify(on_slide, on_status, path.stem, "failed")

    run_workers(todo, _predict_init, _predict_task, device_list,
                init_args=(str(run_dir), allow_plugins, str(out), method, model, quantize, paths),
                on_done=lambda _, row: _notify(on_slide, on_status, row["slide_id"], row["status"]), on_lost=lost)
    return out


def _notify(on_slide: OnItem | None, on_status: Callable[[str, str], None] | None, slide: str, status: str) -> None:
    if on_slide is not None:
        on_slide(slide)
    if on_status is not None:
        on_status(slide, status)



def _bag_fingerprint(path: Path) -> str:
    """Name, size and modification time of a bag file: a rewritten bag is predicted again."""
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def _to_device(learner: Learner, device: str) -> Learner:
    """Move a loaded torch learner's module to ``device`` (learners without a module stay as they are)."""
    module = getattr(learner, "module_", None)
    if module is not None and hasattr(module, "to"):
        import torch

        learner.module_ = module.to(device)
        learner.device_ = torch.device(device)
    return learner


def _predict_init(device: str, run_dir: str, allow_plugins: bool, out: str, method: str, model: str,
                  quantize: str | None = None, calibration: Sequence[Path] = ()) -> tuple:
    """Worker set-up (:func:`weakseg.sharding.run_workers`): the learner on ``device``, loaded once
    (and quantized as in :func:`predict`, calibrated on the same bags)."""
    learner = load_run(run_dir, allow_plugins=allow_plugins)
    if quantize is not None:
        from .quantize import quantize_learner

        quantize_learner(learner, list(calibration), quantize)
    learner = _to_device(learner, device)
    return learner, Path(out), method, model, device


def _predict_task(state: tuple, path: Path) -> dict[str, str]:
    """Predict one bag and merge its status row (``ok`` or ``failed``) into ``out/status.csv``."""
    import time

    learner, out, method, model, device = state
    t0 = time.perf_counter()
    try:
        res = _predict_one(learner, path, out, method=method)
        row = _status_row(path, str(res["slide_id"]), "ok", model, device=device, label=res["label"],
                          prob=repr(float(res["prob"])), data_provider=res["data_provider"])
    except Exception as err:  # every per-slide fault is recorded; the batch goes on
        fail = failure_row(path, err)
        row = _status_row(path, path.stem, "failed", model, device=device, tile=fail["tile"], error=fail["error"])
    row["seconds"] = f"{time.perf_counter() - t0:.2f}"
    _record_status(out, row)
    return row


def _status_row(path: Path, slide_id: str, status: str, model: str, **fields: Any) -> dict[str, str]:
    try:
        fingerprint = _bag_fingerprint(path)
    except OSError:
        fingerprint = ""
    row = {"bag": path.name, "slide_id": slide_id, "status": status, "model": model, "fingerprint": fingerprint,
           "path": str(path)}
    row.update({k: "" if v is None else str(v) for k, v in fields.items()})
    return row


def _record_status(out: Path, row: dict[str, str]) -> None:
    from .sharding import merge_rows

    merge_rows(out / STATUS_CSV, [row], ("bag",), STATUS_COLUMNS, after=lambda rows: _write_views(rows, out))


def _write_views(rows: list[dict[str, str]], out: Path) -> None:
    """``slides.csv`` (the ``ok`` rows) and ``failures.csv`` (the ``failed`` rows; removed when none)."""
    from .sharding import write_rows

    write_rows(out / SLIDES_CSV, [r for r in rows if r.get("status") == "ok"], SLIDE_COLUMNS)
    failures = [{**r, "bag": r.get("path") or r["bag"]} for r in rows if r.get("status") == "failed"]
    _write_failures(failures, out)


def failure_row(path: str | os.PathLike, err: BaseException) -> dict[str, Any]:
    """A ``failures.csv`` row: ``bag, tile`` (the tile row when known, else empty) and ``error``."""
    message, row = describe_failure(err)
    return {"bag": str(path), "tile": "" if row is None else row, "error": message}


def _write_failures(failures: list[dict[str, Any]], out: Path) -> None:
    path = out / FAILURES_CSV
    if failures:
        _write_csv(pd.DataFrame(failures, columns=list(FAILURE_COLUMNS)), path)
    elif path.is_file():  # a failures.csv of an earlier run into the same folder would mislead
        path.unlink()


def _predict_one(learner: Learner, path: Path, out: Path, method: str = "") -> dict[str, Any]:
    tags = learner_tags(learner)
    with Bag(path) as bag:
        if tags.instances:  # nuclei: instance table, QuPath detections and a label image of the whole slide
            from .nuclei.slide import predict_slide_nuclei

            if not bag.meta.slide_path or not Path(bag.meta.slide_path).is_file():
                raise WeaksegError(f"{path}: its slide {bag.meta.slide_path or '(none recorded)'} is not readable; "
                                   "nuclei are segmented on the slide")
            predict_slide_nuclei(learner, bag.meta.slide_path, out)
            return {"slide_id": bag.slide_id, "label": bag.label, "prob": float("nan"),
                    "data_provider": bag.meta.data_provider}
        prob = float(learner.predict_proba([path])[0, 1])
        if not math.isfinite(prob):
            raise WeaksegError(f"{path}: the model's slide probability is {prob}")
        if tags.pixel_maps:
            predict_tiles = learner.predict_tiles
            from .maps.predict import predict_slide_map
            from .resolution import Resolution

            if not bag.meta.slide_path or not Path(bag.meta.slide_path).is_file():
                raise WeaksegError(f"{path}: its slide {bag.meta.slide_path or '(none recorded)'} is not readable; "
                                   "pixel maps are predicted from the slide")
            # windows at the bag's own resolution (level, downsample, resize), i.e. what the model saw
            res = Resolution.from_bag_meta(bag.meta)
            mask = bag.meta.mask_path if bag.meta.mask_path and Path(bag.meta.mask_path).is_file() else None
            predict_slide_map(bag.meta.slide_path, predict_tiles, out, window=bag.tile_size,
                              step=max(1, bag.tile_size // 2), resolution=res, slide_mpp=res.level0_mpp,
                              slide_id=bag.slide_id, title=" · ".join(t for t in (bag.slide_id, method) if t),
                              truth_mask=mask, truth_provider=bag.meta.data_provider)
        elif not tags.instance_scores:
            raise WeaksegError(f"{type(learner).__name__} declares neither pixel maps nor tile scores "
                               "(weakseg.capabilities.PixelPredictorMixin / InstanceScorerMixin): nothing to map")
        else:
            from .heatmaps import write_tile_score_map

            write_tile_score_map(bag, learner.instance_scores(bag), out,
                                 title=" · ".join(t for t in (bag.slide_id, method, "tile scores") if t))
        return {"slide_id": bag.slide_id, "label": bag.label, "prob": prob, "data_provider": bag.meta.data_provider}


# -- evaluate --------------------------------------------------------------------------------
def evaluate(run_dir: str | os.PathLike, bags: str | os.PathLike, out: str | os.PathLike | None = None, *,
             allow_plugins: bool = False, allow_resolution_mismatch: bool = False,
             on_slide: OnItem | None = None) -> pd.DataFrame:
    """Slide AUC/accuracy, tile AUC/F1/precision/recall and (segmentation learners) pixel scores.

    Returns a tidy frame ``provider, level, metric, value, n`` (provider ``all`` pools every
    slide) and writes it as ``metrics.csv`` and ``metrics.md`` into ``out``
    (default ``RUN_DIR/evaluation``). A slide that fails (unreadable bag or tile, a NaN from the
    model, a mask label its provider does not define, ...) is left out of every metric and listed
    in ``out/failures.csv``; the others are scored. ``allow_*``: see :func:`predict`.
    """
    from .metrics.mil import bag_outputs, mil_metrics_table

    learner = load_run(run_dir, allow_plugins=allow_plugins)
    paths = list_bags(bags)
    if not paths:
        raise WeaksegError(f"{bags}: no bags to evaluate")
    check_resolution(learner, paths, allow=allow_resolution_mismatch)
    pixels = learner_tags(learner).pixel_maps
    slide_rows, tile_parts, per_slide, failures = [], [], [], []
    for path in paths:
        try:
            slide_row, tiles = bag_outputs(learner, path)
            counts = _pixel_counts(learner, path) if pixels else None
        except Exception as err:  # every per-slide fault is recorded; the others are scored
            failures.append(failure_row(path, err))
        else:
            if slide_row is not None:
                slide_rows.append(slide_row)
            if tiles is not None:
                tile_parts.append(tiles)
            if counts is not None:
                per_slide.append(counts)
        if on_slide is not None:
            on_slide(path.stem)
    slides = pd.DataFrame(slide_rows, columns=["slide_id", "provider", "label", "prob"])
    table = mil_metrics_table(slides, pd.concat(tile_parts, ignore_index=True) if tile_parts else None)
    if pixels:
        table = pd.concat([table, _pixel_table(per_slide)], ignore_index=True)
    out = Path(out) if out is not None else Path(run_dir) / EVAL_DIR
    _write_csv(table, out / "metrics.csv")
    atomic_write_text(out / "metrics.md", metrics_markdown(table) + "\n")
    _write_failures(failures, out)
    return table


def _pixel_counts(learner: Any, path: Path, batch_size: int = 16) -> tuple[str, Any] | None:
    """``(provider, pooled pixel counts)`` of ``predict_tiles`` against one bag's tile masks (None without masks)."""
    from .metrics.seg import SlideTruth, slide_counts
    from .panda import to_common_labels

    with Bag(path) as bag:
        if not bag.has_masks:
            return None
        provider = bag.meta.data_provider or "unknown"
        counts = None
        for idx, tiles in bag.iter_tiles(batch_size):
            labels = to_common_labels(bag.read_masks(idx), provider)
            truth = SlideTruth(bag.slide_id, labels, provider=provider, label=bag.label)
            prob = learner.predict_tiles(tiles)
            if not np.isfinite(prob).all():
                raise WeaksegError(f"{path}: the model's pixel probabilities are not finite (tiles {idx[0]}–{idx[-1]})")
            c = slide_counts(prob, truth)
            counts = c if counts is None else counts + c
    return None if counts is None else (provider, counts)


#: Pixel-level rows of the metrics table: scores, and the truth's cancer share (the AP of a random score).
#: The pixel count (``n_pixels``) is not a metric and is left out.
PIXEL_METRICS = ("dice_benign", "iou_benign", "dice_cancer", "iou_cancer", "ap_cancer", "cancer_fraction")


def _pixel_table(per_slide: Sequence[tuple[str, Any]]) -> pd.DataFrame:
    """Pooled Dice/IoU/AP rows, overall and per provider (:data:`PIXEL_METRICS`)."""
    rows = []
    for provider in ["all", *sorted({p for p, _ in per_slide})]:
        group = [c for p, c in per_slide if provider in ("all", p)]
        if group:
            total = group[0]
            for c in group[1:]:
                total = total + c
            scores = total.scores()
            rows += [(provider, "pixel", metric, scores[metric], len(group)) for metric in PIXEL_METRICS]
    return pd.DataFrame(rows, columns=["provider", "level", "metric", "value", "n"])


def metrics_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A markdown table: one row per (level, metric), one column per provider."""
    if table.empty:
        return "_no metrics_"
    wide = table.pivot_table(index=["level", "metric"], columns="provider", values="value", sort=False, dropna=False)
    from .metrics.report import render_markdown

    providers = ["all", *sorted(c for c in wide.columns if c != "all")]
    rows = [[str(level), str(metric), *("" if pd.isna(v) else f"{v:.{digits}f}" for v in row)]
            for (level, metric), row in wide[providers].iterrows()]
    return render_markdown(["level", "metric", *providers], rows, n_left=2)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))
