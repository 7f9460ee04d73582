"""Bag loading throughput: the MIL training loader vs raw sequential h5py reads of the same tiles.

    python benchmarks/bench_loader.py [BAGS] [--per-bag 150] [--workers 0 2]

Without BAGS a toy cohort (JPEG tiles) is written to a temporary folder. Both sides read the same
tiles (one epoch's plan: ``--per-bag`` tiles per bag without replacement) and decode them to
uint8 arrays; the baseline reads each bag's sorted indices straight from h5py in one call.
Goal: loader / raw >= 0.8.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import weakseg  # noqa: F401
from weakseg.bags import decode_tile
from weakseg.data import H5Bags, bag_loader, epoch_plan, write_toy_bags


def raw_read(paths: list[Path], plan: list[tuple[int, np.ndarray]]) -> int:
    n = 0
    for i, idx in plan:
        with h5py.File(paths[i], "r") as f:
            ds = f["tiles"]
            data = ds[np.sort(idx)]
            if ds.attrs.get("codec") == "jpeg":
                data = np.stack([decode_tile(b, "jpeg") for b in data])
        n += len(data)
    return n


def loader_read(source: H5Bags, plan: list[tuple[int, np.ndarray]], workers: int) -> int:
    return sum(int(b.mask.sum()) for b in bag_loader(source, plan, batch_size=1, num_workers=workers))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bags", nargs="?", type=Path)
    ap.add_argument("--per-bag", type=int, default=150)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.bags
        if folder is None:
            folder = Path(tmp)
            write_toy_bags(folder, n_bags=24, n_tiles=(200, 400), tile_size=128, codec="jpeg", seed=0)
        source = H5Bags(folder)
        plan = epoch_plan(source, np.random.default_rng(0), size=args.per_bag)
        n_tiles = sum(len(idx) for _, idx in plan)
        tile = source.instance_shape[-1]
        print(f"{len(source)} bags, {n_tiles} tiles of {tile} px per epoch ({source.bags[0].codec})")
        raw_read(source.paths, plan)  # warm the page cache for both sides
        best = {}
        for name, fn in [("raw h5py", lambda: raw_read(source.paths, plan))] + [
            (f"loader w={w}", lambda w=w: loader_read(source, plan, w)) for w in args.workers
        ]:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                assert fn() == n_tiles
                times.append(time.perf_counter() - t0)
            best[name] = n_tiles / min(times)
        base = best["raw h5py"]
        print("| reader | tiles/s | ratio to raw |\n|---|---:|---:|")
        for name, rate in best.items():
            print(f"| {name} | {rate:,.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
