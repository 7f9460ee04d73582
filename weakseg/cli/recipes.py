"""``weakseg recipes``: list the shipped recipes or show one (optionally with a profile merged)."""

from __future__ import annotations

from enum import Enum

import typer
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table

from ..errors import WeaksegError
from .common import handle_errors

stdout = Console()  # listings and recipes go to stdout, so they can be piped


class Action(str, Enum):
    list = "list"
    show = "show"


@handle_errors
def recipes(
    action: Action = typer.Argument(Action.list, help="'list' the shipped recipes or 'show' one."),
    name: str = typer.Argument(None, help="Recipe to show: a shipped recipe name or a YAML path."),
    profile: str = typer.Option(None, "--profile", help="With 'show': print the recipe resolved with this profile."),
) -> None:
    """List the recipes shipped in the repository's recipes/ folder, or print one."""
    from ..recipes import find_recipe, list_recipes, load_recipe, parse_yaml, recipes_dir

    if action is Action.list:
        table = Table(title=f"recipes in {recipes_dir()}")
        for column in ("name", "learner", "profiles", "description"):
            table.add_column(column)
        for path in list_recipes():
            raw = parse_yaml(path.read_text(), source=str(path)) or {}
            learner = (raw.get("learner") or {}).get("name", "?")
            table.add_row(path.stem, str(learner), ", ".join(raw.get("profiles") or {}), str(raw.get("description", "")))
        stdout.print(table)
        return
    if name is None:
        raise WeaksegError("'weakseg recipes show' needs a recipe name; see 'weakseg recipes list'")
    if profile is None:
        text = find_recipe(name).read_text()
    else:
        text = load_recipe(name, profile=profile).to_yaml()
    if stdout.is_terminal:
        stdout.print(Syntax(text, "yaml"))
    else:
        typer.echo(text, nl=False)
