"""ABMIL on precomputed features: seconds per training epoch for 1,000 bags of 500 tiles.

    python benchmarks/bench_abmil_epoch.py [--bags 1000] [--tiles 500] [--dim 512] [--batch-size 1 8]

Bags are random float16 features held in memory (the model computes in float32); one epoch =
one pass of the engine-facing hooks (train_batches + training_step + backward + Adam step).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import weakseg  # noqa: F401
from weakseg.learners import create_learner


def epoch_seconds(bags: list[np.ndarray], y: np.ndarray, batch_size: int, gated: bool, device: str) -> float:
    learner = create_learner("abmil", encoder="features", gated=gated, batch_size=batch_size, device=device)
    source = learner.prepare_data(bags, y)
    learner.device_ = torch.device(device)
    learner.data_info_ = learner.data_info(source)
    learner.module_ = learner.build_module(learner.data_info_).to(device).train()
    opt = torch.optim.Adam(learner.module_.parameters(), lr=learner.lr, weight_decay=learner.weight_decay)
    t0 = time.perf_counter()
    for batch in learner.train_batches(source, 0, np.random.default_rng(0)):
        loss = learner.training_step(batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bags", type=int, default=1000)
    ap.add_argument("--tiles", type=int, default=500)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--batch-size", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    bags = [rng.standard_normal((args.tiles, args.dim), dtype=np.float32).astype(np.float16) for _ in range(args.bags)]
    y = np.arange(args.bags) % 2
    print(f"{args.bags} bags x {args.tiles} tiles x {args.dim}-d features, {args.threads} thread(s), {args.device}")
    print("| attention | batch | s / epoch | bags / s |\n|---|---:|---:|---:|")
    for gated in (False, True):
        for bs in args.batch_size:
            s = epoch_seconds(bags, y, bs, gated, args.device)
            print(f"| {'gated' if gated else 'plain'} | {bs} | {s:.1f} | {args.bags / s:.0f} |", flush=True)


if __name__ == "__main__":
    main()
