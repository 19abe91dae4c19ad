"""The evaluation report's two figures, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Both take the plain lists stored in report.json, so a figure can be redrawn from the JSON alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_pr_curves(
    pr_curves: dict[str, dict[str, list[float]]], ap50: dict[str, float | None], path: Path
) -> None:
    """One precision-recall curve per class at IoU 0.5 into the PNG `path`.

    pr_curves: class name -> {"recall": [R], "precision": [R]} (COCO's interpolated precision at
    its recall points, up to the recall reached); ap50: class name -> AP50 for the legend.
    """
    figure = Figure(figsize=(7, 5.5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, curve in pr_curves.items():
        axes.plot(
            curve["recall"],
            curve["precision"],
            linewidth=1.8,
            label=f"{name} (AP50 {_number(ap50.get(name))})",
        )
    if not pr_curves:
        axes.text(0.5, 0.5, "no class has ground truth", ha="center", va="center", transform=axes.transAxes)
    axes.set(xlim=(0, 1.01), ylim=(0, 1.05), xlabel="recall", ylabel="precision")
    axes.set_title("Precision-recall per class, IoU 0.5")
    axes.grid(alpha=0.3)
    if pr_curves:
        axes.legend(loc="lower left", fontsize="small")
    figure.savefig(path, format="png", bbox_inches="tight")


def plot_confusion_matrix(rows: list[str], columns: list[str], counts: list[list[int]], path: Path) -> None:
    """The class confusion matrix (rows: true class + background, columns: predicted class + missed)
    as an annotated heat map PNG; colours are normalized per row so small classes stay readable."""
    matrix = np.asarray(counts, dtype=np.float64).reshape(len(rows), len(columns))
    row_totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_totals, out=np.zeros_like(matrix), where=row_totals > 0)
    side = max(4.5, 0.75 * max(len(rows), len(columns)) + 2.5)
    figure = Figure(figsize=(side + 1, side), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row, column in np.ndindex(matrix.shape):
        colour = "white" if shares[row, column] > 0.6 else "black"
        axes.text(
            column, row, f"{int(matrix[row, column])}", ha="center", va="center", color=colour, fontsize=9
        )
    axes.set_xticks(range(len(columns)), columns, rotation=40, ha="right")
    axes.set_yticks(range(len(rows)), rows)
    axes.set(xlabel="predicted class", ylabel="true class")
    axes.set_title("Matched detections at IoU 0.5 (counts)")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class's row")
    figure.savefig(path, format="png", bbox_inches="tight")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
