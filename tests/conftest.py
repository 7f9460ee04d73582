"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread per test process: the suite runs one process per core (pytest -n 2) and
# tiny models are many times slower when two processes each spread over both cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# CLI output is rendered at a fixed width, so assertions on it never depend on the runner's terminal
# (rich reads COLUMNS when the CLI's console is created, i.e. before any test module imports it).
os.environ["COLUMNS"] = "200"

import pytest

import weakseg  # noqa: F401  (applies the torchvision shim before anything imports timm)
from weakseg.synth import make_cohort

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# A small PANDA-layout cohort: 6 slides of 2048x1024 px (levels 1/4/16), 512-px TIFF tiles,
# 3 Radboud + 3 Karolinska. Seed 0 gives, per provider, at least one cancer slide with a
# mask and one negative slide; one Radboud slide has no mask and one has pen marks
# (tests/test_synth.py checks these guarantees).
SYNTH_COHORT_OPTIONS = dict(
    n_slides=6,
    seed=0,
    size=(2048, 1024),
    mask_fraction=0.6,
    pen_fraction=0.34,
    karolinska_fraction=0.5,
    tile=512,
)


@pytest.fixture(scope="session")
def synth_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a generated PANDA-layout cohort (``train_images/``, ``train_label_masks/``, ``train.csv``)."""
    root = tmp_path_factory.mktemp("synth_cohort")
    make_cohort(root, **SYNTH_COHORT_OPTIONS)
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real slides and tiles), or skip when this checkout lacks it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA
