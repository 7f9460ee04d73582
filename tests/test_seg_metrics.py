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


def test_undefined_scores_are_nan_and_empty_classes_score_one_in_means() -> None:
    ev = SegEvaluator()
    ev.add("m", A, PROB_A)
    sb = ev.add("m", B, PROB_B)
    assert math.isnan(sb["dice_cancer"]) and math.isnan(sb["ap_cancer"]) and sb["dice_benign"] == 1.0
    summary = ev.summary().set_index(["method", "group"])
    row = summary.loc[("m", "all")]
    assert row["n_slides"] == 2 and row["n_pos"] == 1 and row["n_neg"] == 1
    assert row["dice_cancer_mean"] == pytest.approx((2 / 3 + 1) / 2)  # B: no cancer, none predicted -> 1.0
    assert row["dice_cancer_mean_pos"] == pytest.approx(2 / 3) and row["dice_cancer_mean_neg"] == 1.0
    assert row["ap_cancer_mean"] == pytest.approx(slide_counts(PROB_A, A).scores()["ap_cancer"])  # positives only
    assert row["dice_cancer_pooled"] == pytest.approx(2 / 3)
    assert row["dice_benign_pooled"] == pytest.approx(14 / 16)  # tp 3 + 4, fp 1, fn 1
    assert row["dice_benign_mean"] == pytest.approx((3 / 4 + 1) / 2)
    assert row["ap_cancer_pooled"] == pytest.approx(11 / 12)
    assert summary.loc[("m", "radboud")]["n_slides"] == 1
    assert summary.loc[("m", "karolinska")]["dice_benign_pooled"] == 1.0


def test_negative_slides_do_not_change_the_set_a_method_is_averaged_over() -> None:
    """Issue 8 #8: an empty prediction on a negative slide was NaN and dropped, one false-positive pixel scored 0."""
    neg = SlideTruth("n", np.ones((4, 4), dtype=np.uint8), provider="karolinska", label=0)
    one_fp = np.zeros((4, 4), dtype=np.float32)
    one_fp[0, 0] = 0.9
    ev = SegEvaluator()
    ev.add("good", A, (LABELS_A == 2).astype(np.float32))  # perfect on the positive slide
    ev.add("good", neg, one_fp)  # one false-positive pixel on the negative slide
    ev.add_baselines(A)
    ev.add_baselines(neg)  # slide-label: predicts nothing on the negative slide
    per = ev.per_slide().set_index(["method", "slide_id"])
    assert per.loc[("baseline:slide-label", "n"), "dice_cancer"] == 1.0  # defined, not NaN
    assert per.loc[("good", "n"), "dice_cancer"] == 0.0
    assert per.loc[("good", "n"), "cancer_predicted"] == 1 and not per.loc[("good", "n"), "positive"]
    s = ev.summary().set_index(["method", "group"])
    good, base = s.loc[("good", "all")], s.loc[("baseline:slide-label", "all")]
    # both averaged over the same two slides
    assert good["dice_cancer_mean"] == pytest.approx(0.5) and base["dice_cancer_mean"] == pytest.approx((0.6 + 1) / 2)
    # positive slides rank them by segmentation, negative slides by false positives
    assert good["dice_cancer_mean_pos"] == 1.0 and base["dice_cancer_mean_pos"] == pytest.approx(0.6)
    assert good["fp_fraction_neg"] == pytest.approx(1 / 16) and base["fp_fraction_neg"] == 0.0
    assert good["dice_cancer_mean_neg"] == 0.0 and base["dice_cancer_mean_neg"] == 1.0
    assert good["n_pos"] == 1 and good["n_neg"] == 1 and s.loc[("good", "radboud"), "n_neg"] == 0
    assert math.isnan(s.loc[("good", "radboud"), "fp_fraction_neg"])


def test_a_slide_without_evaluated_pixels_stays_nan() -> None:
    empty = SlideTruth("e", np.zeros((2, 2), dtype=np.uint8), label=0)  # background only
    assert math.isnan(slide_counts(PROB_B, empty).scores(empty=1.0)["dice_cancer"])


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
    assert "dice_cancer_mean_pos" in md and "fp_fraction_neg" in md
    assert paths["figure"].read_bytes()[:4] == b"\x89PNG"
    assert markdown_table(summary.iloc[:0]).count("\n") == 2
