"""The end-to-end demo (``weakseg demo``): a synthetic cohort, or any PANDA-layout folder with ``--real``.

synth (or a real cohort) → split → tile → :func:`weakseg.study.run_study` (weaken → train
supervised, nnPU, MIL→seg with refinement, … → evaluate on held-out slides → slide maps) → report.
Every stage writes a named artifact with the settings it was made with and is skipped only when
those settings match, so an interrupted demo resumes where it stopped and a changed one redoes
what changed.

Layout of ``OUT``::

    cohort/                 PANDA-layout synthetic cohort (weakseg synth; absent with --real)
    splits.csv              slide-level train/test split (weakseg.splits)
    tiles/                  tile bags of every slide (weakseg tile)
    bags/train, bags/test   links to the split's bags
    weak/pu, weak/slide     simulated weak labels of the training bags (weakseg weaken)
    runs/<method>/          one training run per method (weakseg train)
    maps/<method>/          slide maps of the first test slides (weakseg predict)
    report/                 comparison table (CSV, markdown), figure, overlays, summary.md
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .atomic import atomic_write_text
from .bags import list_bags
from .errors import WeaksegError
from .artifacts import stage
from .study import METHODS, StudyConfig, results_markdown, run_study

Log = Callable[[str], None]


@dataclass
class DemoConfig:
    """The cohort (synthetic, or ``real``: a PANDA-layout folder), how it is tiled, what is trained.

    The defaults run in minutes on 2 CPU cores. ``level``/``mpp``: the tiles' resolution (one of
    them; ``mpp`` wins when both are set).
    """

    slides: int = 24
    seed: int = 0
    size: tuple[int, int] = (4096, 1536)
    real: Path | None = None
    tile_size: int = 128
    overlap: int = 0
    level: int | None = 1
    mpp: float | None = None
    test_fraction: float = 0.33
    positive_fraction: float = 0.1
    profile: str = "tiny"
    methods: tuple[str, ...] = ("supervised", "nnpu", "mil_refine")
    n_maps: int = 2
    extra_overrides: dict[str, list[str]] = field(default_factory=dict)


def run_demo(out: str | Path, config: DemoConfig | None = None, log: Log = print) -> pd.DataFrame:
    """Run (or resume) the whole demo into ``out``; returns the tidy results table."""
    config = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cohort = Path(config.real) if config.real is not None else make_demo_cohort(out, config, log)
    split = make_demo_split(out, cohort, config, log)
    bags = tile_demo_cohort(out, cohort, config, log)
    study = StudyConfig(methods=config.methods, profile=config.profile, seed=config.seed,
                        positive_fraction=config.positive_fraction, n_maps=config.n_maps,
                        extra_overrides=config.extra_overrides)
    train = [bags[i] for i in split["train"] if i in bags]
    test = [bags[i] for i in split["test"] if i in bags]
    table = run_study(out, train, test, study, log)
    write_summary(out, table, config)
    log(f"report: {out / 'report' / 'summary.md'}")
    return table


# -- data stages ---------------------------------------------------------------------------
def make_demo_cohort(out: Path, config: DemoConfig, log: Log) -> Path:
    """Synthesise the PANDA-layout cohort (reused only when made with the same slides, size and seed)."""
    from .synth import make_cohort

    cohort = out / "cohort"
    settings = {"slides": config.slides, "size": list(config.size), "seed": config.seed}
    with stage(cohort, "cohort", settings, clear=True) as st:
        if st.reused:
            log(f"cohort: reusing {cohort}")
        else:
            log(f"cohort: synthesising {config.slides} slides of {config.size[0]}x{config.size[1]} px (seed {config.seed})")
            make_cohort(cohort, config.slides, seed=config.seed, size=config.size, mask_fraction=1.0, resume=st.resumed)
    return cohort


def make_demo_split(out: Path, cohort: Path, config: DemoConfig, log: Log) -> dict[str, list[str]]:
    """A seeded slide-level train/test split stratified by provider and ISUP (``splits.csv``)."""
    from .splits import make_splits, write_splits

    path = out / "splits.csv"
    table = pd.read_csv(cohort / "train.csv").rename(columns={"image_id": "slide_id"})
    n_folds = max(2, round(1 / config.test_fraction))
    splits = make_splits(table, n_folds=n_folds, seed=config.seed, val_fraction=0.0,
                         stratify=("data_provider", "isup_grade"))
    fold0 = splits[splits["fold"] == 0]
    if not path.is_file() or not pd.read_csv(path).equals(fold0.reset_index(drop=True)):
        write_splits(fold0, path)
    split = {name: sorted(fold0.loc[fold0["split"] == name, "slide_id"]) for name in ("train", "test")}
    log(f"split: {len(split['train'])} training and {len(split['test'])} test slides ({path.name})")
    return split


def tile_demo_cohort(out: Path, cohort: Path, config: DemoConfig, log: Log) -> dict[str, Path]:
    """Tile every slide of the cohort into ``tiles/`` (resumable); bag path by slide id."""
    from .tiling import TileConfig, tile_cohort

    res = {"mpp": config.mpp} if config.mpp is not None else {"level": config.level or 0}
    tile_config = TileConfig(tile_size=config.tile_size, stride=config.tile_size - config.overlap, **res)
    target = out / "tiles"
    settings = {"cohort": str(cohort.resolve()), "tile_size": config.tile_size, "overlap": config.overlap, **res}
    with stage(target, "tile", settings, clear=True) as st:
        if not st.reused:  # tile_cohort resumes an interrupted run itself (complete bags are skipped)
            report = tile_cohort(cohort, target, tile_config)
            if report.n_failed:
                raise WeaksegError(f"tiling failed for {report.n_failed} slide(s); see {report.manifest}")
    paths = {p.stem: p for p in list_bags(target)}
    where = f"{config.mpp} µm/px" if config.mpp is not None else f"level {config.level or 0}"
    log(f"tile: {len(paths)} slides, tiles of {config.tile_size} px (overlap {config.overlap}) at {where} ({target})")
    return paths


# -- report ----------------------------------------------------------------------------------
def write_summary(out: Path, table: pd.DataFrame, config: DemoConfig) -> Path:
    """``report/summary.md``: settings, the comparison table, ratios to supervised, PU risks."""
    priors = json.loads((out / "priors.json").read_text())["priors"]
    what = (f"Real cohort {config.real}" if config.real is not None else
            f"Synthetic cohort: {config.slides} slides of {config.size[0]}x{config.size[1]} px, seed {config.seed}")
    where = f"{config.mpp} µm/px" if config.mpp is not None else f"level {config.level or 0}"
    lines = [
        "# weakseg demo report",
        "",
        f"{what}; tiles {config.tile_size} px (overlap {config.overlap}) at {where}; recipes' `{config.profile}` profile. "
        f"PU bags annotate {config.positive_fraction:.0%} of the cancer regions; true π = {priors['true']:.3f}.",
        "",
        "## Scores on held-out slides (pixel scores pooled over the test slides' tiles)",
        "",
        results_markdown(table),
        "",
    ]
    ratios = _ratios(table)
    if ratios:
        lines += ["## Dice (cancer, pooled) relative to supervised", ""]
        lines += [f"- {name}: {ratio:.2f} × supervised" for name, ratio in ratios.items()]
        lines.append("")
    risks = _negative_risks(out)
    if risks:
        lines += ["## Negative risk (R̂u⁻ − π·R̂p⁻) during training, minimum over epochs", ""]
        lines += [f"- {name}: {value:+.4f}" for name, value in risks.items()]
        lines += ["", "uPU's estimate can go below zero (overfitting); nnPU's correction keeps it at or above 0 "
                  "(see benchmarks/bench_pu_risk.py for the epoch-by-epoch curves).", ""]
    lines += ["Files: `seg_summary.csv`, `seg_per_slide.csv`, `seg_summary.png`, `overlays/`, "
              "`../results.csv`, runs under `../runs/`.",
              "", f"Settings: `{json.dumps(asdict(config), default=str)}`"]
    path = out / "report" / "summary.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _ratios(table: pd.DataFrame) -> dict[str, float]:
    dice = table[table["metric"] == "dice"].set_index("method")["value"]
    if "supervised" not in dice or not dice["supervised"] > 0:
        return {}
    return {m: float(v / dice["supervised"]) for m, v in dice.items() if m != "supervised" and not m.startswith("baseline")}


def _negative_risks(out: Path) -> dict[str, float]:
    result = {}
    for metrics in sorted((out / "runs").glob("*/metrics.csv")):
        frame = pd.read_csv(metrics)
        # the engine logs the epoch mean of the training steps' negative risk ("train_negative_risk")
        column = next((c for c in frame.columns if "negative_risk" in c), None)
        if column is not None:
            result[metrics.parent.name] = float(frame[column].min())
    return result


__all__ = ["METHODS", "DemoConfig", "run_demo"]
