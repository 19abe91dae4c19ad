"""`cervical-tf predict` on slides: each slide's outputs in its own folder, failures in one table.

Per slide, OUTPUT/<slide>/ holds `detections.geojson` (level-0 px, QuPath's File > Import objects
over the slide), `detections.csv` and `tiles.jsonl` (the finished tiles, for resuming). A slide
that cannot be opened or read is named with its reason on stderr and in OUTPUT/slides_failed.csv,
and the batch goes on.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cervical_tf.inference import outputs
from cervical_tf.slides.detect import SlideOptions, SlideResult, detect_slide
from cervical_tf.slides.reader import SlideError
from tfrecords_gen.atomic import atomic_path

if TYPE_CHECKING:
    from cervical_tf.inference.predictor import Predictor

SLIDE_FILES = ("detections.geojson", "detections.csv", "tiles.jsonl")
FAILED_TABLE = "slides_failed.csv"


@dataclass(frozen=True)
class SlideFailure:
    slide: Path
    reason: str


def predict_slides(
    predictor: Predictor, slides: list[tuple[Path, str]], output: Path, options: SlideOptions
) -> tuple[list[SlideResult], list[SlideFailure]]:
    """Detect on each (slide path, folder name) and write its outputs into OUTPUT/<folder name>/;
    OUTPUT/slides_failed.csv lists the slides that failed (a header only when none did)."""
    from tqdm import tqdm

    card = predictor.model_card
    results: list[SlideResult] = []
    failures: list[SlideFailure] = []
    for path, name in slides:
        folder = Path(output) / name
        try:
            result = detect_slide(predictor, path, folder, options)
        except SlideError as error:
            failures.append(SlideFailure(path, str(error)))
            tqdm.write(f"skipped: {error}", file=sys.stderr)
            continue
        outputs.write_geojson(folder / "detections.geojson", [result.detections], card.as_json())
        outputs.write_detections_csv(folder / "detections.csv", [result.detections])
        results.append(result)
        tqdm.write(_summary(result, folder))
    write_failures(Path(output) / FAILED_TABLE, failures)
    return results, failures


def write_failures(path: Path, failures: list[SlideFailure]) -> None:
    """slide,reason per failed slide (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["slide", "reason"])
        writer.writerows([str(failure.slide), failure.reason] for failure in failures)


def _summary(result: SlideResult, folder: Path) -> str:
    skipped = result.tiles - result.tissue_tiles
    resumed = f", {result.resumed_tiles} done by an earlier run" if result.resumed_tiles else ""
    return (
        f"{result.detections.image}: {result.plan.note}; {result.tiles} tile(s) of {result.tile} px, "
        f"{skipped} without tissue skipped (tissue {100 * result.tissue_fraction:.0f}% of the slide)"
        f"{resumed}; {len(result.detections)} detections; wrote {', '.join(SLIDE_FILES)} to {folder}/"
    )
