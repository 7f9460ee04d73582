"""Tiler throughput vs OpenSlide and a seed-style tiler, 2-worker scaling, bag bytes, peak RSS on 40k².

Data: a synthetic PANDA-layout cohort (``weakseg.synth.make_cohort``: JPEG q90 slides with
512-px TIFF tiles, levels 1/4/16, deflate masks) in a temporary folder. One worker unless
stated; every throughput is the median of ``--repeats`` runs, measured side by side:

* **weakseg tile** (``tile_cohort``, bags rewritten with ``overwrite``): source loading,
  selection, reading and writing included. 512-px tiles are the slides' own JPEG tiles (stored
  as is); 256-px tiles are decoded from them and re-encoded (JPEG q90).
* **OpenSlide loop**: ``read_region`` of exactly the tiles weakseg kept, into memory (RGB
  arrays), nothing written.
* **seed-style tiler** (one repeat): level-0 mask ``read_region`` at every grid position,
  tile kept when background < 75 %, slide and mask tile written as PNG files with PIL.

Bytes: bag tile bytes per tile vs the slide's own compressed bytes for the same pixels (its
stored JPEG tiles, pro rata for 256-px tiles). Pass-through validation: the 512-px run with every
stored JPEG tile checked (marker walk + one decode, the default) vs the same run with the decode
switched off, interleaved, plus the per-tile cost of each check on the stored streams
(``--validation-only`` measures just this). Peak RSS: ``tile_slide`` on a 40,000 × 40,000
pyramidal slide + mask (streamed with the synth TIFF writer, cheap painter) in a fresh process.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def kept_tiles(out: Path) -> dict[str, tuple[Path, np.ndarray, int, int]]:
    """slide id → (slide path, level-0 coords, tile size, level) of every bag in ``out``."""
    from weakseg.bags import open_bags

    res = {}
    for bag in open_bags(out):
        res[bag.slide_id] = (Path(bag.meta.slide_path), bag.coords.copy(), bag.tile_size, bag.meta.level)
        bag.close()
    return res


def openslide_loop(tiles: dict) -> int:
    import openslide

    n = 0
    for path, coords, size, level in tiles.values():
        osr = openslide.OpenSlide(str(path))
        for x, y in coords:
            np.asarray(osr.read_region((int(x), int(y)), level, (size, size)))[..., :3].copy()
            n += 1
        osr.close()
    return n


OPENSLIDE_SCRIPT = """
import sys, json, numpy as np, openslide
tiles = json.load(open(sys.argv[1]))
for path, coords, size, level in tiles:
    osr = openslide.OpenSlide(path)
    for x, y in coords:
        np.asarray(osr.read_region((int(x), int(y)), level, (size, size)))[..., :3].copy()
    osr.close()
"""


def whole_process(manifest: Path, scratch: Path, repeats: int, tile: int = 512) -> tuple[int, float, float]:
    """Kept tiles, median seconds of a whole ``weakseg tile`` process and of a whole plain-OpenSlide
    process reading the same kept tiles into memory (interleaved, start-up and imports included)."""
    import json
    import subprocess

    weakseg_cli = Path(sys.executable).with_name("weakseg")
    out = scratch / f"bags_whole{tile}"
    cmd = [str(weakseg_cli), "tile", str(manifest), str(out), "--tile-size", str(tile), "--overwrite"]
    subprocess.run(cmd, check=True, capture_output=True)  # once to learn the kept tiles
    tiles = kept_tiles(out)
    spec = scratch / "kept.json"
    spec.write_text(json.dumps([[str(p), c.tolist(), s, lv] for p, c, s, lv in tiles.values()]))
    script = scratch / "openslide_loop.py"
    script.write_text(OPENSLIDE_SCRIPT)
    ours, theirs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(script), str(spec)], check=True, capture_output=True)
        theirs.append(time.perf_counter() - t0)
    n = sum(len(c) for _, c, _, _ in tiles.values())
    return n, statistics.median(ours), statistics.median(theirs)


def seed_style(root: Path, scratch: Path, tile: int = 512) -> int:
    """The seed's loop: level-0 mask read at every grid position, PNG per kept tile."""
    import openslide
    from PIL import Image

    scratch.mkdir(parents=True, exist_ok=True)
    n = 0
    for mask_path in sorted((root / "train_label_masks").glob("*_mask.tiff")):
        sid = mask_path.name[: -len("_mask.tiff")]
        image = openslide.OpenSlide(str(root / "train_images" / f"{sid}.tiff"))
        mask = openslide.OpenSlide(str(mask_path))
        w, h = image.dimensions
        for x in range(0, w - tile + 1, tile):
            for y in range(0, h - tile + 1, tile):
                m = np.asarray(mask.read_region((x, y), 0, (tile, tile)))[..., 0]
                if np.count_nonzero(m == 0) < 0.75 * tile * tile:
                    rgb = np.asarray(image.read_region((x, y), 0, (tile, tile)))[..., :3]
                    Image.fromarray(rgb).save(scratch / f"{sid}_{x}_{y}.png")
                    Image.fromarray(m).save(scratch / f"{sid}_{x}_{y}_mask.png")
                    n += 1
    return n


def byte_ratio(out: Path) -> tuple[float, float, float]:
    """(bag tile bytes / tile, slide's own bytes / tile, whole bag file bytes / tile)."""
    import h5py
    import tifffile

    bag_bytes = own = files = 0.0
    n = 0
    for bag_path in sorted(out.glob("*.h5")):
        with h5py.File(bag_path, "r") as f:
            tiles = f["tiles"]
            t = int(f.attrs["tile_size"])
            coords = f["coords"][:]
            bag_bytes += sum(len(b) for b in tiles[:]) if tiles.dtype == object else tiles.id.get_storage_size()
            slide = Path(f.attrs["slide_path"])
        files += bag_path.stat().st_size
        with tifffile.TiffFile(slide) as tif:
            page = tif.pages[0]
            tw = page.tilewidth
            across = -(-page.imagewidth // tw)
            counts = page.databytecounts
            for x, y in coords:
                own += counts[(y // tw) * across + x // tw] * (t * t) / (tw * tw)
        n += len(coords)
    return bag_bytes / n, own / n, files / n


def validation_cost(manifest: Path, out: Path, repeats: int) -> dict:
    """512-px pass-through tiling with and without decoding each stored tile; per-tile check costs."""
    import h5py

    from weakseg.bags import decode_tile
    from weakseg import tiff_reader as reader  # TiffPyramid calls this module's check
    from weakseg.tiling.tiler import TileConfig, tile_cohort

    cfg = TileConfig(tile_size=512, overwrite=True)
    real = reader.check_jpeg_decodes
    times: dict[bool, list[float]] = {True: [], False: []}
    n = 0
    try:
        for _ in range(repeats):
            for check in (True, False):
                reader.check_jpeg_decodes = real if check else (lambda *a, **k: None)
                start = time.perf_counter()
                report = tile_cohort(manifest, out, cfg)
                times[check].append(time.perf_counter() - start)
                n = sum(r.n_tiles for r in report.results)
    finally:
        reader.check_jpeg_decodes = real
    streams = []
    for bag in sorted(out.glob("*.h5")):
        with h5py.File(bag, "r") as f:
            assert f.attrs["jpeg_passthrough"]
            streams += [bytes(t) for t in f["tiles"][:]]

    def per_tile(fn) -> float:
        best = []
        for _ in range(repeats):
            start = time.perf_counter()
            for st in streams:
                fn(st)
            best.append((time.perf_counter() - start) / len(streams))
        return statistics.median(best)

    return {
        "tiles": n,
        "with_s": statistics.median(times[True]),
        "without_s": statistics.median(times[False]),
        "structure_us": per_tile(reader.jpeg_defect) * 1e6,
        "decode_ms": per_tile(lambda st: decode_tile(np.frombuffer(st, np.uint8), "jpeg")) * 1e3,
        "kib": statistics.mean(len(st) for st in streams) / 1024,
    }


def print_validation(v: dict) -> None:
    cost = v["with_s"] / v["without_s"] - 1
    print(f"Pass-through validation (512-px tiles stored as they are, {v['tiles']} tiles of {v['kib']:.1f} KiB on "
          f"average): {v['tiles'] / v['with_s']:.0f} tiles/s with every tile checked, {v['tiles'] / v['without_s']:.0f} "
          f"tiles/s without the decode ({cost:+.1%} time); per tile the marker walk costs {v['structure_us']:.0f} µs "
          f"and the decode {v['decode_ms']:.2f} ms.\n")


def _big_painter(size: int, tile: int):
    """Cheap painter for a huge slide: three tissue 'cores' of textured tiles on glass."""
    rng = np.random.default_rng(0)
    texture = np.clip(rng.normal([205, 120, 175], 25, (tile, tile, 3)), 0, 255).astype(np.uint8)
    glass = np.full((tile, tile, 3), 243, np.uint8)
    cores = [(0.25, 0.5, 0.05, 0.4), (0.5, 0.5, 0.04, 0.35), (0.75, 0.45, 0.05, 0.3)]  # cx, cy, rx, ry (fractions)

    def inside(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        hit = np.zeros(np.broadcast(x, y).shape, bool)
        for cx, cy, rx, ry in cores:
            hit |= ((x / size - cx) / rx) ** 2 + ((y / size - cy) / ry) ** 2 < 1
        return hit

    def image(x: float, y: float, w: int, h: int, d: float) -> np.ndarray:
        ys, xs = np.mgrid[0:h, 0:w]
        m = inside(x + xs * d, y + ys * d)
        if not m.any():
            return glass
        return np.where(m[..., None], texture[:h, :w], glass)

    def mask(x: float, y: float, w: int, h: int, d: float) -> np.ndarray:
        ys, xs = np.mgrid[0:h, 0:w]
        out = np.zeros((h, w, 3), np.uint8)
        out[..., 0] = inside(x + xs * d, y + ys * d)
        return out

    return image, mask


def _rss_child(slide: str, mask: str | None, queue) -> None:
    import weakseg  # noqa: F401
    from weakseg.cohort import SlideRecord
    from weakseg.tiling.tiler import TileConfig, tile_slide

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rec = SlideRecord("big", Path(slide), Path(mask) if mask else None, 1, "karolinska", 1, "3+3", None)
    start = time.perf_counter()
    res = tile_slide(rec, Path(slide).parent / ("out_mask" if mask else "out_tissue"), TileConfig())
    queue.put((res.status, res.n_tiles, time.perf_counter() - start, base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def peak_rss(scratch: Path, size: int) -> list[tuple]:
    from weakseg.synth.tiffwriter import write_pyramid

    image, mask = _big_painter(size, 512)
    slide, mask_path = scratch / "big.tiff", scratch / "big_mask.tiff"
    log(f"writing {size}x{size} slide + mask ...")
    write_pyramid(slide, image, (size, size), (1, 4, 16), 0.25, tile=512, compression="jpeg", quality=80)
    write_pyramid(mask_path, mask, (size, size), (1, 4, 16), 0.25, tile=512, compression="zlib")
    rows = []
    ctx = mp.get_context("spawn")
    for m in (str(mask_path), None):
        queue = ctx.Queue()
        proc = ctx.Process(target=_rss_child, args=(str(slide), m, queue))
        proc.start()
        rows.append(("mask" if m else "tissue detector", *queue.get()))
        proc.join()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=4)
    parser.add_argument("--copies", type=int, default=8, help="manifest rows per generated slide (distinct ids)")
    parser.add_argument("--size", default="8192x4096", help="level-0 WIDTHxHEIGHT of the synthetic slides")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big", type=int, default=40000, help="side of the peak-RSS slide (0 skips it)")
    parser.add_argument("--out", default=None, help="scratch parent folder (default: system temp)")
    parser.add_argument("--validation-only", action="store_true", help="only the pass-through validation cost")
    parser.add_argument("--whole-process", action="store_true",
                        help="only `weakseg tile` vs a plain OpenSlide loop, both timed as whole processes")
    args = parser.parse_args()

    import weakseg  # noqa: F401
    from weakseg.synth import make_cohort
    from weakseg.tiling.tiler import TileConfig, tile_cohort

    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        scratch = Path(tmp)
        root = scratch / "cohort"
        log(f"generating {args.slides} synthetic slides of {w}x{h} ...")
        table = make_cohort(root, n_slides=args.slides, seed=7, size=(w, h), mask_fraction=1.0, pen_fraction=0.0)
        manifest = scratch / "manifest.csv"
        lines = ["slide_id,slide_path,mask_path,data_provider,isup_grade"]
        for row in table.itertuples():
            for k in range(args.copies):
                lines.append(
                    f"{row.image_id}-{k},{root}/train_images/{row.image_id}.tiff,"
                    f"{root}/train_label_masks/{row.image_id}_mask.tiff,{row.data_provider},{row.isup_grade}"
                )
        manifest.write_text("\n".join(lines) + "\n")
        if args.whole_process:
            log("tile 512: whole processes, weakseg tile vs plain OpenSlide loop ...")
            n, ours_s, osl_s = whole_process(manifest, scratch, args.repeats)
            print(f"Whole processes (start-up and imports included), 512-px tiles, {n} kept tiles, medians of "
                  f"{args.repeats} interleaved: `weakseg tile` {ours_s:.2f} s ({n / ours_s:.0f} tiles/s), plain OpenSlide "
                  f"loop {osl_s:.2f} s ({n / osl_s:.0f} tiles/s): **{osl_s / ours_s:.2f}×**")
            return
        log("tile 512: pass-through validation on / off ...")
        validation = validation_cost(manifest, scratch / "bags_validation", args.repeats)
        if args.validation_only:
            print_validation(validation)
            return
        rows = []
        for tile in (512, 256):
            out = scratch / f"bags{tile}"
            cfg = TileConfig(tile_size=tile, overwrite=True)
            log(f"tile {tile}: weakseg ...")
            ours_s, report = timed(lambda: tile_cohort(manifest, out, cfg), args.repeats)
            n = sum(r.n_tiles for r in report.results)
            tiles = kept_tiles(out)
            log(f"tile {tile}: OpenSlide loop ...")
            osl_s, n_osl = timed(lambda: openslide_loop(tiles), args.repeats)
            assert n_osl == n
            two_s = None
            if tile == 512:
                log("tile 512: 2 workers ...")
                two_s, _ = timed(lambda: tile_cohort(manifest, scratch / "bags2w", cfg, workers=2), args.repeats)
            bag_b, own_b, file_b = byte_ratio(out)
            rows.append((tile, n, n / ours_s, n / osl_s, two_s and ours_s / two_s, bag_b, own_b, file_b))
        log("seed-style tiler (1 repeat) ...")
        seed_s, n_seed = timed(lambda: seed_style(root, scratch / "seed_png"), 1)
        rss = peak_rss(scratch, args.big) if args.big else []

    print(f"Synthetic cohort: {args.slides} slides of {w}×{h} (512-px JPEG q90 TIFF tiles, deflate masks), each listed "
          f"{args.copies}× in the manifest; one worker unless stated; medians of {args.repeats}; seed-style: 1 run "
          "over the distinct slides. The 2-worker run includes starting the spawned workers.\n")
    print("| tiles | kept | weakseg tiles/s | OpenSlide loop tiles/s | ratio | 2-worker speed-up | bag bytes/tile | slide bytes/tile | bag/slide | bag file/tile (with masks) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tile, n, ours, osl, two, bag_b, own_b, file_b in rows:
        print(f"| {tile} px | {n} | {ours:.0f} | {osl:.0f} | {ours / osl:.2f}× | {f'{two:.2f}×' if two else '-'} "
              f"| {bag_b / 1024:.1f} KiB | {own_b / 1024:.1f} KiB | {bag_b / own_b:.2f}× | {file_b / 1024:.1f} KiB |")
    print()
    print_validation(validation)
    ours512 = rows[0][2]
    print(f"\nSeed-style tiler (level-0 mask read at every grid cell, PNG per tile): {n_seed} tiles in {seed_s:.1f} s = "
          f"{n_seed / seed_s:.1f} tiles/s; weakseg (512 px) is {ours512 / (n_seed / seed_s):.1f}× faster.\n")
    if rss:
        print(f"Peak RSS tiling a {args.big:,} × {args.big:,} slide (512-px tiles, default settings, fresh process):\n")
        print("| selection | status | tiles | seconds | RSS after imports (MiB) | peak RSS (MiB) |")
        print("|---|---|---|---|---|---|")
        for sel, status, n, secs, base, peak in rss:
            print(f"| {sel} | {status} | {n} | {secs:.1f} | {base:.0f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
