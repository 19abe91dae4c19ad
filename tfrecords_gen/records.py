"""The record model every reader produces and everything after validation consumes.

Readers produce `ParsedImage`s: what an annotation file says, unchecked, with the place each
value came from so that problems can name the file and line. `validate` turns them into
`ImageRecord`s, whose boxes are guaranteed to lie inside the image they belong to.

Boxes are pixels, `[x_min, y_min, x_max, y_max]`, float, in the coordinates of the image as
displayed (EXIF orientation applied, see `cervical_tf.images`) with the origin at the top-left
corner of the top-left pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Origin:
    """Where a value was read: a file and, for text formats, a 1-based line number."""

    path: Path
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else str(self.path)


@dataclass(frozen=True)
class ParsedBox:
    """One annotated object as the annotation file states it (pixels, possibly invalid)."""

    label: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    origin: Origin
    difficult: bool = False
    truncated: bool = False
    is_crowd: bool = False


@dataclass(frozen=True)
class ParsedImage:
    """One image and its annotations as read, before any check against the image file.

    `width`/`height` are the size the annotation declares (None when the format has none).
    `group` is the leakage key (slide, patient): images sharing it go to the same split;
    None means the image is its own group.
    """

    image_path: Path
    boxes: tuple[ParsedBox, ...]
    origin: Origin
    width: int | None = None
    height: int | None = None
    group: str | None = None
    clip_to_image: bool = False  # boxes built around points (CRIC) are clipped without a report


class Kind:
    """The vocabulary of problems, shared by readers, validation and rejected.csv."""

    PARSE_ERROR = "parse_error"  # a line or field that does not have the expected form
    NAN = "nan"  # a coordinate that is NaN or infinite
    DEGENERATE_BOX = "degenerate_box"  # x_min >= x_max or y_min >= y_max
    UNKNOWN_CLASS = "unknown_class"  # a class id or name the data set does not define
    MISSING_IMAGE = "missing_image"  # an annotation whose image file does not exist
    UNREADABLE_IMAGE = "unreadable_image"  # not an image, or not one Pillow can open
    TRUNCATED_IMAGE = "truncated_image"  # the header reads but the pixels end early
    SIZE_MISMATCH = "size_mismatch"  # the annotation declares another size than the file has
    BOX_CLIPPED = "box_clipped"  # outside the image by at most 1%: clipped (a warning)
    BOX_OUTSIDE = "box_outside"  # outside the image by more than 1%: rejected
    DUPLICATE_IMAGE = "duplicate_image"  # the same image twice (same path or same content)
    UNANNOTATED_IMAGE = "unannotated_image"  # an image no annotation mentions
    UNRECOGNISED_FOLDER = "unrecognised_folder"  # a folder a layout-based reader cannot place


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input. `fatal` problems drop data under --on-error skip."""

    origin: Origin
    kind: str
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.origin}: {self.kind}: {self.message}"


@dataclass(frozen=True)
class Box:
    """A validated object box in pixels inside its image; see the module docstring."""

    label: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    difficult: bool = False
    truncated: bool = False
    is_crowd: bool = False

    def __post_init__(self) -> None:
        values = (self.x_min, self.y_min, self.x_max, self.y_max)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"box {values} has a non-finite coordinate")
        if not (self.x_min < self.x_max and self.y_min < self.y_max):
            raise ValueError(f"box {values} is degenerate: expected x_min < x_max and y_min < y_max")

    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min

    @property
    def area(self) -> float:
        return self.width * self.height


@dataclass(frozen=True)
class ImageRecord:
    """A checked image: its real size, its boxes inside it, and its split group.

    `name` identifies the image in outputs (`image/filename`, splits.csv, COCO `file_name`): its
    path relative to the common folder of the data set's images, with forward slashes.
    """

    image_path: Path
    name: str
    width: int
    height: int
    group: str
    boxes: tuple[Box, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"{self.image_path}: image size {self.width}x{self.height} is empty")
        for box in self.boxes:
            if not (0 <= box.x_min < box.x_max <= self.width and 0 <= box.y_min < box.y_max <= self.height):
                raise ValueError(
                    f"{self.image_path}: box {(box.x_min, box.y_min, box.x_max, box.y_max)} lies outside "
                    f"the {self.width}x{self.height} image"
                )

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(box.label for box in self.boxes)


@dataclass(frozen=True)
class ReadResult:
    """What a reader returns: the images it parsed and the problems it met while parsing."""

    images: list[ParsedImage]
    problems: list[Problem] = field(default_factory=list)
    # Folders the images were taken from, so the caller can find images no annotation mentions.
    # Empty for self-contained layouts (sipakmed, yolo), which emit every image themselves.
    image_dirs: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class ReaderInput:
    """What the user pointed a reader at, from `cervical-tf convert`."""

    input_path: Path  # --input: the data set folder (sipakmed, yolo) or annotation file/folder
    images_dir: Path | None = None  # --images: where images are when not beside the annotations
    box_size: float = 100.0  # --box-size: CRIC box side in pixels around each nucleus point
    sipakmed_region: str = "cytoplasm"  # or "nucleus": which .dat polygon gives the box
