"""Training progress: one compact line per epoch on logger ``weakseg.engine`` (issue 8, "Silence during training")."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import weakseg  # noqa: F401
from weakseg.cli.main import app
from conftest import PLUGINS, colour_recipe

LINE = re.compile(r"^epoch (\d)/3, train_loss [-\d.e]+, val_slide_auc [\d.]+, best [\d.]+ at epoch \d, \d+\.\d s$")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(PLUGINS))
    from tiny_bags import write_tiny_bags

    root = tmp_path_factory.mktemp("progress")
    # a long path: an epoch line must stay one line however narrow the "terminal" is
    bags = root / ("very_long_folder_name_" * 4) / "bags"
    write_tiny_bags(bags, n=6, seed=2)
    path = root / "colour.yaml"
    path.write_text(colour_recipe(bags))
    yield path
    mp.undo()


def test_train_prints_one_line_per_epoch(recipe, tmp_path):
    result = CliRunner().invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    epochs = [m[1] for m in map(LINE.match, lines) if m]
    assert epochs == ["1", "2", "3"], result.output
    assert not any(line.startswith(" ") for line in lines)  # nothing wrapped onto continuation lines
    assert re.search(r"^best epoch \d: slide_auc = [\d.]+ \(epoch \d in metrics.csv", result.output, re.M)


def test_the_trainer_logs_each_epoch_at_info_on_weakseg_engine(recipe, tmp_path, caplog):
    from weakseg.api import train

    with caplog.at_level(logging.INFO, logger="weakseg.engine"):
        train(recipe, out=tmp_path / "run")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("weakseg.engine") and r.levelno == logging.INFO]
    assert [m[1] for m in map(LINE.match, lines) if m] == ["1", "2", "3"], lines


def test_demo_shows_the_engine_log(monkeypatch, tmp_path):
    import weakseg.cli.demo as cli_demo

    def fake_run_demo(out, config, log):
        log("train: fake")
        logging.getLogger("weakseg.engine.trainer").info("epoch 1/1, train_loss 0.5, 0.1 s")

    monkeypatch.setattr(cli_demo, "run_demo", fake_run_demo)
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "train: fake\nepoch 1/1, train_loss 0.5, 0.1 s\n" in result.output
