"""The GPU path, measured (issue 11 §3): run by ``benchmarks/gpu_check.sh``; see its header.

Prints, for the full-size recipes (random data, random init: nothing downloads):

1. TransUNet R50-ViT-B/16 training steps/s at batch 24 × 224², AMP off and on (bf16 where the GPU
   supports it, else fp16 with a GradScaler), channels_last, AdamW, peak GPU memory;
2. slide-map megapixels/s: ``weakseg.maps.predict_slide_map`` with that model (eval, AMP) over a
   synthetic slide (``weakseg.synth``), window 224 / step 112 at level 0: the reader thread's JPEG
   decoding and the model together, as ``weakseg predict`` runs them;
3. embedding tiles/s with a ResNet-50 (``weakseg.features.FeatureExtractor``: uint8 tiles from host
   memory, normalisation and transfer included), fp32 and AMP;
4. 1-GPU vs 2-process DDP training throughput (samples/s) when two GPUs exist (NCCL).

``--dry``: the same code paths on the CPU with tiny sizes (``transunet_tiny``, 32-px inputs, a 768-px
slide, ResNet-50 on 32-px tiles, DDP over gloo), in seconds; ``tests/test_gpu_check.py`` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FULL = dict(backbone="transunet_r50_vit_b16", batch=24, img=224, steps=20, warmup=5, slide=8192, window=224,
            map_batch=64, encoder="resnet50", embed_batch=256, embed_tile=224, embed_batches=10)
DRY = dict(backbone="transunet_tiny", batch=2, img=32, steps=2, warmup=1, slide=768, window=32,
           map_batch=8, encoder="resnet50", embed_batch=2, embed_tile=32, embed_batches=2)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def amp_dtype(device):
    """bf16 where supported (CUDA with bf16, and the CPU), else fp16 (which needs a GradScaler)."""
    import torch

    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def _autocast(device, amp: bool):
    import torch

    return torch.autocast(device.type, dtype=amp_dtype(device)) if amp else contextlib.nullcontext()


def train_steps(cfg: dict, device, amp: bool, *, ddp_rank: int | None = None) -> dict:
    """Training steps/s of the TransUNet on random data (AdamW, cross-entropy, channels_last)."""
    import torch

    from weakseg.models import create_backbone

    torch.manual_seed(0)
    model = create_backbone(cfg["backbone"], num_classes=2, img_size=cfg["img"]).to(device)
    model = model.to(memory_format=torch.channels_last)
    if ddp_rank is not None:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    dtype = amp_dtype(device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and dtype == torch.float16)
    x = torch.randn(cfg["batch"], 3, cfg["img"], cfg["img"], device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 2, (cfg["batch"], cfg["img"], cfg["img"]), device=device)
    _reset_peak(device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(cfg["warmup"]):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(cfg["steps"]):
        step()
    _sync(device)
    dt = time.perf_counter() - t0
    return {"steps_per_s": cfg["steps"] / dt, "samples_per_s": cfg["steps"] * cfg["batch"] / dt,
            "amp": str(dtype).replace("torch.", "") if amp else "off", "peak_gb": _peak_gb(device)}


def slide_map(cfg: dict, device, work: Path) -> dict:
    """Megapixels/s of a whole-slide map with the TransUNet (eval, AMP) over a synthetic slide."""
    import torch

    from weakseg.maps.predict import predict_slide_map
    from weakseg.models import create_backbone
    from weakseg.synth import make_cohort

    make_cohort(work / "cohort", 1, seed=0, size=(cfg["slide"], cfg["slide"]), pen_fraction=0.0, mask_fraction=0.0)
    slide = next((work / "cohort" / "train_images").glob("*.tiff"))
    model = create_backbone(cfg["backbone"], num_classes=2, img_size=cfg["window"]).to(device).eval()
    model = model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def predict_tiles(tiles: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(tiles).to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        with _autocast(device, True):
            p = torch.softmax(model(x.contiguous(memory_format=torch.channels_last)).float(), 1)[:, 1]
        return p.cpu().numpy()

    predict_tiles(np.zeros((1, cfg["window"], cfg["window"], 3), np.uint8))  # warm-up
    _sync(device)
    _reset_peak(device)
    t0 = time.perf_counter()
    sm = predict_slide_map(slide, predict_tiles, work / "maps", window=cfg["window"], step=cfg["window"] // 2,
                           level=0, batch_size=cfg["map_batch"])
    dt = time.perf_counter() - t0
    step = cfg["window"] // 2
    return {"slide_mp": cfg["slide"] ** 2 / 1e6, "seconds": dt, "slide_mp_per_s": cfg["slide"] ** 2 / 1e6 / dt,
            "tissue_mp_per_s": sm.n_predicted * step * step / 1e6 / dt, "windows": sm.n_predicted,
            "windows_per_s": sm.n_predicted / dt, "peak_gb": _peak_gb(device)}


def embed(cfg: dict, device, amp: bool) -> dict:
    """Tiles/s of the ResNet-50 feature extractor on uint8 tiles held in host memory."""
    import torch

    from weakseg.features import FeatureExtractor

    ex = FeatureExtractor(cfg["encoder"], random_init=True, tile_size=cfg["embed_tile"], device=str(device))
    ex.module.to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (cfg["embed_batch"], cfg["embed_tile"], cfg["embed_tile"], 3), dtype=np.uint8)
    with _autocast(device, amp):
        ex(tiles)
        _sync(device)
        _reset_peak(device)
        t0 = time.perf_counter()
        for _ in range(cfg["embed_batches"]):
            ex(tiles)
        _sync(device)
    dt = time.perf_counter() - t0
    return {"tiles_per_s": cfg["embed_batches"] * cfg["embed_batch"] / dt, "amp": str(amp_dtype(device)).replace("torch.", "") if amp else "off",
            "dim": int(ex.module.out_dim), "peak_gb": _peak_gb(device)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, cfg: dict, dry: bool, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    import warnings

    # channels_last 1x1-conv grads vs DDP bucket strides: harmless, and said once per step otherwise
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if dry:
        torch.set_num_threads(1)
    dist.init_process_group("gloo" if dry else "nccl", rank=rank, world_size=world)
    try:
        device = torch.device("cpu") if dry else torch.device("cuda", rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        res = train_steps(cfg, device, amp=True, ddp_rank=rank)
        Path(out, f"rank{rank}.json").write_text(json.dumps(res))
    finally:
        dist.destroy_process_group()


def ddp(cfg: dict, dry: bool, world: int = 2) -> dict:
    """2-process DDP training throughput (samples/s summed over ranks)."""
    import torch.multiprocessing as tmp

    with tempfile.TemporaryDirectory() as out:
        tmp.spawn(_ddp_worker, args=(world, cfg, dry, _free_port(), out), nprocs=world, join=True)
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(world)]
    return {"world": world, "samples_per_s": sum(r["samples_per_s"] for r in ranks),
            "steps_per_s": min(r["steps_per_s"] for r in ranks), "peak_gb": max((r["peak_gb"] or 0) for r in ranks) or None}


def _fmt_gb(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The GPU path, measured (see benchmarks/gpu_check.sh).")
    p.add_argument("--dry", action="store_true", default=os.environ.get("GPU_CHECK_DRY") == "1",
                   help="Same code paths on the CPU with tiny sizes (seconds).")
    p.add_argument("--no-ddp", action="store_true", help="Skip the 2-process DDP comparison.")
    p.add_argument("--json", default=None, help="Also write the numbers here.")
    args = p.parse_args(argv)
    import torch

    import weakseg  # noqa: F401  (torchvision shim before timm)

    cfg = DRY if args.dry else FULL
    if args.dry:
        torch.set_num_threads(1)
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --dry (or GPU_CHECK_DRY=1) to check the code paths on the CPU",
              file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda", 0)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    print(f"gpu_check: {name}; torch {torch.__version__}; {'dry' if args.dry else 'full'} sizes: {cfg['backbone']} "
          f"batch {cfg['batch']} x {cfg['img']}², slide {cfg['slide']}², {cfg['encoder']} on {cfg['embed_tile']}² tiles",
          flush=True)
    t_all = time.perf_counter()
    results: dict = {"device": name, "torch": torch.__version__, "dry": args.dry, "config": cfg}
    rows = []
    for amp in (False, True):
        r = train_steps(cfg, device, amp)
        results[f"train_amp_{r['amp']}"] = r
        rows.append((f"train {cfg['backbone']} b{cfg['batch']}x{cfg['img']}² AMP {r['amp']}",
                     f"{r['steps_per_s']:.2f} steps/s ({r['samples_per_s']:.1f} img/s)", _fmt_gb(r["peak_gb"])))
        print(f"  {rows[-1][0]}: {rows[-1][1]}, peak {rows[-1][2]} GB", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as work:
        r = slide_map(cfg, device, Path(work))
    results["slide_map"] = r
    rows.append((f"slide map {cfg['slide']}² (window {cfg['window']}, step {cfg['window'] // 2}, AMP)",
                 f"{r['slide_mp_per_s']:.1f} slide MP/s ({r['tissue_mp_per_s']:.1f} tissue MP/s, {r['windows_per_s']:.0f} windows/s)",
                 _fmt_gb(r["peak_gb"])))
    print(f"  {rows[-1][0]}: {rows[-1][1]}, peak {rows[-1][2]} GB", flush=True)
    for amp in (False, True):
        r = embed(cfg, device, amp)
        results[f"embed_amp_{r['amp']}"] = r
        rows.append((f"embed {cfg['encoder']} b{cfg['embed_batch']}x{cfg['embed_tile']}² AMP {r['amp']}",
                     f"{r['tiles_per_s']:.1f} tiles/s", _fmt_gb(r["peak_gb"])))
        print(f"  {rows[-1][0]}: {rows[-1][1]}, peak {rows[-1][2]} GB", flush=True)
    n_gpu = torch.cuda.device_count() if device.type == "cuda" else 0
    if args.no_ddp:
        print("  DDP: skipped (--no-ddp)")
    elif args.dry or n_gpu >= 2:
        r = ddp(cfg, args.dry)
        one = results[[k for k in results if k.startswith("train_amp_") and not k.endswith("off")][0]]["samples_per_s"]
        r["speedup_vs_1"] = r["samples_per_s"] / one
        results["ddp"] = r
        rows.append((f"DDP {r['world']} processes ({'gloo, CPU' if args.dry else 'NCCL'}), AMP",
                     f"{r['samples_per_s']:.1f} img/s = {r['speedup_vs_1']:.2f}x one", _fmt_gb(r["peak_gb"])))
        print(f"  {rows[-1][0]}: {rows[-1][1]}, peak {rows[-1][2]} GB", flush=True)
    else:
        print(f"  DDP: skipped ({n_gpu} GPU(s); needs 2)")
    results["seconds"] = time.perf_counter() - t_all
    print(f"\n| {name} | throughput | peak GPU GB |\n|---|---|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\ngpu_check: done in {results['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
