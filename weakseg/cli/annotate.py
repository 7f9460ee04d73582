"""``weakseg annotate``: PU bags from a pathologist's partial annotations (QuPath GeoJSON, label-mask TIFFs)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import EXIT_PARTIAL, check_output_dir, console, handle_errors, progress


@handle_errors
def annotate(
    bags: Path = typer.Argument(..., help="A tile bag or a folder of them."),
    out: Path = typer.Argument(..., help="Output folder of PU bags (tiles are linked, not copied)."),
    positives: Path = typer.Option(
        ..., "--positives", help="QuPath GeoJSON (.geojson/.json) or label-mask TIFF, or a folder of them: positive regions."
    ),
    negatives: Path = typer.Option(
        None, "--negatives", help="The same for negative regions (may be the --positives folder); records label 2."
    ),
    positive_class: list[str] = typer.Option(
        ["Tumor"], "--positive-class", help="QuPath class read as positive (case-insensitive); repeatable."
    ),
    negative_class: list[str] = typer.Option(
        [], "--negative-class", help="QuPath class read as negative from --negatives files; repeatable."
    ),
    erode: int = typer.Option(0, "--erode", min=0, help="Pixels eroded from annotated regions' boundaries (as weaken)."),
    require_all: bool = typer.Option(False, "--require-all", help="Refuse when some bag has no annotation file."),
) -> None:
    """Write PU bags (weaken --mode pu's contract) labelled from your own partial annotations."""
    check_output_dir(out, "OUT")
    from ..annotate import annotate_bags
    from ..bags import list_bags

    n = len(list_bags(bags))
    with progress() as bar:
        task = bar.add_task("annotate", total=n)
        report = annotate_bags(
            bags, out, positives, negatives, positive_classes=positive_class, negative_classes=negative_class,
            erode=erode, require_all=require_all, on_bag=lambda _: bar.advance(task),
        )
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    for slide_id, counts in report.pixels.items():
        if slide_id in report.files:
            names = ", ".join(p.name for p in report.files[slide_id])
            console.print(
                f"{slide_id}: {counts['positive']} positive, {counts['negative']} negative, "
                f"{counts['unlabeled']} unlabeled px ({names})"
            )
    for slide_id in report.empty:
        console.print(f"[yellow]warning:[/] {slide_id}: its annotations label no tissue pixel of any tile")
    if report.unannotated:
        shown = ", ".join(report.unannotated[:20]) + (f", … ({len(report.unannotated)})" if len(report.unannotated) > 20 else "")
        console.print(f"{len(report.unannotated)} bag(s) without annotations, all tissue unlabeled: {shown}")
    for slide_id, reason in report.failed.items():
        console.print(f"[bold red]failed:[/] {slide_id}: {reason}")
    console.print(f"wrote {len(report.written)} PU bag(s) to {out} ({len(report.files)} annotated)")
    if report.failed:
        raise typer.Exit(EXIT_PARTIAL)
