"""OUTPUT/slides_ranked.csv and .md: one row per slide of the batch, the most suspicious first.

Slides are ordered by their slide score (`report.slide_score`), high to low; equal scores by more
abnormal cells, then by name; slides without a score (no abnormal classes) after those with one;
slides that could not be opened or read last, with their reason. The numbers are the ones in each
slide's slide_report.json.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cervical_tf.slides.report import REPORT_MD, area_text
from tfrecords_gen.atomic import atomic_path

if TYPE_CHECKING:
    from cervical_tf.slides.batch import SlideFailure

RANKED_CSV = "slides_ranked.csv"
RANKED_MD = "slides_ranked.md"
COLUMNS = ("rank", "slide", "score", "abnormal_cells", "cells", "tiles", "area_mm2", "report", "failure")


def ranked_rows(reports: Sequence[tuple[dict, str]], failures: Sequence[SlideFailure]) -> list[dict]:
    """The table's rows (COLUMNS as keys; "" where a value does not apply) from (slide report,
    its folder name under OUTPUT) pairs and the failed slides."""
    ordered = sorted(
        reports,
        key=lambda pair: (
            pair[0]["score"] is None,
            -(pair[0]["score"] or 0.0),
            -pair[0]["abnormal_cells"],
            pair[0]["slide"],
        ),
    )
    rows = []
    for rank, (report, folder) in enumerate(ordered, start=1):
        area = report["examined"]["area_mm2"]
        rows.append(
            {
                "rank": rank,
                "slide": report["slide"],
                "score": "" if report["score"] is None else report["score"],
                "abnormal_cells": report["abnormal_cells"],
                "cells": report["cells"],
                "tiles": report["examined"]["tissue_tiles"],
                "area_mm2": "" if area is None else area,
                "report": f"{folder}/{REPORT_MD}",
                "failure": "",
            }
        )
    for failure in failures:
        rows.append(
            {column: "" for column in COLUMNS}
            | {"slide": Path(failure.slide).name, "failure": failure.reason}
        )
    return rows


def write_ranked(output: Path, reports: Sequence[tuple[dict, str]], failures: Sequence[SlideFailure]) -> None:
    """OUTPUT/slides_ranked.csv and OUTPUT/slides_ranked.md (atomically)."""
    rows = ranked_rows(reports, failures)
    Path(output).mkdir(parents=True, exist_ok=True)
    with (
        atomic_path(Path(output) / RANKED_CSV) as temporary,
        temporary.open("w", newline="", encoding="utf-8") as handle,
    ):
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_path(Path(output) / RANKED_MD) as temporary:
        temporary.write_text(_markdown(rows, reports), encoding="utf-8")


def _markdown(rows: list[dict], reports: Sequence[tuple[dict, str]]) -> str:
    lines = ["# Slides, most suspicious first", ""]
    if reports:
        first = reports[0][0]
        if first["model"]["warning"]:
            lines += [f"> **Warning: the model was {first['model']['warning']}.**", ""]
        lines += [f"Slide score: {first['score_rule']}.", ""]
    lines += [
        "| rank | slide | score | abnormal cells | cells | tiles examined | area examined | report, or why "
        "it failed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_report = {f"{folder}/{REPORT_MD}": report for report, folder in reports}
    for row in rows:
        if row["failure"]:
            reason = row["failure"].replace("|", "/")
            lines.append(f"| - | {row['slide']} | failed | | | | | {reason} |")
            continue
        examined = by_report[row["report"]]["examined"]
        score = "n/a" if row["score"] == "" else f"{row['score']:.3f}"
        lines.append(
            f"| {row['rank']} | {row['slide']} | {score} | {row['abnormal_cells']} | {row['cells']} | "
            f"{row['tiles']} | {area_text(examined['area_mm2'], examined['area_px'])} | "
            f"[{row['report']}]({row['report']}) |"
        )
    lines.append("")
    return "\n".join(lines)
