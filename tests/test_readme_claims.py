"""README statements that used to differ from the code (issue 8, "README vs code"), checked against the code."""

from __future__ import annotations

import csv
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import weakseg  # noqa: F401
from weakseg.tiling.tiler import TileConfig, tile_cohort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_slide import mask_rgb, synthetic_slide, write_pyramid  # noqa: E402


def test_manifest_bag_paths_are_relative_to_the_manifest(tmp_path, monkeypatch):
    src = tmp_path / "slides"
    src.mkdir()
    rgb, labels = synthetic_slide(256, 384, seed=1)
    write_pyramid(src / "a.tiff", rgb, tile=64)
    write_pyramid(src / "a_mask.tiff", mask_rgb(labels), tile=64, compression="zlib")
    (src / "m.csv").write_text("slide_path,mask_path,data_provider,isup_grade\na.tiff,a_mask.tiff,karolinska,2\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)  # OUT given relative to a working folder that is not OUT's parent
    tile_cohort(src / "m.csv", Path("../out/bags"), TileConfig(tile_size=64))
    with open(tmp_path / "out" / "bags" / "manifest.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["status"] == "ok" and row["bag"] == "a.h5"
    assert (tmp_path / "out" / "bags" / row["bag"]).is_file()


def test_evaluate_pixel_rows_are_metrics_not_pixel_counts():
    from weakseg.api import PIXEL_METRICS, _pixel_table
    from weakseg.metrics.seg import SlideTruth, slide_counts

    labels = np.array([[1, 2], [2, 1]], np.uint8)
    counts = slide_counts(np.array([[0.1, 0.9], [0.2, 0.3]], np.float32), SlideTruth("s", labels))
    table = _pixel_table([("radboud", counts), ("karolinska", counts)])
    assert "n_pixels" not in set(table["metric"]) and set(table["metric"]) == set(PIXEL_METRICS)
    assert table[(table.provider == "all") & (table.metric == "dice_cancer")]["n"].item() == 2


def test_pyproject_licence_is_an_spdx_string_without_setuptools_warnings():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["license"] == "MIT"
    assert any(r.replace(" ", "").startswith("setuptools>=77") for r in config["build-system"]["requires"])
    pyprojecttoml = pytest.importorskip("setuptools.config.pyprojecttoml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pyprojecttoml.read_configuration(ROOT / "pyproject.toml", expand=False)
    assert not [w for w in caught if "license" in str(w.message).lower()], [str(w.message) for w in caught]


def test_mil_refine_run_directory_is_as_the_readme_lists(tmp_path):
    """README "Run directory": a mil_seg run keeps its stages under mil/ and rounds/, with rounds.csv."""
    from test_mil_seg import MIL, RECIPE, SEG, write_slide

    from weakseg import api
    from weakseg.weaken import weaken_bags

    rng = np.random.default_rng(0)
    for i in range(3):
        write_slide(tmp_path / "full" / f"p{i}.h5", f"p{i}", list(rng.choice(16, 4, replace=False)), i)
    for i in range(2):
        write_slide(tmp_path / "full" / f"n{i}.h5", f"n{i}", [], 10 + i)
    weaken_bags(tmp_path / "full", tmp_path / "weak", "slide")
    fast = [f"data.bags={tmp_path / 'weak'}", "learner.params.rounds=1", "learner.params.tol=0.0",
            f"learner.params.mil_params={dict(MIL, max_epochs=1)}", f"learner.params.seg_params={dict(SEG, max_epochs=1)}"]
    run = api.train(RECIPE, tmp_path / "run", overrides=fast, profile="tiny")
    top = {p.name for p in run.iterdir()}
    assert {"recipe.yaml", "split.json", "model.pt", "mil", "rounds", "rounds.csv"} <= top
    assert not {"env.json", "metrics.csv", "checkpoints"} & top
    assert {p.name for p in (run / "mil").iterdir()} >= {"env.json", "metrics.csv", "curves.png", "checkpoints", "learner.pt"}
    assert {p.name for p in (run / "mil" / "checkpoints").iterdir()} == {"last.pt", "best.pt"}
    assert (run / "rounds" / "r0" / "learner.pt").is_file() and any((run / "rounds" / "r0" / "labels").glob("*.h5"))
    assert not (run / "rounds" / "r1" / "learner.pt").exists() and any((run / "rounds" / "r1" / "labels").glob("*.h5"))
    header = (run / "rounds.csv").read_text().splitlines()[0]
    assert header == "round,dice_labels,coverage,dice_pred,iou_pred,ap_pred,changed,n_free"
