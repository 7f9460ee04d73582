"""Real-data benchmark: K-fold slide-level cross-validation of the learners on a real PANDA-layout cohort.

Default: ../shared/data/glas_train (85 real GlaS H&E images laid out like PANDA), 3 folds
stratified by slide label (seeded), tiles of 128 px at 2.48 µm/px with 64 px overlap, the recipes' ``cpu``
profiles. Per fold, through the public API (the same code as ``weakseg demo --real``):
tile → weaken (slide labels; 10 % of cancer regions) → train → predict slide maps → evaluate.
Reports pooled cancer Dice / IoU / AP on the held-out slides' tiles for the segmentation
learners (every refinement round of MIL→seg) and both naive baselines, slide and tile AUC of the
MIL recipes, CPU minutes per learner; mean ± sd over folds.

It is long (tens of minutes on 2 cores): every stage is resumable, so run it in the background
and run it again after an interruption. Results: ``OUT/summary.md`` and ``OUT/results.csv``.

    python benchmarks/bench_real.py --out bench_out/real
    python benchmarks/bench_real.py --methods supervised,nnpu_est --folds 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from weakseg.demo import DemoConfig, tile_demo_cohort
from weakseg.splits import make_splits
from weakseg.study import METHOD_NAMES, StudyConfig, results_markdown, run_study

DEFAULT_COHORT = Path(__file__).resolve().parents[2] / "shared" / "data" / "glas_train"
DEFAULT_METHODS = ("supervised", "nnpu_est", "mil_refine", "topk", "abmil", "clam", "nnpu")
GOALS = """Goals (issue 7): supervised ≥ 0.80 pooled cancer Dice; MIL→seg ≥ 0.75 × supervised and ≥ slide-label
baseline + 0.05; nnPU (estimated π) ≥ 0.9 × supervised; slide AUC ≥ 0.95 for the MIL recipes."""


def folds_of(cohort: Path, n_folds: int, seed: int) -> pd.DataFrame:
    table = pd.read_csv(cohort / "train.csv").rename(columns={"image_id": "slide_id"})
    table["label"] = (table["isup_grade"] > 0).astype(int)
    return make_splits(table, n_folds=n_folds, seed=seed, val_fraction=0.0, stratify=("label",))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=DEFAULT_COHORT)
    parser.add_argument("--out", type=Path, default=Path("bench_out/real"))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--only-folds", default=None, help="comma-separated fold numbers to run (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mpp", type=float, default=2.48)
    parser.add_argument("--tile-size", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels (stride = tile size - overlap)")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--positive-fraction", type=float, default=0.1)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"from {', '.join(METHOD_NAMES)}")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD:KEY=VALUE",
                        help="extra recipe override for one method (repeatable)")
    args = parser.parse_args()
    if not (args.cohort / "train.csv").is_file():
        sys.exit(f"{args.cohort}: not a PANDA-layout cohort (no train.csv)")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    extra: dict[str, list[str]] = {}
    for item in args.set:
        name, _, override = item.partition(":")
        extra.setdefault(name, []).append(override)
    args.out.mkdir(parents=True, exist_ok=True)
    bags = tile_demo_cohort(args.out, args.cohort, DemoConfig(real=args.cohort, mpp=args.mpp, tile_size=args.tile_size, overlap=args.overlap), log)
    splits = folds_of(args.cohort, args.folds, args.seed)
    splits.to_csv(args.out / "splits.csv", index=False)
    wanted = range(args.folds) if args.only_folds is None else [int(f) for f in args.only_folds.split(",")]
    frames = []
    for fold in wanted:
        part = splits[splits["fold"] == fold]
        train = [bags[i] for i in part.loc[part["split"] == "train", "slide_id"] if i in bags]
        test = [bags[i] for i in part.loc[part["split"] == "test", "slide_id"] if i in bags]
        log(f"fold {fold}: {len(train)} training, {len(test)} test slides")
        start = time.perf_counter()
        config = StudyConfig(methods=methods, profile=args.profile, seed=args.seed,
                             positive_fraction=args.positive_fraction, n_maps=2, extra_overrides=extra)
        table = run_study(args.out / f"fold{fold}", train, test, config, log)
        frames.append(table.assign(fold=fold))
        log(f"fold {fold} done in {(time.perf_counter() - start) / 60:.1f} min")
        write_summary(args, pd.concat(frames, ignore_index=True), [f for f in wanted if f <= fold])
    print((args.out / "summary.md").read_text())


def write_summary(args: argparse.Namespace, results: pd.DataFrame, folds: list[int]) -> None:
    """``OUT/results.csv`` (every fold's rows) and ``OUT/summary.md`` (mean ± sd over the folds done)."""
    results.to_csv(args.out / "results.csv", index=False)
    priors = {f: json.loads((args.out / f"fold{f}" / "priors.json").read_text())["priors"] for f in folds}
    prior_line = "; ".join(f"fold {f}: " + ", ".join(f"{k} π = {v:.3f}" for k, v in p.items()) for f, p in priors.items())
    text = "\n".join([
        f"# Real-data benchmark: {args.cohort.name}, folds {folds} of {args.folds} (seed {args.seed}), "
        f"{args.tile_size}-px tiles (overlap {args.overlap}) at {args.mpp} µm/px, profile `{args.profile}`",
        "", "Pooled cancer Dice / IoU / AP on the held-out slides' tiles; mean ± sd over folds.", "",
        results_markdown(results), "", f"Class priors: {prior_line}", "", GOALS, "",
    ])
    (args.out / "summary.md").write_text(text)


if __name__ == "__main__":
    main()
