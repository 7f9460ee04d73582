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
from weakseg.synth import make_cohort as make_synth_cohort

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PLUGINS = Path(__file__).parent / "plugins"


def colour_recipe(bags, *, max_epochs: int = 3, learner: str = "mean_colour_mil", extra: str = "") -> str:
    """A recipe of the custom plugin learners (``tests/plugins``, put ``PLUGINS`` on ``sys.path``) over ``bags``."""
    return (f"name: colour\nplugins: [custom_learner_plugin]\nlearner:\n  name: {learner}\n"
            f"  params: {{max_epochs: {max_epochs}}}\ndata:\n  bags: {bags}\n{extra}")

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
    make_synth_cohort(root, **SYNTH_COHORT_OPTIONS)
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real slides and tiles), or skip when this checkout lacks it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


# -- bag factories ---------------------------------------------------------------------------------
def grid_tiles(image, labels=None, tile: int = 16):
    """Cut an ``(H, W, 3)`` slide (and its ``(H, W)`` label map) into ``tile``-px tiles, row by row.

    Returns ``(tiles, masks, coords)``; ``masks`` is ``None`` without ``labels``, ``coords`` are the
    tiles' top-left ``(x, y)``.
    """
    import numpy as np

    h, w = image.shape[:2]
    coords = np.array([(x * tile, y * tile) for y in range(h // tile) for x in range(w // tile)])
    tiles = np.stack([image[y : y + tile, x : x + tile] for x, y in coords])
    masks = None if labels is None else np.stack([labels[y : y + tile, x : x + tile] for x, y in coords])
    return tiles, masks, coords


def blob_slide(seed: int, side: int, n_blobs: int = 1, *, blob: int = 14, strip: int = 8):
    """A small H&E-like slide: benign tissue (label 1, blue-ish) with ``n_blobs`` square cancer blobs
    (label 2, red) of ``blob`` px and a background strip (label 0, white) of ``strip`` px on the right;
    Gaussian colour noise. Returns ``(image uint8 (side, side, 3), labels uint8 (side, side))``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lab = np.ones((side, side), dtype=np.uint8)
    lab[:, side - strip:] = 0
    for _ in range(n_blobs):
        y, x = rng.integers(0, side - blob - strip, 2)
        lab[y:y + blob, x:x + blob] = 2
    colours = np.array([[240, 240, 240], [90, 90, 200], [200, 60, 80]], dtype=np.float64)
    img = np.clip(colours[lab] + rng.normal(0, 20, lab.shape + (3,)), 0, 255).astype(np.uint8)
    return img, lab


def write_bag(
    path,
    tiles=None,
    masks=None,
    *,
    image=None,
    labels=None,
    coords=None,
    tile_size: int | None = None,
    with_masks: bool | None = None,
    codec: str = "raw",
    coverage=None,
    cancer_fraction=None,
    **meta,
) -> Path:
    """Write a complete bag at ``path`` and return ``path``.

    Give ``tiles`` ``(N, T, T, 3)`` (and ``masks`` ``(N, T, T)``, raw provider labels), or a whole
    slide ``image`` (and its ``labels``) cut into ``tile_size`` tiles row by row. ``coords`` default
    to the grid (or one row of tiles); ``coverage`` to ones; ``cancer_fraction`` to the fraction
    of label 2. ``meta`` are :class:`~weakseg.bags.BagMeta` fields: ``slide_id`` defaults to the
    file stem, ``label`` to 1, ``data_provider`` to Karolinska, ``tile_size``/``stride`` to ``T``.
    ``with_masks=False`` drops given masks (a bag tiled without one).
    """
    import numpy as np

    from weakseg.bags import BagMeta, BagWriter

    path = Path(path)
    if image is not None:
        tiles, masks, grid = grid_tiles(image, labels, tile_size or 16)
        coords = grid if coords is None else coords
    tiles = np.asarray(tiles, dtype=np.uint8)
    t = tiles.shape[1] if tile_size is None else tile_size
    n = len(tiles)
    coords = np.stack([np.arange(n) * t, np.zeros(n, dtype=int)], axis=1) if coords is None else coords
    with_masks = masks is not None if with_masks is None else with_masks
    fields = {"slide_id": path.stem, "label": 1, "data_provider": "karolinska", "tile_size": t, "stride": t, **meta}
    path.parent.mkdir(parents=True, exist_ok=True)
    with BagWriter(path, BagMeta(**fields), tile_size=t, with_masks=with_masks, codec=codec) as w:
        extra = {}
        if with_masks:
            cf = (masks == 2).mean((1, 2)) if cancer_fraction is None else cancer_fraction
            extra = {"masks": masks, "cancer_fraction": cf}
        w.append(tiles, coords, np.ones(n) if coverage is None else coverage, **extra)
    return path


@pytest.fixture(scope="session")
def make_blob_bag():
    """Factory: ``make_blob_bag(path, seed, grid=2, tile=32, n_blobs=1, **meta)`` writes the bag of a
    :func:`blob_slide` of ``grid`` × ``grid`` tiles of ``tile`` px (slide id ``s{seed}``)."""

    def make(path, seed: int, grid: int = 2, tile: int = 32, n_blobs: int = 1, **meta):
        img, lab = blob_slide(seed, grid * tile, n_blobs)
        return write_bag(path, image=img, labels=lab, tile_size=tile, **{"slide_id": f"s{seed}", **meta})

    return make


@pytest.fixture(scope="session")
def make_bag():
    """Factory writing one bag: ``make_bag(path, tiles, masks, image=..., labels=..., **meta)`` (see :func:`write_bag`)."""
    return write_bag


@pytest.fixture(scope="session")
def make_cohort():
    """Factory writing a folder of small bags: ``make_cohort(folder, n=8, seed=0, provider="karolinska")``.

    ``n`` bags alternating negative / positive (6-10 tiles of 8 px, two red cancer tiles per
    positive bag), Karolinska-style masks, slide ids ``s{seed}_{i:02d}``; returns their paths.
    The same bags as ``tests/plugins/tiny_bags.py`` writes for the plugin and CLI tests.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("_tiny_bags", Path(__file__).parent / "plugins" / "tiny_bags.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_tiny_bags


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny models on one torch thread (faster on a shared CPU: no OpenMP spin-waiting).

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
