"""``weakseg demo``: the whole pipeline on a synthetic (or, with ``--real``, a real) cohort, with a comparison report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from .common import console, engine_logging, handle_errors
from .synth import parse_size

# = [m.name for m in weakseg.study.METHODS] and weakseg.demo.DemoConfig.methods, as literals so that --help imports
# nothing heavy (tests/test_lazy_api.py checks them)
METHOD_NAMES = ("supervised", "supervised_unet", "supervised_hrnet", "nnpu", "nnpu_est", "upu", "pu_unet", "mil_refine",
                "abmil", "clam", "topk")
DEFAULT_METHODS = ("supervised", "nnpu", "mil_refine")


def run_demo(out: Path, config: Any, log: Callable[[str], Any]) -> Any:
    """:func:`weakseg.demo.run_demo`, imported when the command runs (it imports pandas, torch, …)."""
    from ..demo import run_demo as run

    return run(out, config, log=log)


@handle_errors
def demo(
    out: Path = typer.Argument(Path("demo_out"), help="Output folder (resumes when it holds an earlier demo)."),
    slides: int = typer.Option(24, "--slides", min=4, help="Slides in the synthetic cohort."),
    seed: int = typer.Option(0, "--seed", help="Seed of the cohort, split, weak labels and training."),
    size: str = typer.Option("4096x1536", "--size", help="Level-0 WIDTHxHEIGHT of each slide."),
    methods: str = typer.Option(",".join(DEFAULT_METHODS), "--methods",
                                help=f"Comma-separated methods to train, from: {', '.join(METHOD_NAMES)}."),
    profile: str = typer.Option("tiny", "--profile", help="Recipe profile used for every method."),
    positive_fraction: float = typer.Option(0.1, "--positive-fraction", min=0.0, max=1.0,
                                            help="Fraction of cancer regions annotated in the PU bags."),
    real: Path = typer.Option(None, "--real", exists=True, file_okay=False,
                              help="A PANDA-layout folder (train.csv, train_images/, train_label_masks/) to use "
                                   "instead of the synthetic cohort."),
    tile_size: int = typer.Option(128, "--tile-size", min=16, help="Tile side in pixels."),
    overlap: int = typer.Option(0, "--overlap", min=0, help="Tile overlap in pixels."),
    level: int = typer.Option(None, "--level", min=0, help="Pyramid level to tile (default 1 for the synthetic cohort)."),
    mpp: float = typer.Option(None, "--mpp", min=0.0, help="Tile at this µm/px instead of a level (e.g. 1.24 for --real)."),
) -> None:
    """(synth | --real PANDA_DIR) → tile → weaken → train supervised / nnPU / MIL→seg (…) → evaluate → report."""
    from ..demo import DemoConfig

    if level is not None and mpp is not None:
        raise typer.BadParameter("pass --level or --mpp, not both")
    config = DemoConfig(slides=slides, seed=seed, size=parse_size(size), profile=profile,
                        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                        positive_fraction=positive_fraction, real=real, tile_size=tile_size, overlap=overlap,
                        level=level if level is not None or mpp is not None else 1, mpp=mpp)
    with engine_logging():  # training progress: one line per epoch
        run_demo(out, config, log=console.print)
