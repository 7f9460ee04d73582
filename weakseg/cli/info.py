"""``weakseg info``: a table of bags (tiles, label, provider, ISUP, class fractions, codec, size)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .common import EXIT_PARTIAL, console, handle_errors


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@handle_errors
def info(path: Path = typer.Argument(..., help="A bag or a folder of bags.")) -> None:
    """Summarize bags: one row each, plus totals. Unreadable bags are listed after the table (exit code 1)."""
    from ..inspect import summarize

    failures: list[tuple[Path, str]] = []
    rows = summarize(path, failures=failures)
    table = Table(title=str(path))
    # class fractions of the kept tiles' pixels: tissue (mask > 0, or detected tissue), benign, cancer
    for col in ("slide", "tiles", "label", "provider", "ISUP", "tile", "µm/px", "tissue", "benign", "cancer", "codec",
                "size", "per tile"):
        table.add_column(col, justify="left" if col in ("slide", "provider", "codec") else "right")
    for s in rows:
        cancer = "-" if s.cancer_fraction is None else f"{s.cancer_fraction:.1%} ({s.cancer_tiles} tiles)"
        benign = "-" if s.cancer_fraction is None else f"{max(0.0, s.mean_coverage - s.cancer_fraction):.1%}"
        table.add_row(
            s.slide_id, str(s.n_tiles), str(s.label), s.provider or "-", str(s.isup) if s.isup >= 0 else "-",
            f"{s.tile_size}@L{s.level}", f"{s.mpp:.3g}", f"{s.mean_coverage:.1%}", benign, cancer, s.codec,
            _size(s.size_bytes), _size(s.bytes_per_tile),
        )
    total_tiles = sum(s.n_tiles for s in rows)
    total = sum(s.size_bytes for s in rows)
    table.caption = f"{len(rows)} bag(s), {total_tiles} tiles, {_size(total)}"
    Console(width=160).print(table)
    if failures:
        for bag, message in failures:
            console.print(f"[bold red]failed:[/] {escape(message if str(bag) in message else f'{bag}: {message}')}")
        console.print(f"[bold yellow]{len(failures)} of {len(rows) + len(failures)} bag(s) could not be read[/]")
        raise typer.Exit(EXIT_PARTIAL)
