"""Entry point of the ``weakseg`` console script."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="weakseg",
    help="Weakly-supervised segmentation of PANDA-style whole-slide images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"weakseg {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Weakly-supervised segmentation of PANDA-style whole-slide images."""


# Commands, one module each, registered in pipeline order (the order `weakseg --help` lists them).
from .synth import synth  # noqa: E402
from .split import split  # noqa: E402
from .tile import tile  # noqa: E402
from .info import info  # noqa: E402
from .show import show  # noqa: E402
from .weaken import weaken  # noqa: E402
from .annotate import annotate  # noqa: E402
from .embed import embed  # noqa: E402
from .recipes import recipes  # noqa: E402
from .train import train  # noqa: E402
from .predict import predict  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .demo import demo  # noqa: E402

app.command("synth")(synth)
app.command("split")(split)
app.command("tile")(tile)
app.command("info")(info)
app.command("show")(show)
app.command("weaken")(weaken)
app.command("annotate")(annotate)
app.command("embed")(embed)
app.command("recipes")(recipes)
app.command("train")(train)
app.command("predict")(predict)
app.command("evaluate")(evaluate)
app.command("demo")(demo)
