"""dataset_stats.json: images, boxes and box sizes per split and class; printed by `cervical-tf stats`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cervical_tf.errors import DataError
from tfrecords_gen.atomic import atomic_path
from tfrecords_gen.records import ImageRecord

PERCENTILES = (5, 50, 95)


def dataset_stats(splits: Mapping[str, Sequence[ImageRecord]]) -> dict:
    """{"splits": {split: {"images", "boxes", "negative_images", "classes": {name: boxes},
    "class_details": {name: {"images", "boxes", "box_width_px": {p5, p50, p95}, "box_height_px": ...}}}}}"""
    return {"splits": {split: _split_stats(records) for split, records in splits.items() if records}}


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
    }


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    points = np.percentile(np.asarray(values, dtype=float), PERCENTILES)
    return {f"p{p}": round(float(value), 1) for p, value in zip(PERCENTILES, points, strict=True)}


def write_stats(path: Path, stats: dict) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(stats, indent=2), encoding="utf-8")


def load_stats(path: Path) -> dict:
    """Stats from a dataset_stats.json, or from the one inside a converted folder."""
    file = path / "dataset_stats.json" if path.is_dir() else path
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{file}: cannot read dataset statistics: {error}") from error


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
