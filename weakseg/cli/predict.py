"""``weakseg predict``: slide probabilities and cancer maps from a trained run."""

from __future__ import annotations

from pathlib import Path

import typer

from ..bags import list_bags
from .common import EXIT_PARTIAL, console, handle_errors, progress


@handle_errors
def predict(
    run_dir: Path = typer.Argument(..., help="Run directory holding model.pt (from 'weakseg train')."),
    bags: Path = typer.Argument(..., help="A bag or a folder of bags to predict."),
    out: Path = typer.Option(..., "--out", help="Output folder of maps and slides.csv."),
) -> None:
    """Write a map per slide (tile scores for MIL learners, pixel maps for segmentation) and slides.csv."""
    from .. import api

    with progress() as bar:
        task = bar.add_task("predict", total=len(list_bags(bags)))
        api.predict(run_dir, bags, out, on_slide=lambda _: bar.advance(task))
    failures = out / api.FAILURES_CSV
    console.print(f"slide probabilities: {out / api.SLIDES_CSV}")
    if failures.is_file():
        console.print(f"[bold yellow]some slides failed:[/] see {failures}")
        raise typer.Exit(EXIT_PARTIAL)
