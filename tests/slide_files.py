"""Test slides written with tifffile: pyramids from pixel arrays, as OME-TIFF (read by tifffile)
or as a generic tiled TIFF (read by OpenSlide). Written to a test's tmp folder, never committed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

TILE = (256, 256)


def halve(pixels: np.ndarray) -> np.ndarray:
    """uint8 [h/2, w/2, 3]: the mean of each 2 x 2 block (rounded), the pyramid's next level."""
    height, width = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
    blocks = pixels[:height, :width].astype(np.uint16).reshape(height // 2, 2, width // 2, 2, 3)
    return ((blocks.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)


def pyramid(pixels: np.ndarray, levels: int) -> list[np.ndarray]:
    out = [pixels]
    for _ in range(levels - 1):
        out.append(halve(out[-1]))
    return out


def write_ome_tiff(path: Path, pixels: np.ndarray, mpp_um: float, levels: int = 3) -> Path:
    """A pyramidal OME-TIFF (levels in SubIFDs), PhysicalSizeX/Y = `mpp_um` given in nanometres to
    exercise the unit conversion."""
    layers = pyramid(pixels, levels)
    metadata = {
        "axes": "YXS",
        "PhysicalSizeX": mpp_um * 1000,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": mpp_um * 1000,
        "PhysicalSizeYUnit": "nm",
    }
    with tifffile.TiffWriter(path, ome=True) as tiff:
        options = {"tile": TILE, "compression": "zlib", "photometric": "rgb"}
        tiff.write(layers[0], subifds=levels - 1, metadata=metadata, **options)
        for layer in layers[1:]:
            tiff.write(layer, subfiletype=1, **options)
    return path


def write_generic_tiff(path: Path, pixels: np.ndarray, mpp_um: float, levels: int = 3) -> Path:
    """A tiled pyramidal TIFF, one page per level, resolution in pixels per centimetre: OpenSlide's
    "generic-tiff" format (its pixel size from the resolution tags)."""
    per_cm = 10_000 / mpp_um
    with tifffile.TiffWriter(path) as tiff:
        for level, layer in enumerate(pyramid(pixels, levels)):
            tiff.write(
                layer,
                subfiletype=1 if level else 0,  # reduced-resolution pages: OpenSlide's levels
                tile=TILE,
                compression="zlib",
                photometric="rgb",
                resolution=(per_cm, per_cm),
                resolutionunit="CENTIMETER",
                metadata=None,
            )
    return path
