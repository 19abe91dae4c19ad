"""Open every image once, fully, with the project's decoder: its displayed size, whether it decodes,
and a content digest."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cervical_tf.images import displayed_pixels, exif_orientation
from tfrecords_gen.records import Kind


@dataclass(frozen=True)
class ImageFacts:
    """A usable image. width x height is its size as displayed, the frame annotations are in;
    `stored_size` (width, height) differs when its EXIF orientation turns it by 90 degrees."""

    path: Path
    width: int
    height: int
    sha1: str
    orientation: int
    stored_size: tuple[int, int]


@dataclass(frozen=True)
class ImageProblem:
    """Why the file cannot be used: a `records.Kind` and what went wrong."""

    path: Path
    kind: str
    message: str


def inspect_image(path: Path) -> ImageFacts | ImageProblem:
    """Decode `path` as every later step will; a header that reads but pixels that do not is a
    truncated image."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ImageProblem(path, Kind.MISSING_IMAGE, "image file not found")
    except OSError as error:
        return ImageProblem(path, Kind.UNREADABLE_IMAGE, f"cannot read file: {error}")
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        return ImageProblem(path, Kind.UNREADABLE_IMAGE, f"not a readable image: {error}")
    with image:
        try:
            width, height = displayed_pixels(image).size
        except (OSError, SyntaxError, ValueError) as error:
            return ImageProblem(path, Kind.TRUNCATED_IMAGE, f"pixel data cannot be decoded: {error}")
        return ImageFacts(
            path, width, height, hashlib.sha1(data).hexdigest(), exif_orientation(image), image.size
        )
