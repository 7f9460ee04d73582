"""``weakseg tile``: slides (PANDA folder or manifest CSV) → one HDF5 tile bag per slide."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import WeaksegError
from .common import EXIT_OK, EXIT_PARTIAL, console, handle_errors, progress

# = weakseg.bags.CODECS, as a literal so that --help imports nothing heavy (tests/test_lazy_api.py checks it)
CODECS = ("raw", "lzf", "gzip", "jpeg")


def _ids(text: str | None) -> list[str] | None:
    """Comma-separated ids, or ``@file`` with one id per line."""
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise WeaksegError(f"--ids {text}: no such file")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [part.strip() for part in text.split(",") if part.strip()]


@handle_errors
def tile(
    source: Path = typer.Argument(..., help="PANDA folder (train.csv, train_images/…) or manifest CSV."),
    out: Path = typer.Argument(..., help="Output folder: <slide_id>.h5 bags and manifest.csv."),
    tile_size: int = typer.Option(512, "--tile-size", help="Tile side in pixels (at the tiles' resolution)."),
    level: int | None = typer.Option(None, "--level", help="Pyramid level to tile (default 0)."),
    mpp: float | None = typer.Option(None, "--mpp", help="Target µm/px: the nearest finer level is read and resized."),
    stride: int | None = typer.Option(None, "--stride", help="Grid step in pixels (default: the tile size)."),
    overlap: int | None = typer.Option(None, "--overlap", help="Tile overlap in pixels (stride = tile size - overlap)."),
    min_coverage: float = typer.Option(0.25, "--min-coverage", min=0.0, max=1.0, help="Minimum mask/tissue fraction of a kept tile."),
    workers: int = typer.Option(1, "--workers", min=1, help="Slides tiled in parallel (processes)."),
    shard: str | None = typer.Option(None, "--shard", help="i/n (0-based): tile the slides whose id hashes to i mod n (weakseg.sharding; the same slides as embed/predict --shard i/n)."),
    ids: str | None = typer.Option(None, "--ids", help="Only these slide ids: comma-separated, or @file with one per line."),
    split_file: Path | None = typer.Option(None, "--split-file", help="A split file from 'weakseg split': tile only the slides of --split."),
    split: list[str] = typer.Option([], "--split", help="Part(s) of --split-file to tile: train, val, test (repeatable or comma-separated)."),
    fold: int = typer.Option(0, "--fold", min=0, help="Fold of --split-file."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many slides (after --ids and --shard)."),
    codec: str = typer.Option("jpeg", "--codec", help=f"Tile storage: {', '.join(CODECS)}."),
    quality: int = typer.Option(90, "--quality", min=1, max=100, help="JPEG quality when tiles must be re-encoded."),
    slide_mpp: float | None = typer.Option(None, "--slide-mpp", help="Level-0 µm/px for slides whose files carry none."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo slides that already have a complete bag."),
) -> None:
    """Tile slides into bags; complete bags are skipped (resume); per-slide status in manifest.csv."""
    from ..tiling.tiler import TileConfig, parse_shard, tile_cohort

    if split_file is not None and not split:
        raise WeaksegError("--split-file needs --split (train, val and/or test)")
    if stride is not None and overlap is not None:
        raise WeaksegError("give either --stride or --overlap, not both")
    if overlap is not None:
        if not 0 <= overlap < tile_size:
            raise WeaksegError(f"--overlap must be in 0..{tile_size - 1}, got {overlap}")
        stride = tile_size - overlap
    config = TileConfig(
        tile_size=tile_size, stride=stride, level=level, mpp=mpp, min_coverage=min_coverage,
        codec=codec, quality=quality, slide_mpp=slide_mpp, overwrite=overwrite,
    )
    with progress() as bar:
        task = bar.add_task("tile", total=None)
        try:
            report = tile_cohort(
                source, out, config, workers=workers, shard=parse_shard(shard) if shard else None,
                ids=_ids(ids), limit=limit, split_file=split_file, fold=fold,
                split=[p.strip() for s in split for p in s.split(",") if p.strip()],
                on_start=lambda n: bar.update(task, total=n),
                on_result=lambda r: bar.update(task, advance=1, description=f"tile {r.slide_id}"),
            )
        except OSError as err:  # a file-system error outside any one slide: one line naming the path
            raise WeaksegError(f"{err.filename or out}: {err.strerror or err}") from err
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.counts().items()))
    n_tiles = sum(r.n_tiles for r in report.results if r.status in ("ok", "skipped(resume)"))
    console.print(f"{counts or 'no slides'}; {n_tiles} tiles in {out} (status per slide: {report.manifest})")
    problems = [r for r in report.results if r.failed or r.reason]
    if problems and not console.is_terminal:  # logs, pipes, CI: one whole line per slide, never squeezed into a column
        console.print("slides needing attention:")
        for r in problems:
            console.print(f"  {r.slide_id}  {r.status}  {escape(r.reason)}", highlight=False)
    elif problems:
        table = Table(title="slides needing attention", show_lines=False)
        for col in ("slide", "status", "reason"):
            table.add_column(col, overflow="fold")
        for r in problems:
            style = "red" if r.failed else "yellow"
            table.add_row(r.slide_id, f"[{style}]{r.status}[/]", r.reason)
        console.print(table)
    if report.manifest_error:
        ids_missing = ", ".join(r.slide_id for r in report.unrecorded)
        console.print(f"[bold red]error:[/] {report.manifest_error}; not recorded there: {ids_missing}")
    raise typer.Exit(EXIT_PARTIAL if report.n_failed or report.manifest_error else EXIT_OK)
