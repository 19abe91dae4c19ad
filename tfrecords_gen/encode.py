"""Image bytes for `image/encoded`: what official.vision's decoder reads back must be exactly the
pixels `cervical_tf.images` gives predict, serve and evaluate.

official.vision decodes with `tf.io.decode_image`, which ignores EXIF orientation and decodes JPEG
with a faster, less exact IDCT than libjpeg's default (Pillow's): up to 6 levels apart on most
pixels. So only 8-bit grey or RGB PNGs without an EXIF orientation pass through byte for byte
(tf.io.decode_image reads them to the same pixels); everything else, JPEG included, is stored as
a lossless PNG of the decoder's pixels. TIFF and WebP, which official.vision cannot read at all,
are covered by the same rule. Runs in worker processes: imports Pillow only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from cervical_tf.images import displayed_pixels, exif_orientation

# Pixel modes of an unrotated PNG that tf.io.decode_image(channels=3) reads as the decoder does.
_PASS_THROUGH_PNG_MODES = frozenset({"RGB", "L"})
# zlib level 3 writes about 10x faster than the default 6 for a few percent more bytes.
_PNG_COMPRESS_LEVEL = 3


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    format: str  # the value of image/format


def encode_image(path: Path) -> EncodedImage:
    """The bytes to store for `path` (already checked to decode by `inspect_images`)."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "PNG" and image.mode in _PASS_THROUGH_PNG_MODES and exif_orientation(image) == 1:
            return EncodedImage(data, "png")
        pixels = displayed_pixels(image)
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return EncodedImage(buffer.getvalue(), "png")
