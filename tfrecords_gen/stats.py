"""dataset_stats.json: images, boxes and box sizes per split and class; printed by `cervical-tf stats`.

Each split also lists its boxes' corners grouped by image size (`boxes_by_image_size`): fitting
anchors (`cervical_tf.training.anchors`) must scale every box as official.vision scales its image to
the model's input, and the IoU with an anchor depends on where the box sits on the anchor grid.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cervical_tf.errors import DataError
from tfrecords_gen.atomic import atomic_path
from tfrecords_gen.records import ImageRecord
from tfrecords_gen.sample_marker import synthetic_sample_stats

PERCENTILES = (5, 50, 95)
BOX_GEOMETRY = "boxes_by_image_size"
PIXEL_SIZE = "pixel_size_um"  # µm per pixel of the annotated images, from `convert --mpp` (None: not given)
# One box per line: json.dumps(indent=2) alone would spend six lines on each box.
_NUMBER_LIST = re.compile(r"\[\s+([-+.\deE]+(?:,\s+[-+.\deE]+)*)\s+\]")


def dataset_stats(splits: Mapping[str, Sequence[ImageRecord]], pixel_size_um: float | None = None) -> dict:
    """{"splits": {split: {"images", "boxes", "negative_images", "classes": {name: boxes},
    "class_details": {name: {"images", "boxes", "box_width_px": {p5, p50, p95}, "box_height_px": ...}}}},
    "synthetic_sample": images per split drawn by `cervical-tf sample`, or None (see sample_marker),
    "pixel_size_um": microns per pixel of the images (`convert --mpp`), or None when not given}"""
    return {
        "splits": {split: _split_stats(records) for split, records in splits.items() if records},
        "synthetic_sample": synthetic_sample_stats(splits),
        PIXEL_SIZE: pixel_size_um,
    }


def _split_stats(records: Sequence[ImageRecord]) -> dict:
    boxes = [box for record in records for box in record.boxes]
    labels = sorted({box.label for box in boxes})
    details = {}
    for label in labels:
        widths = [box.width for box in boxes if box.label == label]
        heights = [box.height for box in boxes if box.label == label]
        details[label] = {
            "images": sum(1 for record in records if label in record.labels),
            "boxes": len(widths),
            "box_width_px": _percentiles(widths),
            "box_height_px": _percentiles(heights),
        }
    return {
        "images": len(records),
        "boxes": len(boxes),
        "negative_images": sum(1 for record in records if not record.boxes),
        "classes": {label: details[label]["boxes"] for label in labels},
        "class_details": details,
        BOX_GEOMETRY: _boxes_by_image_size(records),
    }


def _boxes_by_image_size(records: Sequence[ImageRecord]) -> dict[str, list[list[float]]]:
    """Box corners (pixels, 0.1 px) per image size; crowd regions are left out, as training skips them."""
    groups: dict[str, list[list[float]]] = {}
    for record in records:
        corners = [
            [round(value, 1) for value in (box.x_min, box.y_min, box.x_max, box.y_max)]
            for box in record.boxes
            if not box.is_crowd
        ]
        if corners:
            groups.setdefault(f"{record.width}x{record.height}", []).extend(corners)
    return groups


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    points = np.percentile(np.asarray(values, dtype=float), PERCENTILES)
    return {f"p{p}": round(float(value), 1) for p, value in zip(PERCENTILES, points, strict=True)}


def write_stats(path: Path, stats: dict) -> None:
    with atomic_path(path) as temporary:
        text = _NUMBER_LIST.sub(_one_line, json.dumps(stats, indent=2))
        temporary.write_text(text, encoding="utf-8")


def _one_line(match: re.Match) -> str:
    return "[" + ", ".join(value.strip() for value in match[1].split(",")) + "]"


def load_stats(path: Path) -> dict:
    """Stats from a dataset_stats.json, or from the one inside a converted folder."""
    file = path / "dataset_stats.json" if path.is_dir() else path
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{file}: cannot read dataset statistics: {error}") from error


def boxes_by_image_size(stats: dict, split: str, source: Path) -> dict[tuple[int, int], np.ndarray]:
    """(width, height) -> float [N, 4] box corners in pixels of that split's images.

    Statistics written before the corners were recorded raise DataError saying to convert again.
    """
    if split not in stats.get("splits", {}):
        raise DataError(f"{source}: no {split!r} split in the dataset statistics")
    groups = stats["splits"][split].get(BOX_GEOMETRY)
    if groups is None:
        raise DataError(
            f"{source}: written by an older `cervical-tf convert` without box positions "
            f"({BOX_GEOMETRY}); run `cervical-tf convert` again to write them"
        )
    try:
        return {
            tuple(int(side) for side in size.split("x")): np.asarray(corners, dtype=np.float64).reshape(-1, 4)
            for size, corners in groups.items()
        }
    except ValueError as error:
        raise DataError(f"{source}: {split}.{BOX_GEOMETRY} is malformed ({error}); convert again") from error


def stats_table(stats: dict) -> str:
    """One row per split and class (plus a row per split for all classes) as aligned text."""
    rows = []
    for split, numbers in stats["splits"].items():
        rows.append(
            {"split": split, "class": "(all)", "images": numbers["images"], "boxes": numbers["boxes"]}
        )
        for label, detail in numbers["class_details"].items():
            width, height = detail["box_width_px"], detail["box_height_px"]
            rows.append(
                {
                    "split": split,
                    "class": label,
                    "images": detail["images"],
                    "boxes": detail["boxes"],
                    "width px p5/p50/p95": f"{width['p5']:g}/{width['p50']:g}/{width['p95']:g}",
                    "height px p5/p50/p95": f"{height['p5']:g}/{height['p50']:g}/{height['p95']:g}",
                }
            )
    return pd.DataFrame(rows).fillna("").to_string(index=False)
