"""Test images whose EXIF orientation is not 1: what a viewer shows differs from the stored pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

# The stored pixels that EXIF orientation N turns into the displayed ones: the inverse of the
# transposition Pillow's ImageOps.exif_transpose applies for N.
_STORED_FROM_DISPLAYED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def save_oriented(path: Path, displayed: np.ndarray, orientation: int, **save_options: object) -> Path:
    """Save `displayed` (uint8 or uint16 pixels, as a viewer must show them) rotated or mirrored into
    the stored frame, with EXIF orientation `orientation` saying how to turn it back."""
    image = Image.fromarray(displayed)
    transpose = _STORED_FROM_DISPLAYED[orientation]
    stored = image.transpose(transpose) if transpose is not None else image
    exif = stored.getexif()
    exif[ExifTags.Base.Orientation] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    stored.save(path, exif=exif, **save_options)
    return path


def white_with_dark_block(height: int, width: int, block: tuple[int, int, int, int]) -> np.ndarray:
    """uint8 [height, width, 3] white pixels with a black block (x_min, y_min, x_max, y_max).

    Edges on multiples of 8 keep a JPEG saved at quality 100 without subsampling free of blur
    there, so the block's extent survives JPEG compression exactly."""
    pixels = np.full((height, width, 3), 255, dtype=np.uint8)
    x_min, y_min, x_max, y_max = block
    pixels[y_min:y_max, x_min:x_max] = 0
    return pixels
