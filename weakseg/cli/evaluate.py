"""``weakseg evaluate``: slide, tile and pixel metrics of a trained run on labelled bags."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from .common import allow_plugins_option, allow_resolution_mismatch_option, EXIT_PARTIAL, check_output_dir, check_output_file, console, handle_errors


@handle_errors
def evaluate(
    run_dir: Path = typer.Argument(..., help="Run directory holding model.pt (from 'weakseg train')."),
    bags: Path = typer.Argument(..., help="A bag or a folder of labelled bags (masks give tile/pixel metrics)."),
    out: Path = typer.Option(None, "--out", help="Output folder of metrics.csv and metrics.md (default: RUN_DIR/evaluation)."),
    allow_plugins: bool = allow_plugins_option(),
    allow_resolution_mismatch: bool = allow_resolution_mismatch_option("Evaluate"),
) -> None:
    """Slide AUC and accuracy; tile AUC, F1, precision, recall (and pixel Dice/IoU/AP) where masks exist; per provider.

    A slide that fails is left out of the metrics and listed in failures.csv (exit code 1).
    """
    from .. import api
    from ..bags import list_bags

    folder = out if out is not None else run_dir / api.EVAL_DIR
    check_output_dir(folder, "--out" if out is not None else "output folder")
    for name in ("metrics.csv", "metrics.md", api.FAILURES_CSV):  # a folder in their place is refused up front
        check_output_file(folder / name)

    with console.status(f"evaluating {len(list_bags(bags))} slide(s)"):
        metrics = api.evaluate(run_dir, bags, out, allow_plugins=allow_plugins,
                               allow_resolution_mismatch=allow_resolution_mismatch)
    table = Table(title="metrics (n = slides for slide/pixel rows, tiles for tile rows)")
    for column in ("provider", "level", "metric", "value", "n"):
        table.add_column(column, justify="right" if column in ("value", "n") else "left")
    for row in metrics.itertuples(index=False):
        table.add_row(row.provider, row.level, row.metric, f"{row.value:.3f}", str(row.n))
    console.print(table)
    folder = out if out is not None else run_dir / api.EVAL_DIR
    console.print(f"written to {folder}")
    failures = folder / api.FAILURES_CSV
    if failures.is_file():
        console.print(f"[bold yellow]some slides failed and are not in the metrics:[/] see {failures}")
        raise typer.Exit(EXIT_PARTIAL)
