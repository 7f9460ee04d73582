"""``weakseg weaken``: derive slide-level or partial-positive (PU) supervision from full masks."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.markup import escape

from .common import EXIT_PARTIAL, check_output_dir, console, handle_errors, progress


class Mode(str, Enum):
    slide = "slide"
    pu = "pu"


@handle_errors
def weaken(
    bags: Path = typer.Argument(..., help="A fully annotated bag or a folder of them, or a nuclei folder "
                                "(images/, instances/: --mode pu keeps a fraction of the nuclei)."),
    out: Path = typer.Argument(..., help="Output folder of weak bags (tiles are linked, not copied)."),
    mode: Mode = typer.Option(..., "--mode", help="slide: slide labels only; pu: a fraction of cancer regions labelled."),
    positive_fraction: float = typer.Option(0.1, "--positive-fraction", min=0.0, max=1.0,
                                            help="Fraction of cancer regions (or nuclei) kept (pu)."),
    erode: int = typer.Option(4, "--erode", min=0, help="Pixels eroded from kept regions' boundaries (pu)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the region sampling."),
) -> None:
    """Write weak bags whose full masks remain as evaluation ground truth."""
    check_output_dir(out, "OUT")
    from ..nuclei.data import is_nuclei_folder

    if is_nuclei_folder(bags):
        from ..errors import WeaksegError
        from ..nuclei.data import weaken_nuclei_folder

        if mode is not Mode.pu:
            raise WeaksegError(f"{bags}: a nuclei folder is weakened with --mode pu (a fraction of nuclei annotated)")
        weaken_nuclei_folder(bags, out, positive_fraction, seed=seed)
        console.print(f"wrote an incomplete-annotation nuclei folder ({positive_fraction:.0%} of nuclei kept) to {out}")
        return
    from ..bags import list_bags
    from ..weaken import weaken_bags

    n = len(list_bags(bags))
    failures: list[tuple[Path, str]] = []
    with progress() as bar:
        task = bar.add_task("weaken", total=n)
        written = weaken_bags(
            bags, out, mode.value, positive_fraction=positive_fraction, erode=erode, seed=seed,
            on_bag=lambda _: bar.advance(task), failures=failures,
        )
    console.print(f"wrote {len(written)} weak bag(s) ({mode.value}) to {out}")
    if failures:
        for bag, message in failures:
            console.print(f"[bold red]failed:[/] {escape(message if str(bag) in message else f'{bag}: {message}')}")
        console.print(f"[bold yellow]{len(failures)} of {n} bag(s) were not weakened[/]")
        raise typer.Exit(EXIT_PARTIAL)
