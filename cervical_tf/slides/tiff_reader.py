"""OME-TIFF slides through tifffile: the pyramid of series 0, regions decoded tile by tile.

Only the TIFF tiles (or strips) a region touches are read and decoded, so a region costs memory in
proportion to its size, not the level's. Pixel size from the OME-XML `PhysicalSizeX` /
`PhysicalSizeY` (converted from `PhysicalSizeXUnit`, micrometres by default).
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from cervical_tf.images import to_rgb
from cervical_tf.slides.reader import PixelSize, SlideError, SlideReader

_TO_MICRONS = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


class TiffFileReader(SlideReader):
    """A pyramidal (or single-level) OME-TIFF, 8-bit grey or RGB, contiguous samples."""

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = Path(path)
        self.format = "ome-tiff"
        try:
            self._tiff = tifffile.TiffFile(self.path)
            series = self._tiff.series[0]
            self._pages = [level.keyframe for level in series.levels]
        except Exception as error:  # tifffile raises many kinds on a broken file
            raise SlideError(f"{path}: tifffile cannot open this OME-TIFF: {error}") from error
        for page in self._pages:
            if page.dtype != np.uint8 or page.samplesperpixel not in (1, 3, 4) or page.planarconfig != 1:
                raise SlideError(
                    f"{path}: expected 8-bit grey or RGB with contiguous samples, got {page.dtype} with "
                    f"{page.samplesperpixel} sample(s), planar configuration {page.planarconfig}"
                )
        self.dimensions = tuple((int(page.imagewidth), int(page.imagelength)) for page in self._pages)
        self.downsamples = tuple(self.dimensions[0][0] / width for width, _ in self.dimensions)
        self.pixel_size = _ome_pixel_size(self._tiff.ome_metadata)
        self._lock = threading.Lock()

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        page = self._pages[level]
        left = round(x / self.downsamples[level])
        top = round(y / self.downsamples[level])
        out = np.full((height, width, 3), 255, dtype=np.uint8)
        level_width, level_height = self.dimensions[level]
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + width, level_width), min(top + height, level_height)
        if x0 >= x1 or y0 >= y1:
            return out
        for index in _segments(page, x0, y0, x1, y1):
            segment, (_, _, row, column, _), _ = self._decode(page, index, level)
            if segment is None:
                continue
            pixels = to_rgb(segment[0])
            rows = slice(max(y0, row), min(y1, row + pixels.shape[0]))
            columns = slice(max(x0, column), min(x1, column + pixels.shape[1]))
            out[rows.start - top : rows.stop - top, columns.start - left : columns.stop - left] = pixels[
                rows.start - row : rows.stop - row, columns.start - column : columns.stop - column
            ]
        return out

    def _decode(self, page: object, index: int, level: int) -> tuple:
        try:
            with self._lock:
                handle = self._tiff.filehandle
                handle.seek(page.dataoffsets[index])
                data = handle.read(page.databytecounts[index])
            return page.decode(data, index, jpegtables=page.jpegtables)
        except Exception as error:  # codec errors come in many types
            raise SlideError(f"{self.path}: cannot decode level {level}, segment {index}: {error}") from error

    def close(self) -> None:
        self._tiff.close()


def _segments(page: object, x0: int, y0: int, x1: int, y1: int) -> list[int]:
    """Indices of the tiles (or strips) of `page` that overlap columns x0:x1, rows y0:y1."""
    if page.is_tiled:
        columns = -(-page.imagewidth // page.tilewidth)
        return [
            row * columns + column
            for row in range(y0 // page.tilelength, (y1 - 1) // page.tilelength + 1)
            for column in range(x0 // page.tilewidth, (x1 - 1) // page.tilewidth + 1)
        ]
    rows_per_strip = min(page.rowsperstrip or page.imagelength, page.imagelength)
    return list(range(y0 // rows_per_strip, (y1 - 1) // rows_per_strip + 1))


def _ome_pixel_size(ome_xml: str | None) -> PixelSize | None:
    """PhysicalSizeX/Y of the first OME Image's Pixels in µm, or None when absent."""
    if not ome_xml:
        return None
    try:
        root = ElementTree.fromstring(ome_xml)
    except ElementTree.ParseError:
        return None
    pixels = next((element for element in root.iter() if element.tag.endswith("}Pixels")), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None
    try:
        attributes = pixels.attrib
        x_um = float(attributes["PhysicalSizeX"]) * _TO_MICRONS[attributes.get("PhysicalSizeXUnit", "µm")]
        y_size = float(attributes.get("PhysicalSizeY", attributes["PhysicalSizeX"]))
        y_um = y_size * _TO_MICRONS[attributes.get("PhysicalSizeYUnit", "µm")]
    except (KeyError, ValueError):
        return None
    return PixelSize(x_um, y_um, "OME PhysicalSizeX/Y") if x_um > 0 and y_um > 0 else None
