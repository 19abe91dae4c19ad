"""The TensorFlow Object Detection API tutorial CSV: `filename,width,height,class,xmin,ymin,xmax,ymax`.

`--input` is the CSV file; an optional `group` column gives the leakage key. Rows with the same
filename form one image; its width, height and group must agree on every row. Images are looked
up in --images when given, else beside the CSV, else in `<csv folder>/images`.

Coordinates: taken as pixel edges exactly as written (`x_min = xmin`, `x_max = xmax`), which is
what the tutorial's generate_tfrecord.py assumes when it divides them by the width. For data
written as 0-based inclusive pixels (the ISBI nuclei CSV) this makes each box one pixel short on
the right and bottom; no conversion is attempted because a CSV does not say which it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tfrecords_gen.readers.common import (
    CsvRow,
    ItemError,
    image_folders,
    read_csv_rows,
    require_file,
    resolve_image,
    sort_images,
    used_image_dirs,
)
from tfrecords_gen.records import Origin, ParsedBox, ParsedImage, ReaderInput, ReadResult

COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")


@dataclass
class _ImageRows:
    """The image-level values of an image's first row and the boxes of all its rows so far."""

    first_line: int
    width: int | None
    height: int | None
    group: str | None
    boxes: list[ParsedBox] = field(default_factory=list)


def read(source: ReaderInput) -> ReadResult:
    """One ParsedImage per distinct filename, boxes in pixels as written (see the module docstring)."""
    csv_path = require_file(source.input_path, f"a CSV file with the columns {','.join(COLUMNS)}")
    by_filename: dict[str, _ImageRows] = {}

    def add_row(row: CsvRow) -> None:
        filename, image_values, box = _parse_row(row, Origin(csv_path, row.line))
        image = by_filename.setdefault(filename, _ImageRows(row.line, *image_values))
        declared = (image.width, image.height, image.group)
        if image_values != declared:
            raise ItemError(
                f"expected width, height, group {_show(declared)} as on line {image.first_line}, "
                f"got {_show(image_values)}"
            )
        image.boxes.append(box)

    problems = read_csv_rows(csv_path, COLUMNS, add_row)
    folders = image_folders(source.images_dir, [csv_path.parent, csv_path.parent / "images"])
    images = [
        ParsedImage(
            image_path=resolve_image(filename, folders),
            boxes=tuple(image.boxes),
            origin=Origin(csv_path, image.first_line),
            width=image.width,
            height=image.height,
            group=image.group,
        )
        for filename, image in by_filename.items()
    ]
    return ReadResult(sort_images(images), problems, used_image_dirs(source.images_dir, images))


def _parse_row(
    row: CsvRow, origin: Origin
) -> tuple[str, tuple[int | None, int | None, str | None], ParsedBox]:
    """(filename, (width, height, group), box) of one row."""
    image_values = (row.optional_int("width"), row.optional_int("height"), row.values.get("group") or None)
    box = ParsedBox(
        label=row.text("class"),
        x_min=row.number("xmin"),
        y_min=row.number("ymin"),
        x_max=row.number("xmax"),
        y_max=row.number("ymax"),
        origin=origin,
    )
    return row.text("filename"), image_values, box


def _show(values: tuple[int | None, int | None, str | None]) -> str:
    return ",".join("" if value is None else str(value) for value in values)
