"""Finding image files, reading their size without decoding the pixels, and making pixels 8-bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cervical_tf.errors import DataError

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


def to_8_bit(image: Image.Image) -> Image.Image:
    """8-bit grey or RGB, the same pixels for training (TFRecords) and prediction.

    16- and 32-bit integer grey is scaled by 1/257 (Pillow's convert("L") would clip it at 255);
    float grey is clipped to 0-255; RGBA and palette images become RGB.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image, dtype=np.int64)
        return Image.fromarray(np.clip(pixels // 257, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
    return image.convert("L" if image.mode in ("L", "1") else "RGB")
