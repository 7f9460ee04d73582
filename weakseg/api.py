"""Top-level Python API behind the ``train``, ``predict`` and ``evaluate`` commands.

>>> run = weakseg.api.train("recipes/abmil_gated.yaml", profile="tiny")
>>> weakseg.api.predict(run, "data/test_bags", "maps/")
>>> weakseg.api.evaluate(run, "data/test_bags")          # tidy DataFrame, also written as CSV/markdown
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_write_text
from .bags import Bag, list_bags
from .engine.checkpoint import LAST
from .engine.rundir import CHECKPOINT_DIR, MODEL_FILE, RECIPE_FILE, SPLIT_FILE, default_run_dir
from .engine.seeding import seed_everything
from .errors import RecipeError, WeaksegError
from .learners.base import Learner, TorchLearner
from .recipes import DataSpec, Recipe, import_plugins, load_recipe, parse_yaml

SLIDES_CSV = "slides.csv"
FAILURES_CSV = "failures.csv"
EVAL_DIR = "evaluation"
OnItem = Callable[[str], None]
#: recipe keys that may differ when resuming (train a finished run for more epochs)
RESUMABLE_CHANGES = ("learner.params.max_epochs",)


# -- train -----------------------------------------------------------------------------------
def train(recipe: str | os.PathLike | Recipe, out: str | os.PathLike | None = None, overrides: Iterable[str] = (),
          profile: str | None = None, *, resume: bool = False) -> Path:
    """Train the recipe's learner; returns the run directory.

    ``out`` defaults to ``runs/<recipe name>-<UTC timestamp>``. ``resume=True`` continues the
    run in ``out`` from its last checkpoint (from scratch when it stopped before finishing an
    epoch); the recipe must resolve to the one it started with, except
    ``learner.params.max_epochs`` (raise it to train a finished run further).
    """
    if isinstance(recipe, Recipe):
        if profile is not None or tuple(overrides):
            raise WeaksegError("profile and overrides apply to recipe files; pass a path, not a Recipe")
    else:
        recipe = load_recipe(recipe, profile=profile, overrides=overrides)
    if resume and out is None:
        raise WeaksegError("resuming needs the run directory (--out RUN_DIR)")
    run_dir = Path(out) if out is not None else default_run_dir(recipe.name)
    if resume:
        _check_same_recipe(run_dir, recipe)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise WeaksegError(f"{run_dir}: run directory exists and is not empty; use --resume or another --out")

    seed_everything(recipe.seed)
    split = split_bags(recipe.data, recipe.seed)
    learner = recipe.build_learner()
    atomic_write_text(run_dir / RECIPE_FILE, recipe.to_yaml())
    atomic_write_text(run_dir / SPLIT_FILE, json.dumps(
        {name: [str(p) for p in paths] for name, paths in split.items()}, indent=2) + "\n")
    val = split["val"] or None
    if isinstance(learner, TorchLearner):
        has_checkpoint = (run_dir / CHECKPOINT_DIR / LAST).is_file()
        learner.fit(split["train"], X_val=val, run_dir=run_dir, resume=resume and has_checkpoint)
    elif "run_dir" in inspect.signature(learner.fit).parameters:  # multi-stage learners resume their own stages
        learner.fit(split["train"], X_val=val, run_dir=run_dir, resume=resume)
    else:
        learner.fit(split["train"])
    learner.save(run_dir / MODEL_FILE)
    return run_dir


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
    used). Neither: a ``val_fraction`` of each slide label's bags, drawn with ``seed``.
    """
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
    labels: dict[int, list[str]] = {}
    for slide_id, path in bags.items():
        with Bag(path) as bag:
            labels.setdefault(bag.label, []).append(slide_id)
    rng = np.random.default_rng(seed)
    val: list[str] = []
    for label in sorted(labels):
        ids = sorted(labels[label])
        k = min(max(1, round(data.val_fraction * len(ids))), len(ids) - 1)  # each side keeps the label
        val += [ids[i] for i in rng.permutation(len(ids))[:k]]
    train = sorted(set(bags) - set(val))
    return {"train": [bags[i] for i in train], "val": [bags[i] for i in sorted(val)], "test": []}


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
def load_run(run_dir: str | os.PathLike) -> Learner:
    """The fitted learner of a run directory (its recipe's plugins are imported first)."""
    run_dir = Path(run_dir)
    model = run_dir / MODEL_FILE
    if not model.is_file():
        raise WeaksegError(f"{run_dir}: no {MODEL_FILE} (not a run directory, or training did not finish)")
    recipe = run_dir / RECIPE_FILE
    if recipe.is_file():
        raw = parse_yaml(recipe.read_text(), source=str(recipe)) or {}
        import_plugins(raw.get("plugins") or [], str(recipe))
    return Learner.load(model)


# -- predict ---------------------------------------------------------------------------------
def predict(run_dir: str | os.PathLike, bags: str | os.PathLike, out: str | os.PathLike, *,
            on_slide: OnItem | None = None) -> Path:
    """Write per-slide maps and ``slides.csv`` (``slide_id, label, prob, data_provider``) into ``out``.

    MIL learners get a tile-score map (:func:`weakseg.heatmaps.write_tile_score_map`); learners
    with ``predict_tiles`` (segmentation) a pixel map over the whole slide
    (:func:`weakseg.maps.predict.predict_slide_map`). A slide that fails is listed in
    ``failures.csv`` and the others go on.
    """
    learner = load_run(run_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, failures = [], []
    for path in list_bags(bags):
        try:
            rows.append(_predict_one(learner, path, out))
        except WeaksegError as err:
            failures.append({"bag": str(path), "error": str(err)})
        if on_slide is not None:
            on_slide(path.stem)
    _write_csv(pd.DataFrame(rows, columns=["slide_id", "label", "prob", "data_provider"]), out / SLIDES_CSV)
    if failures:
        _write_csv(pd.DataFrame(failures), out / FAILURES_CSV)
    return out


def _predict_one(learner: Learner, path: Path, out: Path) -> dict[str, Any]:
    with Bag(path) as bag:
        prob = float(learner.predict_proba([path])[0, 1])
        predict_tiles = getattr(learner, "predict_tiles", None)
        if predict_tiles is not None:
            from .maps.predict import predict_slide_map
            from .resolution import Resolution

            if not bag.meta.slide_path or not Path(bag.meta.slide_path).is_file():
                raise WeaksegError(f"{path}: its slide {bag.meta.slide_path or '(none recorded)'} is not readable; "
                                   "pixel maps are predicted from the slide")
            # windows at the bag's own resolution (level, downsample, resize), i.e. what the model saw
            res = Resolution.from_bag_meta(bag.meta)
            predict_slide_map(bag.meta.slide_path, predict_tiles, out, window=bag.tile_size,
                              step=max(1, bag.tile_size // 2), resolution=res, slide_mpp=res.level0_mpp,
                              slide_id=bag.slide_id)
        else:
            from .heatmaps import write_tile_score_map

            write_tile_score_map(bag, learner.instance_scores(bag), out)
        return {"slide_id": bag.slide_id, "label": bag.label, "prob": prob, "data_provider": bag.meta.data_provider}


# -- evaluate --------------------------------------------------------------------------------
def evaluate(run_dir: str | os.PathLike, bags: str | os.PathLike, out: str | os.PathLike | None = None) -> pd.DataFrame:
    """Slide AUC/accuracy, tile AUC/F1/precision/recall and (segmentation learners) pixel scores.

    Returns a tidy frame ``provider, level, metric, value, n`` (provider ``all`` pools every
    slide) and writes it as ``metrics.csv`` and ``metrics.md`` into ``out``
    (default ``RUN_DIR/evaluation``).
    """
    from .metrics.mil import evaluate_mil

    learner = load_run(run_dir)
    paths = list_bags(bags)
    if not paths:
        raise WeaksegError(f"{bags}: no bags to evaluate")
    table = evaluate_mil(learner, paths)
    if hasattr(learner, "predict_tiles"):
        table = pd.concat([table, _pixel_metrics(learner, paths)], ignore_index=True)
    out = Path(out) if out is not None else Path(run_dir) / EVAL_DIR
    _write_csv(table, out / "metrics.csv")
    atomic_write_text(out / "metrics.md", metrics_markdown(table) + "\n")
    return table


def _pixel_metrics(learner: Any, paths: Sequence[Path], batch_size: int = 16) -> pd.DataFrame:
    """Pooled Dice/IoU/AP of ``predict_tiles`` against the bags' tile masks, overall and per provider."""
    from .metrics.seg import SlideTruth, slide_counts
    from .panda import to_common_labels

    per_slide: list[tuple[str, Any]] = []
    for path in paths:
        with Bag(path) as bag:
            if bag.has_masks:
                provider = bag.meta.data_provider or "unknown"
                counts = None
                for idx, tiles in bag.iter_tiles(batch_size):
                    labels = to_common_labels(bag.read_masks(idx), provider)
                    truth = SlideTruth(bag.slide_id, labels, provider=provider, label=bag.label)
                    c = slide_counts(learner.predict_tiles(tiles), truth)
                    counts = c if counts is None else counts + c
                if counts is not None:
                    per_slide.append((provider, counts))
    rows = []
    for provider in ["all", *sorted({p for p, _ in per_slide})]:
        group = [c for p, c in per_slide if provider in ("all", p)]
        if group:
            total = group[0]
            for c in group[1:]:
                total = total + c
            rows += [(provider, "pixel", metric, value, len(group)) for metric, value in total.scores().items()]
    return pd.DataFrame(rows, columns=["provider", "level", "metric", "value", "n"])


def metrics_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A markdown table: one row per (level, metric), one column per provider."""
    if table.empty:
        return "_no metrics_"
    wide = table.pivot_table(index=["level", "metric"], columns="provider", values="value", sort=False, dropna=False)
    providers = ["all", *sorted(c for c in wide.columns if c != "all")]
    lines = ["| level | metric | " + " | ".join(providers) + " |", "|---|---|" + "---:|" * len(providers)]
    for (level, metric), row in wide[providers].iterrows():
        cells = ["" if pd.isna(v) else f"{v:.{digits}f}" for v in row]
        lines.append(f"| {level} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))
