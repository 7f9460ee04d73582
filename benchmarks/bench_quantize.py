"""int8 vs fp32 inference on CPU (issue 10 item 4): tile-batch throughput per backbone, and the Dice change
of trained segmentation models on held-out real tiles (glas_train).

Throughput: each backbone (random init: speed does not depend on the weights) on one batch of
``--batch`` tiles of ``--tile`` px, fp32 and int8 (:func:`weakseg.quantize.quantize_module`, static,
calibrated on 2 batches) in the same process with ``--threads`` torch threads; the median of
``--repeats`` timed calls after 2 warm-up calls, fp32 and int8 calls interleaved.

Dice: the models that ``benchmarks/bench_real.py`` trained (``--real``: its fold folder, e.g.
``bench_out/real/fold0``; ``runs/<method>/model.pt``) predict the tiles of the fold's held-out bags
(``bags/test``, at most ``--max-tiles`` per slide) as fp32 and as int8
(:func:`weakseg.quantize.quantize_learner`, calibrated on 16 tiles of the *training* bags); pixel
Dice / IoU / AP against the ground truth pooled over those tiles, and predict_tiles throughput.

    python benchmarks/bench_quantize.py --out bench_out/quantize
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import weakseg  # noqa: F401
from weakseg.models import create_backbone
from weakseg.quantize import quantize_learner, quantize_module

BACKBONES = ("unet_tiny", "unet_resnet18", "hrnet_tiny", "hrnet_w18_small", "hovernet_tiny", "hovernet_cpu",
             "transunet_tiny", "transunet_cpu")


def _median_times(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    for fn in fns.values():
        fn(), fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():  # interleaved: load changes on the shared machine hit both alike
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def throughput(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    for name in args.backbones:
        torch.manual_seed(0)
        module = create_backbone(name, num_classes=2).eval()
        g = torch.Generator().manual_seed(0)
        calib = [torch.randn(args.batch, 3, args.tile, args.tile, generator=g) for _ in range(2)]
        x = torch.randn(args.batch, 3, args.tile, args.tile, generator=g)
        t0 = time.perf_counter()
        q = quantize_module(module, calib, mode="static", name=name)
        t_quant = time.perf_counter() - t0
        with torch.inference_mode():
            med = _median_times({"fp32": lambda: module(x), "int8": lambda: q(x)}, args.repeats)
            y, yq = module(x), q(x)
        rel = float((yq - y).abs().mean() / y.abs().mean())
        rows.append({"backbone": name, "fp32_ms": 1e3 * med["fp32"], "int8_ms": 1e3 * med["int8"],
                     "speedup": med["fp32"] / med["int8"], "fp32_tiles_s": args.batch / med["fp32"],
                     "int8_tiles_s": args.batch / med["int8"], "rel_err": rel, "quantize_s": t_quant})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def real_dice(args: argparse.Namespace) -> pd.DataFrame:
    from weakseg.api import load_run
    from weakseg.bags import Bag, list_bags
    from weakseg.metrics.seg import SlideTruth, slide_counts

    fold = Path(args.real)
    test = list_bags(fold / "bags" / "test")
    train = list_bags(fold / "bags" / "train")
    rows = []
    models = {}
    for method in args.methods:
        run = fold / "runs" / method
        if not (run / "model.pt").is_file():
            print(f"skip {method}: no {run / 'model.pt'}")
            continue
        models[method] = load_run(run)
    if args.unet_epochs:  # a convolutional model as well (bench_real's models are TransUNets)
        from weakseg.learners import create_learner

        t0 = time.perf_counter()
        models["supervised_unet"] = create_learner(
            "supervised_seg", backbone="unet_tiny", batch_size=8, device="cpu", optimizer="adam", lr=1e-3,
            scheduler="cosine", max_epochs=args.unet_epochs, augment="flips", random_state=0).fit(train)
        print(f"trained supervised_seg unet_tiny for {args.unet_epochs} epochs in {time.perf_counter() - t0:.0f} s")
    for method, fp32 in models.items():
        fp32.module_.cpu()
        fp32.device_ = torch.device("cpu")
        int8 = quantize_learner(copy.deepcopy(fp32), train, "int8")
        counts = {"fp32": None, "int8": None}
        seconds = {"fp32": 0.0, "int8": 0.0}
        n_tiles = 0
        for path in test:
            with Bag(path) as bag:
                if not bag.has_masks:
                    continue
                rows_ = np.arange(min(len(bag), args.max_tiles))
                tiles = bag.read_tiles(rows_)
                from weakseg.panda import to_common_labels

                truth = to_common_labels(bag.read_masks(rows_), bag.meta.data_provider)
            n_tiles += len(tiles)
            for key, learner in (("fp32", fp32), ("int8", int8)):
                t0 = time.perf_counter()
                prob = learner.predict_tiles(tiles)
                seconds[key] += time.perf_counter() - t0
                c = slide_counts(prob, SlideTruth(path.stem, truth))
                counts[key] = c if counts[key] is None else counts[key] + c
        s32, s8 = counts["fp32"].scores(), counts["int8"].scores()
        row = {"method": method, "backbone": fp32.backbone, "tiles": n_tiles}
        for k in ("dice_cancer", "iou_cancer", "ap_cancer"):
            row[f"{k}_fp32"], row[f"{k}_int8"] = s32[k], s8[k]
        row["dice_change"] = s8["dice_cancer"] - s32["dice_cancer"]
        row["fp32_tiles_s"], row["int8_tiles_s"] = n_tiles / seconds["fp32"], n_tiles / seconds["int8"]
        row["speedup"] = seconds["fp32"] / seconds["int8"]
        rows.append(row)
        print(row, flush=True)
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    """A GitHub table (without pandas' optional tabulate dependency)."""
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("bench_out/quantize"))
    p.add_argument("--backbones", nargs="*", default=list(BACKBONES), help="none: skip the throughput part")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--real", default="bench_out/real/fold0", help="a bench_real.py fold folder ('' to skip)")
    p.add_argument("--methods", nargs="+", default=["supervised", "nnpu"])
    p.add_argument("--max-tiles", type=int, default=24)
    p.add_argument("--unet-epochs", type=int, default=4, help="also train supervised_seg unet_tiny this long (0: no)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    if args.backbones:
        speed = throughput(args)
        speed.to_csv(args.out / "throughput.csv", index=False)
        lines = [f"Tile batches of {args.batch} × {args.tile} px, {args.threads} torch threads, median of {args.repeats} "
                 f"(torch {torch.__version__}, engine {torch.backends.quantized.engine}).", "", _markdown(speed)]
    if args.real and Path(args.real).is_dir():
        dice = real_dice(args)
        dice.to_csv(args.out / "dice.csv", index=False)
        lines += ["", f"Held-out tiles of {args.real} (≤ {args.max_tiles} per slide):", "",
                  _markdown(dice)]
    (args.out / ("summary.md" if args.backbones else "summary_dice.md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
