"""Finding image files and reading their size without decoding the pixels."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from tfrecords_gen.records import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def find_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in `folder` (sorted, so every run sees the same order)."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if is_image_file(p))


def read_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header; raises DataError naming the file when unreadable."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError as error:
        raise DataError(f"{path}: image file not found") from error
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{path}: cannot read image header: {error}") from error
