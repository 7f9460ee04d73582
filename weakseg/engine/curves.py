"""Per-epoch training records: ``metrics.csv`` and the learning-curve figure ``curves.png``."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..atomic import atomic_path, atomic_write_text


def history_columns(history: Sequence[dict[str, Any]]) -> list[str]:
    """Column order: ``epoch``, ``train_*``, ``val_*``, then ``lr`` and ``seconds``."""
    seen: list[str] = []
    for row in history:
        seen.extend(k for k in row if k not in seen)
    head = [c for c in ("epoch",) if c in seen]
    tail = [c for c in ("lr", "seconds") if c in seen]
    train = [c for c in seen if c.startswith("train_")]
    val = [c for c in seen if c.startswith("val_")]
    rest = [c for c in seen if c not in head + tail + train + val]
    return head + train + val + rest + tail


def write_metrics_csv(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """One row per epoch; missing values are left empty."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=history_columns(history), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path, monitor: str | None = None) -> Path:
    """Training losses, validation metrics and learning rate against epochs, as a PNG (Agg, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = history_columns(history)
    panels = [
        ("training", [c for c in cols if c.startswith("train_")]),
        ("validation", [c for c in cols if c.startswith("val_")]),
        ("learning rate", [c for c in cols if c == "lr"]),
    ]
    panels = [(title, keys) for title, keys in panels if keys]
    fig = Figure(figsize=(4.2 * max(1, len(panels)), 3.4))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.3)  # fixed: layout engines are slow
    FigureCanvasAgg(fig)
    epochs = [row.get("epoch", i) for i, row in enumerate(history)]
    for i, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key in keys:
            ys = [_as_float(row.get(key)) for row in history]
            style = {"linewidth": 2.5} if monitor and key == f"val_{monitor}" else {}
            ax.plot(epochs, ys, marker="o", markersize=3, label=key, **style)
        if title == "learning rate":
            positive = [_as_float(r.get("lr")) for r in history]
            if all(v > 0 for v in positive if not math.isnan(v)):
                ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(keys) > 1 or title != "learning rate":
            ax.legend(fontsize=7)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return Path(path)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
