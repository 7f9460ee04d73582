"""``weakseg synth``: generate a synthetic PANDA-layout cohort of needle-biopsy slides."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from .common import check_output_dir, console, handle_errors, progress

# = weakseg.synth.DEFAULT_SIZE, as a literal so that --help imports nothing heavy (tests/test_lazy_api.py checks it)
DEFAULT_SIZE = (6144, 2048)


def parse_size(text: str) -> tuple[int, int]:
    """``"6144x2048"`` → ``(6144, 2048)``; a single number gives a square."""
    from ..synth.cohort import MAX_SIDE, SynthConfigError

    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+))?\s*", text)
    if match is None:
        raise SynthConfigError(f"--size must look like WIDTHxHEIGHT (e.g. 6144x2048), got {text[:40]!r}")
    sides = (match[1], match[2] or match[1])
    if any(len(m.lstrip("0")) > len(str(MAX_SIDE)) for m in sides):  # never int() thousands of digits
        raise SynthConfigError(f"--size must be at most {MAX_SIDE}x{MAX_SIDE}, got {text[:40]!r}")
    width, height = (int(m) for m in sides)
    if min(width, height) < 256 or max(width, height) > MAX_SIDE:
        raise SynthConfigError(f"--size must be between 256x256 and {MAX_SIDE}x{MAX_SIDE}, got {width}x{height}")
    return width, height


@handle_errors
def synth(
    out: Path = typer.Argument(..., help="Output folder (gets train_images/, train_label_masks/, train.csv)."),
    slides: int = typer.Option(40, "--slides", min=1, help="Number of slides."),
    seed: int = typer.Option(0, "--seed", help="Seed: same seed and options give byte-identical files."),
    size: str = typer.Option("x".join(map(str, DEFAULT_SIZE)), "--size", help="Level-0 WIDTHxHEIGHT in pixels."),
    mask_fraction: float = typer.Option(0.9, "--mask-fraction", min=0.0, max=1.0, help="Fraction of Radboud slides with a mask."),
    pen_fraction: float = typer.Option(0.1, "--pen-fraction", min=0.0, max=1.0, help="Fraction of Radboud slides with pen marks."),
    karolinska_fraction: float = typer.Option(0.5, "--karolinska-fraction", min=0.0, max=1.0, help="Fraction of Karolinska slides."),
    blank: bool = typer.Option(False, "--blank/--no-blank", help="Make one slide blank glass (negative)."),
    tile: int = typer.Option(512, "--tile", min=16, help="TIFF tile size in pixels (multiple of 16)."),
    quality: int = typer.Option(90, "--quality", min=1, max=100, help="JPEG quality of the slides."),
    resume: bool = typer.Option(False, "--resume", help="Keep slides already written with the same settings."),
) -> None:
    """Write a synthetic PANDA-style cohort: slides, label masks and train.csv."""
    from ..synth import make_cohort

    width, height = parse_size(size)
    check_output_dir(out, "OUT")
    with progress() as bar:
        task = bar.add_task("synth", total=slides)
        table = make_cohort(
            out,
            slides,
            seed,
            (width, height),
            mask_fraction=mask_fraction,
            pen_fraction=pen_fraction,
            karolinska_fraction=karolinska_fraction,
            blank=blank,
            tile=tile,
            quality=quality,
            resume=resume,
            on_slide=lambda _: bar.advance(task),
        )
    n_cancer = int((table["isup_grade"] > 0).sum())
    console.print(f"wrote {len(table)} slide(s) ({n_cancer} with cancer) of {width}x{height} px to {out}")
