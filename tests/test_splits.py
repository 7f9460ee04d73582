"""Splits: deterministic, order-invariant, stratified, group-aware; files and CLI round-trip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import weakseg  # noqa: F401  (applies the import shim first)
from weakseg.bags import BagMeta, BagWriter
from weakseg.cli.main import app
from weakseg.errors import ManifestError
from weakseg.panda import read_train_csv
from weakseg.splits import load_split, load_table, make_splits, read_splits, write_splits

MANIFESTS = Path(__file__).resolve().parents[1] / "data_manifests"


def _cohort(n: int = 120, seed: int = 0, n_cases: int | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {
            "slide_id": [f"{i:032x}" for i in rng.permutation(10**6)[:n]],
            "data_provider": rng.choice(["radboud", "karolinska"], n),
            "isup_grade": rng.integers(0, 6, n),
        }
    )
    if n_cases:
        table["case_id"] = [f"case{c}" for c in rng.integers(0, n_cases, n)]
    return table


def _by_fold(splits: pd.DataFrame) -> dict[int, dict[str, set[str]]]:
    return {
        fold: {name: set(part.loc[part["split"] == name, "slide_id"]) for name in ("train", "val", "test")}
        for fold, part in splits.groupby("fold")
    }


def test_folds_partition_the_slides():
    table = _cohort(123)
    splits = make_splits(table, n_folds=5, seed=3, val_fraction=0.1)
    assert list(splits.columns) == ["slide_id", "fold", "split"]
    assert len(splits) == 5 * len(table)
    folds = _by_fold(splits)
    tests = [folds[f]["test"] for f in range(5)]
    assert set().union(*tests) == set(table["slide_id"]) and sum(map(len, tests)) == len(table)
    assert max(map(len, tests)) - min(map(len, tests)) <= 1
    for parts in folds.values():
        assert not (parts["train"] & parts["val"]) and not (parts["val"] & parts["test"])
        assert parts["train"] | parts["val"] | parts["test"] == set(table["slide_id"])
        assert abs(len(parts["val"]) - 0.1 * len(table)) <= 1


def test_clam_style_80_10_10():
    splits = make_splits(_cohort(200), n_folds=10, seed=0, val_fraction=0.1)
    sizes = splits.groupby(["fold", "split"]).size().unstack()
    assert (sizes["train"] == 160).all() and (sizes["val"] == 20).all() and (sizes["test"] == 20).all()


def test_deterministic_and_invariant_to_input_order():
    table = _cohort(90, n_cases=60)
    ref = make_splits(table, n_folds=3, seed=7, group_col="case_id")
    for perm_seed in range(3):
        shuffled = table.sample(frac=1.0, random_state=perm_seed)[list(reversed(table.columns))]
        pd.testing.assert_frame_equal(make_splits(shuffled, n_folds=3, seed=7, group_col="case_id"), ref)
    assert not make_splits(table, n_folds=3, seed=8, group_col="case_id").equals(ref)


def test_independent_of_python_hash_seed():
    """A subprocess with another hash seed (string hashing, set order) makes the same split."""
    table = pd.DataFrame(
        {"slide_id": [f"s{i}" for i in range(40)], "data_provider": ["a", "b"] * 20,
         "isup_grade": np.arange(40) % 3, "case_id": [f"c{i % 13}" for i in range(40)]}
    )
    script = (
        "import sys, pandas as pd; from weakseg.splits import make_splits; "
        "make_splits(pd.read_json(sys.stdin), 4, 0, group_col='case_id').to_csv(sys.stdout, index=False)"
    )
    other = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    child = subprocess.run(
        [sys.executable, "-c", script], input=table.to_json(), env={**os.environ, "PYTHONHASHSEED": other},
        capture_output=True, text=True, check=True,
    )
    assert child.stdout == make_splits(table, 4, 0, group_col="case_id").to_csv(index=False)


def test_stratification_holds():
    table = _cohort(240, seed=1)
    splits = make_splits(table, n_folds=4, seed=0, val_fraction=0.2).merge(table, on="slide_id")
    counts = splits.groupby(["data_provider", "isup_grade", "fold", "split"]).size().unstack(fill_value=0)
    for (provider, isup), per_fold in counts.groupby(level=[0, 1]):
        stratum = ((table["data_provider"] == provider) & (table["isup_grade"] == isup)).sum()
        assert per_fold["test"].max() - per_fold["test"].min() <= 1, (provider, isup)
        assert per_fold["test"].sum() == stratum
        assert (abs(per_fold["val"] - 0.2 * stratum) <= 1.5).all(), (provider, isup)


def test_tiny_strata_fall_back_gracefully():
    table = _cohort(50, seed=2)
    table.loc[:4, "isup_grade"] = [9, 10, 11, 12, 13]  # five singleton strata
    table.loc[:4, "data_provider"] = "radboud"
    splits = make_splits(table, n_folds=5, seed=0)
    folds = _by_fold(splits)
    assert [len(folds[f]["test"]) for f in range(5)] == [10] * 5
    singles = set(table["slide_id"][:5])
    assert all(len(folds[f]["test"] & singles) == 1 for f in range(5))


def test_groups_never_straddle_splits():
    table = _cohort(150, seed=4, n_cases=40)
    table.loc[::7, "case_id"] = None  # slides without a case are their own group
    splits = make_splits(table, n_folds=5, seed=1, group_col="case_id").merge(table, on="slide_id")
    grouped = splits.dropna(subset=["case_id"]).groupby(["fold", "case_id"])["split"].nunique()
    assert (grouped == 1).all()
    assert splits["case_id"].isna().sum() == 5 * len(range(0, 150, 7))


def test_bad_arguments_name_the_problem():
    table = _cohort(10)
    with pytest.raises(ValueError, match="n_folds"):
        make_splits(table, n_folds=1)
    with pytest.raises(ValueError, match="val_fraction"):
        make_splits(table, n_folds=2, val_fraction=0.5)
    with pytest.raises(ValueError, match=r"\['case_id'\]"):
        make_splits(table, group_col="case_id")
    with pytest.raises(ValueError, match="duplicate slide ids"):
        make_splits(pd.concat([table, table.iloc[:1]]))
    with pytest.raises(ValueError, match="2 groups cannot fill 5 folds"):
        make_splits(table.assign(case_id=["a", "b"] * 5), group_col="case_id")
    with pytest.raises(ValueError, match="too few groups for val_fraction"):
        make_splits(table.iloc[:4], n_folds=2, val_fraction=0.1)


def test_write_read_load_split_roundtrip(tmp_path):
    table = _cohort(30)
    splits = make_splits(table, n_folds=3, seed=0, stratify=())
    path = tmp_path / "sub" / "splits.csv"
    write_splits(splits.sample(frac=1.0, random_state=0), path)
    assert [p.name for p in path.parent.iterdir()] == ["splits.csv"]  # no temporary left behind
    back = read_splits(path)
    assert back.sort_values(["fold", "slide_id"]).reset_index(drop=True).equals(
        splits.sort_values(["fold", "slide_id"]).reset_index(drop=True)
    )
    fold1 = load_split(path, 1)
    expected = _by_fold(splits)[1]
    assert {k: set(v) for k, v in fold1.items()} == expected
    assert fold1["train"] == sorted(fold1["train"])
    with pytest.raises(ManifestError, match=r"no fold 3; the file has folds \[0, 1, 2\]"):
        load_split(path, 3)


def test_read_splits_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("slide_id,fold\na,0\n")
    with pytest.raises(ManifestError, match=r"bad\.csv.*\['split'\]"):
        read_splits(bad)
    bad.write_text("slide_id,fold,split\na,0,train\nb,0,holdout\n")
    with pytest.raises(ManifestError, match="row 3: bad split 'holdout'"):
        read_splits(bad)
    bad.write_text("slide_id,fold,split\na,0,train\na,0,test\n")
    with pytest.raises(ManifestError, match="row 3: slide 'a' listed twice in fold 0"):
        read_splits(bad)


def test_load_table_sources(tmp_path):
    panda = tmp_path / "panda"
    panda.mkdir()
    (panda / "train.csv").write_text(
        "image_id,data_provider,isup_grade,gleason_score,case_id\nb,radboud,0,negative,c1\na,karolinska,3,4+3,c1\n"
    )
    table, errors = load_table(panda)  # images need not exist to split
    assert errors == [] and list(table["slide_id"]) == ["b", "a"] and list(table["case_id"]) == ["c1", "c1"]
    manifest = tmp_path / "m.csv"
    manifest.write_text("slide_path,isup_grade,case_id\nx.tiff,2,p\ny.tiff,,\n")
    table, _ = load_table(manifest)
    assert list(table["slide_id"]) == ["x", "y"] and table["case_id"].isna().tolist() == [False, True]
    bags = tmp_path / "bags"
    for name, isup in (("s1", 2), ("s2", -1)):
        meta = BagMeta(slide_id=name, isup_grade=isup, data_provider="radboud", extra={"case_id": "k"})
        with BagWriter(bags / f"{name}.h5", meta, tile_size=4, with_masks=False, codec="raw") as writer:
            writer.append(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 2)), np.ones(1))
    table, _ = load_table(bags)
    assert list(table["slide_id"]) == ["s1", "s2"] and table["isup_grade"].isna().tolist() == [False, True]
    assert list(table["case_id"]) == ["k", "k"]
    with pytest.raises(ManifestError, match="neither a PANDA folder"):
        load_table(tmp_path / "panda" / "..")


def test_cli_split(tmp_path):
    source = tmp_path / "train.csv"
    rows = [f"{i:032x},{'radboud' if i % 2 else 'karolinska'},{i % 6},{['0+0', '3+3', '3+4', '4+3', '4+4', '4+5'][i % 6]}" for i in range(24)]
    source.write_text("image_id,data_provider,isup_grade,gleason_score\n" + "\n".join(rows) + "\nbad,tcga,1,3+3\n")
    out = tmp_path / "splits.csv"
    result = CliRunner().invoke(app, ["split", str(source), str(out), "--folds", "3", "--seed", "5"])
    assert result.exit_code == 1, result.output  # one row skipped: partial
    assert "row 26" in result.output
    assert len(read_splits(out)) == 3 * 24
    again = tmp_path / "again.csv"
    CliRunner().invoke(app, ["split", str(source), str(again), "--folds", "3", "--seed", "5"])
    assert out.read_bytes() == again.read_bytes()
    result = CliRunner().invoke(app, ["split", str(source), str(out), "--group-col", "case_id"])
    assert result.exit_code == 2 and "case_id" in result.output


SHIPPED = [  # (split file, source table, options): the exact commands in data_manifests/README.md
    ("synth40_seed0.splits_k5_seed0.csv", "synth40_seed0.train.csv", ["--folds", "5", "--seed", "0"]),
    ("synth40_seed0.splits_k10_seed0.csv", "synth40_seed0.train.csv", ["--folds", "10", "--seed", "0"]),
]


def test_every_shipped_split_file_is_listed():
    assert sorted(p.name for p in MANIFESTS.glob("*.splits_*.csv")) == sorted(name for name, _, _ in SHIPPED)


@pytest.mark.parametrize(("split_name", "source_name", "options"), SHIPPED, ids=[s[0] for s in SHIPPED])
def test_shipped_split_files_reproduce(split_name, source_name, options, tmp_path):
    out = tmp_path / "regen.csv"
    result = CliRunner().invoke(app, ["split", str(MANIFESTS / source_name), str(out), *options])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (MANIFESTS / split_name).read_bytes()


def test_shipped_synth_table_matches_the_generator():
    """synth40_seed0.train.csv is what `weakseg synth OUT --slides 40 --seed 0` writes (scenes only, no pixels)."""
    from weakseg.synth import DEFAULT_SIZE, make_scene, plan_cohort

    expected = []
    for plan in plan_cohort(40, seed=0):
        scene = make_scene(plan.scene_seed, DEFAULT_SIZE, plan.provider, cancer=plan.cancer, pen=plan.pen, blank=plan.blank)
        expected.append((plan.image_id, plan.provider, scene.isup_grade, scene.gleason_score))
    table, errors = read_train_csv(MANIFESTS / "synth40_seed0.train.csv")
    assert errors == []
    shipped = list(table[["image_id", "data_provider", "isup_grade", "gleason_score"]].itertuples(index=False, name=None))
    assert shipped == sorted(expected)
