"""Class-prior estimators on region labels: true π vs BBE, Elkan–Noto and the negative-slide estimator.

Data: ../shared/data/glas_train (85 real GlaS images, 37 benign; tiled at 1.24 µm/px, 128-px tiles;
skipped when absent) and a synthetic cohort (`weakseg synth --slides 24 --seed 0 --size 4096x1536
--mask-fraction 1.0`, 12 slides with ISUP 0; tiled at level 1, 128-px tiles). Each is weakened with
`weaken --mode pu --positive-fraction 0.1` (10 % of the cancer regions labelled, eroded 4 px) for
several weaken seeds. True π: cancer share of the unlabeled tissue pixels, from the ground-truth masks
(`weakseg.study.unlabeled_prior`); no estimator sees the masks.

All three estimators use the same pixels and features (`weakseg.losses.prior.sample_bag_pixels`:
up to 256 labelled and 256 unlabeled pixels a tile, HED + brightness with local means / standard
deviations at 2, 5, 12 µm) and a standardised logistic regression (C = 0.01):
BBE and Elkan–Noto through `PriorEstimator` (labelled vs unlabeled, 50 % held out) on 60,000 rows
drawn in proportion to the pixels they stand for (a pixel-uniform sample, which Elkan–Noto's
labelling frequency needs); the negative-slide estimator (`estimate_bag_prior`, adjusted
classify-and-count at a 10 % negative-slide rate, 6 slide folds) and its probabilistic variant
(PACC, shown for comparison). Single process; one run per (dataset, seed), seeded.

    python benchmarks/bench_prior.py [--seeds 0 1 2 3 4 5] [--work DIR] [--datasets glas synth]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from weakseg.losses.prior import PriorEstimator, estimate_bag_prior, sample_bag_pixels
from weakseg.study import unlabeled_prior
from weakseg.weaken import weaken_bags

GLAS = Path(__file__).resolve().parents[2] / "shared" / "data" / "glas_train"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def tiled(work: Path, name: str) -> Path | None:
    """Tile bags of one dataset under ``work`` (reused when present)."""
    from weakseg.tiling.tiler import TileConfig, tile_cohort

    out = work / name / "bags"
    if name == "glas_train":
        if not (GLAS / "train.csv").is_file():
            log(f"{GLAS}: absent, glas_train skipped")
            return None
        tile_cohort(GLAS, out, TileConfig(mpp=1.24, tile_size=128))
    else:
        from weakseg.synth import make_cohort

        cohort = work / name / "cohort"
        if not (cohort / "train.csv").is_file():
            make_cohort(cohort, 24, seed=0, size=(4096, 1536), mask_fraction=1.0, resume=True)
        tile_cohort(cohort, out, TileConfig(level=1, tile_size=128))
    return out


def classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=1000))


def scar_priors(sample, seed: int, n: int = 60_000) -> tuple[float, float]:
    """BBE and Elkan–Noto on a pixel-uniform resample of the sampled pixels."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(sample.s), n, replace=True, p=sample.weights / sample.weights.sum())
    X, s = sample.X[rows], sample.s[rows]
    return tuple(PriorEstimator(m, classifier=classifier(), random_state=seed).fit(X, s).prior_
                 for m in ("bbe", "elkan_noto"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5], help="weaken seeds")
    ap.add_argument("--datasets", nargs="+", default=["glas_train", "synthetic"], choices=["glas_train", "synthetic"])
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    tmp = None
    if args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_prior_")
        args.work = Path(tmp.name)
    rows = []
    for name in args.datasets:
        bags = tiled(args.work, name)
        if bags is None:
            continue
        for seed in args.seeds:
            pu = args.work / name / f"pu_seed{seed}"
            if not pu.is_dir():
                weaken_bags(bags, pu, "pu", positive_fraction=0.1, seed=seed)
            true = unlabeled_prior(pu)
            t0 = time.perf_counter()
            sample = sample_bag_pixels(pu, random_state=seed)
            bbe, en = scar_priors(sample, seed)
            ours = estimate_bag_prior(sample, random_state=seed)
            pacc = estimate_bag_prior(sample, negative_rate=None, random_state=seed)
            rows.append((name, seed, true, bbe, en, ours.prior, pacc.prior))
            log(f"{name} seed {seed}: true {true:.4f} bbe {bbe:.4f} en {en:.4f} ours {ours.prior:.4f} "
                f"pacc {pacc.prior:.4f} ({time.perf_counter() - t0:.0f} s)")
    if not rows:
        sys.exit("no dataset could be built")
    print("Relative error = estimate / true − 1. Weaken seeds 0–2 were used to choose the method (ACC at a 10 % "
          "negative-slide rate, classifier, feature scales); seeds 3–5 were held out. The 0.5 floor on the ACC "
          "threshold was added later for nearly separable scores (it does not change glas_train).\n")
    print("| dataset | seed | true π | BBE | Elkan–Noto | negative-slide ACC | PACC | rel. err. BBE "
          "| rel. err. E–N | rel. err. ACC | rel. err. PACC |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, seed, true, *est in rows:
        errs = " | ".join(f"{e / true - 1:+.0%}" for e in est)
        print(f"| {name} | {seed} | {true:.3f} | " + " | ".join(f"{e:.3f}" for e in est) + f" | {errs} |")
    for name in dict.fromkeys(r[0] for r in rows):
        err = np.array([[e / r[2] - 1 for e in r[3:]] for r in rows if r[0] == name])
        print(f"| {name} | max \\|err\\| | | | | | | " + " | ".join(f"{v:.0%}" for v in np.abs(err).max(0)) + " |")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
