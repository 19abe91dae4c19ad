"""The one image decoder: every path that reads pixels (convert, predict, serve, evaluate) uses it.

Pixels are the image as a viewer displays it: EXIF orientation applied (official.vision's
tf.io.decode_image ignores it, so convert stores these pixels rather than a rotated file), every
bit depth and colour mode made 8-bit RGB. Boxes and sizes everywhere refer to this displayed frame.
Pillow and numpy only: convert's worker processes import it without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from cervical_tf.errors import DataError

# A file, or bytes wrapped in io.BytesIO (an upload, a TFRecord's image/encoded).
ImageSource = Path | BinaryIO
# EXIF orientations that turn the stored pixels by 90 degrees: width and height swap on display.
_SIDES_SWAPPED = frozenset({5, 6, 7, 8})


def load_image(source: ImageSource) -> np.ndarray:
    """uint8 [H, W, 3] RGB pixels of `source` (PNG, JPEG, BMP, TIFF, WebP) as displayed.

    Raises DataError naming the file when it is missing, not an image, or truncated.
    """
    name = source if isinstance(source, Path) else getattr(source, "name", "image data")
    try:
        with Image.open(source) as opened:
            return to_rgb(np.asarray(displayed_pixels(opened)))
    except FileNotFoundError as error:
        raise DataError(f"{name}: image file not found") from error
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise DataError(f"{name}: not a readable image: {error}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{name}: pixel data cannot be decoded (truncated or corrupt?): {error}") from error


def displayed_pixels(opened: Image.Image) -> Image.Image:
    """An opened image decoded, EXIF orientation applied, made 8-bit grey ("L") or RGB: the pixels
    of `load_image`, and what convert stores (grey kept as one channel).

    Raises Pillow's errors (OSError, SyntaxError, ValueError) when the pixel data is corrupt.
    """
    opened.load()
    if exif_orientation(opened) != 1:  # exif_transpose would otherwise copy the pixels once more
        opened = ImageOps.exif_transpose(opened)
    return to_8_bit(opened)


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8) `displayed_pixels` applies; 1 when absent or not a valid value.

    A PNG may keep its EXIF after the pixel data: Pillow then decodes the image to find it.
    """
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return int(orientation) if orientation in range(1, 9) else 1


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened image as displayed: orientations 5-8 swap the stored sides."""
    width, height = image.size
    return (height, width) if exif_orientation(image) in _SIDES_SWAPPED else (width, height)


def to_8_bit(image: Image.Image) -> Image.Image:
    """8-bit grey or RGB, the same pixels for training (TFRecords) and prediction.

    16- and 32-bit integer grey is scaled by 1/257 (Pillow's convert("L") would clip it at 255);
    float grey is clipped to 0-255; alpha is dropped; palette, CMYK and other modes become RGB.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image, dtype=np.int64)
        return Image.fromarray(np.clip(pixels // 257, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
    return image.convert("L" if image.mode in ("L", "1") else "RGB")


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
