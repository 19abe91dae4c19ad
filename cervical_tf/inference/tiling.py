"""Cutting large fields into overlapping tiles and merging the tiles' detections.

Large fields can be cut into overlapping tiles (`predict(..., tile=T, overlap=O)`). Tiles are
T x T, stride T - O, the last one in each row and column flush with the border. Their detections
are merged in two steps, both class-aware:

1. A box that touches an inner tile edge (an edge that is not the image border, within
   `max(2, 1% of T)` px) may be an object cut in two. It is dropped when a box of the same class
   that touches no inner edge covers at least `CONTAINMENT_THRESHOLD` of its area: a
   neighbouring tile saw the object whole. Plain NMS cannot do this, as a cut half has an IoU
   of only about 0.5 or less with the whole box.
2. Non-maximum suppression per class at IoU `IOU_THRESHOLD` removes the duplicates that
   neighbouring tiles both saw whole.

Every object no larger than the overlap lies whole inside some tile, so choose the overlap at
least as large as the largest object. Larger objects that no tile sees whole stay as the pieces
the tiles saw (they are not glued together, which would also glue neighbouring cells).

Whole slides (`cervical_tf.slides`) first keep, of each tile's detections, only those whose centre
lies in the tile's core (`core_bounds`: the cores partition the slide, so every cell belongs to
exactly one tile, QuPath's and HistomicsTK's rule), then merge as above across the seams.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from cervical_tf import boxes

CONTAINMENT_THRESHOLD = 0.7


@dataclass(frozen=True)
class RawDetections:
    """Valid detections in image pixels before merging: boxes_px float32 [N, 4] xyxy, scores
    float32 [N], class_ids int32 [N], cut bool [N] (touches an inner tile edge)."""

    boxes_px: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    cut: np.ndarray


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along a side of `length` px: stride tile - overlap, the last flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return [*starts, length - tile]


def core_bounds(starts: list[int], tile: int) -> list[tuple[float, float]]:
    """Each tile's core [begin, end) along a side, from `tile_starts`: from the middle of its overlap
    with the previous tile to the middle of its overlap with the next; the first core begins at
    -inf and the last ends at +inf, so the cores cover the side without gap or overlap. With an
    overlap of at least a cell's size, the tile owning a cell's centre sees the cell whole."""
    middles = [(start + previous + tile) / 2 for previous, start in itertools.pairwise(starts)]
    return list(zip([-np.inf, *middles], [*middles, np.inf], strict=True))


def centres_in(boxes_px: np.ndarray, core_x: tuple[float, float], core_y: tuple[float, float]) -> np.ndarray:
    """bool [N]: the centre of each xyxy box [N, 4] lies in the core [x0, x1) x [y0, y1)."""
    centre_x = (boxes_px[:, 0] + boxes_px[:, 2]) / 2
    centre_y = (boxes_px[:, 1] + boxes_px[:, 3]) / 2
    return (core_x[0] <= centre_x) & (centre_x < core_x[1]) & (core_y[0] <= centre_y) & (centre_y < core_y[1])


def tile_count(width: int, height: int, tile: int, overlap: int) -> int:
    """How many tiles `tile_starts` cuts a width x height image into."""
    return len(tile_starts(width, tile, overlap)) * len(tile_starts(height, tile, overlap))


def cut_at_inner_edges(
    boxes_px: np.ndarray, x0: float, y0: float, tile_width: float, tile_height: float, width: int, height: int
) -> np.ndarray:
    """bool [N]: which boxes of the tile at (x0, y0) in a width x height image touch one of its inner
    edges (not the image border), within max(2, 1% of the tile's side) px: the `cut` of step 1."""
    margin = max(2.0, 0.01 * max(tile_width, tile_height))
    inner = np.array([x0 > 0, y0 > 0, x0 + tile_width < width, y0 + tile_height < height])
    edges = np.array([x0, y0, x0 + tile_width, y0 + tile_height], dtype=np.float32)
    return ((np.abs(boxes_px - edges) <= margin) & inner).any(axis=1)


def merge_tiles(raw: RawDetections, agnostic: bool = False) -> np.ndarray:
    """Indices into `raw` to keep: cut boxes covered by a whole box go, then NMS.

    "Covered" and NMS compare boxes of the same class, or of any class when `agnostic`.
    """
    whole = np.flatnonzero(~raw.cut)
    dropped = np.zeros(len(raw.scores), dtype=bool)
    for index in np.flatnonzero(raw.cut):
        others = whole if agnostic else whole[raw.class_ids[whole] == raw.class_ids[index]]
        covered = boxes.intersection(raw.boxes_px[index], raw.boxes_px[others])[0] / max(
            boxes.area(raw.boxes_px[index])[0], 1e-6
        )
        dropped[index] = bool((covered >= CONTAINMENT_THRESHOLD).any())
    kept = np.flatnonzero(~dropped)
    return kept[
        boxes.non_max_suppression(
            raw.boxes_px[kept], raw.scores[kept], raw.class_ids[kept], agnostic=agnostic
        )
    ]


def concatenate(parts: list[RawDetections]) -> RawDetections:
    """One RawDetections holding every part's detections, in order (none for no parts)."""
    if not parts:
        return RawDetections(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(0, bool)
        )
    fields = ("boxes_px", "scores", "class_ids", "cut")
    return RawDetections(*(np.concatenate([getattr(part, field) for part in parts]) for field in fields))
