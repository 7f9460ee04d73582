"""Segmentation backbones: parameters, FLOPs and CPU latency of inference and of one training step.

Every registered variant of ``transunet``, ``unet`` and ``hrnet`` is built with 2 output classes (1 for
nnPU) on random weights. FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` for
one 224×224 image (multiply-adds count as 2 FLOPs; GMACs = GFLOPs / 2, the unit of the
TransUNet paper's ~25 "GFLOPs"). Latencies are medians of ``--repeats`` timed runs after one
warm-up, all models measured one after another in the same process: inference of a batch of
``--batch`` 224×224 tiles in eval mode with each of the ``--threads`` torch thread counts, and one
training step (forward, nnPU loss, backward, SGD step) on the same batch with the first of them.
The ratio column is relative to ``unet_resnet18``, the seeds' baseline.

    python benchmarks/bench_backbones.py --repeats 5 --threads 1 --batch 2
    python benchmarks/bench_backbones.py --repeats 7 --threads 1 2 --batch 1 \
        --only hrnet_w18_small hrnet_w18 unet_resnet18 transunet_small transunet_cpu
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import weakseg  # noqa: F401  (applies the timm/torchvision shim before torch users)
import torch
from torch.utils.flop_counter import FlopCounterMode

from weakseg.losses import nnPULoss
from weakseg.models import create_backbone, list_backbones

SIZE = 224
BASELINE = "unet_resnet18"


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN primitives)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, batch: int, repeats: int, threads: list[int], train: bool = True) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_backbone(name, num_classes=1)
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randn(batch, 3, SIZE, SIZE)
    labels = torch.randint(0, 2, (batch, SIZE, SIZE))
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x[:1])
    gflops = counter.get_total_flops() / 1e9

    def infer() -> None:
        with torch.inference_mode():
            model(x)

    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss = nnPULoss(prior=0.3)

    def train_step() -> None:
        step = loss(model(x), labels)
        opt.zero_grad()
        step.objective.backward()
        opt.step()

    infer_s = {}
    for n in threads:
        torch.set_num_threads(n)
        infer_s[n] = _median_seconds(infer, repeats)
    torch.set_num_threads(threads[0])
    model.train()
    train_s = _median_seconds(train_step, repeats) if train else float("nan")
    return {"params_m": n_params / 1e6, "gflops": gflops, "infer_s": infer_s, "train_s": train_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts for inference")
    parser.add_argument("--no-train", action="store_true", help="skip the training-step timing")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="backbone names (default: all registered)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads[0])
    # "unet" = unet_resnet18 and "hrnet" = hrnet_w18 by default
    names = args.only or [n for n in list_backbones() if n not in ("unet", "hrnet")]
    rows = {}
    for name in names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        rows[name] = measure(name, args.batch, args.repeats, args.threads, train=not args.no_train)
    base = rows.get(BASELINE)
    threads = "/".join(map(str, args.threads))
    print(f"CPU, {threads} torch threads, batch {args.batch} of {SIZE}×{SIZE}, median of {args.repeats} "
          f"after a warm-up; FLOPs for one {SIZE}×{SIZE} image (GMACs = GFLOPs / 2).\n")
    infer_cols = " | ".join(f"inference ms/batch ({n} thr)" for n in args.threads)
    print(f"| backbone | params (M) | GFLOPs @224 | {infer_cols} | train step (s/batch) "
          "| train step vs unet_resnet18 |")
    print("|---|---:|---:|" + "---:|" * len(args.threads) + "---:|---:|")
    for name, r in rows.items():
        ratio = f"{r['train_s'] / base['train_s']:.2f}×" if base and not args.no_train else "n/a"
        infer = " | ".join(f"{1e3 * r['infer_s'][n]:.1f}" for n in args.threads)
        train = "n/a" if args.no_train else f"{r['train_s']:.3f}"
        print(f"| `{name}` | {r['params_m']:.2f} | {r['gflops']:.1f} | {infer} | {train} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
