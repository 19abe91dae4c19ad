"""`cervical-tf predict` on slides: each slide's outputs in its own folder, failures in one table.

Per slide, OUTPUT/<slide>/ holds `detections.geojson` (level-0 px, QuPath's File > Import objects
over the slide), `detections.csv`, `slide_report.json`/`.md` (cells per class, abnormal cells, the
slide score, tiles and area examined: `report`), `gallery.png`/`.json` (the top abnormal cells:
`gallery`) and `tiles.jsonl` (the finished tiles, for resuming); the detections are written a chunk
at a time (`writers`), so memory does not grow with the cells found. OUTPUT/slides_ranked.csv/.md rank
the batch, most suspicious first (`ranking`). A slide that cannot be opened or read is named with
its reason on stderr, in OUTPUT/slides_failed.csv and last in the ranked table, and the batch goes on.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cervical_tf.inference import outputs
from cervical_tf.slides.detect import SlideOptions, SlideResult, SlideTiles, detect_slide
from cervical_tf.slides.gallery import (
    GALLERY_JSON,
    GALLERY_PNG,
    remove_gallery,
    top_abnormal,
    write_gallery,
)
from cervical_tf.slides.ranking import RANKED_CSV, RANKED_MD, write_ranked
from cervical_tf.slides.reader import SlideError, open_slide
from cervical_tf.slides.report import REPORT_JSON, REPORT_MD, Triage, slide_report, write_slide_report
from tfrecords_gen.atomic import atomic_path

if TYPE_CHECKING:
    from cervical_tf.export.model_card import ModelCard
    from cervical_tf.inference.predictor import Predictor

SLIDE_FILES = ("detections.geojson", "detections.csv", REPORT_JSON, REPORT_MD, "tiles.jsonl")
GALLERY_FILES = (GALLERY_PNG, GALLERY_JSON)
BATCH_FILES = (RANKED_CSV, RANKED_MD)
FAILED_TABLE = "slides_failed.csv"


@dataclass(frozen=True)
class SlideFailure:
    slide: Path
    reason: str


def predict_slides(
    predictor: Predictor,
    slides: list[tuple[Path, str]],
    output: Path,
    options: SlideOptions,
    triage: Triage,
    planned: Mapping[Path, SlideTiles] | None = None,
) -> list[SlideFailure]:
    """Detect on each (slide path, folder name) and write its outputs into OUTPUT/<folder name>/;
    OUTPUT/slides_ranked.csv/.md rank the slides by `triage`'s score, OUTPUT/slides_failed.csv
    lists the slides that failed (a header only when none did). `planned`: slides whose tiles were
    already planned (by `predict --ray`), by path. Returns the failures."""
    from tqdm import tqdm

    card = predictor.model_card
    reports: list[tuple[dict, str]] = []
    failures: list[SlideFailure] = []
    for path, name in slides:
        folder = Path(output) / name
        try:
            result = detect_slide(predictor, path, folder, options, (planned or {}).get(Path(path)))
            outputs.write_geojson(folder / "detections.geojson", [result.detections], card.as_json())
            outputs.write_detections_csv(folder / "detections.csv", [result.detections])
            report = slide_report(result, predictor.labels, triage, options.min_score, card)
            gallery = _write_gallery(folder, path, result, options, triage, card)
            write_slide_report(folder, report, gallery)
        except SlideError as error:
            failures.append(SlideFailure(path, str(error)))
            tqdm.write(f"skipped: {error}", file=sys.stderr)
            continue
        reports.append((report, name))
        tqdm.write(_summary(result, report, folder, triage))
    write_failures(Path(output) / FAILED_TABLE, failures)
    write_ranked(Path(output), reports, failures)
    return failures


def _write_gallery(
    folder: Path, path: Path, result: SlideResult, options: SlideOptions, triage: Triage, card: ModelCard
) -> list[dict]:
    """gallery.png/.json of the slide's top `triage.gallery` abnormal cells (none when it is 0)."""
    if not triage.gallery:
        remove_gallery(folder)
        return []
    indices = top_abnormal(result.detections, triage.abnormal, triage.gallery)
    empty = f"no abnormal cells found ({triage.rule})" if triage.abnormal else triage.rule
    with open_slide(path, options.mpp) as reader:
        return write_gallery(folder, reader, result.plan, result.detections, indices, empty, card.warning)


def write_failures(path: Path, failures: list[SlideFailure]) -> None:
    """slide,reason per failed slide (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "reason"])
        writer.writerows([str(failure.slide), failure.reason] for failure in failures)


def _summary(result: SlideResult, report: dict, folder: Path, triage: Triage) -> str:
    skipped = result.tiles - result.tissue_tiles
    resumed = f", {result.resumed_tiles} done by an earlier run" if result.resumed_tiles else ""
    score = "no slide score" if report["score"] is None else f"slide score {report['score']:.3f}"
    files = SLIDE_FILES + (GALLERY_FILES if triage.gallery else ())
    return (
        f"{result.detections.image}: {result.plan.note}; {result.tiles} tile(s) of {result.tile} px, "
        f"{skipped} without tissue skipped (tissue {100 * result.tissue_fraction:.0f}% of the slide)"
        f"{resumed}; {len(result.detections)} detections, {report['abnormal_cells']} abnormal, {score}; "
        f"wrote {', '.join(files)} to {folder}/"
    )
