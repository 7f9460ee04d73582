"""HoVer-Net learners on real MoNuSeg tiles: 3-fold CV, beside the classical baseline.

Data: the 13 tiles of ``../shared/data/monuseg_train`` (1000 x 1000, ~0.25 µm/px), dealt into the
same 3 folds as ``bench_nuclei.py`` (seeded permutation, seed 0). Rows per fold, every model
trained on the two other folds only (no validation split, a fixed schedule: nothing is selected
on the held-out tiles):

- ``classical``: :func:`weakseg.nuclei.classical_nuclei` with its defaults (no training);
- ``hovernet_seg``: complete instance masks;
- ``hovernet_pu@F``: a fraction F of each training tile's nuclei annotated (:func:`drop_instances`,
  seeded), the rest unlabeled; NP by the nnPU risk with π estimated from the stain;
- ``hovernet_seg@F``: the same F of nuclei, the rest treated as background (the naive baseline PU
  learning must beat).

Profile ``cpu``: backbone ``hovernet_cpu``, images at 0.5 µm/px (``downsample`` 2), 20 epochs of
50 steps of 8 windows of 128 px, Adam 1e-3 with cosine decay, ``he`` photometric augmentation.
Scores (Dice, AJI, DQ, SQ, PQ) are pooled over each fold's held-out tiles at full resolution;
mean ± sd over folds. Wall and CPU time per fit are recorded.

    python benchmarks/bench_hovernet.py [--data ../shared/data/monuseg_train] [--out bench_out/hovernet]
        [--fraction 0.3] [--epochs 20] [--folds 0 1 2] [--threads 2] [--methods hovernet_seg ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_nuclei import folds  # noqa: E402  (the same folds as the classical benchmark)

from weakseg.learners import create_learner  # noqa: E402
from weakseg.metrics.instance import pooled_scores  # noqa: E402
from weakseg.nuclei import classical_nuclei  # noqa: E402
from weakseg.nuclei.data import NucleiImage, drop_instances, load_nuclei_folder  # noqa: E402

METRICS = ["dice", "aji", "dq", "sq", "pq"]


def fit_predict(name: str, train: list[NucleiImage], test: list[NucleiImage], epochs: int,
                save: Path) -> tuple[list, dict]:
    learner = create_learner(name, max_epochs=epochs, steps_per_epoch=50, device="cpu", random_state=0)
    wall, cpu = time.perf_counter(), time.process_time()
    learner.fit(train)
    learner.save(save)  # kept for later checks (int8, post-processing) on the same fold
    info = {"fit_wall_s": time.perf_counter() - wall, "fit_cpu_s": time.process_time() - cpu,
            "prior": getattr(learner, "prior_", None)}
    return learner.predict_instances(test), info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/monuseg_train")
    parser.add_argument("--out", type=Path, default=Path("bench_out/hovernet"))
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--folds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="*", default=None, help="only these rows (e.g. hovernet_seg classical)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    data = {d.id: d for d in load_nuclei_folder(args.data)}
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "rows.jsonl"
    done = {(r["method"], r["fold"]) for r in map(json.loads, rows_path.read_text().splitlines())} if rows_path.exists() else set()
    f = args.fraction
    for k, test_ids in enumerate(folds(sorted(data), 3)):
        if k not in args.folds:
            continue
        test = [data[i] for i in test_ids]
        full = [data[i] for i in sorted(data) if i not in test_ids]
        weak = [drop_instances(d, f, seed=k) for d in full]
        naive = [NucleiImage(d.id, d.rgb, d.instances, None) for d in weak]
        plans = {"classical": None, "hovernet_seg": ("hovernet_seg", full),
                 f"hovernet_pu@{f:g}": ("hovernet_pu", weak), f"hovernet_seg@{f:g}": ("hovernet_seg", naive)}
        for method, plan in plans.items():
            if (method, k) in done or (args.methods is not None and method not in args.methods):
                continue
            if plan is None:
                preds, info = [classical_nuclei(d.rgb) for d in test], {}
            else:
                preds, info = fit_predict(plan[0], plan[1], test, args.epochs,
                                          args.out / f"{method.replace('@', '_at_')}_fold{k}.pt")
            scores = pooled_scores([(d.instances, p) for d, p in zip(test, preds)])
            row = {"method": method, "fold": k, "n_train": len(full), "n_test": len(test), **scores, **info}
            print(json.dumps(row), flush=True)
            with rows_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    table = pd.DataFrame(map(json.loads, rows_path.read_text().splitlines()))
    order = list(dict.fromkeys(table["method"]))
    lines = ["| method | folds | " + " | ".join(METRICS) + " | fit CPU-min |", "|---|---|" + "---|" * (len(METRICS) + 1)]
    for method in order:
        t = table[table["method"] == method]
        cells = [f"{t[m].mean():.3f} ± {t[m].std(ddof=1) if len(t) > 1 else 0:.3f}" for m in METRICS]
        cpu = f"{t['fit_cpu_s'].mean() / 60:.1f}" if "fit_cpu_s" in t and t["fit_cpu_s"].notna().any() else "–"
        lines.append(f"| {method} | {len(t)} | " + " | ".join(cells) + f" | {cpu} |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
