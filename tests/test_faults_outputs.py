"""Issue 8, remaining items: output paths that cannot be written (#6) for every writing command,
per-bag failures of ``embed`` (#11), and ``mil_seg`` sub-learner settings checked with the recipe (#13).

Tiny inputs; each test runs in seconds.
"""

from __future__ import annotations

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
