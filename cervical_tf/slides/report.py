"""OUTPUT/<slide>/slide_report.json and .md: what was found on a slide and how suspicious it is.

The slide score follows the published triage systems, which rank a slide from its most suspicious
cells (Cheng et al., Nat Commun 2021: the top-10 lesion cells): the sum of the `TOP_CELLS` highest
scores among detections of abnormal classes, divided by `TOP_CELLS`, i.e. the mean of the top-10
abnormal cells with a missing cell counting 0, so one stray abnormal box ranks below ten sure ones.
The abnormal classes are `inference.abnormal`'s choice (SIPaKMeD, Bethesda, or --abnormal).

Everything in the report follows from the detections and the run's settings (no clock, no count of
resumed tiles), so a slide resumed from its tiles.jsonl gets the same report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tfrecords_gen.atomic import atomic_path

if TYPE_CHECKING:
    from cervical_tf.export.model_card import ModelCard
    from cervical_tf.inference.detections import Detections
    from cervical_tf.slides.detect import SlideResult

REPORT_JSON = "slide_report.json"
REPORT_MD = "slide_report.md"
TOP_CELLS = 10
DEFAULT_GALLERY = 16
SQUARE_UM_PER_MM2 = 1e6


@dataclass(frozen=True)
class Triage:
    """How slides are ranked: the `abnormal` class names, `rule` (why those: `inference.abnormal`)
    and `gallery`, how many of the top abnormal cells the gallery shows (0: no gallery)."""

    abnormal: frozenset[str]
    rule: str
    gallery: int = DEFAULT_GALLERY

    @property
    def score_rule(self) -> str:
        if not self.abnormal:
            return f"no slide score: {self.rule}"
        return (
            f"the sum of the {TOP_CELLS} highest scores among detections of the abnormal classes "
            f"({', '.join(sorted(self.abnormal))}), divided by {TOP_CELLS}: the mean of the top-{TOP_CELLS} "
            f"abnormal cells, a missing cell counting 0 (after Cheng et al., Nat Commun 2021, who rank "
            f"slides from their top-{TOP_CELLS} lesion cells); 0 to 1, higher is more suspicious"
        )


def abnormal_mask(detections: Detections, abnormal: frozenset[str]) -> np.ndarray:
    """bool [N]: the detection's class is abnormal."""
    return np.array([label in abnormal for label in detections.labels], dtype=bool)


def slide_score(detections: Detections, abnormal: frozenset[str]) -> tuple[float | None, list[float]]:
    """(score, the top scores it averages, high to low); score None when no class is abnormal."""
    if not abnormal:
        return None, []
    top = sorted(
        (float(score) for score in detections.scores[abnormal_mask(detections, abnormal)]), reverse=True
    )
    top = [round(score, 5) for score in top[:TOP_CELLS]]
    return round(sum(top) / TOP_CELLS, 5), top


def slide_report(
    result: SlideResult, labels: dict[int, str], triage: Triage, min_score: float, card: ModelCard
) -> dict:
    """The report of one slide (see the module docstring for the score); areas in level-0 px² and, when
    the slide's pixel size is known, mm²."""
    detections = result.detections
    score, top = slide_score(detections, triage.abnormal)
    size = result.pixel_size
    um2 = None if size is None else size.x_um * size.y_um
    slide_px = float(detections.width) * float(detections.height)
    return {
        "slide": Path(detections.image).name,
        "path": str(detections.image),
        "size_px": [detections.width, detections.height],
        "pixel_size_um": None if size is None else [size.x_um, size.y_um],
        "pixel_size_source": None if size is None else size.source,
        "read": {
            "level": result.plan.level,
            "downsample": result.plan.downsample,
            "scale": result.plan.scale,
            "tile_px": result.tile,
            "note": result.plan.note,
        },
        "min_score": min_score,
        "cells": len(detections),
        "cells_per_class": {
            labels[class_id]: int(np.count_nonzero(detections.class_ids == class_id))
            for class_id in sorted(labels)
        },
        "abnormal_classes": sorted(triage.abnormal),
        "abnormal_rule": triage.rule,
        "abnormal_cells": int(abnormal_mask(detections, triage.abnormal).sum()),
        "score": score,
        "score_rule": triage.score_rule,
        "top_abnormal_scores": top,
        "examined": {
            "tiles": result.tiles,
            "tissue_tiles": result.tissue_tiles,
            "tissue_fraction": round(result.tissue_fraction, 4),
            "area_px": round(result.examined_px),
            "area_mm2": _mm2(result.examined_px, um2),
            "tissue_area_mm2": _mm2(result.tissue_fraction * slide_px, um2),
            "slide_area_mm2": _mm2(slide_px, um2),
        },
        "model": {"summary": card.summary, "warning": card.warning},
    }


def write_slide_report(folder: Path, report: dict, gallery: Sequence[dict] = ()) -> None:
    """slide_report.json and slide_report.md into `folder` (atomically); `gallery`: gallery.json's
    cells, listed in the Markdown under the picture."""
    with atomic_path(Path(folder) / REPORT_JSON) as temporary:
        temporary.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with atomic_path(Path(folder) / REPORT_MD) as temporary:
        temporary.write_text(report_markdown(report, gallery), encoding="utf-8")


def report_markdown(report: dict, gallery: Sequence[dict] = ()) -> str:
    lines = [f"# Slide report: {report['slide']}", ""]
    if report["model"]["warning"]:
        lines += [f"> **Warning: the model was {report['model']['warning']}.**", ""]
    score = "n/a" if report["score"] is None else f"{report['score']:.3f}"
    examined = report["examined"]
    lines += [
        "| | |",
        "|---|---|",
        f"| slide score | **{score}** |",
        f"| abnormal cells | {report['abnormal_cells']} |",
        f"| cells | {report['cells']} (scoring at least {report['min_score']:g}) |",
        f"| tiles examined | {examined['tissue_tiles']} of {examined['tiles']} (the others hold no tissue) |",
        f"| area examined | {area_text(examined['area_mm2'], examined['area_px'])} |",
        f"| tissue | {100 * examined['tissue_fraction']:.1f}% of the slide |",
        f"| pixel size | {_pixel_size_text(report)} |",
        f"| read at | {report['read']['note']}; tiles of {report['read']['tile_px']} px |",
        "",
        f"Slide score: {report['score_rule']}.",
        "",
        f"Abnormal classes: {', '.join(report['abnormal_classes']) or 'none'} ({report['abnormal_rule']}).",
        "",
        "## Cells per class",
        "",
        "| class | cells |",
        "|---|---|",
        *(f"| {label} | {count} |" for label, count in report["cells_per_class"].items()),
        "",
    ]
    if gallery:
        lines += [f"## The top {len(gallery)} abnormal cells", "", "![gallery](gallery.png)", ""]
        lines += ["| rank | class | score | box (level-0 px) |", "|---|---|---|---|"]
        for cell in gallery:
            box = ", ".join(f"{value:g}" for value in cell["box"])
            lines.append(f"| {cell['rank']} | {cell['class']} | {cell['score']:.3f} | {box} |")
        lines.append("")
    lines += ["## The model", "", f"{report['model']['summary']}.", ""]
    return "\n".join(lines)


def area_text(area_mm2: float | None, area_px: float) -> str:
    """`12.34 mm²`, or the level-0 px² when the slide's pixel size is unknown."""
    return f"{area_mm2:.2f} mm²" if area_mm2 is not None else f"{area_px:.4g} px² (pixel size unknown)"


def _pixel_size_text(report: dict) -> str:
    if report["pixel_size_um"] is None:
        return "unknown (no metadata and no --mpp)"
    x_um, y_um = report["pixel_size_um"]
    return f"{x_um:g} x {y_um:g} µm ({report['pixel_size_source']})"


def _mm2(area_px: float, um2_per_px: float | None) -> float | None:
    return None if um2_per_px is None else round(area_px * um2_per_px / SQUARE_UM_PER_MM2, 4)
