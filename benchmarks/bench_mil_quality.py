"""MIL quality on a synthetic cohort: slide AUC and tile AUC (against the masks) on held-out slides.

    weakseg synth /tmp/milq/cohort --slides 48 --seed 0 --mask-fraction 1.0
    weakseg tile /tmp/milq/cohort /tmp/milq/bags --level 1 --tile-size 32 --codec raw --min-coverage 0.5
    python benchmarks/bench_mil_quality.py /tmp/milq/bags [--recipes abmil_gated clam_sb ...]

Each recipe's ``tiny`` profile is trained on two thirds of the slides (stratified by label, seeded;
20 % of those validate and pick the best epoch) and scored on the remaining third.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import weakseg  # noqa: F401
from weakseg.bags import Bag, list_bags
from weakseg.metrics.mil import evaluate_mil
from weakseg.recipes import find_recipe, load_recipe

RECIPES = ("abmil_gated", "clam_sb", "topk_mil_lerousseau2020")


def stratified_split(paths: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """``(rest, held)``: ``fraction`` of each label's slides held out, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[Path]] = {}
    for p in sorted(paths):
        with Bag(p) as bag:
            by_label.setdefault(bag.label, []).append(p)
    held: list[Path] = []
    for label in sorted(by_label):
        group = by_label[label]
        held += [group[i] for i in rng.permutation(len(group))[: max(1, round(fraction * len(group)))]]
    return sorted(set(paths) - set(held)), sorted(held)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bags", type=Path)
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES))
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override KEY.PATH=VALUE")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = list_bags(args.bags)
    train_val, test = stratified_split(paths, 1 / 3, args.seed)
    train, val = stratified_split(train_val, 0.2, args.seed + 1)
    print(f"{len(train)} train / {len(val)} val / {len(test)} test slides from {args.bags}")
    rows = []
    for name in args.recipes:
        recipe = load_recipe(find_recipe(name), profile=args.profile,
                             overrides=[f"data.bags={args.bags}", *args.overrides])
        learner = recipe.build_learner()
        t0 = time.perf_counter()
        learner.fit(train, X_val=val)
        seconds = time.perf_counter() - t0
        table = evaluate_mil(learner, test).set_index(["provider", "metric"])["value"]
        best = max(learner.history_, key=lambda h: h.get("val_slide_auc", float("-inf")))
        rows.append((name, table[("all", "slide_auc")], table[("all", "tile_auc")], table[("all", "tile_f1")],
                     best["epoch"] + 1, len(learner.history_), seconds))
        print(f"{name}: slide AUC {rows[-1][1]:.3f}, tile AUC {rows[-1][2]:.3f} ({seconds:.0f} s)", flush=True)
    print("\n| recipe (tiny) | slide AUC | tile AUC | tile F1 | best epoch / epochs | train time |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, s_auc, t_auc, f1, best, n, sec in rows:
        print(f"| {name} | {s_auc:.3f} | {t_auc:.3f} | {f1:.3f} | {best} / {n} | {sec:.0f} s |")


if __name__ == "__main__":
    main()
