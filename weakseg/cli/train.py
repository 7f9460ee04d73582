"""``weakseg train``: train a learner from a recipe into a run directory."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.logging import RichHandler

from .common import console, handle_errors


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
    """Train the recipe's learner; the run directory gets checkpoints, metrics.csv, curves.png and model.pt."""
    from .. import api

    handler = RichHandler(console=console, show_path=False, show_level=False)
    engine_log = logging.getLogger("weakseg.engine")
    engine_log.addHandler(handler)
    engine_log.setLevel(logging.INFO)
    try:
        run_dir = api.train(recipe, out=out, overrides=overrides, profile=profile, resume=resume)
    finally:
        engine_log.removeHandler(handler)
    console.print(f"[bold green]done:[/] run directory {run_dir}")
