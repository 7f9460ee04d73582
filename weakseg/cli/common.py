"""Helpers shared by CLI commands: console, exit codes, error reporting, progress bars."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import WeaksegError

console = Console(stderr=True, soft_wrap=True)  # messages never wrap mid-path (logs, CI, tests)

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_PARTIAL = 1  # the run finished but some items (slides, rows) failed; see the summary
EXIT_BAD_INPUT = 2  # nothing could be done: bad arguments, recipe, or input files

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn :class:`WeaksegError` into a one-line red message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WeaksegError as err:
            console.print(f"[bold red]error:[/] {escape(str(err))}")  # messages may hold [...] (key lists)
            raise typer.Exit(EXIT_BAD_INPUT) from err

    return wrapper  # type: ignore[return-value]


class _ConsoleLines(logging.Handler):
    """Each log record as one line on the console: never wrapped, no time/level columns (CI logs, pipes, tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            console.print(escape(self.format(record)), soft_wrap=True, highlight=False)
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)


@contextlib.contextmanager
def engine_logging(level: int = logging.INFO) -> Iterator[None]:
    """Show the training engine's log (logger ``weakseg.engine``: one line per epoch) while the block runs."""
    handler = _ConsoleLines(level)
    handler.setFormatter(logging.Formatter("%(message)s"))
    engine_log = logging.getLogger("weakseg.engine")
    old_level = engine_log.level
    engine_log.addHandler(handler)
    if engine_log.getEffectiveLevel() > level:
        engine_log.setLevel(level)
    try:
        yield
    finally:
        engine_log.removeHandler(handler)
        engine_log.setLevel(old_level)


def progress() -> Progress:
    """A rich progress bar with count, elapsed and remaining time (on stderr)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
