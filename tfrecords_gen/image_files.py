"""Finding image files and reading their displayed size from the header (see cervical_tf.images)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from cervical_tf.errors import DataError
from cervical_tf.images import displayed_size

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def find_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in `folder` (sorted, so every run sees the same order)."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if is_image_file(p))


def read_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed (EXIF orientation applied), the frame annotations are in.

    Read from the header, except for a PNG, whose EXIF may follow the pixel data (see
    `exif_orientation`). Raises DataError naming the file when unreadable.
    """
    try:
        with Image.open(path) as image:
            return displayed_size(image)
    except FileNotFoundError as error:
        raise DataError(f"{path}: image file not found") from error
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot read the image size: {error}") from error
