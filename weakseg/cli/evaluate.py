"""``weakseg evaluate``: slide, tile and pixel metrics of a trained run on labelled bags."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..bags import list_bags
from .common import console, handle_errors


@handle_errors
def evaluate(
    run_dir: Path = typer.Argument(..., help="Run directory holding model.pt (from 'weakseg train')."),
    bags: Path = typer.Argument(..., help="A bag or a folder of labelled bags (masks give tile/pixel metrics)."),
    out: Path = typer.Option(None, "--out", help="Output folder of metrics.csv and metrics.md (default: RUN_DIR/evaluation)."),
) -> None:
    """Slide AUC and accuracy; tile AUC, F1, precision, recall (and pixel Dice/IoU/AP) where masks exist; per provider."""
    from .. import api

    with console.status(f"evaluating {len(list_bags(bags))} slide(s)"):
        metrics = api.evaluate(run_dir, bags, out)
    table = Table(title="metrics (n = slides for slide/pixel rows, tiles for tile rows)")
    for column in ("provider", "level", "metric", "value", "n"):
        table.add_column(column, justify="right" if column in ("value", "n") else "left")
    for row in metrics.itertuples(index=False):
        table.add_row(row.provider, row.level, row.metric, f"{row.value:.3f}", str(row.n))
    console.print(table)
    console.print(f"written to {out if out is not None else run_dir / api.EVAL_DIR}")
