"""The end-to-end demo on a synthetic cohort (``weakseg demo``).

synth → split → tile → weaken → train (supervised, nnPU, uPU, MIL→seg with refinement) →
evaluate on held-out slides → slide maps → report. Every stage writes a named artifact and is
skipped when that artifact already exists, so an interrupted demo resumes where it stopped.

Layout of ``OUT``::

    cohort/                 PANDA-layout synthetic cohort (weakseg synth)
    splits.csv              slide-level train/test split (weakseg.splits)
    bags/train, bags/test   tile bags (weakseg tile)
    weak/pu, weak/slide     simulated weak labels of the training bags (weakseg weaken)
    runs/<method>/          one training run per method (weakseg train)
    maps/<method>/          slide maps of the first test slides (weakseg predict)
    report/                 comparison table (CSV, markdown), figure, overlays, summary.md
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_write_text
from .bags import Bag, list_bags
from .errors import WeaksegError

Log = Callable[[str], None]
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@dataclass(frozen=True)
class Method:
    """One learner of the comparison: a shipped recipe, its training bags, extra overrides."""

    name: str
    recipe: str
    bags: str  # folder under OUT
    overrides: tuple[str, ...] = ()


METHODS: tuple[Method, ...] = (
    Method("supervised", "supervised_transunet.yaml", "bags/train"),
    Method("nnpu", "nnpu_transunet.yaml", "weak/pu"),
    Method("upu", "nnpu_transunet.yaml", "weak/pu", ("learner.params.nnpu=false", "name=upu_transunet")),
    Method("mil_refine", "mil_refine_transunet.yaml", "weak/slide"),
)


@dataclass
class DemoConfig:
    """Size of the synthetic cohort and how it is tiled; defaults run in minutes on 2 CPU cores."""

    slides: int = 24
    seed: int = 0
    size: tuple[int, int] = (4096, 1536)
    tile_size: int = 128
    level: int = 1
    test_fraction: float = 0.33
    positive_fraction: float = 0.1
    profile: str = "tiny"
    methods: tuple[str, ...] = ("supervised", "nnpu", "mil_refine")
    n_maps: int = 2
    extra_overrides: dict[str, list[str]] = field(default_factory=dict)


def run_demo(out: str | Path, config: DemoConfig | None = None, log: Log = print) -> pd.DataFrame:
    """Run (or resume) the whole demo into ``out``; returns the comparison table."""
    config = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cohort = make_demo_cohort(out, config, log)
    split = make_demo_split(out, cohort, config, log)
    tile_demo_cohort(out, cohort, split, config, log)
    weaken_demo_bags(out, config, log)
    prior = unlabeled_prior(out / "weak" / "pu")
    log(f"class prior of the unlabeled tissue (π, from the simulation's ground truth): {prior:.3f}")
    runs = {}
    for method in _methods(config):
        runs[method.name] = train_method(out, method, config, prior, log)
    table = compare(out, runs, log)
    write_maps(out, runs, config, log)
    write_summary(out, table, runs, prior, config)
    log(f"report: {out / 'report' / 'summary.md'}")
    return table


def _methods(config: DemoConfig) -> list[Method]:
    known = {m.name: m for m in METHODS}
    unknown = [m for m in config.methods if m not in known]
    if unknown:
        raise WeaksegError(f"unknown demo method(s) {unknown}; choose from {sorted(known)}")
    return [known[m] for m in config.methods]


# -- data stages ---------------------------------------------------------------------------
def make_demo_cohort(out: Path, config: DemoConfig, log: Log) -> Path:
    """Synthesise the PANDA-layout cohort (skipped when ``cohort/train.csv`` exists)."""
    from .synth import make_cohort

    cohort = out / "cohort"
    if (cohort / "train.csv").is_file():
        log(f"cohort: reusing {cohort}")
        return cohort
    log(f"cohort: synthesising {config.slides} slides of {config.size[0]}x{config.size[1]} px (seed {config.seed})")
    make_cohort(cohort, config.slides, seed=config.seed, size=config.size, mask_fraction=1.0)
    return cohort


def make_demo_split(out: Path, cohort: Path, config: DemoConfig, log: Log) -> dict[str, list[str]]:
    """A seeded slide-level train/test split stratified by provider and ISUP (``splits.csv``)."""
    path = out / "splits.csv"
    if not path.is_file():
        from .splits import make_splits, write_splits

        table = pd.read_csv(cohort / "train.csv").rename(columns={"image_id": "slide_id"})
        n_folds = max(2, round(1 / config.test_fraction))
        splits = make_splits(table, n_folds=n_folds, seed=config.seed, val_fraction=0.0,
                             stratify=("data_provider", "isup_grade"))
        write_splits(splits[splits["fold"] == 0], path)
    frame = pd.read_csv(path)
    split = {name: sorted(frame.loc[frame["split"] == name, "slide_id"]) for name in ("train", "test")}
    log(f"split: {len(split['train'])} training and {len(split['test'])} test slides ({path.name})")
    return split


def tile_demo_cohort(out: Path, cohort: Path, split: dict[str, list[str]], config: DemoConfig, log: Log) -> None:
    """Tile training and test slides into ``bags/train`` and ``bags/test`` (resumable)."""
    from .tiling import TileConfig, tile_cohort

    tile_config = TileConfig(tile_size=config.tile_size, level=config.level)
    for part, ids in split.items():
        report = tile_cohort(cohort, out / "bags" / part, tile_config, ids=ids)
        if report.n_failed:
            raise WeaksegError(f"tiling failed for {report.n_failed} slide(s); see {report.manifest}")
        n = sum(len(Bag(p)) for p in list_bags(out / "bags" / part))
        log(f"tile: {part}: {len(ids)} slides, {n} tiles of {config.tile_size} px at level {config.level}")


def weaken_demo_bags(out: Path, config: DemoConfig, log: Log) -> None:
    """Simulate slide-level labels and partial (PU) cancer annotations for the training bags."""
    from .weaken import weaken_bags

    for mode in ("slide", "pu"):
        target = out / "weak" / mode
        if len(list_bags(target) if target.is_dir() else []) == len(list_bags(out / "bags" / "train")):
            continue
        weaken_bags(out / "bags" / "train", target, mode, positive_fraction=config.positive_fraction, seed=config.seed)
    log(f"weaken: slide labels only (weak/slide); {config.positive_fraction:.0%} of cancer regions annotated (weak/pu)")


def unlabeled_prior(pu_bags: Path) -> float:
    """π = fraction of cancer pixels within the unlabeled tissue, from the ground-truth masks.

    The demo knows the answer, so nnPU gets the true prior (as in Kiryo et al.); on real data
    estimate it with :mod:`weakseg.losses.prior`.
    """
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


# -- training -------------------------------------------------------------------------------
def train_method(out: Path, method: Method, config: DemoConfig, prior: float, log: Log) -> Path:
    """Train one method from its shipped recipe (tiny profile); skipped when its model exists."""
    from . import api
    from .engine.rundir import MODEL_FILE

    run_dir = out / "runs" / method.name
    if (run_dir / MODEL_FILE).is_file():
        log(f"train: {method.name}: reusing {run_dir}")
        return run_dir
    resume = run_dir.is_dir() and any(run_dir.iterdir())  # an interrupted run continues from its checkpoint
    overrides = [f"data.bags={(out / method.bags).resolve()}", f"seed={config.seed}", *method.overrides]
    if method.name in ("nnpu", "upu"):
        overrides.append(f"learner.params.prior={prior:.6f}")
    overrides += config.extra_overrides.get(method.name, [])
    log(f"train: {method.name} ({method.recipe}, profile {config.profile}){' (resumed)' if resume else ''}")
    api.train(RECIPES / method.recipe, out=run_dir, overrides=overrides, profile=config.profile, resume=resume)
    return run_dir


# -- evaluation and report ----------------------------------------------------------------------
def compare(out: Path, runs: dict[str, Path], log: Log) -> pd.DataFrame:
    """Pixel Dice/IoU/AP of every method and the naive baselines on the held-out test bags."""
    from . import api
    from .metrics.report import write_report
    from .metrics.seg import SegEvaluator, SlideTruth
    from .panda import to_common_labels

    learners = {name: api.load_run(run) for name, run in runs.items()}
    evaluator = SegEvaluator()
    for path in list_bags(out / "bags" / "test"):
        with Bag(path) as bag:
            if not bag.has_masks or len(bag) == 0:
                continue
            provider = bag.meta.data_provider
            truth = SlideTruth(bag.slide_id, to_common_labels(bag.read_masks(), provider), provider=provider, label=bag.label)
            tiles = bag.read_tiles()
            for name, learner in learners.items():
                evaluator.add(name, truth, learner.predict_tiles(tiles))
            evaluator.add_baselines(truth)
    write_report(evaluator, out / "report")
    table = evaluator.summary()
    log("comparison on held-out slides (pooled pixel scores):")
    log((out / "report" / "seg_summary.md").read_text())
    return table


def write_maps(out: Path, runs: dict[str, Path], config: DemoConfig, log: Log) -> None:
    """Slide maps (pyramidal TIFF, GeoJSON, overlay PNG) of the first test slides with cancer, per method."""
    from . import api

    labelled = [(_label(p), p) for p in list_bags(out / "bags" / "test")]
    test = [p for _, p in sorted(labelled, key=lambda lp: (-lp[0], lp[1].name))][: config.n_maps]  # cancer slides first
    if not test:
        return
    subset = out / "maps" / "_bags"
    subset.mkdir(parents=True, exist_ok=True)
    for path in test:
        link = subset / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    overlays = out / "report" / "overlays"
    overlays.mkdir(parents=True, exist_ok=True)
    for name, run in runs.items():
        maps = out / "maps" / name
        if not (maps / api.SLIDES_CSV).is_file():
            api.predict(run, subset, maps)
        for png in sorted(maps.glob("*overlay*.png")):
            shutil.copyfile(png, overlays / f"{name}-{png.name}")
    log(f"maps: {len(test)} test slide(s) per method in {out / 'maps'}; overlays in {overlays}")


def _label(path: Path) -> int:
    with Bag(path) as bag:
        return bag.label


def write_summary(out: Path, table: pd.DataFrame, runs: dict[str, Path], prior: float, config: DemoConfig) -> Path:
    """``report/summary.md``: settings, the comparison table, ratios to supervised, PU risks."""
    from .metrics.report import markdown_table

    lines = [
        "# weakseg demo report",
        "",
        f"Synthetic cohort: {config.slides} slides of {config.size[0]}x{config.size[1]} px, seed {config.seed}; "
        f"tiles {config.tile_size} px at level {config.level}; recipes' `{config.profile}` profile. "
        f"PU bags annotate {config.positive_fraction:.0%} of the cancer regions; π = {prior:.3f}.",
        "",
        "## Pixel segmentation on held-out slides",
        "",
        markdown_table(table[table["group"] == "all"]),
    ]
    ratios = _ratios(table)
    if ratios:
        lines += ["## Dice (cancer, pooled) relative to supervised", ""]
        lines += [f"- {name}: {ratio:.2f} × supervised" for name, ratio in ratios.items()]
        lines.append("")
    risks = _negative_risks(runs)
    if risks:
        lines += ["## Negative risk (R̂u⁻ − π·R̂p⁻) during training, minimum over epochs", ""]
        lines += [f"- {name}: {value:+.4f}" for name, value in risks.items()]
        lines += ["", "uPU's estimate can go below zero (overfitting); nnPU's correction keeps it at or above 0 "
                  "(see benchmarks/bench_pu_risk.py for the epoch-by-epoch curves).", ""]
    lines += ["Files: `seg_summary.csv`, `seg_per_slide.csv`, `seg_summary.png`, `overlays/`, runs under `../runs/`."]
    path = out / "report" / "summary.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _ratios(table: pd.DataFrame) -> dict[str, float]:
    pooled = table[table["group"] == "all"].set_index("method")["dice_cancer_pooled"]
    if "supervised" not in pooled or not pooled["supervised"] > 0:
        return {}
    return {m: float(v / pooled["supervised"]) for m, v in pooled.items() if m != "supervised" and not m.startswith("baseline")}


def _negative_risks(runs: dict[str, Path]) -> dict[str, float]:
    out = {}
    for name, run in runs.items():
        metrics = run / "metrics.csv"
        if metrics.is_file():
            frame = pd.read_csv(metrics)
            column = next((c for c in frame.columns if "negative_risk" in c and "min" in c), None)
            column = column or next((c for c in frame.columns if "negative_risk" in c), None)
            if column is not None:
                out[name] = float(frame[column].min())
    return out
