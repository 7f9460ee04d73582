"""Per-slide rates of tile → embed → predict on full-size synthetic slides, and the PANDA-scale arithmetic.

Synthesises ``--slides`` PANDA-layout slides of ``--size`` (default 30000x30000, the largest PANDA
slides' order of size) with :mod:`weakseg.synth`, then measures on this machine, one process:

- **tile**: ``tile_cohort`` at ``--mpp`` / ``--tile-size`` (the README's typical study: 1.0 µm/px, 256 px);
  seconds per slide, tiles per slide, bag bytes per slide;
- **embed**: ``FeatureExtractor`` (``--encoder``, random init: nothing downloads) over up to
  ``--embed-max-tiles`` tiles read from the bags (JPEG decode included); tiles/s, then seconds per
  slide = tiles per slide / (tiles/s), sidecar bytes = tiles × dim × 4;
- **predict**: ``predict_slide_map`` (window = tile size, step = half, at the bags' µm/px, the path
  ``weakseg predict`` takes for segmentation learners) on every slide with a no-op model (reading +
  decoding + stitching + pyramid/GeoJSON/overlay writing: the I/O-bound floor; measured), and the
  ``--predict-backbone`` model's (random init) windows/s on ``--predict-max-windows`` real windows;
  the model's seconds per slide = floor + windows / rate (an upper bound: the window reader thread
  overlaps reading with the model). ``--predict-full`` also times one whole slide with the model.

Then scales the measured per-slide seconds to ``--cohort`` slides (10,616 = PANDA) for 1 process, and
for N workers / nodes assuming linear scaling (each worker owns its slides: no shared state but the
status CSV), prints a markdown table and writes ``--json``. Everything printed as "measured" was timed
here; everything under "extrapolated" is arithmetic on those numbers.

    .venv/bin/python benchmarks/bench_scale.py --slides 2 --size 30000x30000 --json scale.json
    .venv/bin/python benchmarks/bench_scale.py --slides 1 --size 4096x4096 --embed-max-tiles 32  # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def _size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def _bytes(paths) -> int:
    return sum(Path(p).stat().st_size for p in paths)


def measure(args: argparse.Namespace) -> dict:
    import torch

    import weakseg  # noqa: F401
    from weakseg.bags import Bag, list_bags
    from weakseg.features import FeatureExtractor
    from weakseg.maps.predict import predict_slide_map
    from weakseg.models import create_backbone
    from weakseg.resolution import Resolution
    from weakseg.synth import make_cohort
    from weakseg.tiling import TileConfig, tile_cohort

    torch.set_num_threads(args.threads)
    root = Path(args.out)
    if args.fresh and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    res: dict = {"settings": {k: v for k, v in vars(args).items()}, "torch_threads": args.threads,
                 "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    w, h = _size(args.size)

    t0 = time.perf_counter()
    make_cohort(root / "cohort", args.slides, seed=args.seed, size=(w, h), resume=True, pen_fraction=0.0)
    res["synth_s"] = time.perf_counter() - t0
    slides = sorted((root / "cohort" / "train_images").glob("*.tiff"))
    res["slide_bytes"] = _bytes(slides) / len(slides)
    print(f"synth: {len(slides)} slide(s) of {w}x{h} in {res['synth_s']:.0f} s (resumed when present)", file=sys.stderr, flush=True)

    bags = root / "bags"
    if bags.exists():
        shutil.rmtree(bags)
    t0 = time.perf_counter()
    report = tile_cohort(root / "cohort", bags, TileConfig(mpp=args.mpp, tile_size=args.tile_size), workers=1)
    res["tile_wall_s"] = time.perf_counter() - t0
    ok = [r for r in report.results if r.status == "ok"]
    res["tile_s_per_slide"] = [r.seconds for r in ok]
    res["tiles_per_slide"] = [r.n_tiles for r in ok]
    bag_paths = list_bags(bags)
    res["bag_bytes_per_slide"] = _bytes(bag_paths) / max(1, len(bag_paths))
    with Bag(bag_paths[0]) as bag:
        mpp = float(bag.meta.mpp)
    res["tissue_mm2_per_slide"] = [n * (args.tile_size * mpp / 1000) ** 2 for n in res["tiles_per_slide"]]
    print(f"tile: {res['tiles_per_slide']} tiles, {res['tile_s_per_slide']} s, "
          f"{res['bag_bytes_per_slide'] / 1e6:.1f} MB/bag", file=sys.stderr, flush=True)

    # embed: a measured rate over up to --embed-max-tiles tiles, JPEG decoding included
    ex = FeatureExtractor(args.encoder, random_init=True, tile_size=args.tile_size)
    done, t_read, t_model = 0, 0.0, 0.0
    with Bag(bag_paths[0]) as bag:
        t = time.perf_counter()
        for _, tiles in bag.iter_tiles(args.embed_batch):
            t1 = time.perf_counter()
            t_read += t1 - t
            ex(tiles)
            t = time.perf_counter()
            t_model += t - t1
            done += len(tiles)
            if done >= args.embed_max_tiles:
                break
    res["embed_tiles_timed"] = done
    res["embed_tiles_per_s"] = done / (t_read + t_model)
    res["embed_decode_share"] = t_read / (t_read + t_model)
    res["embed_dim"] = int(ex.module.out_dim)
    res["embed_s_per_slide"] = [n / res["embed_tiles_per_s"] for n in res["tiles_per_slide"]]
    res["feature_bytes_per_slide"] = float(np.mean(res["tiles_per_slide"])) * res["embed_dim"] * 4
    print(f"embed: {res['embed_tiles_per_s']:.1f} tiles/s ({args.encoder}, {done} tiles timed, "
          f"decode {100 * res['embed_decode_share']:.0f} %)", file=sys.stderr, flush=True)

    # predict: slide maps at the bags' resolution, no-op model then a real backbone
    model = create_backbone(args.predict_backbone, num_classes=2, img_size=args.tile_size).eval()

    @torch.inference_mode()
    def backbone_tiles(tiles: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float().div_(255.0)
        return torch.softmax(model(x), 1)[:, 1].numpy()

    def noop_tiles(tiles: np.ndarray) -> np.ndarray:
        return np.full(tiles.shape[:3], 0.25, dtype=np.float32)

    secs, windows = [], []
    for bag_path in bag_paths:
        with Bag(bag_path) as bag:
            r = Resolution.from_bag_meta(bag.meta)
            slide_path = bag.meta.slide_path
        t0 = time.perf_counter()
        sm = predict_slide_map(slide_path, noop_tiles, root / "maps_noop", window=args.tile_size,
                               step=args.tile_size // 2, resolution=r, batch_size=args.predict_batch)
        secs.append(time.perf_counter() - t0)
        windows.append(sm.n_predicted)
    res["predict_noop_s_per_slide"] = secs
    res["predict_windows_per_slide"] = windows
    print(f"predict (no-op model): {[round(s, 1) for s in secs]} s, {windows} windows", file=sys.stderr, flush=True)
    # the model's own rate on real windows (the first --predict-max-windows tissue windows of slide 1)
    with Bag(bag_paths[0]) as bag:
        tiles = bag.read_tiles(np.arange(min(len(bag), args.predict_max_windows)))
    backbone_tiles(tiles[: args.predict_batch])  # warm-up
    t0 = time.perf_counter()
    for lo in range(0, len(tiles), args.predict_batch):
        backbone_tiles(tiles[lo : lo + args.predict_batch])
    res["predict_model_windows_per_s"] = len(tiles) / (time.perf_counter() - t0)
    res["predict_model_windows_timed"] = len(tiles)
    # upper bound: the window reader runs in its own thread, so reading overlaps the model
    res["predict_model_s_per_slide"] = [s + n / res["predict_model_windows_per_s"] for s, n in zip(secs, windows)]
    print(f"predict model ({args.predict_backbone}): {res['predict_model_windows_per_s']:.1f} windows/s over "
          f"{len(tiles)} windows", file=sys.stderr, flush=True)
    # one whole slide with the model, when asked (long on a CPU)
    if args.predict_full:
        with Bag(bag_paths[0]) as bag:
            r = Resolution.from_bag_meta(bag.meta)
            slide_path = bag.meta.slide_path
        t0 = time.perf_counter()
        predict_slide_map(slide_path, backbone_tiles, root / "maps_model", window=args.tile_size,
                          step=args.tile_size // 2, resolution=r, batch_size=args.predict_batch)
        res["predict_model_full_slide_s"] = time.perf_counter() - t0
        print(f"predict (model, whole slide 1): {res['predict_model_full_slide_s']:.1f} s", file=sys.stderr, flush=True)
    res["map_bytes_per_slide"] = _bytes((root / "maps_noop").glob("*")) / len(bag_paths)
    return res


def extrapolate(res: dict, cohort: int, workers: tuple[int, ...]) -> dict:
    mean = lambda v: float(np.mean(v))  # noqa: E731
    per_slide = {
        "tile": mean(res["tile_s_per_slide"]),
        "embed": mean(res["embed_s_per_slide"]),
        "predict (no-op model: I/O floor)": mean(res["predict_noop_s_per_slide"]),
        "predict (model; I/O floor + windows / model rate)": mean(res["predict_model_s_per_slide"]),
    }
    hours = {k: {n: v * cohort / 3600 / n for n in workers} for k, v in per_slide.items()}
    total_bytes = {
        "bags": res["bag_bytes_per_slide"] * cohort,
        "features": res["feature_bytes_per_slide"] * cohort,
        "maps": res["map_bytes_per_slide"] * cohort,
    }
    return {"per_slide_s": per_slide, "hours": hours, "total_bytes": total_bytes, "cohort": cohort}


def markdown(res: dict, ext: dict) -> str:
    workers = sorted(next(iter(ext["hours"].values())))
    lines = [f"measured on {res['cpus']} CPU(s), {res['torch_threads']} torch thread(s); "
             f"{len(res['tiles_per_slide'])} slide(s) of {res['settings']['size']}",
             f"tiles/slide {np.mean(res['tiles_per_slide']):.0f}, tissue {np.mean(res['tissue_mm2_per_slide']):.1f} mm²/slide, "
             f"bag {res['bag_bytes_per_slide'] / 1e6:.1f} MB/slide, windows/slide {np.mean(res['predict_windows_per_slide']):.0f}",
             "", "| stage | s/slide (measured) | " + " | ".join(f"h for {ext['cohort']} slides, {n} worker(s)" for n in workers) + " |",
             "|---|---:|" + "---:|" * len(workers)]
    for k, v in ext["per_slide_s"].items():
        lines.append(f"| {k} | {v:.1f} | " + " | ".join(f"{ext['hours'][k][n]:.1f}" for n in workers) + " |")
    lines += ["", "| output | GB for the cohort (extrapolated) |", "|---|---:|"]
    lines += [f"| {k} | {v / 1e9:.1f} |" for k, v in ext["total_bytes"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="/tmp/weakseg_bench_scale")
    p.add_argument("--slides", type=int, default=2)
    p.add_argument("--size", default="30000x30000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mpp", type=float, default=1.0)
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--encoder", default="resnet50")
    p.add_argument("--embed-batch", type=int, default=32)
    p.add_argument("--embed-max-tiles", type=int, default=256)
    p.add_argument("--predict-backbone", default="transunet_cpu")
    p.add_argument("--predict-batch", type=int, default=16)
    p.add_argument("--predict-max-windows", type=int, default=128)
    p.add_argument("--predict-full", action="store_true", help="Also predict slide 1 whole with the model (timed).")
    p.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--cohort", type=int, default=10616)
    p.add_argument("--workers", default="1,8,32,128", help="Worker counts of the extrapolation (comma-separated).")
    p.add_argument("--fresh", action="store_true", help="Delete --out first (default: reuse synthesised slides).")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    res = measure(args)
    ext = extrapolate(res, args.cohort, tuple(int(n) for n in args.workers.split(",")))
    print(markdown(res, ext))
    if args.json:
        Path(args.json).write_text(json.dumps({"measured": res, "extrapolated": ext}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
