"""Splits: weakseg.splits.make_splits vs scikit-learn StratifiedGroupKFold on a PANDA-sized cohort.

The cohort is synthetic: 10,616 slides with PANDA's provider and ISUP marginals (Radboud 5,160,
Karolinska 5,456; ISUP 0-5: 2,892 / 2,666 / 1,343 / 1,242 / 1,249 / 1,224) and 1,000 pairs of
duplicate sections sharing a group. Both methods make 10 group-aware folds stratified by
provider × ISUP; we report the time (median of repeats), the worst deviation of a stratum's share
in a test fold from its share overall, the test-fold size spread, groups split across test folds,
and how many slides change test fold when the input rows are shuffled.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

import weakseg  # noqa: F401
from weakseg.splits import make_splits

N_FOLDS, SEED, REPEATS = 10, 0, 3


def cohort(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    providers = np.repeat(["radboud", "karolinska"], [5160, 5456])
    isup = np.repeat(np.arange(6), [2892, 2666, 1343, 1242, 1249, 1224])
    table = pd.DataFrame(
        {
            "slide_id": [f"{i:032x}" for i in rng.choice(16**8, size=len(isup), replace=False)],
            "data_provider": rng.permutation(providers),
            "isup_grade": isup,
        }
    )
    table["case_id"] = table["slide_id"]
    dup = rng.choice(len(table), size=(1000, 2), replace=False)
    table.loc[dup[:, 1], ["case_id", "data_provider", "isup_grade"]] = (
        table.loc[dup[:, 0], ["case_id", "data_provider", "isup_grade"]].to_numpy()
    )
    return table


def ours(table: pd.DataFrame) -> pd.Series:
    s = make_splits(table, N_FOLDS, SEED, group_col="case_id", val_fraction=0.0)
    test = s[s["split"] == "test"]
    return pd.Series(test["fold"].to_numpy(), index=test["slide_id"].to_numpy())


def sklearn(table: pd.DataFrame) -> pd.Series:
    y = table["data_provider"] + "/" + table["isup_grade"].astype(str)
    fold = np.empty(len(table), dtype=np.int64)
    cv = StratifiedGroupKFold(N_FOLDS, shuffle=True, random_state=SEED)
    for f, (_, test) in enumerate(cv.split(table, y, groups=table["case_id"])):
        fold[test] = f
    return pd.Series(fold, index=table["slide_id"].to_numpy())


def quality(table: pd.DataFrame, fold: pd.Series) -> tuple[float, int, int]:
    t = table.set_index("slide_id").assign(fold=fold)
    stratum = t["data_provider"] + "/" + t["isup_grade"].astype(str)
    share = pd.crosstab(t["fold"], stratum, normalize="index")
    overall = stratum.value_counts(normalize=True)
    worst = float((share - overall).abs().to_numpy().max())
    sizes = t["fold"].value_counts()
    straddle = int((t.groupby("case_id")["fold"].nunique() > 1).sum())
    return worst, int(sizes.max() - sizes.min()), straddle


def main() -> None:
    table = cohort()
    shuffled = table.sample(frac=1.0, random_state=1)
    rows = []
    for name, method in (("weakseg make_splits", ours), ("sklearn StratifiedGroupKFold", sklearn)):
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            fold = method(table)
            times.append(time.perf_counter() - start)
        moved = int((method(shuffled).reindex(fold.index) != fold).sum())
        worst, spread, straddle = quality(table, fold)
        rows.append((name, statistics.median(times), worst, spread, straddle, moved))
        print(f"{name}: {statistics.median(times):.2f} s", file=sys.stderr)
    print(f"10,616 slides (1,000 duplicate pairs grouped), {N_FOLDS} folds, provider × ISUP strata, median of {REPEATS}\n")
    print("| method | time (s) | worst stratum share deviation | test-fold size spread | groups split | slides moved by shuffling rows |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, t, worst, spread, straddle, moved in rows:
        print(f"| {name} | {t:.2f} | {100 * worst:.2f} pp | {spread} | {straddle} | {moved} |")


if __name__ == "__main__":
    main()
