"""Peak memory and time of generating one large synthetic slide + mask (``weakseg.synth``).

Each size runs in a fresh child process so its peak RSS (``ru_maxrss``) is its own.
Prints a markdown table. Example::

    python benchmarks/bench_synth_memory.py --size 40000x40000 --out /tmp/bench_synth
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path


def _generate(size: tuple[int, int], out: str, seed: int, queue: mp.Queue) -> None:
    import weakseg  # noqa: F401
    from weakseg.synth import make_scene, write_slide

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after imports (torch)
    start = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    scene = make_scene(seed, size, "radboud", cancer=True, pen=True, n_cores=3)
    image, mask = Path(out) / "slide.tiff", Path(out) / "slide_mask.tiff"
    write_slide(image, mask, scene)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    queue.put(
        {
            "size": f"{size[0]}x{size[1]}",
            "glands": len(scene.glands),
            "wall_s": time.perf_counter() - start,
            "cpu_s": usage.ru_utime + usage.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
            "baseline_rss_mib": baseline,
            "peak_rss_mib": usage.ru_maxrss / 1024,  # Linux reports KiB
            "image_mib": image.stat().st_size / 2**20,
            "mask_mib": mask.stat().st_size / 2**20,
        }
    )


def measure(size: tuple[int, int], out: str, seed: int = 0) -> dict:
    """Generate one slide + mask of ``size`` in a child process; return its measurements."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_generate, args=(size, out, seed, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", help="WIDTHxHEIGHT (repeatable); default 40000x40000")
    parser.add_argument("--out", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in (args.size or ["40000x40000"])]
    rows = []
    with tempfile.TemporaryDirectory(dir=args.out) as scratch:
        for size in sizes:
            rows.append(measure(size, scratch, args.seed))
            for name in os.listdir(scratch):
                os.unlink(os.path.join(scratch, name))
    print("| level-0 size | glands | wall (s) | CPU (s) | peak RSS (MiB) | RSS after imports (MiB) | slide (MiB) | mask (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']} | {r['glands']:,} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['peak_rss_mib']:.0f} "
            f"| {r['baseline_rss_mib']:.0f} | {r['image_mib']:.1f} | {r['mask_mib']:.1f} |"
        )
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
