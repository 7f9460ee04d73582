"""int8 HoVer-Net on real MoNuSeg tiles: PQ/AJI and speed fp32 vs int8, side by side in one process.

Uses the models ``bench_hovernet.py`` saved (``bench_out/hovernet/<method>_fold<k>.pt``, trained on the
other two folds) and the same folds. int8: :func:`weakseg.quantize.quantize_learner` (static, x86 backend)
calibrated on 16 windows cut from the fold's *training* tiles. Speed: median seconds of
``predict_maps`` over the held-out tiles (model-resolution images), fp32 and int8 alternating, torch
threads fixed.

    python benchmarks/bench_hovernet_int8.py [--models bench_out/hovernet] [--threads 2] [--method hovernet_seg]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_nuclei import folds  # noqa: E402

from weakseg.learners import Learner  # noqa: E402
from weakseg.metrics.instance import pooled_scores  # noqa: E402
from weakseg.nuclei.data import downsample_image, load_nuclei_folder  # noqa: E402
from weakseg.quantize import quantize_learner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/monuseg_train")
    parser.add_argument("--models", type=Path, default=Path("bench_out/hovernet"))
    parser.add_argument("--method", default="hovernet_seg")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    data = {d.id: d for d in load_nuclei_folder(args.data)}
    rows = []
    for k, test_ids in enumerate(folds(sorted(data), 3)):
        path = args.models / f"{args.method.replace('@', '_at_')}_fold{k}.pt"
        if not path.is_file():
            continue
        fp32 = Learner.load(path)
        train = [downsample_image(data[i], fp32.downsample) for i in sorted(data) if i not in test_ids]
        side = fp32.module_.default_cfg.in_size
        rng = np.random.default_rng(k)
        calib = np.stack([t.rgb[r:r + side, c:c + side] for t in train[:16]
                          for r, c in [rng.integers(0, np.array(t.rgb.shape[:2]) - side + 1)]][:16])
        int8 = quantize_learner(copy.deepcopy(fp32), calib)
        test = [data[i] for i in test_ids]
        scores = {}
        for name, learner in (("fp32", fp32), ("int8", int8)):
            preds = learner.predict_instances(test)
            scores[name] = pooled_scores([(d.instances, p) for d, p in zip(test, preds)])
        small = [downsample_image(d, fp32.downsample).rgb for d in test]
        times = {"fp32": [], "int8": []}
        for _ in range(3):
            for name, learner in (("fp32", fp32), ("int8", int8)):
                t0 = time.perf_counter()
                for img in small:
                    learner.predict_maps(img)
                times[name].append(time.perf_counter() - t0)
        med = {n: statistics.median(v) for n, v in times.items()}
        rows.append((k, scores, med))
        print(f"fold {k}: PQ {scores['fp32']['pq']:.3f} -> {scores['int8']['pq']:.3f}, AJI {scores['fp32']['aji']:.3f} -> "
              f"{scores['int8']['aji']:.3f}, maps {med['fp32']:.2f} s -> {med['int8']:.2f} s "
              f"({med['fp32'] / med['int8']:.2f}x)", flush=True)
    if rows:
        d_pq = [s["int8"]["pq"] - s["fp32"]["pq"] for _, s, _ in rows]
        speed = [m["fp32"] / m["int8"] for _, _, m in rows]
        print(f"mean PQ change {np.mean(d_pq):+.4f}; speed-up {np.mean(speed):.2f}x (folds {len(rows)})")


if __name__ == "__main__":
    main()
