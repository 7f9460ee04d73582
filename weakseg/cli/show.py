"""``weakseg show``: slide thumbnail with the kept tiles and the mask outline, as a PNG."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import check_output_file, console, handle_errors

# = weakseg.inspect.SHOW_MAX_SIDE, as a literal so that --help imports nothing heavy (tests/test_lazy_api.py checks it)
SHOW_MAX_SIDE = 2048


@handle_errors
def show(
    bag: Path = typer.Argument(..., help="A bag written by `weakseg tile`."),
    out: Path = typer.Option(..., "--out", help="Image to write; the format follows the suffix (.png, .jpg, .tif, .webp, .pdf, .svg)."),
    max_side: int = typer.Option(SHOW_MAX_SIDE, "--max-side", min=64, help="Longest side of the image in pixels."),
) -> None:
    """Draw the kept grid (blue) and the mask outline (tissue green, cancer red) on the slide thumbnail."""
    check_output_file(out, "--out")
    from ..inspect import render_overview

    console.print(f"wrote {render_overview(bag, out, max_side=max_side)}")
