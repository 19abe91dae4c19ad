"""Every result writer: overlay PNG, detections JSON and CSV, QuPath GeoJSON, COCO results, counts.

Each takes `Detections` (boxes in original-image pixels, xyxy) and writes atomically: a temporary
file beside the target replaces it only once complete, so a reader never sees half a file.
Colours are fixed per label-map id (matplotlib's tab10: id 1 is tab10's first colour), so a class
has the same colour in every overlay, in the GeoJSON and in the web viewer.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from cervical_tf import boxes
from cervical_tf.inference.detections import Detections
from tfrecords_gen.atomic import atomic_path

CSV_COLUMNS = ("image", "width", "height", "class", "class_id", "score", "xmin", "ymin", "xmax", "ymax")
Color = tuple[int, int, int]
WARNING_RED: Color = (200, 0, 0)  # the overlay's strip for a model card's warning
# The CSV and GeoJSON writers hold this many rows or features at a time: a whole slide's hundred
# thousand cells built at once took ~2.4 KB each (bench/slide_throughput.py).
CHUNK = 4096


def class_color(class_id: int) -> Color:
    """The RGB colour (0-255) of a label-map id: tab10, cycling after 10 classes."""
    red, green, blue = matplotlib.colormaps["tab10"].colors[(class_id - 1) % 10]
    return round(red * 255), round(green * 255), round(blue * 255)


def palette(labels: dict[int, str]) -> dict[int, Color]:
    """Label-map id -> RGB colour for every class of a label map."""
    return {class_id: class_color(class_id) for class_id in labels}


def write_overlay(
    path: Path,
    image_array: np.ndarray,
    detections: Detections,
    class_colors: dict[int, Color] | None = None,
    *,
    model_summary: str | None = None,
    model_warning: str | None = None,
) -> None:
    """PNG of `image_array` (uint8 [H, W, 3]) with a box and score per detection and a legend of counts.

    `model_warning` is drawn as a red strip across the bottom (the overlay keeps the image's size);
    `model_summary` goes into the PNG's Description text chunk.
    """
    canvas = Image.fromarray(render_overlay(image_array, detections, class_colors))
    if model_warning:
        _banner(ImageDraw.Draw(canvas), canvas.size, model_warning.upper())
    text = PngInfo()
    if model_summary:
        text.add_text("Description", f"cervical-tf model: {model_summary}")
    with atomic_path(Path(path)) as temporary:
        canvas.save(temporary, format="PNG", pnginfo=text)


def render_overlay(
    image_array: np.ndarray,
    detections: Detections,
    class_colors: dict[int, Color] | None = None,
    captions: Sequence[str] | None = None,
) -> np.ndarray:
    """uint8 [H, W, 3]: the image with a box per detection, its caption (default: the score), a legend.

    `class_colors`: label-map id -> RGB (see `palette`); ids missing from it get `class_color(id)`.
    Line width and text size grow with the image so boxes stay visible on large fields.
    """
    colors = class_colors or {}
    captions = captions if captions is not None else [f"{score:.2f}" for score in detections.scores]
    canvas = Image.fromarray(np.asarray(image_array, dtype=np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    side = min(canvas.size)
    line_width = max(2, round(side / 300))
    font = ImageFont.load_default(size=max(10, round(side / 50)))
    for box, caption, class_id in zip(detections.boxes_px, captions, detections.class_ids, strict=True):
        color = colors.get(int(class_id), class_color(int(class_id)))
        xmin, ymin, xmax, ymax = (float(value) for value in box)
        draw.rectangle((xmin, ymin, xmax, ymax), outline=color, width=line_width)
        _label(draw, (xmin, ymin), caption, color, font)
    _legend(draw, detections, colors, font)
    return np.asarray(canvas)


def write_detections_json(
    path: Path, detections_list: Sequence[Detections], model_warning: str | None = None
) -> None:
    """`[{"image", "width", "height", "detections": [{"box": [xmin, ymin, xmax, ymax], "class",
    "class_id", "score"}]}]`, one entry per image in order; boxes in original pixels. With
    `model_warning` (the model card's), every entry carries it as "model_warning"."""
    warning = {"model_warning": model_warning} if model_warning else {}
    entries = [image_entry(detections) | warning for detections in detections_list]
    _write_text(Path(path), json.dumps(entries, indent=1))


def image_entry(detections: Detections) -> dict:
    """One image's entry of detections.json (also the core of the server's /v1/detect answer)."""
    return {
        "image": detections.image,
        "width": detections.width,
        "height": detections.height,
        "detections": [
            {"box": _box(box), "class": label, "class_id": int(class_id), "score": _score(score)}
            for box, label, class_id, score in _rows(detections)
        ],
    }


def write_detections_csv(path: Path, detections_list: Sequence[Detections]) -> None:
    """One row per detection: image,width,height,class,class_id,score,xmin,ymin,xmax,ymax (pixels).

    Images without detections have no row (detections.json lists every image). Written CHUNK rows
    at a time, so memory does not grow with a slide's detections."""
    rows = (
        (
            detections.image,
            detections.width,
            detections.height,
            label,
            int(class_id),
            _score(score),
            *_box(box),
        )
        for detections in detections_list
        for box, label, class_id, score in _rows(detections)
    )
    with atomic_path(Path(path)) as temporary, temporary.open("w", encoding="utf-8", newline="") as handle:
        for index, chunk in enumerate(_chunks(rows)):
            pd.DataFrame(chunk, columns=list(CSV_COLUMNS)).to_csv(handle, index=False, header=index == 0)


def write_geojson(path: Path, detections_list: Sequence[Detections], model_card: dict | None = None) -> None:
    """A QuPath-importable FeatureCollection, one Feature per detection (see `geojson_collection`):
    `json.dumps` of it, byte for byte, written CHUNK features at a time."""
    with atomic_path(Path(path)) as temporary, temporary.open("w", encoding="utf-8") as handle:
        handle.write('{"type": "FeatureCollection", "features": [')
        for index, chunk in enumerate(_chunks(_features(detections_list))):
            handle.write((", " if index else "") + ", ".join(json.dumps(feature) for feature in chunk))
        handle.write("]")
        if model_card is not None:
            handle.write(', "model_card": ' + json.dumps(model_card))
        handle.write("}\n")


def geojson_collection(detections_list: Sequence[Detections], model_card: dict | None = None) -> dict:
    """A QuPath-importable FeatureCollection, one Feature per detection (the file and the server's).

    Geometry: the box as a closed Polygon ring (5 points) in pixel coordinates. Properties:
    `objectType` "detection", `classification` {name, color [r, g, b]}, `measurements` {score},
    and `image`, the image the detection belongs to: all images share one collection, so to
    import one image's detections into QuPath, keep the features whose `image` is that image.
    `model_card` (the model card's JSON) is added as the collection's "model_card" member (a
    foreign member, RFC 7946 section 6.1: GeoJSON readers ignore it).
    """
    collection = {"type": "FeatureCollection", "features": list(_features(detections_list))}
    return collection | ({"model_card": model_card} if model_card is not None else {})


def _features(detections_list: Iterable[Detections]) -> Iterator[dict]:
    return (
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [_ring(box)]},
            "properties": {
                "objectType": "detection",
                "classification": {"name": label, "color": list(class_color(int(class_id)))},
                "measurements": {"score": _score(score)},
                "image": detections.image,
            },
        }
        for detections in detections_list
        for box, label, class_id, score in _rows(detections)
    )


def _chunks(items: Iterator) -> Iterator[list]:
    """Lists of up to CHUNK items; one empty list when there are none (the CSV still gets its header)."""
    chunk = list(itertools.islice(items, CHUNK))
    yield chunk
    while chunk := list(itertools.islice(items, CHUNK)):
        yield chunk


def write_coco_results(
    path: Path,
    detections_list: Sequence[Detections],
    image_ids: dict[str, int],
    category_ids: dict[int, int] | None = None,
) -> None:
    """COCO detection results `[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`.

    `image_ids`: Detections.image -> COCO image id; `category_ids`: label-map id -> COCO category
    id (None: the label-map ids themselves)."""
    results = []
    for detections in detections_list:
        if detections.image not in image_ids:
            raise ValueError(f"{detections.image}: no COCO image id given for this image")
        bboxes = boxes.xyxy_to_xywh(detections.boxes_px)
        for bbox, class_id, score in zip(bboxes, detections.class_ids, detections.scores, strict=True):
            results.append(
                {
                    "image_id": image_ids[detections.image],
                    "category_id": int(class_id) if category_ids is None else category_ids[int(class_id)],
                    "bbox": _box(bbox),
                    "score": _score(score),
                }
            )
    _write_text(Path(path), json.dumps(results))


def counts_table(detections_list: Sequence[Detections], labels: dict[int, str]) -> str:
    """A text table: one row per image, one column per class (label-map order), a `total` row."""
    names = [labels[class_id] for class_id in sorted(labels)]
    counts = pd.DataFrame(
        [[_count(detections, class_id) for class_id in sorted(labels)] for detections in detections_list],
        index=pd.Index([detections.image for detections in detections_list], name="image"),
        columns=names,
        dtype=int,
    )
    counts.loc["total"] = counts.sum(axis=0)
    return counts.to_string()


def _count(detections: Detections, class_id: int) -> int:
    return int(np.count_nonzero(detections.class_ids == class_id))


def _rows(detections: Detections) -> Iterator[tuple[np.ndarray, str, np.integer, np.floating]]:
    """(box_px [4], label, class_id, score) per detection."""
    return zip(detections.boxes_px, detections.labels, detections.class_ids, detections.scores, strict=True)


def _box(box: np.ndarray) -> list[float]:
    return [round(float(value), 2) for value in box]


def _score(score: float) -> float:
    return round(float(score), 5)


def _ring(box: np.ndarray) -> list[list[float]]:
    xmin, ymin, xmax, ymax = _box(box)
    return [[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax], [xmin, ymin]]


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")


def _label(
    draw: ImageDraw.ImageDraw,
    corner: tuple[float, float],
    text: str,
    color: Color,
    font: ImageFont.FreeTypeFont,
) -> None:
    """`text` on a filled tag in `color` just above `corner` (inside the box at the top border)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = corner
    y = y - (bottom - top) - 4 if y - (bottom - top) - 4 >= 0 else y
    draw.rectangle((x, y, x + right - left + 4, y + bottom - top + 4), fill=color)
    draw.text((x + 2 - left, y + 2 - top), text, fill=_text_color(color), font=font)


def _legend(
    draw: ImageDraw.ImageDraw, detections: Detections, colors: dict[int, Color], font: ImageFont.FreeTypeFont
) -> None:
    """Top-left legend: a colour swatch, the class name and its count per detected class."""
    entries = sorted(set(zip(detections.class_ids.tolist(), detections.labels, strict=True)))
    lines: list[tuple[Color | None, str]] = [
        (colors.get(class_id, class_color(class_id)), f"{label}: {_count(detections, class_id)}")
        for class_id, label in entries
    ] or [(None, "no detections")]
    left, top, _, bottom = draw.textbbox((0, 0), "Ag", font=font)
    line_height = bottom - top + 6
    swatch = line_height - 6
    width = max(draw.textlength(text, font=font) for _, text in lines) + swatch + 16
    draw.rectangle((0, 0, width, line_height * len(lines) + 6), fill=(255, 255, 255), outline=(0, 0, 0))
    for row, (color, text) in enumerate(lines):
        y = 6 + row * line_height
        if color is not None:
            draw.rectangle((6, y, 6 + swatch, y + swatch), fill=color)
        draw.text((swatch + 12 - left, y - top), text, fill=(0, 0, 0), font=font)


def _banner(draw: ImageDraw.ImageDraw, size: tuple[int, int], text: str) -> None:
    """`text` in white on a red strip across the bottom of an image of `size`, shrunk to fit its width."""
    width, height = size
    font_size = max(10, round(min(size) / 30))
    font = ImageFont.load_default(size=font_size)
    while font_size > 6 and draw.textlength(text, font=font) > width - 12:
        font_size -= 1
        font = ImageFont.load_default(size=font_size)
    left, top, _, bottom = draw.textbbox((0, 0), text, font=font)
    strip = bottom - top + 12
    draw.rectangle((0, height - strip, width, height), fill=WARNING_RED)
    draw.text((6 - left, height - strip + 6 - top), text, fill=(255, 255, 255), font=font)


def _text_color(background: Color) -> Color:
    """Black on light tags, white on dark ones."""
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else (255, 255, 255)
