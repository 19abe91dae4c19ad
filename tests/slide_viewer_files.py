"""A slide folder and a results folder as the slide viewer reads them, written into a test's tmp folder.

The slide is a generic tiled pyramidal TIFF (OpenSlide reads it) of two real CRIC fields side by
side (../shared/data/cric8), their annotated boxes shifted into slide coordinates and written as
predict's detections.geojson; without the shared data, a synthetic field with dark discs. The
gallery (gallery.json + gallery.png) follows the slide gallery's contract: the top cells, each
with its level-0 `box` and its `mosaic` rectangle [x, y, w, h] in gallery.png; slide_report.json
has the few fields the viewer reads (score, abnormal cells, the model's warning).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from slide_files import write_generic_tiff

from cervical_tf.export.model_card import SYNTHETIC_WARNING
from cervical_tf.inference import outputs
from cervical_tf.inference.detections import Detections

MPP_UM = 0.5
BETHESDA_IDS = {
    "Negative for intraepithelial lesion": 1,
    "ASC-US": 2,
    "LSIL": 3,
    "ASC-H": 4,
    "HSIL": 5,
    "SCC": 6,
}
GALLERY_CELL = 96  # px per mosaic cell
SCORE = 0.8731  # the slide score written into slide_report.json


@dataclass(frozen=True)
class ViewerSlide:
    """`slides` holds `slide`; `results/<slide stem>/` its detections.geojson and gallery files."""

    slides: Path
    results: Path
    slide: Path
    width: int
    height: int
    boxes: np.ndarray  # float32 [N, 4] level-0 px
    labels: tuple[str, ...]
    gallery: dict


def write_viewer_slide(folder: Path, cric: Path | None, gallery_cells: int = 6) -> ViewerSlide:
    """The slide (from two CRIC fields of `cric`, or synthetic when None), its detections and gallery."""
    pixels, boxes, labels = _cric_mosaic(cric) if cric is not None else _synthetic_field()
    slides, results = folder / "slides", folder / "results"
    slides.mkdir(parents=True)
    slide = write_generic_tiff(slides / "field_mosaic.tif", pixels, MPP_UM, levels=3)
    height, width = pixels.shape[:2]
    count = len(labels)
    scores = np.linspace(0.99, 0.51, count, dtype=np.float32)  # sorted high to low, as predict's
    class_ids = np.array([BETHESDA_IDS.get(label, 1) for label in labels], dtype=np.int32)
    detections = Detections(slide.name, width, height, boxes.astype(np.float32), scores, class_ids, labels)
    out = results / slide.stem
    out.mkdir(parents=True)
    outputs.write_geojson(out / "detections.geojson", [detections])
    gallery = _write_gallery(out, pixels, detections, gallery_cells)
    abnormal = [label for label in labels if BETHESDA_IDS.get(label, 1) > 1]
    report = {  # the fields of slide_report.json the viewer reads
        "slide": slide.name,
        "cells": count,
        "abnormal_classes": sorted(set(abnormal)),
        "abnormal_cells": len(abnormal),
        "score": SCORE,
        "model": {"summary": "a stand-in", "warning": SYNTHETIC_WARNING},
    }
    (out / "slide_report.json").write_text(json.dumps(report), encoding="utf-8")
    return ViewerSlide(slides, results, slide, width, height, detections.boxes_px, labels, gallery)


def _cric_mosaic(cric: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    fields = sorted((cric / "images").glob("*.png"))[:2]
    images = [np.asarray(Image.open(path).convert("RGB")) for path in fields]
    height = max(image.shape[0] for image in images)
    mosaic = np.full((height, sum(image.shape[1] for image in images), 3), 255, dtype=np.uint8)
    boxes, labels, left = [], [], 0
    for path, image in zip(fields, images, strict=True):
        mosaic[: image.shape[0], left : left + image.shape[1]] = image
        collection = json.loads((cric / "geojson" / f"{path.stem}.geojson").read_text(encoding="utf-8"))
        for feature in collection["features"]:
            ring = np.asarray(feature["geometry"]["coordinates"][0], dtype=np.float64)
            boxes.append(
                [ring[:, 0].min() + left, ring[:, 1].min(), ring[:, 0].max() + left, ring[:, 1].max()]
            )
            labels.append(feature["properties"]["label"])
        left += image.shape[1]
    return mosaic, np.asarray(boxes), tuple(labels)


def _synthetic_field() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    canvas = Image.new("RGB", (2048, 1024), (235, 225, 230))
    draw = ImageDraw.Draw(canvas)
    boxes, labels = [], []
    for index in range(12):
        x, y = 120 + (index % 6) * 320, 220 + (index // 6) * 440
        draw.ellipse([x, y, x + 70, y + 70], fill=(90, 40, 110) if index % 3 else (40, 20, 60))
        boxes.append([x, y, x + 70, y + 70])
        labels.append("LSIL" if index % 3 == 0 else "Negative for intraepithelial lesion")
    return np.asarray(canvas), np.asarray(boxes, dtype=np.float64), tuple(labels)


def _write_gallery(folder: Path, pixels: np.ndarray, detections: Detections, count: int) -> dict:
    """gallery.png (cells in a row, each its box with a margin) and gallery.json, abnormal cells first."""
    order = sorted(
        range(len(detections)),
        key=lambda index: (detections.class_ids[index] == 1, -detections.scores[index]),
    )[:count]
    mosaic = Image.new("RGB", (GALLERY_CELL * len(order), GALLERY_CELL), "white")
    cells = []
    for rank, index in enumerate(order, start=1):
        xmin, ymin, xmax, ymax = (float(value) for value in detections.boxes_px[index])
        margin = 8
        crop = Image.fromarray(pixels).crop(
            (max(0, int(xmin) - margin), max(0, int(ymin) - margin), int(xmax) + margin, int(ymax) + margin)
        )
        crop.thumbnail((GALLERY_CELL, GALLERY_CELL))
        x = (rank - 1) * GALLERY_CELL
        mosaic.paste(crop, (x, 0))
        cells.append(
            {
                "rank": rank,
                "class": detections.labels[index],
                "class_id": int(detections.class_ids[index]),
                "score": round(float(detections.scores[index]), 4),
                "box": [xmin, ymin, xmax, ymax],
                "mosaic": [x, 0, crop.width, crop.height],
            }
        )
    mosaic.save(folder / "gallery.png")
    gallery = {"slide": detections.image, "cells": cells}
    (folder / "gallery.json").write_text(json.dumps(gallery), encoding="utf-8")
    return gallery
