"""The CRIC Cervix release CSV: one row per classified cell, its nucleus centre point in pixels.

Columns `image_id,image_filename,image_doi,cell_id,bethesda_system,nucleus_x,nucleus_y`
(`image_filename`, `bethesda_system`, `nucleus_x`, `nucleus_y` are the ones used). CRIC gives
points, not boxes: each cell becomes a square of side `box_size` pixels centred on the point,
`x_min = nucleus_x - box_size / 2`, `x_max = nucleus_x + box_size / 2` (likewise for y), and the
image is marked `clip_to_image` so that validate clips squares crossing the image edge without a
report. The label is `bethesda_system` as written. Images are looked up in --images when given,
else in `<csv folder>/images`, else beside the CSV. `image_id` names an image, not a patient, so
there is no group.
"""

from __future__ import annotations

import math

from cervical_tf.errors import DataError
from tfrecords_gen.readers.common import (
    CsvRow,
    image_folders,
    read_csv_rows,
    require_file,
    resolve_image,
    sort_images,
    used_image_dirs,
)
from tfrecords_gen.records import Origin, ParsedBox, ParsedImage, ReaderInput, ReadResult

REQUIRED_COLUMNS = ("image_filename", "bethesda_system", "nucleus_x", "nucleus_y")


def read(source: ReaderInput) -> ReadResult:
    """One ParsedImage per image_filename with a `box_size` square per cell."""
    csv_path = require_file(source.input_path, f"a CRIC CSV with the columns {','.join(REQUIRED_COLUMNS)}")
    if not (math.isfinite(source.box_size) and source.box_size > 0):
        raise DataError(f"expected a box size above 0 pixels, got {source.box_size}")
    half = source.box_size / 2
    boxes: dict[str, list[ParsedBox]] = {}

    def add_row(row: CsvRow) -> None:
        filename, label = row.text("image_filename"), row.text("bethesda_system")
        x, y = row.number("nucleus_x"), row.number("nucleus_y")
        box = ParsedBox(label, x - half, y - half, x + half, y + half, Origin(csv_path, row.line))
        boxes.setdefault(filename, []).append(box)

    problems = read_csv_rows(csv_path, REQUIRED_COLUMNS, add_row)
    folders = image_folders(source.images_dir, [csv_path.parent / "images", csv_path.parent])
    images = [
        ParsedImage(
            image_path=resolve_image(filename, folders),
            boxes=tuple(cells),
            origin=cells[0].origin,
            clip_to_image=True,
        )
        for filename, cells in boxes.items()
    ]
    return ReadResult(sort_images(images), problems, used_image_dirs(source.images_dir, images))
