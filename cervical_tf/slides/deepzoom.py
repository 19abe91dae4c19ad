"""Deep-zoom tiles of a slide for a browser viewer: OpenSlide's `DeepZoomGenerator` over any slide.

A Deep Zoom pyramid (the DZI format OpenSeadragon reads) has levels 0..N, level N the slide's
level 0 and each level below half the one above; each level is cut into TILE_SIZE px tiles that
overlap their neighbours by OVERLAP px. `openslide.deepzoom.DeepZoomGenerator` computes the
pyramid and reads each tile from the slide level closest to it.

OpenSlide-readable slides (SVS, NDPI, MRXS, SCN, DICOM, generic tiled TIFF) are given to the
generator as `openslide.OpenSlide`, so their bounds, background colour and ICC profile are used.
OpenSlide opens an OME-TIFF too, but as a generic TIFF without its SubIFD pyramid (level 0 only:
every zoomed-out tile would decode thousands of level-0 tiles), so OME-TIFF goes through the
project's tifffile reader, adapted to OpenSlide's slide interface by `ReaderSlide`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import openslide
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from cervical_tf.slides.reader import OpenSlideReader, SlideError, SlideReader, open_slide

TILE_SIZE = 254  # + 2 x OVERLAP = 256 px tiles, OpenSlide's and OpenSeadragon's usual choice
OVERLAP = 1
TILE_FORMATS = {"jpeg": "JPEG", "png": "PNG"}  # the URL's suffix -> Pillow's format name
JPEG_QUALITY = 85


def deep_zoom(path: Path) -> DeepZoomGenerator:
    """The Deep Zoom pyramid of the slide at `path`; SlideError naming the file when it cannot be opened."""
    reader = open_slide(Path(path))
    # OpenSlide reads it: its own object goes to the generator (which then owns it), else an adapter
    slide = reader.slide if isinstance(reader, OpenSlideReader) else ReaderSlide(reader)
    return DeepZoomGenerator(slide, tile_size=TILE_SIZE, overlap=OVERLAP, limit_bounds=True)


def render_tile(generator: DeepZoomGenerator, level: int, column: int, row: int, tile_format: str) -> bytes:
    """The encoded tile (JPEG or PNG bytes, at most TILE_SIZE + 2 x OVERLAP px a side).

    ValueError for a level or address outside the pyramid or an unknown format; SlideError when
    the slide's pixel data cannot be read."""
    if tile_format not in TILE_FORMATS:
        raise ValueError(f"tile format must be one of {', '.join(TILE_FORMATS)}, got {tile_format!r}")
    if not 0 <= level < generator.level_count:
        raise ValueError(f"level {level} is outside the pyramid's 0..{generator.level_count - 1}")
    columns, rows = generator.level_tiles[level]
    if not (0 <= column < columns and 0 <= row < rows):
        raise ValueError(f"tile ({column}, {row}) is outside level {level}'s {columns} x {rows} tiles")
    try:
        tile = generator.get_tile(level, (column, row))
    except openslide.OpenSlideError as error:
        raise SlideError(f"cannot read tile ({column}, {row}) of Deep Zoom level {level}: {error}") from error
    buffer = io.BytesIO()
    options = {"quality": JPEG_QUALITY} if tile_format == "jpeg" else {}
    tile.convert("RGB").save(buffer, TILE_FORMATS[tile_format], **options)
    return buffer.getvalue()


class ReaderSlide(openslide.AbstractSlide):
    """A project `SlideReader` (here tifffile's OME-TIFF reader) seen through OpenSlide's slide interface.

    Coordinates as OpenSlide's: `read_region`'s location in level-0 px, its size in px of `level`.
    Properties carry the pixel size (`openslide.mpp-x/y`) and a white background."""

    def __init__(self, reader: SlideReader) -> None:
        super().__init__()
        self._reader = reader

    @classmethod
    def detect_format(cls, filename: object) -> str | None:
        return None  # opened through `open_slide`, never by file name

    def close(self) -> None:
        self._reader.close()

    @property
    def level_count(self) -> int:
        return self._reader.level_count

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((int(width), int(height)) for width, height in self._reader.dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(self._reader.downsamples)

    @property
    def properties(self) -> Mapping[str, str]:
        properties = {openslide.PROPERTY_NAME_BACKGROUND_COLOR: "ffffff"}
        pixel_size = self._reader.pixel_size
        if pixel_size is not None:
            properties[openslide.PROPERTY_NAME_MPP_X] = str(pixel_size.x_um)
            properties[openslide.PROPERTY_NAME_MPP_Y] = str(pixel_size.y_um)
        return properties

    @property
    def associated_images(self) -> Mapping[str, Image.Image]:
        return {}

    def get_best_level_for_downsample(self, downsample: float) -> int:
        """The level with the largest downsample not above `downsample` (OpenSlide's rule)."""
        fitting = [
            index for index, value in enumerate(self.level_downsamples) if value <= downsample * 1.0001
        ]
        return max(fitting, key=lambda index: self.level_downsamples[index]) if fitting else 0

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        x, y = location
        width, height = size
        rgb = self._reader.read_region(x, y, level, width, height)
        alpha = np.full((*rgb.shape[:2], 1), 255, dtype=np.uint8)  # the reader paints outside white
        return Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")
