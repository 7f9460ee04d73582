"""Helpers shared by CLI commands: console, exit codes, error reporting, progress bars."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import OutputPathError, WeaksegError

console = Console(stderr=True, soft_wrap=True)  # messages never wrap mid-path (logs, CI, tests)

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_PARTIAL = 1  # the run finished but some items (slides, rows) failed; see the summary
EXIT_BAD_INPUT = 2  # nothing could be done: bad arguments, recipe, or input files

F = TypeVar("F", bound=Callable[..., Any])


def _writable_folder(folder: Path, what: str, target: Path) -> None:
    """``folder`` (or the nearest existing folder above it, where it would be created) takes new files."""
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                raise OutputPathError(f"{what} {target}: {p} exists and is not a folder")
            if not os.access(p, os.W_OK | os.X_OK):
                if p == folder:
                    raise OutputPathError(f"{what} {target}: folder {p} is not writable")
                raise OutputPathError(f"{what} {target} cannot be created: folder {p} is not writable")
            return


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Refuse, before any work, an output folder that is a file, lies under a file or cannot be created or written.

    Nothing is created; raises :class:`OutputPathError` naming the path (exit code 2 through :func:`handle_errors`).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} exists and is not a folder")
    _writable_folder(path, what, path)
    return path


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Refuse, before any work, an output file that is a folder, or whose folder is a file or cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder")
    _writable_folder(path.parent if str(path.parent) else Path("."), what, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{what} {path} is not writable")
    return path


def _os_error_line(err: OSError) -> str:
    """One line naming the path(s) of a file-system error: "cannot write X: No space left on device"."""
    reason = err.strerror or (errno.errorcode.get(err.errno, "") if err.errno else "") or str(err) or type(err).__name__
    names = [str(n) for n in (err.filename, err.filename2) if n is not None]
    if not names:
        return f"file-system error: {' '.join(str(err).split()) or type(err).__name__}"
    return f"{' -> '.join(names)}: {reason}"


def handle_errors(fn: F) -> F:
    """Turn :class:`WeaksegError` and file-system errors (:class:`OSError`: no permission, a folder where a file
    goes, a full disk) into a one-line red message naming the path, and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WeaksegError as err:
            console.print(f"[bold red]error:[/] {escape(str(err))}")  # messages may hold [...] (key lists)
            raise typer.Exit(EXIT_BAD_INPUT) from err
        except OSError as err:
            console.print(f"[bold red]error:[/] {escape(_os_error_line(err))}")
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


def allow_plugins_option() -> bool:
    """``--allow-plugins`` of the commands that load a run directory (predict, evaluate)."""
    return typer.Option(
        False, "--allow-plugins",
        help="Import the run's plugins from the working folder or the run directory too (only installed ones otherwise).")


def allow_resolution_mismatch_option(verb: str) -> bool:
    """``--allow-resolution-mismatch`` of the commands that apply a run to bags; ``verb`` starts the help."""
    return typer.Option(
        False, "--allow-resolution-mismatch",
        help=f"{verb} bags whose tile size or µm/px differs from the training bags (refused otherwise).")
