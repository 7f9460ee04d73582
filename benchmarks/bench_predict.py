"""Slide-map inference (predict_slide_map): overhead vs a bare model forward; peak RSS on a 40,000² slide.

1. Overhead: time of ``predict_slide_map`` (reading, tissue filter, blending, pyramid
   TIFF / PNG / GeoJSON writing) vs a bare forward pass of the same model over the same
   number of windows (pre-allocated input, no I/O), as wall-clock and as process CPU time
   (all threads; the fairer measure on a shared machine). Medians of ``--repeats`` runs,
   side by side.
2. Memory: peak RSS of a child process predicting a ``--big``-sided synthetic slide with a
   cheap predictor (the whole slide never sits in memory).

Slides are synthetic tiled JPEG pyramids (downsamples 1/4/16) whose tissue is a few biopsy-like
ellipses painted from one cached texture, written with ``weakseg.synth.tiffwriter``.

    python benchmarks/bench_predict.py --size 6144 --big 40000 --repeats 3 --out bench.md
    python benchmarks/bench_predict.py --size 3072 --big 0 --model unet_tiny
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import weakseg  # noqa: F401  (applies the timm/torchvision shim before torch users)
import torch

from weakseg.maps import predict_slide_map
from weakseg.synth.tiffwriter import write_pyramid

TEXTURE = np.clip(np.random.default_rng(0).normal((200, 120, 170), 18, size=(512, 512, 3)), 0, 255).astype(np.uint8)
# Biopsy-like ellipses in relative coordinates: (cx, cy, rx, ry)
CORES = ((0.3, 0.25, 0.22, 0.05), (0.55, 0.5, 0.3, 0.06), (0.45, 0.78, 0.25, 0.05))


def synthetic_slide(path: Path, side: int) -> Path:
    def paint(x: float, y: float, w: int, h: int, d: float) -> np.ndarray:
        xs = (x + d * (np.arange(w) + 0.5)) / side
        ys = (y + d * (np.arange(h) + 0.5)) / side
        inside = np.zeros((h, w), dtype=bool)
        for cx, cy, rx, ry in CORES:
            inside |= ((xs[None, :] - cx) / rx) ** 2 + ((ys[:, None] - cy) / ry) ** 2 <= 1
        tile = np.full((h, w, 3), 243, dtype=np.uint8)
        tile[inside] = TEXTURE[:h, :w][inside]
        return tile

    write_pyramid(path, paint, (side, side), (1, 4, 16), 0.5, tile=512, compression="jpeg", quality=85)
    return path


class TinyConv(torch.nn.Module):
    """A small fully convolutional cancer-probability model (stands in for a learner)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 1, 1), torch.nn.Upsample(scale_factor=2, mode="nearest"),
        )

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))[:, 0]


def make_model(name: str) -> torch.nn.Module:
    """``tinyconv`` (the benchmark's stand-in) or any registered weakseg backbone (1 output)."""
    if name == "tinyconv":
        return TinyConv().eval()
    from weakseg.models import create_backbone

    torch.manual_seed(0)
    backbone = create_backbone(name, num_classes=1).eval()
    return torch.nn.Sequential(backbone, torch.nn.Sigmoid(), torch.nn.Flatten(0, 1))


def torch_predictor(model: torch.nn.Module):
    @torch.no_grad()
    def predict(tiles: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float().div_(255)
        return model(x).reshape(len(tiles), tiles.shape[1], tiles.shape[2]).numpy()

    return predict


def cheap_predictor(tiles: np.ndarray) -> np.ndarray:
    return (255 - tiles[..., 1]).astype(np.float32) / 255


def overhead(slide: Path, out: Path, args: argparse.Namespace) -> dict:
    predict = torch_predictor(make_model(args.model))
    kw = dict(window=args.window, step=args.step, batch_size=args.batch_size, map_downsample=4)
    predict_slide_map(slide, predict, out, **kw)  # warm-up: lazy imports, page cache
    runs: dict[str, list[tuple[float, float]]] = {"map": [], "bare": []}
    batch = np.random.default_rng(1).integers(0, 255, (args.batch_size, args.window, args.window, 3), dtype=np.uint8)
    for _ in range(args.repeats):
        with _clock(runs["map"]):
            res = predict_slide_map(slide, predict, out, **kw)
        with _clock(runs["bare"]):
            for lo in range(0, res.n_predicted, args.batch_size):
                predict(batch[: min(args.batch_size, res.n_predicted - lo)])
    wall = {k: [w for w, _ in v] for k, v in runs.items()}
    cpu = {k: [c for _, c in v] for k, v in runs.items()}
    return {
        "n_windows": res.n_windows, "n_predicted": res.n_predicted, "window_mpx": res.n_predicted * args.window**2 / 1e6,
        "wall": {k: statistics.median(v) for k, v in wall.items()}, "cpu": {k: statistics.median(v) for k, v in cpu.items()},
        "ratio_wall": statistics.median(m / b for m, b in zip(wall["map"], wall["bare"])),
        "ratio_cpu": statistics.median(m / b for m, b in zip(cpu["map"], cpu["bare"])),
    }


@contextlib.contextmanager
def _clock(sink: list[tuple[float, float]]):
    """Append ``(wall seconds, process CPU seconds incl. all threads)`` of the block to ``sink``."""
    w, c = time.perf_counter(), time.process_time()
    yield
    sink.append((time.perf_counter() - w, time.process_time() - c))


def child_rss(slide: Path, out: Path, args: argparse.Namespace) -> None:
    """Run in a subprocess: predict the big slide, print JSON with its peak RSS."""
    t0 = time.perf_counter()
    res = predict_slide_map(slide, cheap_predictor, out, window=args.window, step=args.step,
                            batch_size=args.batch_size, map_downsample=4)
    print(json.dumps({
        "seconds": time.perf_counter() - t0, "n_predicted": res.n_predicted, "n_windows": res.n_windows,
        "map_shape": list(res.shape), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def run(work: Path, args: argparse.Namespace) -> list[str]:
    """Both benchmarks in ``work``; the markdown table lines."""
    small = synthetic_slide(work / "small.tiff", args.size)
    r = overhead(small, work / "maps", args)
    mpx = r["window_mpx"]
    lines = [
        f"Synthetic JPEG slides, {args.threads} torch thread(s), batch {args.batch_size}, medians of {args.repeats} runs "
        "after a warm-up; cpu = process CPU time of all threads (the fair clock on a shared machine).",
        "",
        "| benchmark | windows (predicted / total) | clock | predict_slide_map | bare forward | ratio |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for clock in ("wall", "cpu"):
        t_map, t_bare = r[clock]["map"], r[clock]["bare"]
        lines.append(
            f"| {args.size}² slide, {args.window}/{args.step} windows, {args.model} | {r['n_predicted']} / {r['n_windows']} | {clock} "
            f"| {t_map:.1f} s ({mpx / t_map:.1f} Mpx/s) | {t_bare:.1f} s ({mpx / t_bare:.1f} Mpx/s) | {r['ratio_' + clock]:.2f} |"
        )
    if args.big:
        t0 = time.perf_counter()
        big = synthetic_slide(work / "big.tiff", args.big)
        t_write = time.perf_counter() - t0
        cmd = [sys.executable, __file__, "--child", str(big), "--window", str(args.window), "--step", str(args.step),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
        m = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        lines += [
            "",
            "| memory benchmark | windows (predicted / total) | map | time | peak RSS |",
            "|---|---:|---:|---:|---:|",
            f"| {args.big}² slide (written in {t_write:.0f} s), cheap predictor | {m['n_predicted']} / {m['n_windows']} "
            f"| {m['map_shape'][1]}×{m['map_shape'][0]} | {m['seconds']:.0f} s | {m['peak_rss_mb']:.0f} MB |",
        ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=6144, help="side of the overhead slide (level 0)")
    ap.add_argument("--big", type=int, default=40000, help="side of the memory slide (0 skips it)")
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--step", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="tinyconv", help="tinyconv or a weakseg backbone name (e.g. unet_tiny)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        child_rss(args.child, args.child.parent / "maps", args)
        return
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-predict-")))
        work.mkdir(parents=True, exist_ok=True)
        lines = run(work, args)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
