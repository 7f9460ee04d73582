"""The README's typical study, run as written (issue 8, "The README's typical study does not run as written").

The commands are read from the README's ``A typical study on PANDA`` block and run through the CLI on a small
synthetic cohort. Test-only changes: ``/data/panda`` is that cohort, ``--workers 1``, and ``train`` gets
``--profile tiny --set learner.params.max_epochs=1``.
"""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

import weakseg  # noqa: F401
from weakseg.cli.main import app
from weakseg.splits import load_split

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_study() -> list[list[str]]:
    """The study's commands (argument lists without the leading ``weakseg``), in order."""
    text = README.read_text()
    block = text.split("A typical study on PANDA", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens:
            cut = tokens.index("&&") if "&&" in tokens else len(tokens)
            command, tokens = tokens[:cut], tokens[cut + 1 :]
            assert command[0] == "weakseg", line
            commands.append(command[1:])
    return commands


def for_test(command: list[str], cohort: Path) -> list[str]:
    out = [str(cohort) if t == "/data/panda" else t for t in command]
    if "--workers" in out:
        out[out.index("--workers") + 1] = "1"
    if out[0] == "train":
        out += ["--profile", "tiny", "--set", "learner.params.max_epochs=1"]
    return out


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    result = CliRunner().invoke(app, ["synth", str(root / "panda"), "--slides", "10", "--seed", "0",
                                      "--size", "2048x768", "--tile", "256"])
    assert result.exit_code == 0, result.output
    return root / "panda"


def test_readme_block_is_the_study():
    names = [c[0] for c in readme_study()]
    assert names == ["split", "tile", "tile", "weaken", "train", "predict", "evaluate"]
    study = readme_study()
    assert any("bags_test/" in c for c in study[2]) and "--split-file" in study[2]  # the test slides are tiled
    assert "learner.params.prior=null" in study[4]  # π estimated, not the recipe's 0.3


def test_the_typical_study_runs_as_written(cohort, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outputs = {}
    for command in readme_study():
        args = for_test(command, cohort)
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, f"weakseg {shlex.join(args)}\n{result.output}"
        outputs.setdefault(args[0], []).append(result.output)
    split = load_split("splits.csv", 0)
    bags = {p.stem for p in Path("bags").glob("*.h5")}
    test = {p.stem for p in Path("bags_test").glob("*.h5")}
    assert bags == set(split["train"]) | set(split["val"]) and test == set(split["test"]) and test
    assert "estimated by" in outputs["train"][0] and "epoch 1/1, train_loss" in outputs["train"][0]
    with open("maps/slides.csv", newline="") as fh:
        assert {r["slide_id"] for r in csv.DictReader(fh)} == test
    assert all(Path("maps", f"{i}.overlay.png").is_file() for i in test)
    metrics = Path("runs/nnpu/evaluation/metrics.csv").read_text()
    assert ",pixel,dice_cancer," in metrics and "n_pixels" not in outputs["evaluate"][0]


@pytest.mark.parametrize(("args", "message"), [
    (["--split", "test"], "--split needs --split-file"),
    (["--split-file", "splits.csv"], "--split-file needs --split"),
    (["--split-file", "splits.csv", "--split", "tset"], "--split must name parts of train, val, test"),
    (["--split-file", "splits.csv", "--split", "test", "--fold", "9"], "no fold 9"),
    (["--split-file", "missing.csv", "--split", "test"], "missing.csv: no such split file"),
])
def test_split_options_are_checked_before_tiling(cohort, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(app, ["split", str(cohort), "splits.csv", "--folds", "3"]).exit_code == 0
    result = CliRunner().invoke(app, ["tile", str(cohort), "out", *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not Path("out").exists()


def test_split_combines_with_ids(cohort, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(app, ["split", str(cohort), "splits.csv", "--folds", "3"]).exit_code == 0
    train = load_split("splits.csv", 1)["train"]
    test = load_split("splits.csv", 1)["test"]
    result = CliRunner().invoke(app, ["tile", str(cohort), "out", "--split-file", "splits.csv", "--split", "train",
                                      "--fold", "1", "--ids", ",".join([train[0], test[0]]), "--level", "2",
                                      "--tile-size", "64"])
    assert result.exit_code in (0, 1), result.output
    with open("out/manifest.csv", newline="") as fh:
        assert [r["slide_id"] for r in csv.DictReader(fh)] == [train[0]]
