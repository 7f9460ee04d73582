"""Issue 8, remaining items: output paths that cannot be written (#6) for every writing command,
per-bag failures of ``embed`` (#11), and ``mil_seg`` sub-learner settings checked with the recipe (#13).

Tiny inputs; each test runs in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from weakseg.cli.main import app
from weakseg.data import write_toy_bags
from weakseg.features import list_feature_keys


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def flat(result) -> str:
    return " ".join(result.output.split())


# -- #11: embed records a bag it cannot read and embeds the rest -------------------------------
def test_embed_records_bad_bags_and_embeds_the_rest(tmp_path):
    folder = tmp_path / "bags"
    good = write_toy_bags(folder, n_bags=3, n_tiles=(3, 5), tile_size=16, seed=1)
    (folder / "a_broken.h5").write_bytes(b"garbage")  # sorts first: the tile size comes from a readable bag
    write_toy_bags(tmp_path / "other", n_bags=1, n_tiles=(3, 3), tile_size=32, seed=3)
    other = next((tmp_path / "other").glob("*.h5"))
    other.rename(folder / "z_other_size.h5")
    result = run("embed", folder, "--encoder", "colon27", "--random-init", "--batch-size", "4")
    assert result.exit_code == 1, result.output
    text = flat(result)
    assert "a_broken.h5" in text and "z_other_size.h5" in text and "2 of 5 bag(s) were not embedded" in text
    for p in sorted(folder.glob("toy*.h5")):
        if p.name.endswith(".features.hdf5"):
            continue
        assert list_feature_keys(p), p
    assert not (folder / "a_broken.features.hdf5").exists()
    assert not (folder / "z_other_size.features.hdf5").exists()


def test_embed_with_no_readable_bag_is_exit_2(tmp_path):
    folder = tmp_path / "bags"
    folder.mkdir()
    (folder / "broken.h5").write_bytes(b"garbage")
    result = run("embed", folder, "--encoder", "colon27", "--random-init")
    assert result.exit_code == 2, result.output
    assert "broken.h5" in flat(result)


# -- #13: mil_seg's sub-learner settings are validated with the recipe -------------------------
MIL_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "mil_refine_transunet.yaml"


@pytest.mark.parametrize(("override", "key"), [
    ("learner.params.seg_params.lr=-1", "learner.params.seg_params.lr"),
    ("learner.params.seg_params.lr=.nan", "learner.params.seg_params.lr"),
    ("learner.params.mil_params.bogus=1", "learner.params.mil_params.bogus"),
    ("learner.params.mil_params.max_epochs=0", "learner.params.mil_params.max_epochs"),
    ("learner.params.mil_params.lr=abc", "learner.params.mil_params.lr"),
    ("learner.params.seg_params.optimizer=bogus", "learner.params.seg_params"),
    ("learner.params.seg_learner=topk_mil", "learner.params.seg_learner"),
    ("learner.params.seg_learner=nope", "learner.params.seg_learner"),
    ("learner.params.mil_learner=supervised_seg", "learner.params.mil_learner"),
])
def test_mil_seg_sub_learner_settings_fail_before_any_file(tmp_path, override, key):
    write_toy_bags(tmp_path / "bags", n_bags=2, n_tiles=3, tile_size=16, seed=0)
    out = tmp_path / "run"
    result = run("train", MIL_RECIPE, "--profile", "tiny", "--set", f"data.bags={tmp_path / 'bags'}",
                 "--set", override, "--out", out)
    assert result.exit_code == 2, result.output
    assert f"{key}:" in flat(result), flat(result)  # the message names the key (the --set echo has "key=")
    assert not out.exists()


# -- #6: output paths that cannot be written, for every writing command --------------------------
def _inputs(tmp_path: Path) -> Path:
    bags = tmp_path / "bags"
    if not bags.exists():
        write_toy_bags(bags, n_bags=2, n_tiles=3, tile_size=16, seed=0)
    return bags


# command -> (arguments given the output path, whether the output is a folder)
COMMANDS = {
    "predict": (lambda t, o: ["predict", t / "run", _inputs(t), "--out", o], True),
    "evaluate": (lambda t, o: ["evaluate", t / "run", _inputs(t), "--out", o], True),
    "weaken": (lambda t, o: ["weaken", _inputs(t), o, "--mode", "slide"], True),
    "annotate": (lambda t, o: ["annotate", _inputs(t), o, "--positives", t / "bags"], True),
    "synth": (lambda t, o: ["synth", o, "--slides", "1", "--size", "256x256"], True),
    "train": (lambda t, o: ["train", MIL_RECIPE, "--profile", "tiny", "--set", f"data.bags={_inputs(t)}", "--out", o],
              True),
    "show": (lambda t, o: ["show", sorted(_inputs(t).glob("*.h5"))[0], "--out", o], False),
    "split": (lambda t, o: ["split", _inputs(t), o], False),
}


def _name(is_folder: bool) -> str:
    return "out" if is_folder else "out.png"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_output_under_a_file_is_one_line_exit_2(tmp_path, command):
    args, is_folder = COMMANDS[command]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "sub" / _name(is_folder)
    result = run(*args(tmp_path, out))
    assert result.exit_code == 2, result.output
    assert str(blocker) in flat(result) and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_output_of_the_wrong_kind_is_one_line_exit_2(tmp_path, command):
    """A folder output that is an existing file; a file output that is an existing folder."""
    args, is_folder = COMMANDS[command]
    out = tmp_path / _name(is_folder)
    if is_folder:
        out.write_text("keep me")
    else:
        out.mkdir()
    result = run(*args(tmp_path, out))
    assert result.exit_code == 2, result.output
    assert str(out) in flat(result) and "Traceback" not in result.output
    if is_folder:
        assert out.read_text() == "keep me"
    else:
        assert not any(out.iterdir())


@pytest.fixture
def locked(tmp_path, monkeypatch):
    """A folder ``os.access`` reports as not writable (as root no real folder refuses writing)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    real = os.access

    def access(path, mode, *a, **kw):
        if mode & os.W_OK and (Path(path) == folder or folder in Path(path).parents):
            return False
        return real(path, mode, *a, **kw)

    monkeypatch.setattr(os, "access", access)
    return folder


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unwritable_output_folder_is_one_line_exit_2(tmp_path, locked, command):
    args, is_folder = COMMANDS[command]
    out = locked / _name(is_folder)
    result = run(*args(tmp_path, out))
    assert result.exit_code == 2, result.output
    assert str(locked) in flat(result) and "not writable" in flat(result)
    assert not any(locked.iterdir())


def test_predict_and_evaluate_refuse_a_folder_where_their_csv_goes(tmp_path):
    (tmp_path / "out" / "slides.csv").mkdir(parents=True)
    result = run(*COMMANDS["predict"][0](tmp_path, tmp_path / "out"))
    assert result.exit_code == 2 and f"{tmp_path / 'out' / 'slides.csv'} is a folder" in flat(result), result.output
    (tmp_path / "ev" / "metrics.md").mkdir(parents=True)
    result = run(*COMMANDS["evaluate"][0](tmp_path, tmp_path / "ev"))
    assert result.exit_code == 2 and f"{tmp_path / 'ev' / 'metrics.md'} is a folder" in flat(result), result.output


def test_embed_into_an_unwritable_bag_folder_is_one_line_exit_2(tmp_path, monkeypatch):
    bags = _inputs(tmp_path)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if (m & os.W_OK and Path(p) == bags) else real(p, m, *a, **k))
    result = run("embed", bags, "--encoder", "colon27", "--random-init")
    assert result.exit_code == 2, result.output
    assert str(bags) in flat(result) and "not writable" in flat(result)
    assert not any(bags.glob("*.features.hdf5"))


def test_embed_sidecar_name_taken_by_a_folder_fails_that_bag_only(tmp_path):
    bags = _inputs(tmp_path)
    first, second = sorted(bags.glob("*.h5"))
    taken = first.with_name(first.stem + ".features.hdf5")
    taken.mkdir()
    result = run("embed", bags, "--encoder", "colon27", "--random-init")
    assert result.exit_code == 1, result.output
    assert first.name in flat(result)
    assert taken.is_dir() and list_feature_keys(second)


def test_file_system_error_during_work_is_one_line_naming_the_path(tmp_path, monkeypatch):
    """Any OSError a command meets (no permission, a full disk) is one line naming the file, exit 2."""
    import errno

    import weakseg.splits

    target = tmp_path / "splits.csv"

    def full(splits, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(weakseg.splits, "write_splits", full)
    result = run("split", _inputs(tmp_path), target, "--folds", "2", "--val-fraction", "0")
    assert result.exit_code == 2, result.output
    assert f"{target}: No space left on device" in flat(result) and "Traceback" not in result.output
    assert not target.exists()


@pytest.mark.parametrize("command", ["weaken", "annotate"])
def test_bag_output_name_taken_by_a_folder_fails_that_bag_only(tmp_path, command):
    bags = _inputs(tmp_path)
    first, second = sorted(bags.glob("*.h5"))
    out = tmp_path / "out"
    (out / first.name).mkdir(parents=True)
    args = COMMANDS[command][0](tmp_path, out)
    if command == "annotate":  # one annotation file per slide: an empty FeatureCollection
        ann = tmp_path / "ann"
        ann.mkdir()
        for bag in (first, second):
            (ann / f"{bag.stem}.geojson").write_text('{"type": "FeatureCollection", "features": []}')
        args[args.index("--positives") + 1] = ann
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert first.name in flat(result) and "Traceback" not in result.output
    assert (out / first.name).is_dir() and (out / second.name).is_file()
