"""Gland objects on real H&E: watershed instance splitting of a segmentation learner's maps, GlaS object metrics.

For each held-out glas_train image of a ``bench_real.py`` fold, the fold's trained ``supervised_seg`` model
(``OUT/fold<k>/runs/<method>/model.pt``) predicts the whole image at its training µm/px; objects are then
(a) connected components of ``p >= 0.5`` and (b) :func:`weakseg.postprocess.split_instances` (distance
markers) of the same mask. Truth objects: connected components of the image's cancer mask (the PANDA-layout
masks mark cancer, not individual glands, so touching glands are one truth object: an approximation).
Object F1, object Dice and object Hausdorff (GlaS definitions, :func:`weakseg.metrics.glas_object_scores`),
mean over images with cancer.

    python benchmarks/bench_gland_objects.py --runs bench_out/real_backbones --method supervised_unet [--folds 0 1 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from weakseg.labels import CANCER
from weakseg.learners import Learner
from weakseg.metrics.instance import glas_object_scores
from weakseg.panda import to_common_labels
from weakseg.postprocess import split_instances
from weakseg.resolution import RegionReader, Resolution
from weakseg.slide import open_slide

COHORT = Path(__file__).resolve().parents[2] / "shared" / "data" / "glas_train"


def read_at(path: Path, mpp: float, nearest: bool) -> np.ndarray:
    with open_slide(path) as slide:
        res = Resolution.plan(slide, mpp=mpp)
        w, h = res.dimensions(slide)
        with RegionReader(slide, res, nearest=nearest) as reader:
            return reader.read(0, 0, w, h)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("bench_out/real_backbones"))
    parser.add_argument("--method", default="supervised_unet")
    parser.add_argument("--folds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--min-distance", type=int, default=6)
    parser.add_argument("--min-size", type=int, default=20)
    args = parser.parse_args()
    splits = pd.read_csv(args.runs / "splits.csv")
    table = pd.read_csv(COHORT / "train.csv").set_index("image_id")
    rows = []
    for k in args.folds:
        learner = Learner.load(args.runs / f"fold{k}" / "runs" / args.method / "model.pt")
        mpp = float(learner.training_resolution_["mpp"])
        for slide_id in splits[(splits["fold"] == k) & (splits["split"] == "test")]["slide_id"]:
            provider = table.loc[slide_id, "data_provider"]
            rgb = read_at(COHORT / "train_images" / f"{slide_id}.tiff", mpp, nearest=False)
            mask = read_at(COHORT / "train_label_masks" / f"{slide_id}_mask.tiff", mpp, nearest=True)[..., 0]
            truth = ndimage.label(to_common_labels(mask, provider) == CANCER)[0]
            if truth.max() == 0:
                continue
            prob = learner.predict_tiles(rgb[None])[0]
            plain = ndimage.label(prob >= 0.5)[0]
            split = split_instances(prob, min_distance=args.min_distance, min_size=args.min_size)
            for name, pred in (("connected components", plain), ("watershed (distance markers)", split)):
                rows.append({"fold": k, "slide": slide_id, "objects": name, **glas_object_scores(truth, pred),
                             "n_pred": int(pred.max()), "n_true": int(truth.max())})
    frame = pd.DataFrame(rows)
    frame["object_hausdorff"] = frame["object_hausdorff"].replace(np.inf, np.nan)
    summary = frame.groupby("objects", sort=False)[["object_f1", "object_dice", "object_hausdorff", "n_pred", "n_true"]].mean()
    print(f"{args.method}, folds {args.folds}, {frame['slide'].nunique()} held-out images with cancer, µm/px {mpp}:")
    from weakseg.metrics.report import render_markdown

    print(render_markdown(["objects", *summary.columns], [[name, *(f"{v:.3f}" for v in row)]
                                                          for name, row in summary.iterrows()]))


if __name__ == "__main__":
    main()
