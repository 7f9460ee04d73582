"""A learner from a plugin module trains, predicts and evaluates through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import weakseg  # noqa: F401
from weakseg import api
from weakseg.cli.main import app

PLUGINS = Path(__file__).parent / "plugins"
RECIPE = """\
name: colour
description: mean-colour MIL from a plugin
seed: 1
plugins: [custom_learner_plugin]
learner:
  name: mean_colour_mil
  params: {{max_epochs: 5, lr: 0.1}}
data:
  bags: {bags}
  val_fraction: 0.25
profiles:
  tiny:
    learner: {{params: {{max_epochs: 2}}}}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the tests of this module."""
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(PLUGINS))
    from tiny_bags import write_tiny_bags

    root = tmp_path_factory.mktemp("custom")
    write_tiny_bags(root / "bags", n=8, seed=0)
    write_tiny_bags(root / "test_bags", n=6, seed=1)
    recipe = root / "colour.yaml"
    recipe.write_text(RECIPE.format(bags=root / "bags"))
    result = CliRunner().invoke(app, ["train", str(recipe), "--profile", "tiny", "--out", str(root / "run")])
    yield root, result
    mp.undo()


def test_plugin_learner_trains_through_the_cli(trained):
    root, result = trained
    assert result.exit_code == 0, result.output
    run = root / "run"
    for name in ("recipe.yaml", "env.json", "metrics.csv", "curves.png", "model.pt", "split.json",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert "learner:\n  name: mean_colour_mil" in (run / "recipe.yaml").read_text()
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1] and "val_slide_auc" in metrics
    split = json.loads((run / "split.json").read_text())
    assert (len(split["train"]), len(split["val"])) == (6, 2)
    assert not set(split["train"]) & set(split["val"])
    learner = api.load_run(run)
    assert type(learner).__name__ == "MeanColourMIL" and learner.random_state == 1


def test_evaluate_writes_slide_and_tile_metrics(trained):
    root, _ = trained
    result = CliRunner().invoke(app, ["evaluate", str(root / "run"), str(root / "test_bags"), "--out", str(root / "eval")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(root / "eval" / "metrics.csv")
    assert set(table["provider"]) == {"all", "karolinska"}
    assert {"slide_auc", "slide_accuracy", "tile_auc", "tile_f1", "tile_precision", "tile_recall"} <= set(table["metric"])
    slide_n = table.loc[(table.metric == "slide_auc") & (table.provider == "all"), "n"].item()
    assert slide_n == 6
    assert "| slide | slide_auc |" in (root / "eval" / "metrics.md").read_text()


def test_predict_writes_slide_probabilities_and_maps(trained):
    pytest.importorskip("weakseg.heatmaps")
    root, _ = trained
    result = CliRunner().invoke(app, ["predict", str(root / "run"), str(root / "test_bags"), "--out", str(root / "maps")])
    assert result.exit_code == 0, result.output
    slides = pd.read_csv(root / "maps" / "slides.csv")
    assert list(slides.columns[:3]) == ["slide_id", "label", "prob"] and len(slides) == 6
    assert slides["prob"].between(0, 1).all()
    assert len(list((root / "maps").glob("*.npy"))) == 6


def test_segmentation_learner_gets_pixel_metrics_and_per_slide_failures(trained, tmp_path):
    root, _ = trained
    recipe = root / "colour.yaml"
    run = tmp_path / "seg"
    result = CliRunner().invoke(app, ["train", str(recipe), "--profile", "tiny", "--set", "learner.name=mean_colour_seg",
                                      "--out", str(run)])
    assert result.exit_code == 0, result.output
    table = api.evaluate(run, root / "test_bags")
    pixel = table[table.level == "pixel"].set_index(["provider", "metric"])["value"]
    assert {"dice_cancer", "iou_cancer", "ap_cancer"} <= set(pixel.loc["all"].index)
    assert 0 <= pixel.loc[("all", "dice_cancer")] <= 1
    # pixel maps are predicted from the slide, which these synthetic bags do not have
    result = CliRunner().invoke(app, ["predict", str(run), str(root / "test_bags"), "--out", str(tmp_path / "maps")])
    assert result.exit_code == 1
    failures = pd.read_csv(tmp_path / "maps" / "failures.csv")
    assert len(failures) == 6 and failures["error"].str.contains("is not readable").all()
