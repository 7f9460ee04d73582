"""``weakseg predict``: slide probabilities and cancer maps from a trained run."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import allow_plugins_option, allow_resolution_mismatch_option, EXIT_PARTIAL, check_output_dir, check_output_file, console, handle_errors, progress


@handle_errors
def predict(
    run_dir: Path = typer.Argument(..., help="Run directory holding model.pt (from 'weakseg train')."),
    bags: Path = typer.Argument(..., help="A bag or a folder of bags to predict."),
    out: Path = typer.Option(..., "--out", help="Output folder of maps and slides.csv."),
    allow_plugins: bool = allow_plugins_option(),
    allow_resolution_mismatch: bool = allow_resolution_mismatch_option("Predict"),
    shard: str | None = typer.Option(None, "--shard", help="i/n (0-based): predict the bags whose slide id hashes to i mod n, the slides of tile --shard i/n; Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT."),
    devices: str | None = typer.Option(None, "--devices", help="One worker process per entry: CUDA ordinals 0,1,2,3, or cuda:0, cpu,cpu (default: cpu)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes, spread over --devices."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Predict again slides already done with this model (status.csv)."),
    quantize: str | None = typer.Option(None, "--quantize", help="int8: segmentation models predict quantized to int8 on CPU (static, calibrated on a few tiles of BAGS; README 'int8 inference')."),
) -> None:
    """Write a map per slide (tile scores for MIL learners, pixel maps for segmentation) and slides.csv.

    A slide that fails is listed in failures.csv (exit code 1) and the others go on. Per-slide status is merged
    into status.csv under a lock (shards and workers may share --out); a rerun skips slides already done.
    """
    check_output_dir(out, "--out")
    from .. import api
    from ..quantize import check_quantize

    check_quantize(quantize)  # a bad --quantize: exit 2 before any work
    from ..bags import list_bags
    from ..sharding import parse_devices, parse_shard, take_shard

    shard_ = parse_shard(shard) if shard else None
    parse_devices(devices, workers)  # bad --devices: exit 2 before any work
    for name in (api.SLIDES_CSV, api.FAILURES_CSV, api.STATUS_CSV):  # the fixed names: a folder in their place is refused up front
        check_output_file(out / name)
    counts: dict[str, int] = {}

    def on_status(_: str, status: str) -> None:
        counts[status] = counts.get(status, 0) + 1
        bar.advance(task)

    with progress() as bar:
        task = bar.add_task("predict", total=len(take_shard(list_bags(bags), shard_, key=lambda p: p.stem)))
        api.predict(run_dir, bags, out, on_status=on_status, allow_plugins=allow_plugins,
                    allow_resolution_mismatch=allow_resolution_mismatch, shard=shard_, workers=workers,
                    devices=devices, overwrite=overwrite, quantize=quantize)
    failures = out / api.FAILURES_CSV
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no slides"
    console.print(f"{summary}; slide probabilities: {out / api.SLIDES_CSV} (status per slide: {out / api.STATUS_CSV})")
    if counts.get("failed"):
        console.print(f"[bold yellow]some slides failed:[/] see {failures}")
        raise typer.Exit(EXIT_PARTIAL)
