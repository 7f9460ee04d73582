"""``weakseg train``: train a learner from a recipe into a run directory."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from .common import check_output_dir, console, engine_logging, handle_errors

EXIT_INTERRUPTED = 130


@handle_errors
def train(
    recipe: str = typer.Argument(..., help="Recipe YAML file, or the name of a shipped recipe (see 'weakseg recipes')."),
    profile: str = typer.Option(None, "--profile", help="Profile of the recipe merged over it (e.g. 'tiny')."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a recipe key, KEY.PATH=VALUE (VALUE read as YAML); repeatable, applied last."
    ),
    out: Path = typer.Option(None, "--out", help="Run directory (default: runs/<recipe name>-<UTC timestamp>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
) -> None:
    """Train the recipe's learner; the run directory gets checkpoints, metrics.csv, curves.png and model.pt.

    Under torchrun (torchrun --nproc_per_node N --no-python weakseg train RECIPE --out RUN) every
    process trains its share with DistributedDataParallel; rank 0 writes the run directory and reports.
    """
    from .. import api
    from ..engine.checkpoint import BEST, load_checkpoint
    from ..engine.distributed import env_info
    from ..engine.rundir import CHECKPOINT_DIR, default_run_dir
    from ..recipes import load_recipe

    resolved = load_recipe(recipe, profile=profile, overrides=overrides)
    dist = env_info()
    if out is None and not resume:
        if dist.enabled:  # each rank would stamp its own time
            console.print("[bold red]error:[/] under torchrun give the run directory with --out")
            raise typer.Exit(2)
        out = default_run_dir(resolved.name)
    if out is not None:
        check_output_dir(out, "run directory" if resume else "--out")
    try:
        with engine_logging():  # one line per epoch: epoch/max, train loss, monitored metric, seconds
            run_dir = api.train(resolved, out=out, resume=resume)
    except KeyboardInterrupt:
        if not dist.is_main:
            raise typer.Exit(EXIT_INTERRUPTED) from None
        again = ["weakseg", "train", recipe, *(["--profile", profile] if profile else []),
                 *(a for o in overrides for a in ("--set", o)), "--out", str(out), "--resume"]
        console.print(f"[bold yellow]interrupted.[/] Continue with: {shlex.join(again)}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not dist.is_main:
        return
    best = run_dir / CHECKPOINT_DIR / BEST
    if best.is_file():
        ckpt = load_checkpoint(best)
        score = f": {ckpt['monitor']} = {ckpt['value']:.4g}" if ckpt["value"] is not None else " (last epoch)"
        console.print(f"best epoch {ckpt['epoch'] + 1}{score} (epoch {ckpt['epoch']} in metrics.csv, which counts from 0)")
    console.print(f"[bold green]done:[/] run directory {run_dir}")
