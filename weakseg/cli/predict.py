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
) -> None:
    """Write a map per slide (tile scores for MIL learners, pixel maps for segmentation) and slides.csv.

    A slide that fails is listed in failures.csv (exit code 1) and the others go on.
    """
    check_output_dir(out, "--out")
    from .. import api
    from ..bags import list_bags

    for name in (api.SLIDES_CSV, api.FAILURES_CSV):  # the fixed names: a folder in their place is refused up front
        check_output_file(out / name)
    with progress() as bar:
        task = bar.add_task("predict", total=len(list_bags(bags)))
        api.predict(run_dir, bags, out, on_slide=lambda _: bar.advance(task), allow_plugins=allow_plugins,
                    allow_resolution_mismatch=allow_resolution_mismatch)
    failures = out / api.FAILURES_CSV
    console.print(f"slide probabilities: {out / api.SLIDES_CSV}")
    if failures.is_file():
        console.print(f"[bold yellow]some slides failed:[/] see {failures}")
        raise typer.Exit(EXIT_PARTIAL)
