"""YOLO txt labels: one `class x_center y_center width height` line per object, normalized to 0..1.

`--input` is the data set folder, in either layout:
- images with their `.txt` beside them directly in the folder (LabelImg's YOLO mode);
- images under a folder named `images` and labels under the sibling `labels`, mirrored
  (`images/train/a.png` <-> `labels/train/a.txt`, `train/images/a.png` <-> `train/labels/a.txt`),
  the rule Ultralytics uses.
Images elsewhere are reported as UNRECOGNISED_FOLDER; label files in `labels` folders without an
image as MISSING_IMAGE. Every image is emitted, with `boxes=()` when it has no label file.

Class names come from the first of `classes.txt`, `labels/classes.txt`, `data.yaml`, `data.yml` in
the input folder (`names:` as a list or an `{id: name}` mapping). The image size, needed to turn
normalized values into pixels, is read from the image header:
`x_min = (x_center - width / 2) * image_width`, and likewise for the other corners.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from cervical_tf.errors import DataError
from tfrecords_gen.image_files import is_image_file, read_size
from tfrecords_gen.readers.common import ItemError, parse_float, parse_int, require_folder, sort_images
from tfrecords_gen.records import (
    Kind,
    Origin,
    ParsedBox,
    ParsedImage,
    Problem,
    ReaderInput,
    ReadResult,
)

IMAGES_FOLDER = "images"
LABELS_FOLDER = "labels"
CLASS_FILES = ("classes.txt", "labels/classes.txt", "data.yaml", "data.yml")
FIELDS = ("class", "x_center", "y_center", "width", "height")
EXPECTED_INPUT = "a YOLO data set folder: images with .txt labels beside them, or images/ and labels/ folders"
UNRECOGNISED_MESSAGE = (
    f"images neither at the top nor in an {IMAGES_FOLDER}/ folder; skipped (expected {EXPECTED_INPUT})"
)


@dataclass(frozen=True)
class _ClassNames:
    """Class names by index, and the file they came from (for messages)."""

    names: dict[int, str]
    path: Path


def read(source: ReaderInput) -> ReadResult:
    """Every image of the data set, boxes denormalized to pixels with the image's real size."""
    root = require_folder(source.input_path, EXPECTED_INPUT)
    classes = _read_class_names(root)
    pairs, label_files, unrecognised = _layout(root)
    if not pairs:
        raise DataError(
            f"{root}: no images at its top or in an {IMAGES_FOLDER}/ folder; expected {EXPECTED_INPUT}"
        )
    problems = [
        Problem(Origin(folder), Kind.UNRECOGNISED_FOLDER, UNRECOGNISED_MESSAGE, fatal=False)
        for folder in unrecognised
    ]
    for orphan in sorted(label_files - {label for _, label in pairs}):
        message = f"no image for this label file; expected {orphan.stem}.<image suffix> in the images folder"
        problems.append(Problem(Origin(orphan), Kind.MISSING_IMAGE, message))

    images = []
    for image_path, label_path in pairs:
        image = _read_pair(image_path, label_path, classes, problems)
        if image is not None:
            images.append(image)
    return ReadResult(sort_images(images), problems)


def _read_class_names(root: Path) -> _ClassNames:
    """Names from the first class file found; DataError naming every place looked at when none is."""
    for relative in CLASS_FILES:
        path = root / relative
        if path.is_file():
            names = _names_from_text(path) if path.suffix == ".txt" else _names_from_yaml(path)
            return _ClassNames(names, path)
    raise DataError(
        f"{root}: no class names; looked for {', '.join(str(root / name) for name in CLASS_FILES)}"
    )


def _names_from_text(path: Path) -> dict[int, str]:
    """classes.txt: the name of class i on line i + 1; trailing blank lines are ignored."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read class names: {error}") from error
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    for number, name in enumerate(names, start=1):
        if not name:
            raise DataError(f"{path}:{number}: expected a class name, got an empty line")
    if not names:
        raise DataError(f"{path}: expected one class name per line, got none")
    return dict(enumerate(names))


def _names_from_yaml(path: Path) -> dict[int, str]:
    """data.yaml `names:`, a list (index = position) or a mapping from index to name."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DataError(f"{path}: cannot read class names: {error}") from error
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, list) and names:
        return {index: str(name) for index, name in enumerate(names)}
    if isinstance(names, dict) and names:
        try:
            return {int(index): str(name) for index, name in names.items()}
        except (TypeError, ValueError):
            pass
    raise DataError(f"{path}: expected names: as a list or an {{index: name}} mapping, got {names!r}")


def _layout(root: Path) -> tuple[list[tuple[Path, Path]], set[Path], list[Path]]:
    """(image, expected label file) pairs, the label files under `labels` folders, unrecognised folders."""
    pairs: list[tuple[Path, Path]] = []
    label_files: set[Path] = set()
    unrecognised: list[Path] = []
    for folder_name, subfolders, files in os.walk(root):
        subfolders.sort()
        folder = Path(folder_name)
        parts = folder.relative_to(root).parts
        if LABELS_FOLDER in parts:
            label_files |= {
                folder / name for name in files if name.endswith(".txt") and name != "classes.txt"
            }
        images = sorted(folder / name for name in files if is_image_file(folder / name))
        if not images:
            continue
        if IMAGES_FOLDER in parts:
            cut = len(parts) - 1 - parts[::-1].index(IMAGES_FOLDER)
            label_folder = root.joinpath(*parts[:cut], LABELS_FOLDER, *parts[cut + 1 :])
        elif folder == root:
            label_folder = root
        else:
            unrecognised.append(folder)
            continue
        pairs += [(image, label_folder / f"{image.stem}.txt") for image in images]
    return pairs, label_files, unrecognised


def _read_pair(
    image_path: Path, label_path: Path, classes: _ClassNames, problems: list[Problem]
) -> ParsedImage | None:
    """The image with its boxes; None when its label file or (then needed) its size cannot be read."""
    if not label_path.is_file():
        return ParsedImage(image_path, (), Origin(image_path))
    try:
        lines = label_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem(Origin(label_path), Kind.PARSE_ERROR, f"cannot read label file: {error}"))
        return None
    try:
        size = read_size(image_path)
    except DataError as error:
        message = (
            f"cannot read the image size needed to convert normalized YOLO boxes: {error.__cause__ or error}"
        )
        problems.append(Problem(Origin(image_path), Kind.UNREADABLE_IMAGE, message))
        return None

    boxes = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        origin = Origin(label_path, number)
        try:
            boxes.append(_parse_line(line, size, classes, origin))
        except ItemError as error:
            problems.append(error.problem(origin))
    return ParsedImage(image_path, tuple(boxes), Origin(label_path))


def _parse_line(line: str, size: tuple[int, int], classes: _ClassNames, origin: Origin) -> ParsedBox:
    values = line.split()
    if len(values) != len(FIELDS):
        extra = " (segmentation polygons are not supported)" if len(values) > len(FIELDS) else ""
        raise ItemError(f'expected "{" ".join(FIELDS)}", got {len(values)} values{extra}: "{line.strip()}"')
    class_index = parse_int(values[0], "class")
    x_center, y_center, width, height = (
        parse_float(text, name) for text, name in zip(values[1:], FIELDS[1:], strict=True)
    )
    if class_index not in classes.names:
        message = f"class index {class_index} is not defined in {classes.path} ({len(classes.names)} classes)"
        raise ItemError(message, Kind.UNKNOWN_CLASS)
    image_width, image_height = size
    return ParsedBox(
        label=classes.names[class_index],
        x_min=(x_center - width / 2) * image_width,
        y_min=(y_center - height / 2) * image_height,
        x_max=(x_center + width / 2) * image_width,
        y_max=(y_center + height / 2) * image_height,
        origin=origin,
    )
