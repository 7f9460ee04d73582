"""Cost of train-time augmentation per batch, next to one training step of the model it feeds.

Each preset and each transform alone on a batch of 8 × 128² tiles (float, [0, 1]) with their label
maps; the reference is one Adam step of the ``cpu``-profile segmentation backbone on the same
batch. Medians of repeats, one torch thread, measured side by side in one process.

    python benchmarks/bench_augment.py [--batch 8] [--size 128] [--repeats 15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from weakseg.data.augment import PRESETS, Augmenter
from weakseg.models import create_backbone

SINGLE = {
    "flips": {"flips": True},
    "elastic (p=1)": {"elastic": 1.0},
    "HED jitter": {"hed": 0.03},
    "brightness+contrast": {"brightness": 0.1, "contrast": 0.1},
    "saturation": {"saturation": 0.1},
    "hue": {"hue": 0.03},
    "Gaussian blur (p=1)": {"blur": 1.0},
    "median blur (p=1)": {"median": 1.0},
    "Gaussian noise": {"noise": 0.02},
}


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--backbone", default="transunet_tiny")
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand((args.batch, 3, args.size, args.size), generator=g)
    y = torch.randint(0, 2, (args.batch, args.size, args.size), generator=g)
    rng = np.random.default_rng(0)
    model = create_backbone(args.backbone, num_classes=2)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    ref = median_ms(step, max(5, args.repeats // 3))
    print(f"batch {args.batch} × {args.size}², 1 thread; one Adam step of {args.backbone}: {ref:.1f} ms\n")
    print("| augmentation | ms per batch | × training step |")
    print("|---|---:|---:|")
    rows = [(f"preset `{name}`", spec) for name, spec in PRESETS.items() if name != "none"] + list(SINGLE.items())
    for name, spec in rows:
        aug = Augmenter(spec)
        ms = median_ms(lambda: aug(x, y, rng), args.repeats)
        print(f"| {name} | {ms:.1f} | {ms / ref:.2f} |")


if __name__ == "__main__":
    main()
