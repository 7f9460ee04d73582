"""``weakseg embed``: cache per-tile encoder features next to each bag (``<bag stem>.features.hdf5``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from .common import EXIT_PARTIAL, check_output_dir, console, handle_errors, progress


@handle_errors
def embed(
    bags: Path = typer.Argument(..., help="A bag file or a folder of bags."),
    encoder: str = typer.Option(..., "--encoder", help="Encoder name: a registered encoder or any timm model."),
    pretrained_path: Path | None = typer.Option(None, "--pretrained-path", "--checkpoint",
                                                help="Local weight file of the encoder."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Tiles per forward pass."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda:0."),
    random_init: bool = typer.Option(False, "--random-init", help="Use untrained weights (tests and demos only)."),
    seed: int = typer.Option(0, "--seed", help="Seed of --random-init weights (part of the cache key)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Recompute features already cached under the same key."),
    shard: str | None = typer.Option(None, "--shard", help="i/n (0-based): embed the bags whose slide id hashes to i mod n, the slides of tile --shard i/n; Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT."),
    devices: str | None = typer.Option(None, "--devices", help="One worker process per entry: CUDA ordinals 0,1,2,3, or cuda:0, cpu,cpu (default: --device)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes, spread over --devices."),
) -> None:
    """Write features of every tile; bags already embedded with the same key are skipped (resume).

    Weights come from --pretrained-path or the local timm / Hugging Face caches; nothing is downloaded.
    Per-bag status is merged into features.csv next to the bags under a lock (shards and workers may share a folder).
    """
    from ..bags import list_bags
    from ..features import embed_bags, is_sidecar
    from ..sharding import parse_devices, parse_shard, take_shard

    if bags.exists():  # features are written next to the bags
        check_output_dir(bags if bags.is_dir() else bags.parent, "bag folder (features are written next to the bags)")
    shard_ = parse_shard(shard) if shard else None
    parse_devices(devices, workers, default=device)  # bad --devices: exit 2 before any work
    n = len(take_shard([p for p in list_bags(bags) if not is_sidecar(p)], shard_, key=lambda p: p.stem))
    counts = {"written": 0, "skipped": 0}
    key = ""
    failures: list[tuple[Path, str]] = []
    with progress() as bar:
        task = bar.add_task("embed", total=n)

        def on_bag(res) -> None:
            nonlocal key
            key = res.key
            counts[res.status] += 1
            bar.advance(task)

        embed_bags(bags, encoder, pretrained_path=pretrained_path, random_init=random_init, batch_size=batch_size,
                   device=device, seed=seed, overwrite=overwrite, on_bag=on_bag, failures=failures,
                   shard=shard_, workers=workers, devices=devices)
    console.print(f"features {key}: {counts['written']} bag(s) written, {counts['skipped']} already cached")
    if failures:
        for bag, message in failures:
            console.print(f"[bold red]failed:[/] {escape(message if str(bag) in message else f'{bag}: {message}')}")
        console.print(f"[bold yellow]{len(failures)} of {n} bag(s) were not embedded[/]")
        raise typer.Exit(EXIT_PARTIAL)
