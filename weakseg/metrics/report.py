"""Write segmentation results: per-slide and summary CSVs, a markdown table, a bar chart."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..atomic import atomic_path, atomic_write_text  # noqa: E402
from .seg import SegEvaluator  # noqa: E402

#: Columns of the markdown table and the figure (pooled scores); meanings in ``weakseg.metrics.seg``.
TABLE_COLUMNS = ("dice_cancer_pooled", "iou_cancer_pooled", "ap_cancer_pooled", "dice_cancer_mean", "dice_cancer_mean_pos",
                 "fp_fraction_neg", "dice_benign_pooled")
FIGURE_COLUMNS = ("dice_cancer_pooled", "iou_cancer_pooled", "ap_cancer_pooled")


def render_markdown(head: list[str], rows: list[list[str]], n_left: int = 1) -> str:
    """The one markdown-table renderer of weakseg's reports: ``head`` and string ``rows``; the first
    ``n_left`` columns left-aligned, the others right-aligned (numbers). No trailing newline."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * n_left + ["---:"] * (len(head) - n_left)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def markdown_table(summary: pd.DataFrame, columns: tuple[str, ...] = TABLE_COLUMNS, digits: int = 3) -> str:
    """A GitHub markdown table: one row per method and group."""
    rows = [[str(row["method"]), str(row["group"]), str(int(row["n_slides"]))]
            + ["–" if pd.isna(row[c]) else f"{row[c]:.{digits}f}" for c in columns] for _, row in summary.iterrows()]
    return render_markdown(["method", "group", "n_slides", *columns], rows, n_left=3) + "\n"


def bar_chart(summary: pd.DataFrame, path: str | os.PathLike, group: str = "all") -> None:
    """Grouped bars of the pooled scores per method (one group of the summary), as PNG."""
    data = summary[summary["group"] == group]
    methods = list(data["method"])
    x = np.arange(len(methods))
    width = 0.8 / len(FIGURE_COLUMNS)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(methods) + 2), 3.5))
    for k, col in enumerate(FIGURE_COLUMNS):
        ax.bar(x + (k - (len(FIGURE_COLUMNS) - 1) / 2) * width, data[col].fillna(0), width, label=col.replace("_pooled", ""))
    ax.set_xticks(x, methods, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("pooled score")
    ax.set_title(f"Pixel segmentation ({group})")
    ax.legend(fontsize="small", ncols=len(FIGURE_COLUMNS), loc="upper center", bbox_to_anchor=(0.5, -0.35))
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_report(evaluator: SegEvaluator, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``seg_per_slide.csv``, ``seg_summary.csv``, ``seg_summary.md`` and ``seg_summary.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "per_slide": out_dir / "seg_per_slide.csv",
        "summary": out_dir / "seg_summary.csv",
        "markdown": out_dir / "seg_summary.md",
        "figure": out_dir / "seg_summary.png",
    }
    summary = evaluator.summary()
    atomic_write_text(paths["per_slide"], evaluator.per_slide().to_csv(index=False))
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    atomic_write_text(paths["markdown"], markdown_table(summary))
    bar_chart(summary, paths["figure"])
    return paths
