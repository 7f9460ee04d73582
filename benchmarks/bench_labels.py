"""Mask label mapping: weakseg.panda.to_common_labels vs a 256-entry lookup table.

A batch of 64 uint8 Radboud masks of 512x512 px (random labels 0-5, 16.8 M pixels) is mapped
to the common labels (background / benign / cancer) by ``to_common_labels`` (validation plus
two threshold compares) and by the obvious lookup-table indexing ``lut[raw]`` (no validation);
the outputs are checked equal. Times are medians of 7 repeats.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import weakseg  # noqa: F401
from weakseg.panda import BACKGROUND, BENIGN, CANCER, to_common_labels

REPEATS = 7


def median_time(fn) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    raw = np.random.default_rng(0).integers(0, 6, (64, 512, 512), dtype=np.uint8)
    lut = np.zeros(256, np.uint8)
    lut[[0, 1, 2, 3, 4, 5]] = [BACKGROUND, BENIGN, BENIGN, CANCER, CANCER, CANCER]
    assert np.array_equal(to_common_labels(raw, "radboud"), lut[raw])
    ours = median_time(lambda: to_common_labels(raw, "radboud"))
    table = median_time(lambda: lut[raw])
    mpx = raw.size / 1e6
    print(f"64 Radboud masks of 512x512 px ({mpx:.1f} Mpx), median of {REPEATS}\n")
    print("| method | time (ms) | Mpx/s | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| lookup table `lut[raw]` | {1e3 * table:.1f} | {mpx / table:.0f} | 1.0x |")
    print(f"| `to_common_labels` (validated) | {1e3 * ours:.1f} | {mpx / ours:.0f} | {table / ours:.1f}x |")


if __name__ == "__main__":
    main()
