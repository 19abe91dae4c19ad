"""The one image decoder: every path that reads pixels (predict, serve, evaluate, convert) uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cervical_tf.errors import DataError
from tfrecords_gen.image_files import to_8_bit


def load_image(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] RGB pixels of `path` (PNG, JPEG, BMP, TIFF, WebP), EXIF orientation applied.

    Grey and RGBA images become RGB (alpha dropped), 16-bit grey is scaled to 8 bits.
    Raises DataError naming the file when it is missing, not an image, or truncated.
    """
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            return to_rgb(np.asarray(to_8_bit(image)))
    except FileNotFoundError as error:
        raise DataError(f"{path}: image file not found") from error
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: not a readable image: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: pixel data cannot be decoded (truncated or corrupt?): {error}") from error


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] from uint8 [H, W] grey, [H, W, 1], [H, W, 3] or [H, W, 4] RGBA (alpha dropped)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise DataError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, np.newaxis]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape:
        raise DataError(f"expected an image of shape [H, W], [H, W, 3] or [H, W, 4], got {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])
