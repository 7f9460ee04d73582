"""Segmentation learners on a synthetic PANDA cohort: pixel Dice / AP of nnPU, uPU and full supervision.

Data: ``weakseg.synth.make_cohort`` (``--slides`` slides of 2048×1024 px, every slide with a
mask, no pen marks), tiled at level 0 into 128-px tiles (``weakseg.tiling``), weakened to PU
labels with ``weakseg weaken --mode pu`` (half the cancer regions of a slide labelled, eroded
by 2 px). Slides are split by a seeded, label-stratified shuffle: a quarter for testing.
Methods, each trained for ``--epochs`` epochs on the training slides with the same backbone,
optimiser (Adam 1e-3, constant rate, batch 8, flips/rotations) and seed:

* ``supervised_seg``: the ground-truth masks (upper bound);
* ``nnpu_seg`` with the oracle prior (π within the unlabeled training tissue, from the masks);
* ``nnpu_seg`` with π estimated by BBE (``estimate_prior``) on the test slides' PU labels from a
  first nnPU model trained with a wrong guess (π = 0.5), then retrained with the estimate;
* ``nnpu_seg(nnpu=False)``: uPU with the oracle prior.

Scores: cancer Dice / IoU at p ≥ 0.5 and average precision of the cancer probability on the
test slides' labelled tissue, pooled over tiles (``weakseg.metrics.seg``). One thread, medians
over ``--seeds`` seeds.

    python benchmarks/bench_seg_learners.py --slides 12 --epochs 10 --seeds 0 1 --backbone unet_tiny
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import weakseg  # noqa: F401  (applies the timm/torchvision shim before torch users)
import torch

from weakseg.bags import open_bags
from weakseg.data.seg import SegTileDataset
from weakseg.learners import create_learner
from weakseg.synth import make_cohort
from weakseg.tiling.tiler import TileConfig, tile_cohort
from weakseg.weaken import weaken_bags

METRICS = ("dice_cancer", "iou_cancer", "ap_cancer")


def build_data(root: Path, n_slides: int) -> dict[str, list[Path]]:
    make_cohort(root / "cohort", n_slides=n_slides, seed=0, size=(2048, 1024), mask_fraction=1.0, pen_fraction=0.0)
    tile_cohort(root / "cohort", root / "full", TileConfig(tile_size=128, level=0, codec="raw", min_coverage=0.5))
    weaken_bags(root / "full", root / "pu", "pu", positive_fraction=0.5, erode=2, seed=0)
    bags = sorted(open_bags(root / "full"), key=lambda b: b.slide_id)
    rng = np.random.default_rng(0)
    test: list[str] = []
    for label in (0, 1):
        ids = [b.slide_id for b in bags if b.label == label]
        test += list(rng.choice(ids, size=max(1, len(ids) // 4), replace=False))
    split = {"train": [b.path.name for b in bags if b.slide_id not in test],
             "test": [b.path.name for b in bags if b.slide_id in test]}
    return {f"{kind}_{part}": [root / kind / n for n in names] for kind in ("full", "pu") for part, names in split.items()}


def oracle_prior(pu_paths: list[Path]) -> float:
    data = SegTileDataset(pu_paths, target="pu")
    cancer = unlabeled = 0
    for lo in range(0, len(data), 256):
        rows = np.arange(lo, min(lo + 256, len(data)))
        _, targets = data.read(rows)
        truth = data.truth(rows)
        u = targets == 0
        cancer += int((truth[u] == 2).sum())
        unlabeled += int(u.sum())
    return cancer / unlabeled


def run_methods(paths: dict[str, list[Path]], backbone: str, epochs: int, seed: int) -> dict[str, dict[str, float]]:
    common = dict(backbone=backbone, batch_size=8, optimizer="adam", lr=1e-3, scheduler="none",
                  max_epochs=epochs, device="cpu", random_state=seed)
    pi = oracle_prior(paths["pu_train"])
    test_pu = SegTileDataset(paths["pu_test"], target="pu")
    test_full = SegTileDataset(paths["full_test"], target="full")
    out: dict[str, dict[str, float]] = {}

    def record(name: str, learner, data, extra: dict[str, float]) -> None:
        t0 = time.perf_counter()
        learner.fit(paths["full_train"] if data is test_full else paths["pu_train"])
        metrics = learner.evaluate(data)
        out[name] = {**{k: metrics[k] for k in METRICS}, **extra, "minutes": (time.perf_counter() - t0) / 60}
        print(f"seed {seed} {name}: {out[name]}", file=sys.stderr, flush=True)

    record("supervised_seg (full masks)", create_learner("supervised_seg", **common), test_full, {"prior": float("nan")})
    record("nnpu_seg, oracle π", create_learner("nnpu_seg", prior=pi, **common), test_pu, {"prior": pi})
    guess = create_learner("nnpu_seg", prior=0.5, **common).fit(paths["pu_train"])
    est = guess.estimate_prior(paths["pu_test"], random_state=seed)
    record("nnpu_seg, BBE-estimated π", create_learner("nnpu_seg", prior=est, **common), test_pu, {"prior": est})
    record("upu (nnpu=False), oracle π", create_learner("nnpu_seg", prior=pi, nnpu=False, **common), test_pu, {"prior": pi})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--backbone", default="unet_tiny")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="weakseg-bench-seg-") as tmp:
        paths = build_data(Path(tmp), args.slides)
        n_train = len(SegTileDataset(paths["full_train"], target="full"))
        n_test = len(SegTileDataset(paths["full_test"], target="full"))
        runs = [run_methods(paths, args.backbone, args.epochs, s) for s in args.seeds]
    print(f"Synthetic cohort: {args.slides} slides, {n_train} training / {n_test} test tiles of 128 px; "
          f"`{args.backbone}`, {args.epochs} epochs, Adam 1e-3, batch 8, CPU 1 thread; "
          f"median over seeds {args.seeds}.\n")
    print("| method | π used | cancer Dice | cancer IoU | cancer AP | train minutes |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in runs[0]:
        med = {k: statistics.median(r[name][k] for r in runs) for k in (*METRICS, "prior", "minutes")}
        prior = "—" if np.isnan(med["prior"]) else f"{med['prior']:.3f}"
        print(f"| {name} | {prior} | {med['dice_cancer']:.3f} | {med['iou_cancer']:.3f} | {med['ap_cancer']:.3f} "
              f"| {med['minutes']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
