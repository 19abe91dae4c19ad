"""Open every image once, fully: its true size, whether it decodes, and a content digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from tfrecords_gen.records import Kind


@dataclass(frozen=True)
class ImageFacts:
    """What the file really holds. `problem_kind` is set (and size is None) when it cannot be used."""

    path: Path
    width: int | None = None
    height: int | None = None
    sha1: str | None = None
    problem_kind: str | None = None
    problem: str | None = None


def inspect_image(path: Path) -> ImageFacts:
    """Decode `path` completely; a header that reads but pixels that do not is a truncated image."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ImageFacts(path, problem_kind=Kind.MISSING_IMAGE, problem="image file not found")
    except OSError as error:
        return ImageFacts(path, problem_kind=Kind.UNREADABLE_IMAGE, problem=f"cannot read file: {error}")
    try:
        image = Image.open(path)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        return ImageFacts(path, problem_kind=Kind.UNREADABLE_IMAGE, problem=f"not a readable image: {error}")
    with image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as error:
            return ImageFacts(
                path, problem_kind=Kind.TRUNCATED_IMAGE, problem=f"pixel data cannot be decoded: {error}"
            )
        width, height = image.size
    return ImageFacts(path, width, height, hashlib.sha1(data).hexdigest())
