"""``weakseg train`` / ``recipes`` / ``predict`` command lines: options, resume, exit codes and messages."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import weakseg  # noqa: F401
from weakseg.cli.main import app
from conftest import PLUGINS, colour_recipe

TINY_PROFILE = """\
description: mean-colour MIL
profiles:
  tiny:
    learner: {params: {max_epochs: 2}}
"""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(PLUGINS))
    from tiny_bags import write_tiny_bags

    root = tmp_path_factory.mktemp("cli")
    write_tiny_bags(root / "bags", n=6, seed=2)
    path = root / "colour.yaml"
    path.write_text(colour_recipe(root / "bags", extra=TINY_PROFILE))
    yield path
    mp.undo()


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_resume_for_more_epochs_equals_one_longer_run(recipe, tmp_path):
    first = run("train", recipe, "--set", "learner.params.max_epochs=1", "--out", tmp_path / "a")
    assert first.exit_code == 0, first.output
    more = run("train", recipe, "--set", "learner.params.max_epochs=2", "--out", tmp_path / "a", "--resume")
    assert more.exit_code == 0, more.output
    assert re.search(r"best epoch \d: slide_auc = [\d.]+", more.output)
    straight = run("train", recipe, "--profile", "tiny", "--out", tmp_path / "b")
    assert straight.exit_code == 0, straight.output
    a, b = (pd.read_csv(tmp_path / d / "metrics.csv").drop(columns="seconds") for d in "ab")
    pd.testing.assert_frame_equal(a, b)
    wa, wb = (torch.load(tmp_path / d / "model.pt", weights_only=True)["state"]["module"] for d in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_a_different_recipe(recipe, tmp_path):
    assert run("train", recipe, "--profile", "tiny", "--out", tmp_path).exit_code == 0
    result = run("train", recipe, "--profile", "tiny", "--set", "seed=9", "--out", tmp_path, "--resume")
    assert result.exit_code == 2 and "differs from the one this run started with (at seed)" in result.output
    again = run("train", recipe, "--profile", "tiny", "--out", tmp_path)
    assert again.exit_code == 2 and "use --resume or another --out" in again.output


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "learner.params.lrr=1"], "has no parameter 'lrr'; did you mean 'lr'?"),
    (["--set", "data.bgas=x"], "data.bgas: unknown key 'bgas'; did you mean 'bags'?"),
    (["--set", "oops"], "expected KEY.PATH=VALUE"),
    (["--profile", "small"], "unknown profile 'small'"),
    (["--resume"], "resuming needs the run directory"),
])
def test_bad_options_exit_2_with_the_reason(recipe, args, message):
    result = run("train", recipe, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_recipes_show_resolves_a_profile(recipe):
    result = run("recipes", "show", recipe, "--profile", "tiny")
    assert result.exit_code == 0, result.output
    assert "max_epochs: 2" in result.output and "profiles" not in result.output.split("resolved from")[1]
    assert run("recipes", "list").exit_code == 0
    assert run("recipes", "show").exit_code == 2


def test_predict_and_evaluate_need_a_run_directory(recipe, tmp_path):
    for command in ("predict", "evaluate"):
        result = run(command, tmp_path, recipe.parent / "bags", "--out", tmp_path / "o")
        assert result.exit_code == 2 and "no model.pt" in " ".join(result.output.split())


def test_resume_before_the_first_checkpoint_starts_over(recipe, tmp_path):
    assert run("train", recipe, "--profile", "tiny", "--out", tmp_path / "a").exit_code == 0
    expected = pd.read_csv(tmp_path / "a" / "metrics.csv").drop(columns="seconds")
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.csv", "model.pt"):
        (tmp_path / "a" / name).unlink()  # as if killed during the first epoch
    result = run("train", recipe, "--profile", "tiny", "--out", tmp_path / "a", "--resume")
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "metrics.csv").drop(columns="seconds"), expected)


def test_interrupt_prints_the_resume_command(recipe, tmp_path, monkeypatch):
    from weakseg import api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "train", interrupted)
    result = run("train", recipe, "--profile", "tiny", "--set", "seed=3", "--out", tmp_path / "r")
    assert result.exit_code == 130
    assert f"--profile tiny --set seed=3 --out {tmp_path / 'r'} --resume" in " ".join(result.output.split())


def test_api_train_without_out_names_its_run_directory(recipe, tmp_path, monkeypatch):
    """``weakseg.train(recipe)`` with no ``out`` (a single process) writes runs/<name>-<time>/."""
    from weakseg import api

    monkeypatch.chdir(tmp_path)
    run_dir = api.train(recipe)
    assert run_dir.parent == Path("runs") and (tmp_path / run_dir / "model.pt").is_file()
