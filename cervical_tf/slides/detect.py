"""Detect cells on one whole slide: plan the read, mask the tissue, stream the tiles through the
model, keep each tile's core, merge across seams (`merge`); resumable through `tile_log`.

Boxes leave this module in level-0 pixels of the slide (QuPath's and OpenSlide's frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from cervical_tf.boxes import AGNOSTIC_NMS
from cervical_tf.inference import tiling
from cervical_tf.inference.detections import Detections
from cervical_tf.slides.merge import merge_slide
from cervical_tf.slides.plan import ReadPlan, Tile, plan_read, plan_tiles
from cervical_tf.slides.reader import PixelSize, SlideReader, open_slide
from cervical_tf.slides.stream import stream_tiles
from cervical_tf.slides.tile_log import TILE_LOG, TileLog
from cervical_tf.slides.tissue import THUMBNAIL_SIDE, all_tissue, tissue_mask

if TYPE_CHECKING:
    from cervical_tf.export.model_card import ModelCard
    from cervical_tf.inference.predictor import Predictor

DEFAULT_TILE = 1024  # model px, when neither --tile nor the model card's input size says


@dataclass(frozen=True)
class SlideOptions:
    """How slides are run. `tile`, `overlap`: model px (tile None: the model's input size);
    `max_detections`: per tile; `mpp`: µm per level-0 px, replacing the slide's metadata."""

    tile: int | None = None
    overlap: int = 128
    min_score: float = 0.5
    max_detections: int = 100
    agnostic_nms: bool = AGNOSTIC_NMS
    mpp: float | None = None
    tissue_mask: bool = True


@dataclass(frozen=True)
class SlideResult:
    """One slide's detections (level-0 px) and what was examined: tiles planned, with tissue, and
    done by an earlier run; the tissue's share of the slide; `examined_px`, the level-0 area (px²)
    of the tissue tiles' cores (the cores partition the slide, so overlaps count once); the slide's
    level-0 `pixel_size` (metadata or --mpp; None when unknown)."""

    detections: Detections
    plan: ReadPlan
    tile: int
    tiles: int
    tissue_tiles: int
    resumed_tiles: int
    tissue_fraction: float
    examined_px: float
    pixel_size: PixelSize | None


def model_tile(card: ModelCard, tile: int | None) -> int:
    """`tile` if given, else the longer side of the model's input size, else DEFAULT_TILE: a larger
    tile would be shrunk by the export's own resize, off the training pixel size."""
    if tile is not None:
        return tile
    size = (card.facts.get("recipe") or {}).get("input_size") or []
    return int(max(size[:2])) if len(size) >= 2 else DEFAULT_TILE


@dataclass(frozen=True)
class SlideTiles:
    """How one slide is read: the `plan`, the read level's `level_size` (width, height), the tile
    side in model px, all `tiles` and the `wanted` ones (with tissue), the tissue's share of the
    slide, and the run `settings` its tiles.jsonl records."""

    plan: ReadPlan
    level_size: tuple[int, int]
    tile_size: int
    tiles: list[Tile]
    wanted: list[Tile]
    tissue_fraction: float
    settings: dict


def detect_slide(
    predictor: Predictor, path: Path, folder: Path, options: SlideOptions, work: SlideTiles | None = None
) -> SlideResult:
    """Detect on the slide at `path`; `folder` keeps its tiles.jsonl; `work`: its `slide_tiles`
    when already made. SlideError when it cannot be opened or read (tiles finished before the
    failure stay recorded)."""
    from tqdm import tqdm

    with open_slide(path, options.mpp) as reader:
        work = work or slide_tiles(predictor, reader, options)
        plan, level_size, wanted = work.plan, work.level_size, work.wanted
        log = TileLog(folder / TILE_LOG, work.settings)
        try:
            resumed = sum(tile.index in log.done for tile in wanted)
            todo = [tile for tile in wanted if tile.index not in log.done]
            with tqdm(total=len(wanted), initial=resumed, desc=Path(path).name, unit="tile") as progress:
                for tile, pixels in stream_tiles(todo, lambda tile: _read(reader, tile, plan)):
                    log.append(tile.index, _detect_tile(predictor, pixels, tile, plan, level_size, options))
                    progress.update()
        finally:
            log.close()
        raw = tiling.concatenate([log.done[tile.index] for tile in wanted])
        width, height = reader.dimensions[0]
        pixel_size = reader.pixel_size
    examined_px = sum(_core_area(tile, level_size) for tile in wanted) * plan.downsample**2
    keep = merge_slide(raw, agnostic=options.agnostic_nms)  # by descending score
    labels = predictor.labels
    detections = Detections(
        image=str(path),
        width=width,
        height=height,
        boxes_px=raw.boxes_px[keep],
        scores=raw.scores[keep],
        class_ids=raw.class_ids[keep],
        labels=tuple(labels[int(class_id)] for class_id in raw.class_ids[keep]),
    )
    return SlideResult(
        detections,
        plan,
        work.tile_size,
        len(work.tiles),
        len(wanted),
        resumed,
        work.tissue_fraction,
        examined_px,
        pixel_size,
    )


def slide_tiles(predictor: Predictor, reader: SlideReader, options: SlideOptions) -> SlideTiles:
    """Plan the read of `reader`'s slide at the model's pixel size and pick the tiles with tissue.
    SlideError when the slide's pixel size cannot be matched (see `plan.plan_read`)."""
    tile_size = model_tile(predictor.model_card, options.tile)
    plan = plan_read(reader, predictor.model_card.facts.get("pixel_size_um"))
    level_size = reader.dimensions[plan.level]
    tiles = plan_tiles(level_size, plan.scale, tile_size, options.overlap)
    mask = (
        tissue_mask(reader.thumbnail(THUMBNAIL_SIDE), reader.dimensions[0])
        if options.tissue_mask
        else all_tissue(reader.dimensions[0])
    )
    wanted = [tile for tile in tiles if mask.any_in(*_level0_window(tile, plan.downsample))]
    settings = _run_settings(predictor, reader, plan, tile_size, options)
    return SlideTiles(plan, level_size, tile_size, tiles, wanted, mask.fraction, settings)


def detect_tile(
    predictor: Predictor,
    reader: SlideReader,
    tile: Tile,
    plan: ReadPlan,
    level_size: tuple[int, int],
    options: SlideOptions,
) -> tiling.RawDetections:
    """Read one tile of `reader`'s slide and detect on it: what `detect_slide` records per tile
    (level-0 px, centre in the tile's core; see `_detect_tile`). SlideError when it cannot be read."""
    return _detect_tile(predictor, _read(reader, tile, plan), tile, plan, level_size, options)


def _read(reader: SlideReader, tile: Tile, plan: ReadPlan) -> np.ndarray:
    """uint8 [h, w, 3] of the tile at model scale (its level pixels resized by `plan.scale`)."""
    pixels = reader.read_region(
        round(tile.x * plan.downsample), round(tile.y * plan.downsample), plan.level, tile.width, tile.height
    )
    if plan.scale == 1.0:
        return pixels
    size = (max(1, round(tile.width * plan.scale)), max(1, round(tile.height * plan.scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR))


def _detect_tile(
    predictor: Predictor,
    pixels: np.ndarray,
    tile: Tile,
    plan: ReadPlan,
    level_size: tuple[int, int],
    options: SlideOptions,
) -> tiling.RawDetections:
    """The tile's detections whose centre lies in its core, in level-0 px; `cut` marks those that
    touch an edge shared with another tile (see `tiling.merge_tiles`)."""
    found = predictor.predict(
        pixels,
        f"tile {tile.index}",
        max_detections=options.max_detections,
        min_score=options.min_score,
        agnostic_nms=options.agnostic_nms,
    )
    scale_x, scale_y = tile.width / pixels.shape[1], tile.height / pixels.shape[0]
    boxes_level = found.boxes_px * np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)
    boxes_level += np.array([tile.x, tile.y, tile.x, tile.y], dtype=np.float32)
    width, height = level_size
    cut = tiling.cut_at_inner_edges(boxes_level, tile.x, tile.y, tile.width, tile.height, width, height)
    core = tiling.centres_in(boxes_level, tile.core_x, tile.core_y)
    return tiling.RawDetections(
        (boxes_level[core] * plan.downsample).astype(np.float32),
        found.scores[core],
        found.class_ids[core],
        cut[core],
    )


def _core_area(tile: Tile, level_size: tuple[int, int]) -> float:
    """Level px² of the tile's core within the level (the first and last cores reach the border)."""
    width, height = level_size
    core_width = min(tile.core_x[1], width) - max(tile.core_x[0], 0)
    core_height = min(tile.core_y[1], height) - max(tile.core_y[0], 0)
    return max(core_width, 0.0) * max(core_height, 0.0)


def _level0_window(tile: Tile, downsample: float) -> tuple[float, float, float, float]:
    return (
        tile.x * downsample,
        tile.y * downsample,
        (tile.x + tile.width) * downsample,
        (tile.y + tile.height) * downsample,
    )


def _run_settings(
    predictor: Predictor, reader: SlideReader, plan: ReadPlan, tile: int, options: SlideOptions
) -> dict:
    """What a finished tile's detections depend on: a rerun with other settings starts afresh."""
    return {
        "model": str(Path(predictor.source).resolve()),
        "model_exported": predictor.model_card.facts.get("exported"),
        "slide_size": list(reader.dimensions[0]),
        "level": plan.level,
        "scale": plan.scale,
        "tile": tile,
        "overlap": options.overlap,
        "min_score": options.min_score,
        "max_detections": options.max_detections,
        "agnostic_nms": options.agnostic_nms,
    }
