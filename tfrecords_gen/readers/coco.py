"""COCO object detection JSON: `images`, `annotations` (bbox `[x, y, width, height]` in pixels), `categories`.

`--input` is the JSON file. `file_name` is looked up in --images when given, else beside the JSON,
else in `<json folder>/images`. Boxes become `x_min = x`, `x_max = x + width` (COCO boxes are
already pixel edges); `iscrowd` becomes `is_crowd`. Every listed image is emitted, with
`boxes=()` when no annotation refers to it. The group is the first of the image fields `group`,
`slide`, `slide_id`, `patient`, `patient_id` that is present. JSON has no useful line numbers:
origins name the file only and messages name the entry (`annotations[3]`).
"""

from __future__ import annotations

import json
from collections.abc import Container, Hashable
from dataclasses import replace
from pathlib import Path

from cervical_tf.boxes import xywh_to_xyxy
from tfrecords_gen.readers.common import (
    ItemError,
    image_folders,
    json_number,
    load_json,
    require_file,
    resolve_image,
    sort_images,
    used_image_dirs,
)
from tfrecords_gen.records import Kind, Origin, ParsedBox, ParsedImage, Problem, ReaderInput, ReadResult

GROUP_FIELDS = ("group", "slide", "slide_id", "patient", "patient_id")
BBOX_FIELDS = ("x", "y", "width", "height")


def read(source: ReaderInput) -> ReadResult:
    """Every image of the JSON with its boxes in pixels."""
    json_path = require_file(source.input_path, "a COCO .json file")
    origin = Origin(json_path)
    data, problem = load_json(json_path)
    if problem is not None:
        return ReadResult([], [problem])
    try:
        image_entries, annotations, category_entries = _sections(data)
    except ItemError as error:
        return ReadResult([], [error.problem(origin)])

    problems: list[Problem] = []
    categories: dict[Hashable, str] = {}
    for index, entry in enumerate(category_entries):
        try:
            category_id, name = _parse_category(entry)
        except ItemError as error:
            problems.append(error.problem(origin, f"categories[{index}]"))
            continue
        categories[category_id] = name

    folders = image_folders(source.images_dir, [json_path.parent, json_path.parent / "images"])
    images: dict[Hashable, ParsedImage] = {}
    boxes: dict[Hashable, list[ParsedBox]] = {}
    for index, entry in enumerate(image_entries):
        try:
            image_id, image = _parse_image(entry, folders, origin, images)
        except ItemError as error:
            problems.append(error.problem(origin, f"images[{index}]"))
            continue
        images[image_id] = image
        boxes[image_id] = []

    for index, annotation in enumerate(annotations):
        try:
            image_id, box = _parse_annotation(annotation, categories, images.keys(), origin)
        except ItemError as error:
            problems.append(error.problem(origin, f"annotations[{index}]"))
            continue
        boxes[image_id].append(box)

    parsed = [replace(image, boxes=tuple(boxes[image_id])) for image_id, image in images.items()]
    return ReadResult(sort_images(parsed), problems, used_image_dirs(source.images_dir, parsed))


def _sections(data: object) -> tuple[list, list, list]:
    """The images, annotations and categories lists (the last two may be absent: no objects)."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ItemError('expected a COCO object with an "images" list, "annotations" and "categories"')
    sections = [data["images"]]
    for name in ("annotations", "categories"):
        section = data.get(name, [])
        if not isinstance(section, list):
            raise ItemError(f'expected "{name}" to be a list, got {type(section).__name__}')
        sections.append(section)
    return sections[0], sections[1], sections[2]


def _parse_category(entry: object) -> tuple[Hashable, str]:
    if not isinstance(entry, dict) or not _is_identifier(entry.get("id")):
        raise ItemError(f"expected a category with an id and a name, got {json.dumps(entry)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ItemError(f"expected a category name, got {json.dumps(name)}")
    return entry["id"], name.strip()


def _parse_image(
    entry: object, folders: list[Path], origin: Origin, image_ids: Container[Hashable]
) -> tuple[Hashable, ParsedImage]:
    """The image id and a ParsedImage (without boxes yet) of one `images` entry."""
    if not isinstance(entry, dict) or not _is_identifier(entry.get("id")):
        raise ItemError(f"expected an image with an id, got {json.dumps(entry)[:200]}")
    image_id = entry["id"]
    if image_id in image_ids:
        raise ItemError(f"expected a unique image id, got {json.dumps(image_id)} a second time")
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name.strip():
        raise ItemError(f"expected a file_name, got {json.dumps(file_name)}")
    width, height = (_optional_size(entry.get(name), name) for name in ("width", "height"))
    group = next((entry[name] for name in GROUP_FIELDS if entry.get(name) is not None), None)
    return image_id, ParsedImage(
        image_path=resolve_image(file_name.strip(), folders),
        boxes=(),
        origin=origin,
        width=width,
        height=height,
        group=None if group is None else str(group),
    )


def _optional_size(value: object, name: str) -> int | None:
    if value is None:
        return None
    number = json_number(value, name)
    if not number.is_integer():
        raise ItemError(f"expected a whole number for {name}, got {json.dumps(value)}")
    return int(number)


def _parse_annotation(
    annotation: object,
    categories: dict[Hashable, str],
    image_ids: Container[Hashable],
    origin: Origin,
) -> tuple[Hashable, ParsedBox]:
    """The image id an annotation belongs to and its box in pixel corners."""
    if not isinstance(annotation, dict):
        raise ItemError(f"expected an annotation object, got {json.dumps(annotation)[:200]}")
    image_id = annotation.get("image_id")
    if not _is_identifier(image_id) or image_id not in image_ids:
        raise ItemError(f'expected the image_id of an entry of "images", got {json.dumps(image_id)}')
    category_id = annotation.get("category_id")
    if not _is_identifier(category_id) or category_id not in categories:
        message = f'category_id {json.dumps(category_id)} is not among the "categories" ids'
        raise ItemError(message, Kind.UNKNOWN_CLASS)
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise ItemError(f"expected bbox [x, y, width, height], got {json.dumps(bbox)}")
    x, y, width, height = (
        json_number(value, f"bbox {name}") for value, name in zip(bbox, BBOX_FIELDS, strict=True)
    )
    crowd = annotation.get("iscrowd", 0)
    if crowd not in (0, 1):
        raise ItemError(f"expected iscrowd 0 or 1, got {json.dumps(crowd)}")
    x_min, y_min, x_max, y_max = xywh_to_xyxy([x, y, width, height])[0].tolist()
    box = ParsedBox(
        label=categories[category_id],
        x_min=x_min,
        y_min=y_min,
        x_max=x_max,
        y_max=y_max,
        origin=origin,
        is_crowd=bool(crowd),
    )
    return image_id, box


def _is_identifier(value: object) -> bool:
    """COCO ids are ints; strings are accepted too (some exporters write them); never bool or null."""
    return isinstance(value, int | str) and not isinstance(value, bool)
