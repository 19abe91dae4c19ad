"""OUTPUT/<slide>/gallery.png and gallery.json: the slide's top-k abnormal cells, side by side.

Each crop is read from the slide at the level the model read (`plan.level`), the box plus `CONTEXT`
of its longer side on every side (at least `MIN_MARGIN` level px), fitted into a `CELL` px square
with the box drawn in its class colour, and captioned with rank, class and score. A model card's
warning runs across the bottom in red. gallery.json, which the slide viewer reads:

    {"slide": "<file name>", "cells": [{"rank": 1, "class": "...", "class_id": N, "score": 0.97,
     "box": [xmin, ymin, xmax, ymax] (level-0 px), "mosaic": [x, y, w, h] (the crop in gallery.png)}]}

Cells are ordered by score, high to low (rank 1 first); boxes and scores are rounded as in
detections.csv.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cervical_tf.inference.outputs import WARNING_RED, class_color
from cervical_tf.slides.report import abnormal_mask
from tfrecords_gen.atomic import atomic_path

if TYPE_CHECKING:
    from cervical_tf.inference.detections import Detections
    from cervical_tf.slides.plan import ReadPlan
    from cervical_tf.slides.reader import SlideReader

GALLERY_PNG = "gallery.png"
GALLERY_JSON = "gallery.json"
CELL = 160  # px: the square each crop is fitted into
CONTEXT = 0.5  # margin around the box, as a share of its longer side
MIN_MARGIN = 16  # level px
PAD = 8
CAPTION = 20
BANNER = 24
FONT_SIZE = 13
BACKGROUND = (255, 255, 255)


def top_abnormal(detections: Detections, abnormal: frozenset[str], count: int) -> np.ndarray:
    """int [<= count]: indices of the `count` highest-scoring detections of abnormal classes."""
    candidates = np.flatnonzero(abnormal_mask(detections, abnormal))
    order = np.argsort(-detections.scores[candidates], kind="stable")
    return candidates[order][:count]


def write_gallery(
    folder: Path,
    reader: SlideReader,
    plan: ReadPlan,
    detections: Detections,
    indices: np.ndarray,
    empty_note: str,
    warning: str | None = None,
) -> list[dict]:
    """gallery.png and gallery.json of the detections at `indices` (rank order) into `folder`,
    atomically; returns gallery.json's cells. `empty_note` is drawn when there are none."""
    slide_size = (detections.width, detections.height)
    crops = [
        _crop(
            reader,
            plan,
            detections.boxes_px[index],
            slide_size,
            class_color(int(detections.class_ids[index])),
        )
        for index in indices
    ]
    columns = max(1, math.ceil(math.sqrt(len(crops))))
    rows = max(1, math.ceil(len(crops) / columns))
    width = PAD + columns * (CELL + PAD)
    height = PAD + rows * (CELL + CAPTION + PAD) if crops else 2 * PAD + CAPTION
    canvas = Image.new("RGB", (max(width, 3 * CELL), height + (BANNER if warning else 0)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    cells = []
    for rank, (index, crop) in enumerate(zip(indices, crops, strict=True), start=1):
        row, column = divmod(rank - 1, columns)
        left, top = PAD + column * (CELL + PAD), PAD + row * (CELL + CAPTION + PAD)
        x, y = left + (CELL - crop.width) // 2, top + (CELL - crop.height) // 2
        canvas.paste(crop, (x, y))
        label, score = detections.labels[index], float(detections.scores[index])
        _text(draw, f"{rank}. {label} {score:.2f}", (left, top + CELL + 2), CELL, (0, 0, 0))
        cells.append(
            {
                "rank": rank,
                "class": label,
                "class_id": int(detections.class_ids[index]),
                "score": round(score, 5),
                "box": [round(float(value), 2) for value in detections.boxes_px[index]],
                "mosaic": [x, y, crop.width, crop.height],
            }
        )
    if not crops:
        _text(draw, empty_note, (PAD, PAD), canvas.width - 2 * PAD, (0, 0, 0))
    if warning:
        draw.rectangle((0, height, canvas.width, canvas.height), fill=WARNING_RED)
        _text(draw, warning.upper(), (PAD, height + 4), canvas.width - 2 * PAD, (255, 255, 255))
    with atomic_path(Path(folder) / GALLERY_PNG) as temporary:
        canvas.save(temporary, format="PNG")
    with atomic_path(Path(folder) / GALLERY_JSON) as temporary:
        temporary.write_text(_gallery_json(Path(detections.image).name, cells), encoding="utf-8")
    return cells


def remove_gallery(folder: Path) -> None:
    """Remove an earlier run's gallery files (a run with --gallery 0 shows none)."""
    for name in (GALLERY_PNG, GALLERY_JSON):
        (Path(folder) / name).unlink(missing_ok=True)


def _gallery_json(slide: str, cells: list[dict]) -> str:
    """gallery.json's text: the contract of the module docstring, one cell per line."""
    lines = ",\n".join(f"  {json.dumps(cell)}" for cell in cells)
    return (
        f'{{"slide": {json.dumps(slide)}, "cells": [\n{lines}\n]}}\n'
        if cells
        else (json.dumps({"slide": slide, "cells": []}) + "\n")
    )


def _crop(
    reader: SlideReader,
    plan: ReadPlan,
    box_px: np.ndarray,
    slide_size: tuple[int, int],
    color: tuple[int, int, int],
) -> Image.Image:
    """The box (level-0 px) with its context, read at `plan.level`, fitted into CELL x CELL, the box
    drawn in `color`."""
    downsample = plan.downsample
    box = np.asarray(box_px, dtype=np.float64) / downsample  # level px
    level_width, level_height = (side / downsample for side in slide_size)
    margin = max(CONTEXT * max(box[2] - box[0], box[3] - box[1]), MIN_MARGIN)
    left, top = max(math.floor(box[0] - margin), 0), max(math.floor(box[1] - margin), 0)
    right = min(math.ceil(box[2] + margin), math.floor(level_width))
    bottom = min(math.ceil(box[3] + margin), math.floor(level_height))
    width, height = max(right - left, 1), max(bottom - top, 1)
    pixels = reader.read_region(round(left * downsample), round(top * downsample), plan.level, width, height)
    factor = CELL / max(width, height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    crop = Image.fromarray(pixels).resize(size, Image.LANCZOS)
    outline = [
        (box[0] - left) * factor,
        (box[1] - top) * factor,
        (box[2] - left) * factor,
        (box[3] - top) * factor,
    ]
    ImageDraw.Draw(crop).rectangle(outline, outline=color, width=2)
    return crop


def _text(
    draw: ImageDraw.ImageDraw, text: str, corner: tuple[int, int], width: int, color: tuple[int, int, int]
) -> None:
    """`text` at `corner`, its font shrunk until it fits `width` px."""
    size = FONT_SIZE
    font = ImageFont.load_default(size=size)
    while size > 7 and draw.textlength(text, font=font) > width:
        size -= 1
        font = ImageFont.load_default(size=size)
    left, top, _, _ = draw.textbbox((0, 0), text, font=font)
    draw.text((corner[0] - left, corner[1] - top), text, fill=color, font=font)
