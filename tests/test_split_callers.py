"""One split algorithm (weakseg.splits): api.split_bags, the demo and make_splits agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from weakseg.splits import make_holdout, make_splits


def _table(n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"slide_id": [f"s{i:03d}" for i in range(n)], "label": rng.integers(0, 2, n)})


def _per_label_draw(table: pd.DataFrame, val_fraction: float, seed: int) -> list[str]:
    """api.split_bags' validation draw before it moved to weakseg.splits (pins its output)."""
    labels: dict[int, list[str]] = {}
    for slide_id, label in zip(table["slide_id"], table["label"]):
        labels.setdefault(int(label), []).append(slide_id)
    rng = np.random.default_rng(seed)
    val: list[str] = []
    for label in sorted(labels):
        ids = sorted(labels[label])
        k = min(max(1, round(val_fraction * len(ids))), len(ids) - 1)
        val += [ids[i] for i in rng.permutation(len(ids))[:k]]
    return sorted(val)


@pytest.mark.parametrize(("n", "fraction", "seed"), [(40, 0.25, 3), (6, 0.2, 0), (11, 0.5, 7), (3, 0.1, 1)])
def test_holdout_keeps_every_label_on_both_sides_and_the_old_draw(n, fraction, seed):
    table = _table(n, seed)
    split = make_holdout(table, fraction, seed=seed)
    assert split["val"] == _per_label_draw(table, fraction, seed)
    assert sorted(split["train"] + split["val"]) == sorted(table["slide_id"])
    by_label = table.set_index("slide_id")["label"]
    for label, count in by_label.value_counts().items():
        if count >= 2:
            assert (by_label[split["val"]] == label).any() and (by_label[split["train"]] == label).any()
    assert make_holdout(table.sample(frac=1, random_state=1), fraction, seed=seed) == split  # input order


def test_split_bags_is_make_holdout_on_the_bags_labels(tmp_path, make_cohort):
    from weakseg.api import split_bags
    from weakseg.bags import Bag
    from weakseg.recipes import DataSpec

    paths = make_cohort(tmp_path / "bags", n=12, seed=0)
    table = pd.DataFrame([{"slide_id": Bag(p).slide_id, "label": Bag(p).label} for p in paths])
    for seed in (0, 1, 7):
        got = split_bags(DataSpec(bags=tmp_path / "bags", val_fraction=0.25), seed=seed)
        want = make_holdout(table, 0.25, seed)
        assert [p.stem for p in got["train"]] == want["train"]
        assert [p.stem for p in got["val"]] == want["val"]


def test_demo_split_is_fold_0_of_make_splits(tmp_path):
    from weakseg.demo import DemoConfig, make_demo_split

    table = _table(24).assign(data_provider="karolinska", isup_grade=lambda t: t["label"] * 2)
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    table.rename(columns={"slide_id": "image_id"}).to_csv(cohort / "train.csv", index=False)
    config = DemoConfig(seed=5, test_fraction=0.25)
    got = make_demo_split(tmp_path, cohort, config, log=lambda _: None)
    ref = make_splits(table, n_folds=4, seed=5, val_fraction=0.0)
    fold0 = ref[ref["fold"] == 0]
    for name in ("train", "test"):
        assert got[name] == sorted(fold0.loc[fold0["split"] == name, "slide_id"])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_holdout_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        make_holdout(_table(), fraction)
