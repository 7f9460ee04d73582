"""``weakseg demo``: the whole pipeline on a synthetic cohort, with a comparison report."""

from __future__ import annotations

from pathlib import Path

import typer

from ..demo import METHODS, DemoConfig, run_demo
from .common import console, handle_errors
from .synth import parse_size


@handle_errors
def demo(
    out: Path = typer.Argument(Path("demo_out"), help="Output folder (resumes when it holds an earlier demo)."),
    slides: int = typer.Option(24, "--slides", min=4, help="Slides in the synthetic cohort."),
    seed: int = typer.Option(0, "--seed", help="Seed of the cohort, split, weak labels and training."),
    size: str = typer.Option("4096x1536", "--size", help="Level-0 WIDTHxHEIGHT of each slide."),
    methods: str = typer.Option(",".join(DemoConfig.methods), "--methods",
                                help=f"Comma-separated methods to train, from: {', '.join(m.name for m in METHODS)}."),
    profile: str = typer.Option("tiny", "--profile", help="Recipe profile used for every method."),
    positive_fraction: float = typer.Option(0.1, "--positive-fraction", min=0.0, max=1.0,
                                            help="Fraction of cancer regions annotated in the PU bags."),
) -> None:
    """synth → tile → weaken → train supervised / nnPU / MIL→seg (optionally uPU) → evaluate → report."""
    config = DemoConfig(slides=slides, seed=seed, size=parse_size(size), profile=profile,
                        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                        positive_fraction=positive_fraction)
    run_demo(out, config, log=console.print)
