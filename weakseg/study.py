"""A comparison study on one train/test split of tiled bags: weaken → train → evaluate → maps.

The demo (synthetic cohort), ``weakseg demo --real`` (any PANDA-layout folder) and
``benchmarks/bench_real.py`` (K-fold cross-validation on real slides) all run this one function
per split, so every number they report comes from the same code path.

Layout of a study folder ``OUT``::

    bags/train, bags/test   links to the split's tile bags (ground-truth masks inside)
    weak/slide, weak/pu     simulated weak labels of the training bags (weakseg weaken)
    priors.json             π of the unlabeled tissue: true (from the masks) and estimated
    runs/<method>/          one training run per method (weakseg train), with timing.json
    maps/<method>/          slide maps of the first test slides (weakseg predict)
    results.csv             tidy scores: method, metric, value (+ training CPU minutes)
    report/                 per-slide and pooled segmentation scores, figure

Every stage is a named artifact (:mod:`weakseg.artifacts`): its folder's ``artifact.json`` records
the stage, its settings (inputs enter as the settings hash of the stage they come from), their
hash and a status. A stage is reused only when ``done`` with the same hash, resumed when left
unfinished with the same hash, and redone from an empty folder otherwise, so an interrupted study
resumes and a changed one never mixes old and new artifacts. Training runs keep their record
beside the run directory (``runs/<method>.artifact.json``).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import RECORD, read_record, stage
from .atomic import atomic_write_text
from .bags import Bag, list_bags
from .errors import WeaksegError

Log = Callable[[str], None]
RECIPES = Path(__file__).resolve().parent / "recipe_files"  # = recipes.recipes_dir(), without importing yaml/pydantic
RESULTS_CSV = "results.csv"
TIMING = "timing.json"


@dataclass(frozen=True)
class Method:
    """One learner of a study: a shipped recipe, the labels it trains on, extra overrides.

    ``labels``: ``full`` (ground-truth masks), ``pu`` (partial region labels) or ``slide``.
    ``prior``: for PU learners, ``true`` (π from the masks, a reference) or ``estimated``
    (the learner's own estimate, what a user without full masks gets).
    ``kind``: ``seg`` (pixel maps) or ``mil`` (slide and tile scores only).
    """

    name: str
    recipe: str
    labels: str
    overrides: tuple[str, ...] = ()
    prior: str | None = None
    kind: str = "seg"


METHODS: tuple[Method, ...] = (
    Method("supervised", "supervised_transunet", "full"),
    # the seeds' U-Net vs HRNet comparison: the same learner and data, other backbones
    Method("supervised_unet", "supervised_transunet", "full", ("learner.params.backbone=unet_tiny", "name=supervised_unet")),
    Method("supervised_hrnet", "hrnet_seg", "full"),
    Method("nnpu", "nnpu_transunet", "pu", prior="true"),
    Method("nnpu_est", "nnpu_transunet", "pu", ("learner.params.prior=null",), prior="estimated"),
    Method("upu", "nnpu_transunet", "pu", ("learner.params.nnpu=false", "name=upu_transunet"), prior="true"),
    Method("pu_unet", "pu_unet", "pu", ("learner.params.prior=null",), prior="estimated"),
    Method("mil_refine", "mil_refine_transunet", "slide"),
    Method("abmil", "abmil_gated", "slide", kind="mil"),
    Method("clam", "clam_sb", "slide", kind="mil"),
    Method("topk", "topk_mil_lerousseau2020", "slide", kind="mil"),
)
METHOD_NAMES = tuple(m.name for m in METHODS)


@dataclass
class StudyConfig:
    """What a study trains and how; the defaults are the demo's."""

    methods: tuple[str, ...] = ("supervised", "nnpu", "mil_refine")
    profile: str = "tiny"
    seed: int = 0
    positive_fraction: float = 0.1
    n_maps: int = 2
    extra_overrides: dict[str, list[str]] = field(default_factory=dict)


def resolve_methods(names: Sequence[str]) -> list[Method]:
    known = {m.name: m for m in METHODS}
    unknown = [m for m in names if m not in known]
    if unknown:
        raise WeaksegError(f"unknown method(s) {unknown}; choose from {sorted(known)}")
    return [known[m] for m in names]


def run_study(out: str | Path, train: Sequence[Path], test: Sequence[Path], config: StudyConfig | None = None,
              log: Log = print) -> pd.DataFrame:
    """Run (or resume) a study on ``train``/``test`` bag files; returns the tidy results table."""
    config = config or StudyConfig()
    methods = resolve_methods(config.methods)
    out = Path(out)
    link_bags(out / "bags" / "train", train)
    link_bags(out / "bags" / "test", test)
    weaken_train_bags(out, config, log)
    priors = class_priors(out, log)
    runs: dict[Method, Path] = {}
    for method in methods:
        runs[method] = train_method(out, method, config, priors, log)
    table = evaluate_study(out, runs, log)
    write_maps(out, {m.name: r for m, r in runs.items() if m.kind == "seg"}, config.n_maps, log)
    return table


# -- data stages -------------------------------------------------------------------------------
def _hash_of(folder: Path) -> str:
    """The settings hash of the finished stage artifact in ``folder`` (its inputs' identity for the next stage)."""
    record = read_record(folder)
    if record is None or record.status != "done":
        raise WeaksegError(f"{folder}: no finished stage artifact (artifact.json) to build on")
    return record.settings_hash


def link_bags(folder: Path, paths: Sequence[Path]) -> None:
    """Make ``folder`` hold exactly links to ``paths`` (a split change relinks, never mixes)."""
    with stage(folder, "bags", {"bags": sorted(str(Path(p).resolve()) for p in paths)}, clear=True) as st:
        if not st.reused:
            for p in paths:
                link = folder / Path(p).name
                link.unlink(missing_ok=True)
                link.symlink_to(Path(p).resolve())


def weaken_train_bags(out: Path, config: StudyConfig, log: Log) -> None:
    """Slide-label and partial-region (PU) versions of the training bags."""
    from .weaken import weaken_bags

    source = out / "bags" / "train"
    for mode in ("slide", "pu"):
        target = out / "weak" / mode
        settings = {"source": _hash_of(source), "mode": mode, "seed": config.seed,
                    "positive_fraction": config.positive_fraction if mode == "pu" else None}
        with stage(target, "weaken", settings, clear=True) as st:
            if not st.reused:
                weaken_bags(source, target, mode, positive_fraction=config.positive_fraction, seed=config.seed)
    log(f"weaken: slide labels only (weak/slide); {config.positive_fraction:.0%} of cancer regions annotated (weak/pu)")


def unlabeled_prior(pu_bags: Path) -> float:
    """π = fraction of cancer pixels within the unlabeled tissue, from the ground-truth masks."""
    from .panda import CANCER, to_common_labels
    from .weaken import PU_UNLABELED, read_pu_labels

    cancer = unlabeled = 0
    for path in list_bags(pu_bags):
        with Bag(path) as bag:
            for idx, _ in bag.iter_tiles(64):
                u = read_pu_labels(bag, idx) == PU_UNLABELED
                truth = to_common_labels(bag.read_masks(idx), bag.meta.data_provider)
                cancer += int(np.sum(u & (truth == CANCER)))
                unlabeled += int(u.sum())
    if unlabeled == 0:
        raise WeaksegError(f"{pu_bags}: no unlabeled tissue pixels")
    return cancer / unlabeled


def class_priors(out: Path, log: Log) -> dict[str, float]:
    """``{"true": π}`` of the PU bags (cached in ``priors.json`` with the PU bags' settings)."""
    pu = out / "weak" / "pu"
    settings = _hash_of(pu)
    path = out / "priors.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("settings") == settings:
            return stored["priors"]
    priors = {"true": unlabeled_prior(pu)}
    atomic_write_text(path, json.dumps({"settings": settings, "priors": priors}, indent=2) + "\n")
    log(f"class prior of the unlabeled tissue (π, from the ground truth): {priors['true']:.3f}")
    return priors


# -- training ----------------------------------------------------------------------------------
def _bags_for(out: Path, method: Method) -> Path:
    return out / {"full": "bags/train", "pu": "weak/pu", "slide": "weak/slide"}[method.labels]


def method_overrides(out: Path, method: Method, config: StudyConfig, priors: dict[str, float]) -> list[str]:
    overrides = [f"data.bags={_bags_for(out, method).resolve()}", f"seed={config.seed}", *method.overrides]
    if method.prior == "true":
        overrides.append(f"learner.params.prior={priors['true']:.6f}")
    return overrides + list(config.extra_overrides.get(method.name, []))


def train_method(out: Path, method: Method, config: StudyConfig, priors: dict[str, float], log: Log) -> Path:
    """Train one method from its shipped recipe; reused when finished with the same settings."""
    from . import api
    from .engine.rundir import MODEL_FILE, RECIPE_FILE
    from .recipes import load_recipe

    run_dir = out / "runs" / method.name
    overrides = method_overrides(out, method, config, priors)
    recipe = load_recipe(RECIPES / f"{method.recipe}.yaml", profile=config.profile, overrides=overrides)
    settings = {"recipe": recipe.resolved(), "weak": _hash_of(_bags_for(out, method))}
    record = run_dir.parent / f"{method.name}.{RECORD}"  # beside the run: api.train wants an empty folder
    with stage(run_dir, "train", settings, clear=True, record=record) as st:
        if st.reused and (run_dir / MODEL_FILE).is_file():
            log(f"train: {method.name}: reusing {run_dir}")
            return run_dir
        resume = st.resumed and (run_dir / RECIPE_FILE).is_file()
        if not resume and any(run_dir.iterdir()):
            shutil.rmtree(run_dir)
            run_dir.mkdir()
        log(f"train: {method.name} ({method.recipe}, profile {config.profile}){' (resumed)' if resume else ''}")
        wall, cpu = time.perf_counter(), time.process_time()
        api.train(RECIPES / f"{method.recipe}.yaml", out=run_dir, overrides=overrides, profile=config.profile, resume=resume)
        timing = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "settings_hash": st.hash}
        atomic_write_text(run_dir / TIMING, json.dumps(timing, indent=2) + "\n")
    return run_dir


# -- evaluation --------------------------------------------------------------------------------
def _round_models(run_dir: Path) -> dict[int, Path]:
    """Each refinement round's saved segmentation learner of a ``mil_seg`` run (``rounds/r{k}/learner.pt``)."""
    return {int(p.parent.name[1:]): p for p in sorted((run_dir / "rounds").glob("r*/learner.pt"))}


def evaluate_study(out: Path, runs: dict[Method, Path], log: Log) -> pd.DataFrame:
    """Pixel Dice/IoU/AP of the segmentation methods (each refinement round too) and the naive
    baselines on the test bags' tiles; slide and tile AUC of every method with slide outputs."""
    from . import api
    from .metrics.mil import evaluate_mil
    from .metrics.report import write_report
    from .metrics.seg import SegEvaluator, SlideTruth
    from .panda import to_common_labels

    test = list_bags(out / "bags" / "test")
    seg: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for method, run_dir in runs.items():
        learner = api.load_run(run_dir)
        timing = json.loads((run_dir / TIMING).read_text())
        rows.append({"method": method.name, "metric": "train_cpu_min", "value": timing["cpu_s"] / 60})
        rows.append({"method": method.name, "metric": "train_wall_min", "value": timing["wall_s"] / 60})
        if method.kind == "seg":
            seg[method.name] = learner
            if method.name == "mil_refine":
                from .learners.base import Learner

                rounds = _round_models(run_dir)
                for k, path in rounds.items():  # the last round is the run's own model: not loaded twice
                    seg[f"mil_refine_r{k}"] = learner.seg_ if k == max(rounds) else Learner.load(path)
        if method.kind == "mil" or method.name == "mil_refine":
            table = evaluate_mil(learner, test)
            for metric in ("slide_auc", "tile_auc"):
                value = table.loc[(table["provider"] == "all") & (table["metric"] == metric), "value"]
                if len(value):
                    rows.append({"method": method.name, "metric": metric, "value": float(value.iloc[0])})
    evaluator = SegEvaluator()
    for path in test:
        with Bag(path) as bag:
            if not bag.has_masks or len(bag) == 0:
                continue
            provider = bag.meta.data_provider
            truth = SlideTruth(bag.slide_id, to_common_labels(bag.read_masks(), provider), provider=provider, label=bag.label)
            tiles = bag.read_tiles()
            probs: dict[int, np.ndarray] = {}  # one prediction per model, whatever names score it
            for name, learner in seg.items():
                model = getattr(learner, "seg_", learner)
                if id(model) not in probs:
                    probs[id(model)] = learner.predict_tiles(tiles)
                evaluator.add(name, truth, probs[id(model)])
            evaluator.add_baselines(truth)
    if seg:
        write_report(evaluator, out / "report")
        summary = evaluator.summary()
        for _, r in summary[summary["group"] == "all"].iterrows():
            for metric in ("dice_cancer_pooled", "iou_cancer_pooled", "ap_cancer_pooled"):
                rows.append({"method": r["method"], "metric": metric.replace("_cancer_pooled", ""), "value": float(r[metric])})
        log("segmentation on the test slides (pooled pixel scores):")
        log((out / "report" / "seg_summary.md").read_text())
    table = pd.DataFrame(rows, columns=["method", "metric", "value"])
    atomic_write_text(out / RESULTS_CSV, table.to_csv(index=False))
    return table


def write_maps(out: Path, runs: dict[str, Path], n_maps: int, log: Log) -> None:
    """Slide maps (pyramidal TIFF, GeoJSON, overlay PNG) of the first test slides with cancer, per method."""
    from . import api

    labelled = [(_label(p), p) for p in list_bags(out / "bags" / "test")]
    test = [p for _, p in sorted(labelled, key=lambda lp: (-lp[0], lp[1].name))][:n_maps]  # cancer slides first
    if not test or not runs:
        return
    subset = out / "maps" / "_bags"
    link_bags(subset, test)
    overlays = out / "report" / "overlays"
    overlays.mkdir(parents=True, exist_ok=True)
    for name, run in runs.items():
        maps = out / "maps" / name
        settings = {"run": json.loads((run / TIMING).read_text())["settings_hash"], "bags": [p.name for p in test]}
        with stage(maps, "predict", settings, clear=True) as st:
            if not st.reused:
                api.predict(run, subset, maps)
        for png in sorted(maps.glob("*overlay*.png")):
            shutil.copyfile(png, overlays / f"{name}-{png.name}")
    log(f"maps: {len(test)} test slide(s) per method in {out / 'maps'}; overlays in {overlays}")


METRIC_ORDER = ("dice", "iou", "ap", "slide_auc", "tile_auc", "train_cpu_min", "train_wall_min")


def results_markdown(results: pd.DataFrame) -> str:
    """A method × metric markdown table of tidy ``method, metric, value`` rows.

    Several rows per cell (e.g. one per fold) are shown as mean ± sd.
    """
    agg = results.groupby(["method", "metric"], sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    agg["cell"] = [f"{m:.3f} ± {s:.3f}" if c > 1 else f"{m:.3f}"
                   for m, s, c in zip(agg["mean"], agg["std"].fillna(0.0), agg["count"])]
    wide = agg.pivot_table(index="method", columns="metric", values="cell", aggfunc="first", sort=False).fillna("")
    from .metrics.report import render_markdown

    cols = [c for c in METRIC_ORDER if c in wide.columns] + [c for c in wide.columns if c not in METRIC_ORDER]
    return render_markdown(["method", *cols], [[str(method), *(str(row[c]) for c in cols)]
                                               for method, row in wide[cols].iterrows()])


def _label(path: Path) -> int:
    with Bag(path) as bag:
        return bag.label


__all__ = ["METHODS", "METHOD_NAMES", "Method", "StudyConfig", "results_markdown", "resolve_methods", "run_study", "unlabeled_prior"]
