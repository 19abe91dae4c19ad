"""The slide reader interface and its OpenSlide implementation; `open_slide` picks the reader.

A slide is a pyramid: level 0 is full resolution, level L is `downsamples[L]` times smaller.
Coordinates given to `read_region` are level-0 pixels (OpenSlide's convention), sizes are pixels of
the level read. Pixels come back as uint8 [h, w, 3] RGB; transparent pixels (outside the scanned
area) are white, as glass.

OpenSlide (through the `openslide-bin` wheel, no system library) reads SVS, NDPI, MRXS, SCN,
DICOM, Ventana, Philips TIFF and generic tiled TIFF; tifffile reads OME-TIFF (`tiff_reader`),
which OpenSlide does not.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cervical_tf.errors import DataError

# Files that are slides by their name alone; .tif/.tiff are slides when tiled (see `is_slide`).
SLIDE_SUFFIXES = frozenset({".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".dcm"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})


class SlideError(DataError):
    """A slide that cannot be opened or read: the message names the file and the reason."""


@dataclass(frozen=True)
class PixelSize:
    """Microns per level-0 pixel along x and y, and where the numbers came from."""

    x_um: float
    y_um: float
    source: str

    def __post_init__(self) -> None:
        if not (self.x_um > 0 and self.y_um > 0):
            raise ValueError(f"pixel size must be positive, got {self.x_um} x {self.y_um} µm")


class SlideReader(ABC):
    """An open slide. `dimensions[L]` is (width, height) of level L, `downsamples[L]` its factor
    (level-0 px per level-L px, 1.0 for level 0), `pixel_size` the level-0 pixel size or None."""

    path: Path
    dimensions: tuple[tuple[int, int], ...]
    downsamples: tuple[float, ...]
    pixel_size: PixelSize | None
    format: str

    @property
    def level_count(self) -> int:
        return len(self.dimensions)

    @abstractmethod
    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        """uint8 [height, width, 3] RGB of `level`, its top-left at level-0 pixel (x, y).

        SlideError naming the file when the pixel data cannot be decoded."""

    def thumbnail(self, max_side: int) -> np.ndarray:
        """uint8 [h, w, 3] RGB of the whole slide, its longer side at most `max_side` px.

        Read from the smallest level at least that large, in strips of that level, so a slide
        without a small level is not decoded whole."""
        width, height = self.dimensions[0]
        factor = max(width, height) / max_side
        level = max(
            (index for index, downsample in enumerate(self.downsamples) if downsample <= max(factor, 1.0)),
            key=lambda index: self.downsamples[index],
        )
        level_width, level_height = self.dimensions[level]
        size = (max(1, round(width / max(factor, 1.0))), max(1, round(height / max(factor, 1.0))))
        strip = max(1, 4_000_000 // max(level_width, 1))
        pieces = []
        for top in range(0, level_height, strip):
            rows = min(strip, level_height - top)
            pixels = self.read_region(0, round(top * self.downsamples[level]), level, level_width, rows)
            piece_height = max(1, round(rows * size[1] / level_height))
            pieces.append(np.asarray(Image.fromarray(pixels).resize((size[0], piece_height), Image.BILINEAR)))
        return np.concatenate(pieces, axis=0)

    def close(self) -> None:  # noqa: B027 (readers without resources keep it)
        """Release the file."""

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_slide(path: Path) -> bool:
    """True for a slide format by suffix, or a .tif/.tiff that is tiled or OME (a pyramid or a
    mosaic); a plain strip TIFF is an ordinary image. An unparsable TIFF counts as a slide, so it
    is reported as a slide that cannot be opened."""
    suffix = path.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        return True
    if suffix not in TIFF_SUFFIXES:
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            return bool(tiff.is_ome or tiff.pages.first.is_tiled or len(tiff.series[0].levels) > 1)
    except Exception:  # any parse failure: let the slide reader report it
        return True


def open_slide(path: Path, mpp: float | None = None) -> SlideReader:
    """The reader for `path`: tifffile for OME-TIFF, OpenSlide for everything else.

    `mpp` (µm per level-0 pixel) replaces the slide's own pixel size. SlideError naming the file
    and OpenSlide's or tifffile's reason when no reader opens it."""
    path = Path(path)
    if not path.exists():
        raise SlideError(f"{path}: slide file not found")
    if path.suffix.lower() in TIFF_SUFFIXES and _is_ome(path):
        from cervical_tf.slides.tiff_reader import TiffFileReader

        reader: SlideReader = TiffFileReader(path)
    else:
        reader = OpenSlideReader(path)
    if mpp is not None:
        reader.pixel_size = PixelSize(mpp, mpp, "--mpp")
    return reader


class OpenSlideReader(SlideReader):
    """A slide read by OpenSlide (`slide`, the openslide.OpenSlide, which slides/deepzoom.py hands to
    OpenSlide's Deep Zoom generator); pixel size from `openslide.mpp-x` / `openslide.mpp-y`."""

    def __init__(self, path: Path) -> None:
        import openslide

        self.path = Path(path)
        try:
            self.slide = openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, OSError) as error:
            raise SlideError(f"{path}: OpenSlide cannot open this slide: {error}") from error
        self.format = str(self.slide.properties.get(openslide.PROPERTY_NAME_VENDOR, "unknown"))
        self.dimensions = tuple(tuple(map(int, size)) for size in self.slide.level_dimensions)
        self.downsamples = tuple(float(value) for value in self.slide.level_downsamples)
        self.pixel_size = _openslide_pixel_size(self.slide.properties)

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        import openslide

        try:
            rgba = np.asarray(self.slide.read_region((int(x), int(y)), level, (int(width), int(height))))
        except openslide.OpenSlideError as error:
            raise SlideError(
                f"{self.path}: cannot read level {level} at ({x}, {y}), {width}x{height} px: {error}"
            ) from error
        return _on_white(rgba)

    def close(self) -> None:
        self.slide.close()


def _openslide_pixel_size(properties: object) -> PixelSize | None:
    try:
        x_um = float(properties["openslide.mpp-x"])  # type: ignore[index]
        y_um = float(properties.get("openslide.mpp-y", x_um))  # type: ignore[attr-defined]
    except (KeyError, ValueError):
        return None
    return PixelSize(x_um, y_um, "openslide.mpp-x/y") if x_um > 0 and y_um > 0 else None


def _on_white(rgba: np.ndarray) -> np.ndarray:
    """uint8 [h, w, 3]: RGBA (not premultiplied, as openslide-python returns it) over white."""
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    if (alpha == 255).all():
        return np.ascontiguousarray(rgba[:, :, :3])
    rgb = rgba[:, :, :3].astype(np.uint16)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _is_ome(path: Path) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            return bool(tiff.is_ome)
    except Exception:  # not a TIFF tifffile parses: OpenSlide reports why
        return False
