"""Worker functions for tests/test_sharding.py: a module that imports nothing heavy, so spawned workers start fast."""

from __future__ import annotations

import os


def init(device: str, factor: int) -> int:
    return factor


def work(factor: int, item: int) -> int:
    if item == 3:
        os._exit(9)  # a worker killed mid-item (OOM killer, scancel, a crash in native code)
    return item * factor
