"""``weakseg split``: deterministic stratified, group-aware K-fold train/val/test splits."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.table import Table

from ..errors import ManifestError
from .common import EXIT_PARTIAL, check_output_file, console, handle_errors

MAX_SHOWN_ERRORS = 20
# = weakseg.splits.DEFAULT_STRATIFY, as a literal so that --help imports nothing heavy (tests/test_lazy_api.py checks it)
DEFAULT_STRATIFY = ("data_provider", "isup_grade")


@handle_errors
def split(
    source: Path = typer.Argument(..., help="PANDA folder, its train.csv, a manifest CSV, or a folder of bags."),
    out: Path = typer.Argument(..., help="Split CSV to write (slide_id, fold, split)."),
    folds: int = typer.Option(5, "--folds", "-k", min=2, help="Number of folds (disjoint test parts)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffle; same seed and ids give the same file."),
    group_col: str = typer.Option(None, "--group-col", help="Column whose slides must share a split (e.g. case_id)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, help="Fraction of all slides validated on per fold; 0 for train/test only."),
    stratify: str = typer.Option(",".join(DEFAULT_STRATIFY), "--stratify", help="Comma-separated columns to stratify by; '' for none."),
) -> None:
    """Assign every slide of SOURCE to train/val/test in each of K folds and write OUT."""
    check_output_file(out, "OUT")
    from ..splits import load_table, make_splits, write_splits

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table, errors = load_table(source)
    for warning in caught:
        console.print(f"[yellow]warning:[/] {warning.message}")
    for err in errors[:MAX_SHOWN_ERRORS]:
        console.print(f"[yellow]skipped[/] {source}: {err}")
    if len(errors) > MAX_SHOWN_ERRORS:
        console.print(f"[yellow]... and {len(errors) - MAX_SHOWN_ERRORS} more skipped rows[/]")
    columns = tuple(c.strip() for c in stratify.split(",") if c.strip())
    try:
        splits = make_splits(table, folds, seed, group_col=group_col, stratify=columns, val_fraction=val_fraction)
    except ValueError as err:
        raise ManifestError(f"{source}: {err}") from err
    write_splits(splits, out)

    counts = splits.groupby(["fold", "split"]).size().unstack(fill_value=0)
    summary = Table(title=f"{len(table)} slides, {folds} folds, seed {seed}")
    summary.add_column("fold", justify="right")
    for name in ("train", "val", "test"):
        summary.add_column(name, justify="right")
    for fold, row in counts.iterrows():
        summary.add_row(str(fold), *(str(row.get(name, 0)) for name in ("train", "val", "test")))
    console.print(summary)
    console.print(f"wrote {out}")
    if errors:
        raise typer.Exit(EXIT_PARTIAL)
