"""Which slide level to read, at what scale, and the tiles: the model sees the slide at the pixel
size it was trained at.

`model px` are pixels as the model sees them; `level px` pixels of the slide level read. A tile is
`tile` x `tile` model px; with `scale` (model px per level px) it covers `round(tile / scale)`
level px. The level read is the smallest one that is still at least as sharp as the model needs
(so the resize only ever shrinks, unless the model wants more than level 0 has).
"""

from __future__ import annotations

from dataclasses import dataclass

from cervical_tf.inference import tiling
from cervical_tf.slides.reader import SlideError, SlideReader

SCALE_TOLERANCE = 1e-3  # a scale within 0.1% of 1 is read as it is, without resizing
MAX_UPSCALE = 2.0  # a model wanting level 0 enlarged more than this is refused: the pixel size is wrong


@dataclass(frozen=True)
class ReadPlan:
    """Read `level` and resize it by `scale` (model px per level px); `note` says why, for the log."""

    level: int
    downsample: float
    scale: float
    note: str


@dataclass(frozen=True)
class Tile:
    """One tile in level px: its window (x, y, width, height) and its core [x0, x1) x [y0, y1)."""

    index: int
    x: int
    y: int
    width: int
    height: int
    core_x: tuple[float, float]
    core_y: tuple[float, float]


def plan_read(reader: SlideReader, model_um: float | None) -> ReadPlan:
    """The level and scale at which `reader`'s slide matches the model's pixel size `model_um`.

    Without `model_um` (the model card does not know it) level 0 is read at scale 1. SlideError
    when the model has a pixel size and the slide none (neither metadata nor --mpp)."""
    if model_um is None:
        return ReadPlan(0, 1.0, 1.0, "the model card gives no pixel size: level 0 read at scale 1")
    if reader.pixel_size is None:
        raise SlideError(
            f"{reader.path}: the slide's metadata gives no pixel size, and the model was trained at "
            f"{model_um} µm/px; pass --mpp (microns per level-0 pixel)"
        )
    slide_um = (reader.pixel_size.x_um + reader.pixel_size.y_um) / 2
    wanted = model_um / slide_um  # level-0 px per model px
    level = max(
        (index for index, downsample in enumerate(reader.downsamples) if downsample <= wanted * (1 + 1e-6)),
        key=lambda index: reader.downsamples[index],
        default=0,
    )
    downsample = reader.downsamples[level]
    scale = downsample / wanted
    if abs(scale - 1) < SCALE_TOLERANCE:
        scale = 1.0
    if scale > MAX_UPSCALE * (1 + SCALE_TOLERANCE):
        raise SlideError(
            f"{reader.path}: the slide's pixels ({slide_um:g} µm, {reader.pixel_size.source}) are "
            f"{scale:.3g} times coarser than the model's ({model_um:g} µm); more than {MAX_UPSCALE:g} times "
            "cannot show the cells the model learned. A scanner's 72 or 96 dpi default is no pixel size: "
            "pass --mpp"
        )
    note = (
        f"model {model_um:g} µm/px, slide {slide_um:g} µm/px ({reader.pixel_size.source}): "
        f"level {level} (downsample {downsample:g}) at scale {scale:.4g}"
    )
    return ReadPlan(level, downsample, scale, note)


def plan_tiles(level_size: tuple[int, int], scale: float, tile: int, overlap: int) -> list[Tile]:
    """The tiles covering a level of `level_size` (width, height) px, row by row, with their cores.

    `tile` and `overlap` are model px; a level smaller than a tile is one smaller tile."""
    tile_px = max(1, round(tile / scale))
    overlap_px = min(round(overlap / scale), tile_px - 1)
    width, height = level_size
    xs = tiling.tile_starts(width, tile_px, overlap_px)
    ys = tiling.tile_starts(height, tile_px, overlap_px)
    cores_x, cores_y = tiling.core_bounds(xs, tile_px), tiling.core_bounds(ys, tile_px)
    tiles = []
    for y, core_y in zip(ys, cores_y, strict=True):
        for x, core_x in zip(xs, cores_x, strict=True):
            tiles.append(
                Tile(len(tiles), x, y, min(tile_px, width - x), min(tile_px, height - y), core_x, core_y)
            )
    return tiles
