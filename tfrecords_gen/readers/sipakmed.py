"""SIPaKMeD in its native layout (see SIPAKMED.md): class folders of cluster images and .dat outlines.

`--input` is the data set root. A folder's class is the SIPaKMeD class name found in its name, or
else in the nearest parent's name (case and punctuation ignored), so `im_Dyskeratotic/`,
`im_Dyskeratotic/im_Dyskeratotic/` and `abnormal_Dyskeratotic/` all hold class `Dyskeratotic`.
`CROPPED/` folders (isolated-cell crops) are ignored. In a class folder, cluster image `NNN.bmp`
(any image suffix) owns the boundary files `NNN_cytMM.dat` and `NNN_nucMM.dat`; cell MM's box is
the min/max of its cytoplasm polygon, or of its nucleus polygon with `sipakmed_region="nucleus"`,
in pixels of the cluster image (vertex coordinates taken as written). Every image of a class folder
is emitted, with `boxes=()` when it has no boundary file; boundary files without their image still
give an image at the expected `NNN.bmp` path so that validate reports it missing.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

from cervical_tf.errors import DataError
from tfrecords_gen.image_files import find_images, is_image_file
from tfrecords_gen.readers.common import ItemError, extent, require_folder, sort_images
from tfrecords_gen.records import (
    Kind,
    Origin,
    ParsedBox,
    ParsedImage,
    Problem,
    ReaderInput,
    ReadResult,
)

CLASS_NAMES = ("Superficial-Intermediate", "Parabasal", "Koilocytotic", "Dyskeratotic", "Metaplastic")
REGION_CODES = {"cytoplasm": "cyt", "nucleus": "nuc"}
IGNORED_FOLDER = "cropped"
BOUNDARY_FILE = re.compile(r"(?P<cluster>\d+)_(?P<region>cyt|nuc)(?P<cell>\d+)\.dat", re.IGNORECASE)
MINIMUM_VERTICES = 3


def read(source: ReaderInput) -> ReadResult:
    """Every cluster image of every class folder under `source.input_path`, boxes in pixels."""
    root = require_folder(source.input_path, "the SIPaKMeD folder holding the im_<Class> folders")
    region = REGION_CODES.get(source.sipakmed_region)
    if region is None:
        raise DataError(f'expected sipakmed_region "cytoplasm" or "nucleus", got "{source.sipakmed_region}"')
    images: list[ParsedImage] = []
    problems: list[Problem] = []
    class_folders = 0
    for folder in _data_folders(root):
        labels = _class_of(folder, root)
        if len(labels) != 1:
            problems.append(_unrecognised(folder, labels))
            continue
        class_folders += 1
        images += _read_class_folder(folder, labels[0], region, problems)
    if class_folders == 0:
        raise DataError(
            f"{root}: no SIPaKMeD class folder with images or .dat files; expected folder names containing "
            f"one of {', '.join(CLASS_NAMES)} (e.g. im_Parabasal)"
        )
    return ReadResult(images=sort_images(images), problems=problems)


def _data_folders(root: Path) -> list[Path]:
    """Folders under `root` (itself included) that directly hold images or .dat files, minus CROPPED/."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if name.lower() != IGNORED_FOLDER)
        if any(name.lower().endswith(".dat") or is_image_file(Path(folder, name)) for name in files):
            found.append(Path(folder))
    return sorted(found)


def _class_of(folder: Path, root: Path) -> list[str]:
    """The class names in the nearest folder name that has any: `folder`, then its parents up to `root`."""
    current = folder
    while True:
        matches = [label for label in CLASS_NAMES if _letters(label) in _letters(current.name)]
        if matches or current == root:
            return matches
        current = current.parent


def _letters(name: str) -> str:
    """`name` lower-cased with everything but letters dropped, so that `Superficial_Intermediate` matches."""
    return re.sub(r"[^a-z]", "", name.lower())


def _unrecognised(folder: Path, labels: list[str]) -> Problem:
    if labels:
        message = f"folder name matches several SIPaKMeD classes ({', '.join(labels)}); its files are skipped"
    else:
        message = (
            f"folder name holds none of the SIPaKMeD classes {', '.join(CLASS_NAMES)}; its files are skipped"
        )
    return Problem(Origin(folder), Kind.UNRECOGNISED_FOLDER, message, fatal=False)


def _read_class_folder(folder: Path, label: str, region: str, problems: list[Problem]) -> list[ParsedImage]:
    """Every image of the folder, plus the expected image of boundary files whose image is missing."""
    boundaries: dict[str, list[tuple[int, str, Path]]] = defaultdict(list)
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() != ".dat" or not path.is_file():
            continue
        match = BOUNDARY_FILE.fullmatch(path.name)
        if match is None:
            message = "expected a boundary file named NNN_cytMM.dat or NNN_nucMM.dat; file skipped"
            problems.append(Problem(Origin(path), Kind.PARSE_ERROR, message, fatal=False))
            continue
        boundaries[match["cluster"]].append((int(match["cell"]), match["region"].lower(), path))

    # pop: when two images share a stem (001.bmp, 001.png), the first in sorted order gets the cells
    parsed = [
        _cluster_image(image, label, region, boundaries.pop(image.stem, []), problems)
        for image in find_images(folder)
    ]
    for cluster, cells in boundaries.items():
        parsed.append(_cluster_image(folder / f"{cluster}.bmp", label, region, cells, problems))
    return parsed


def _cluster_image(
    image_path: Path, label: str, region: str, cells: list[tuple[int, str, Path]], problems: list[Problem]
) -> ParsedImage:
    """A cluster image with one box per readable boundary file of the chosen region, in cell order."""
    boxes = []
    for _, cell_region, path in sorted(cells):
        if cell_region != region:
            continue
        vertices = _read_polygon(path, problems)
        if vertices is not None:
            boxes.append(ParsedBox(label, *extent(vertices), origin=Origin(path)))
    origin = Origin(min(cells)[2] if cells else image_path)
    return ParsedImage(image_path, tuple(boxes), origin)


def _read_polygon(path: Path, problems: list[Problem]) -> list[tuple[float, float]] | None:
    """The vertices of a .dat outline, or None (cell left out) after adding what is wrong to `problems`."""
    try:
        text = path.read_text(encoding="utf-8")  # universal newlines: CRLF reads as LF
    except (OSError, UnicodeDecodeError) as error:
        problems.append(Problem(Origin(path), Kind.PARSE_ERROR, f"cannot read boundary file: {error}"))
        return None
    vertices = []
    readable = True
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            vertices.append(_parse_vertex(line))
        except ItemError as error:
            problems.append(error.problem(Origin(path, number)))
            readable = False
    if readable and len(vertices) < MINIMUM_VERTICES:
        message = f"expected a polygon of at least {MINIMUM_VERTICES} vertices, got {len(vertices)}"
        problems.append(Problem(Origin(path), Kind.PARSE_ERROR, message))
        readable = False
    return vertices if readable else None


def _parse_vertex(line: str) -> tuple[float, float]:
    fields = line.split(",")
    try:
        if len(fields) == 2:
            return float(fields[0]), float(fields[1])
    except ValueError:
        pass
    raise ItemError(f'expected "x,y", got "{line.strip()}"')
