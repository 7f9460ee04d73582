"""Segmentation metrics on toy arrays with hand-computed Dice / IoU / AP, baselines and the report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

import weakseg  # noqa: F401
from weakseg.errors import WeaksegError
from weakseg.metrics import SegEvaluator, SlideTruth, markdown_table, slide_counts, write_report

# slide A: one background pixel, three benign, three cancer
LABELS_A = np.array([[0, 1, 1, 2], [2, 2, 1, 1]], dtype=np.uint8)
PROB_A = np.array([[0.9, 0.2, 0.6, 0.8], [0.4, 0.7, 0.1, 0.3]], dtype=np.float32)
A = SlideTruth("a", LABELS_A, provider="radboud", label=1)
B = SlideTruth("b", np.ones((2, 2), dtype=np.uint8), provider="karolinska", label=0)
PROB_B = np.full((2, 2), 0.1, dtype=np.float32)


def test_hand_computed_scores() -> None:
    s = slide_counts(PROB_A, A).scores()
    assert s["dice_cancer"] == pytest.approx(2 / 3)  # tp 2, fp 1, fn 1
    assert s["iou_cancer"] == pytest.approx(1 / 2)
    assert s["dice_benign"] == pytest.approx(3 / 4)  # tp 3, fp 1, fn 1
    assert s["iou_benign"] == pytest.approx(3 / 5)
    assert s["ap_cancer"] == pytest.approx(1 / 3 + 1 / 3 + 1 / 3 * 3 / 4)
    assert s["n_pixels"] == 7 and s["cancer_fraction"] == pytest.approx(3 / 7)


def test_tissue_mask_restricts_pixels() -> None:
    tissue = np.ones_like(LABELS_A, dtype=bool)
    tissue[0, 2] = False  # drop the false-positive benign pixel
    s = slide_counts(PROB_A, SlideTruth("a", LABELS_A, tissue=tissue)).scores()
    assert s["dice_cancer"] == pytest.approx(4 / 5) and s["n_pixels"] == 6


def test_average_precision_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(1, 3, size=(40, 50)).astype(np.uint8)
    k = rng.integers(0, 1000, size=labels.shape)
    prob = (np.where(labels == 2, np.minimum(k + 200, 999), k) + 0.5) / 1000  # one value per bin
    s = slide_counts(prob, SlideTruth("r", labels)).scores()
    assert s["ap_cancer"] == pytest.approx(average_precision_score(labels.ravel() == 2, prob.ravel()), abs=1e-9)


def test_undefined_scores_are_nan_and_skipped_in_means() -> None:
    ev = SegEvaluator()
    ev.add("m", A, PROB_A)
    sb = ev.add("m", B, PROB_B)
    assert math.isnan(sb["dice_cancer"]) and math.isnan(sb["ap_cancer"]) and sb["dice_benign"] == 1.0
    summary = ev.summary().set_index(["method", "group"])
    row = summary.loc[("m", "all")]
    assert row["n_slides"] == 2
    assert row["dice_cancer_mean"] == pytest.approx(2 / 3)
    assert row["dice_cancer_pooled"] == pytest.approx(2 / 3)
    assert row["dice_benign_pooled"] == pytest.approx(14 / 16)  # tp 3 + 4, fp 1, fn 1
    assert row["dice_benign_mean"] == pytest.approx((3 / 4 + 1) / 2)
    assert row["ap_cancer_pooled"] == pytest.approx(11 / 12)
    assert summary.loc[("m", "radboud")]["n_slides"] == 1
    assert summary.loc[("m", "karolinska")]["dice_benign_pooled"] == 1.0


def test_baselines() -> None:
    ev = SegEvaluator()
    ev.add_baselines(A)
    ev.add_baselines(B)
    per = ev.per_slide().set_index(["method", "slide_id"])
    assert per.loc[("baseline:all-cancer", "a"), "dice_cancer"] == pytest.approx(6 / 10)  # tp 3, fp 4, fn 0
    assert per.loc[("baseline:slide-label", "a"), "dice_cancer"] == pytest.approx(6 / 10)  # tp 3, fp 4, fn 0
    assert per.loc[("baseline:all-cancer", "b"), "dice_benign"] == 0.0
    assert per.loc[("baseline:slide-label", "b"), "dice_benign"] == 1.0
    with pytest.raises(WeaksegError, match="slide c.*slide label"):
        ev.add_baselines(SlideTruth("c", LABELS_A))


def test_bad_inputs_name_the_slide() -> None:
    with pytest.raises(WeaksegError, match="slide a: prediction shape"):
        slide_counts(np.zeros((3, 3)), A)
    with pytest.raises(WeaksegError, match="slide a: probabilities"):
        slide_counts(PROB_A * 2, A)


def test_report_files(tmp_path: Path) -> None:
    ev = SegEvaluator()
    for truth, prob in ((A, PROB_A), (B, PROB_B)):
        ev.add("model", truth, prob)
        ev.add_baselines(truth)
    paths = write_report(ev, tmp_path)
    assert len(pd.read_csv(paths["per_slide"])) == 6
    summary = pd.read_csv(paths["summary"])
    assert set(summary["group"]) == {"all", "radboud", "karolinska"}
    md = paths["markdown"].read_text()
    assert md.count("\n") == 2 + len(summary) and "| model | all | 2 | 0.667 |" in md
    assert paths["figure"].read_bytes()[:4] == b"\x89PNG"
    assert markdown_table(summary.iloc[:0]).count("\n") == 2
